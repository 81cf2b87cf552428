//! `pennyworth serve` as a child process with its stdout and stderr read, a minimal HTTP/1.0
//! client and signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pennyworth");

/// What to do with the server's stderr.
pub enum Stderr {
    /// Collect its lines.
    Keep,
    /// Close the reading end at once (a dead pipe).
    Close,
}

/// A running server; killed and reaped on drop.
pub struct Serve {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
    /// The admin key of the first start (from `<data>/admin-key`: stderr is no terminal).
    pub key: Option<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `serve` on a free loopback port with `config` and `data`, plus `env`.
    pub fn start(config: &Path, data: &Path, env: &[(&str, &str)], stderr: Stderr) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("PENNYWORTH_LOG_FORMAT")
            .env_remove("PENNYWORTH_METRICS")
            .env_remove("NO_COLOR");
        Self::spawn(cmd, config, data, env, stderr)
    }

    /// Like [`Serve::start`] with an empty environment besides `env` (no AWS variables).
    pub fn start_isolated(config: &Path, data: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.env_clear();
        Self::spawn(cmd, config, data, env, Stderr::Keep)
    }

    fn spawn(
        mut cmd: Command,
        config: &Path,
        data: &Path,
        env: &[(&str, &str)],
        stderr: Stderr,
    ) -> Self {
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        match stderr {
            Stderr::Keep => {
                let sink = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        sink.lock().expect("stderr lines").push(line);
                    }
                });
            }
            Stderr::Close => drop(err),
        }
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut printed = Vec::new();
        let addr = loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).expect("read stdout");
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve exited before listening; stdout {printed:?}, stderr {:?}",
                    lines.lock().expect("stderr lines")
                );
            }
            if let Some(addr) = line.trim().strip_prefix("pennyworth listening on http://") {
                break addr.to_string();
            }
            printed.push(line);
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let key = std::fs::read_to_string(data.join("admin-key"))
            .ok()
            .map(|k| k.trim().to_string());
        Self {
            child,
            addr,
            key,
            stderr: lines,
        }
    }

    /// Waits until a stderr line contains `needle`; returns it.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .expect("stderr lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with `{needle}`: {:?}",
                self.stderr.lock().expect("stderr lines")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM (graceful) and returns everything it wrote to stderr.
    pub fn stop_and_collect_stderr(mut self) -> Vec<String> {
        signal(&self, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread sees EOF right after the exit.
        std::thread::sleep(Duration::from_millis(200));
        self.stderr.lock().expect("stderr lines").clone()
    }
}

/// Sends a signal (`INT`, `TERM`) to the server.
pub fn signal(server: &Serve, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// One HTTP/1.0 request (so the answer is never chunked); status and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
