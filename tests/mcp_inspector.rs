//! The MCP Inspector's CLI mode (npm `@modelcontextprotocol/inspector`, run offline once
//! installed) lists and calls tools through `pennyworth serve`.
//!
//! The CLI is `$PENNYWORTH_MCP_INSPECTOR`, else `<repo>/.venv/inspector/node_modules/.bin/mcp-inspector`
//! (`npm install --prefix .venv/inspector @modelcontextprotocol/inspector@2.12.0`). Without it
//! the test is skipped with a notice, unless `PENNYWORTH_REQUIRE_INSPECTOR=1`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn inspector() -> Option<PathBuf> {
    let path = match std::env::var_os("PENNYWORTH_MCP_INSPECTOR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => common::repo_root().join(".venv/inspector/node_modules/.bin/mcp-inspector"),
    };
    if path.exists() {
        return Some(path);
    }
    let msg = format!("no MCP Inspector CLI at `{}`", path.display());
    if std::env::var("PENNYWORTH_REQUIRE_INSPECTOR").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

fn run(cli: &PathBuf, url: &str, key: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(cli)
        .args(["--cli", url, "--transport", "http", "--header"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the MCP Inspector CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn inspector_cli_lists_and_calls_tools() {
    let Some(cli) = inspector() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let (_server, addr, printed) = common::server::start(data.path(), &[]);
    let key = common::server::admin_key_file(data.path())
        .unwrap_or_else(|| panic!("serve wrote no admin key file: {printed:?}"));
    let url = format!("http://{addr}/v1/mcp");

    let list = run(&cli, &url, &key, &["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for n in ["list_models", "whoami", "chat", "embed"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    let chat = run(
        &cli,
        &url,
        &key,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "chat",
            "--tool-arg",
            "model=echo",
            "--tool-arg",
            "prompt=inspected",
        ],
    );
    assert_eq!(chat["isError"], false, "{chat}");
    assert_eq!(chat["content"][0]["text"], "inspected", "{chat}");

    let who = run(
        &cli,
        &url,
        &key,
        &["--method", "tools/call", "--tool-name", "whoami"],
    );
    assert_eq!(who["structuredContent"]["user"], "admin", "{who}");
}
