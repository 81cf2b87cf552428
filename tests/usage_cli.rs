//! `pennyworth usage` against `pennyworth serve`: a table and JSON, and the ledger still there
//! after the server is killed and started again on the same data directory.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::server::{BIN, Server};

/// The default config with the built-in `echo` model priced, so its calls cost something.
fn priced_config() -> tempfile::TempDir {
    let dir = common::copy_default_config();
    let models = std::fs::read_to_string(dir.path().join("models.yaml")).expect("models");
    let priced = models.replacen(
        "    owned_by: pennyworth\n",
        "    owned_by: pennyworth\n    pricing: { input: 2.50, output: 10.00 }\n",
        1,
    );
    assert_ne!(priced, models, "the echo entry moved");
    std::fs::write(dir.path().join("models.yaml"), priced).expect("write models");
    dir
}

fn serve(config: &Path, data: &Path) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("PENNYWORTH_LOG", "warn")
        .env_remove("PENNYWORTH_USAGE_TABLE")
        .env_remove("PENNYWORTH_USER_POOL_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let server = Server(child);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "serve exited"
        );
        if let Some(addr) = line.trim().strip_prefix("pennyworth listening on ") {
            return (server, addr.to_string());
        }
    }
}

fn cli(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("PENNYWORTH_API_URL", url)
        .env("PENNYWORTH_API_KEY", key)
        .env("PENNYWORTH_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("cli")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test]
async fn usage_table_json_and_restart() {
    let config = priced_config();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = Command::new(BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("init");
    let admin = json_of(&init)["key"].as_str().expect("key").to_string();

    let (server, url) = serve(config.path(), &data);
    let http = reqwest::Client::new();
    let (mut input, mut output) = (0u64, 0u64);
    for text in ["one", "two words", "three little words"] {
        let v: Value = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&admin)
            .json(&json!({"model": "echo", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .expect("chat")
            .json()
            .await
            .expect("json");
        input += v["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
        output += v["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion tokens");
    }
    // 2.50 and 10.00 USD per million tokens, in nano-dollars per token: 2500 and 10000.
    let nanos = input * 2_500 + output * 10_000;
    let usd = rust_decimal::Decimal::new(nanos as i64, 9)
        .normalize()
        .to_string();

    let v = json_of(&cli(&url, &admin, &["usage", "--by", "model", "--json"]));
    assert_eq!(v["total"]["requests"], 3, "{v}");
    assert_eq!(v["total"]["cost_usd"], usd.as_str(), "{v}");
    assert_eq!(v["data"][0]["model"], "echo");

    let table = cli(&url, &admin, &["usage", "--by", "model"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("MODEL") && lines[0].contains("COST USD"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("echo") && lines[1].ends_with(&usd),
        "{text}"
    );
    assert!(
        lines[2].starts_with("total") && lines[2].ends_with(&usd),
        "{text}"
    );

    // Everyone's, by user (the admin may).
    let v = json_of(&cli(
        &url,
        &admin,
        &["usage", "--all", "--by", "user", "--json"],
    ));
    assert_eq!(v["data"][0]["user"], "admin", "{v}");

    // Killed without a chance to flush: what was answered is on disk.
    drop(server);
    let (_server, url) = serve(config.path(), &data);
    let v = json_of(&cli(&url, &admin, &["usage", "--json"]));
    assert_eq!(v["total"]["requests"], 3, "{v}");
    assert_eq!(v["total"]["cost_usd"], usd.as_str(), "{v}");
    assert_eq!(v["total"]["input_tokens"], input);

    // A bad date: one line on stderr, exit 1.
    let out = cli(&url, &admin, &["usage", "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_value"));
}
