//! The `pennyworth` binary: first-start initialization, `init` refusing an initialized store,
//! and graceful shutdown on SIGTERM.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::server::BIN;

fn start(data: &std::path::Path) -> (common::server::Server, String, Vec<String>) {
    common::server::start(data, &[])
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

fn get_with_key(addr: &str, path: &str, key: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn first_start_hands_the_key_over_once_and_init_refuses_afterwards() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (server, addr, printed) = start(&data);
    // The key never goes to stdout (log collectors keep it): with no terminal on stderr it is
    // in a file only its owner can read, and stdout says where.
    assert!(
        printed.iter().all(|l| !l.contains("pw-")),
        "no key on stdout: {printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.contains("admin-key")),
        "where the key is: {printed:?}"
    );
    let key = common::server::admin_key_file(&data).expect("key file");
    assert!(key.starts_with("pw-"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("admin-key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        get_with_key(&addr, "/v1/whoami", &key).contains("\"admin\""),
        "the key works"
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
