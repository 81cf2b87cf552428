//! The `pennyworth` binary: first-start initialization, `init` refusing an initialized store,
//! and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pennyworth");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on a free port; returns the server, its address and what it printed before
/// the listening line.
fn start(data_dir: &std::path::Path) -> (Server, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            env!("CARGO_MANIFEST_DIR"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("PENNYWORTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout);
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

fn get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn first_start_prints_a_key_once_and_init_refuses_afterwards() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (server, addr, printed) = start(&data);
    let key_lines: Vec<&String> = printed
        .iter()
        .filter(|l| l.trim().starts_with("pw-"))
        .collect();
    assert_eq!(
        key_lines.len(),
        1,
        "one key printed on first start: {printed:?}"
    );
    assert!(get(&addr, "/v1/health").contains("{\"status\":\"ok\"}"));
    drop(server);

    let (server, _, printed) = start(&data);
    assert!(
        printed.iter().all(|l| !l.contains("pw-")),
        "no key on later starts: {printed:?}"
    );
    drop(server);

    let out = Command::new(BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("init");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to initialize"));
}

#[test]
fn init_json_prints_user_and_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(BIN)
        .args(["init", "--json", "--admin", "root", "--data-dir"])
        .arg(tmp.path())
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["user"], "root");
    assert!(v["key"].as_str().expect("key").starts_with("pw-"));
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut server, addr, _) = start(tmp.path());
    assert!(get(&addr, "/v1/health").contains("200 OK"));
    let pid = server.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "listener closed"
    );
}
