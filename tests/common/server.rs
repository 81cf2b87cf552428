//! `pennyworth serve` as a child process on a free port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_pennyworth");

/// A running server; killed and reaped on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` with the repository's config on `data`; returns the server, its address
/// (`host:port`) and what it printed before its listening line.
pub fn start(data: &Path, env: &[(&str, &str)]) -> (Server, String, Vec<String>) {
    start_in(Path::new(env!("CARGO_MANIFEST_DIR")), data, env)
}

/// [`start`] with the config in `config`.
pub fn start_in(config: &Path, data: &Path, env: &[(&str, &str)]) -> (Server, String, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("PENNYWORTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let server = Server(child);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "serve exited before listening; printed {lines:?}");
        if let Some(addr) = line.trim().strip_prefix("pennyworth listening on http://") {
            return (server, addr.to_string(), lines);
        }
        lines.push(line);
    }
}

/// The first admin key `serve` or `init` left in `<data>/admin-key` (stderr was no terminal),
/// if there is one.
#[allow(dead_code)]
pub fn admin_key_file(data: &Path) -> Option<String> {
    std::fs::read_to_string(data.join("admin-key"))
        .ok()
        .map(|k| k.trim().to_string())
}
