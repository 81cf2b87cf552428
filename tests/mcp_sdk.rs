//! End to end with the official MCP Python SDK (`mcp`): starts two upstream MCP servers from
//! the same SDK (`tests/python/mcp_upstream_server.py`, one stateless, one with sessions),
//! `pennyworth serve` federating them, and runs `tests/python/test_mcp_sdk.py` against it in the
//! handshake and the 2026-07-28 modes.
//!
//! The interpreter is `$PENNYWORTH_TEST_PYTHON`, else `<repo>/.venv/bin/python`. Without the
//! `mcp` package the test is skipped with a notice, unless `PENNYWORTH_REQUIRE_PYTHON=1`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The credential the upstreams demand and the gateway holds (never the callers).
const UPSTREAM_TOKEN: &str = "upstream-secret-4f1c";

fn python() -> PathBuf {
    match std::env::var_os("PENNYWORTH_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => common::repo_root().join(".venv/bin/python"),
    }
}

/// `Some(python)` when it can import the SDK; `None` (skip) otherwise, or a panic when the
/// SDK is required.
pub fn sdk_python() -> Option<PathBuf> {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import mcp, uvicorn, httpx2"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    let msg = format!(
        "`{} -c \"import mcp\"` failed: install tests/python/requirements.txt (scripts/test does)",
        py.display()
    );
    if std::env::var("PENNYWORTH_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// A child process killed and reaped on drop.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a line starting with `prefix` on the child's stdout; returns the line.
fn wait_line(child: &mut Child, prefix: &str, what: &str) -> String {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with(&prefix) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} did not start within 30 s"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the SDK's MCP server on a free port; returns it and its URL.
pub fn start_upstream(py: &Path, stateful: bool) -> (Proc, String) {
    let port = free_port();
    let mut cmd = Command::new(py);
    cmd.arg(common::repo_root().join("tests/python/mcp_upstream_server.py"))
        .arg(port.to_string())
        .arg(UPSTREAM_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if stateful {
        cmd.arg("--stateful");
    }
    let mut child = cmd.spawn().expect("start the upstream MCP server");
    wait_line(&mut child, "ready", "the upstream MCP server");
    (Proc(child), format!("http://127.0.0.1:{port}/mcp"))
}

/// The default config with these upstream servers.
pub fn config_with_servers(servers: &str) -> tempfile::TempDir {
    let tmp = common::copy_default_config();
    let path = tmp.path().join("routes.yaml");
    let text = std::fs::read_to_string(&path).expect("read routes.yaml");
    assert!(
        text.contains("  servers: []\n"),
        "routes.yaml has `servers: []`"
    );
    std::fs::write(&path, text.replace("  servers: []\n", servers)).expect("write routes.yaml");
    tmp
}

fn servers_yaml(up: &str, old: &str) -> String {
    let closed = format!("http://127.0.0.1:{}/mcp", free_port());
    let headers =
        "    headers:\n      - name: X-Upstream-Token\n        env: PW_TEST_UPSTREAM_TOKEN\n";
    format!(
        "  servers:\n\
         \x20 - name: up\n    url: {up}\n{headers}\
         \x20 - name: old\n    url: {old}\n    protocol: 2025-11-25\n{headers}\
         \x20 - name: tight\n    url: {up}\n    timeout_ms: 1000\n{headers}\
         \x20 - name: down\n    url: {closed}\n    timeout_ms: 2000\n{headers}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk() {
    let Some(py) = sdk_python() else { return };
    let (_up, up_url) = start_upstream(&py, false);
    let (_old, old_url) = start_upstream(&py, true);
    let config = config_with_servers(&servers_yaml(&up_url, &old_url));
    let data = tempfile::tempdir().expect("data dir");

    let init = Command::new(common::server::BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("init");
    let v: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init json");
    let admin = v["key"].as_str().expect("admin key").to_string();

    let log = data.path().join("serve.log");
    let mut child = Command::new(common::server::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("PENNYWORTH_LOG", "info")
        .env("PENNYWORTH_LOG_FORMAT", "json")
        .env("PW_TEST_UPSTREAM_TOKEN", UPSTREAM_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let line = wait_line(&mut child, "pennyworth listening on ", "pennyworth serve");
    let _serve = Proc(child);
    let base = line
        .trim_start_matches("pennyworth listening on ")
        .to_string();

    // A user of group `users` with a key, created through the API.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/admin/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"username": "carol", "groups": ["users"]}))
        .send()
        .await
        .expect("create user");
    assert_eq!(created.status(), 201);
    let key: serde_json::Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "mcp", "user": "carol"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key json");
    let user = key["key"].as_str().expect("user key").to_string();

    let out = tokio::task::spawn_blocking(move || {
        Command::new(&py)
            .arg(common::repo_root().join("tests/python/test_mcp_sdk.py"))
            .args([&base, &admin, &user])
            .stdin(Stdio::null())
            .output()
            .expect("run the SDK script")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "the MCP SDK script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nserver log (tail):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        logs.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains("all MCP SDK checks passed"), "{stdout}");

    // Every tools/call left an audit line and a usage line; no argument, result or upstream
    // credential reached the log.
    let usage: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["fields"]["message"] == "tool call")
        .collect();
    for (tool, outcome) in [
        ("up__add", "ok"),
        ("old__shout", "ok"),
        ("chat", "ok"),
        ("down__add", "unreachable"),
        ("tight__slow", "timeout"),
        ("up__add", "denied"),
        ("nosuch", "unknown_tool"),
    ] {
        assert!(
            usage
                .iter()
                .any(|u| u["fields"]["tool"] == tool && u["fields"]["outcome"] == outcome),
            "no usage line for {tool} with outcome {outcome}: {usage:?}"
        );
    }
    assert!(
        usage
            .iter()
            .all(|u| u["fields"]["micros"].is_u64() && u["fields"]["user"].is_string())
    );
    assert!(
        !logs.contains(UPSTREAM_TOKEN),
        "the upstream credential reached the log"
    );
    assert!(
        !logs.contains("hello from the sdk"),
        "a prompt reached the log"
    );
    assert!(
        logs.lines().any(|l| l.contains("pennyworth::audit")
            && l.contains("call_tool")
            && l.contains("up__add")),
        "no audit line for a tool call"
    );
}
