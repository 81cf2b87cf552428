//! The real Codex CLI (npm `@openai/codex`), `codex exec` headless, against `serve` through
//! the Responses API with a Bedrock alias on the Bedrock test server: the model thinks
//! (signed), calls `exec_command`, Codex runs the command and sends its output back, and the
//! final answer quotes it. A model the user may not use fails without reaching Bedrock.
//!
//! The CLI is `$PENNYWORTH_CODEX` (scripts/test installs it under `~/.cache/pennyworth`);
//! without it the test is skipped with a notice, unless `PENNYWORTH_REQUIRE_AGENTS=1`.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MODELS: &str = r#"
providers:
  bedrock:
    endpoint_url: {url}
    retry: { max_attempts: 1 }
models:
  claude:
    provider: bedrock
    upstream: us.anthropic.claude-sonnet-4-5-20250929-v1:0
    region: us-east-1
    groups: [standard]
  premium-only:
    provider: bedrock
    upstream: premium-model
    region: us-east-1
    groups: [premium]
"#;

fn codex() -> Option<PathBuf> {
    let cli = std::env::var_os("PENNYWORTH_CODEX").map(PathBuf::from);
    match cli {
        Some(p) if p.exists() => Some(p),
        _ => {
            assert!(
                std::env::var("PENNYWORTH_REQUIRE_AGENTS").as_deref() != Ok("1"),
                "PENNYWORTH_CODEX does not name the Codex CLI (scripts/test installs it)"
            );
            eprintln!("skipped: set PENNYWORTH_CODEX to the Codex CLI to run this test");
            None
        }
    }
}

/// Runs `codex exec` against the gateway with `model`; returns status, stdout and stderr.
fn run_codex(cli: &Path, url: &str, key: &str, model: &str, home: &Path) -> (bool, String, String) {
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).expect("codex home");
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"{model}\"\nmodel_reasoning_effort = \"medium\"\nmodel_provider = \"pw\"\n\n[model_providers.pw]\nname = \"pennyworth\"\nbase_url = \"{url}/v1\"\nenv_key = \"PW_KEY\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n"
        ),
    )
    .expect("config.toml");
    let mut child = Command::new(cli)
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "Run the shell command `echo pennyworth-ok` and tell me what it printed.",
        ])
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CODEX_HOME", &codex_home)
        .env("PW_KEY", key)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn codex");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().expect("poll codex").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("codex output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn codex_runs_exec_command_through_the_gateway() {
    let Some(cli) = codex() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bedrock = runtime.block_on(bedrock_server::BedrockServer::start());
    bedrock.prefer_tool("exec_command", json!({"cmd": "echo pennyworth-ok"}));
    let config = common::copy_default_config();
    std::fs::write(
        config.path().join("models.yaml"),
        MODELS.replace("{url}", &bedrock.url()),
    )
    .expect("write models.yaml");
    let data = tempfile::tempdir().expect("temp dir");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDPENNYWORTHCC"),
        ("AWS_SECRET_ACCESS_KEY", "pennyworth-cc-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/pennyworth-test"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/pennyworth-test",
        ),
    ];
    let (_server, addr, printed) = common::server::start_in(config.path(), data.path(), &env);
    let admin_key = common::server::admin_key_file(data.path())
        .unwrap_or_else(|| panic!("serve wrote no admin key file: {printed:?}"));
    let url = format!("http://{addr}");

    // A user of the `users` group, with a key of their own.
    let user_key: String = runtime.block_on(async {
        let http = reqwest::Client::new();
        let created = http
            .post(format!("{url}/v1/admin/users"))
            .bearer_auth(&admin_key)
            .json(&json!({"username": "carol", "groups": ["users"]}))
            .send()
            .await
            .expect("create user");
        assert_eq!(created.status(), 201);
        let key: Value = http
            .post(format!("{url}/v1/keys"))
            .bearer_auth(&admin_key)
            .json(&json!({"name": "codex", "user": "carol"}))
            .send()
            .await
            .expect("create key")
            .json()
            .await
            .expect("key json");
        key["key"].as_str().expect("key").to_string()
    });

    let home = tempfile::tempdir().expect("home");
    let (ok, stdout, stderr) = run_codex(&cli, &url, &user_key, "claude", home.path());
    let recorded = bedrock.recorded();
    let calls: Vec<&Value> = recorded.iter().map(|r| &r.body).collect();
    assert!(
        ok,
        "codex failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ncalls: {}",
        calls.len()
    );
    // The command ran on this machine and its output went back to the model.
    let result_sent = recorded.iter().any(|r| {
        r.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                m["content"].as_array().into_iter().flatten().any(|b| {
                    b["toolResult"]["content"]
                        .to_string()
                        .contains("pennyworth-ok")
                })
            })
    });
    assert!(
        result_sent,
        "no tool result reached Bedrock\nstdout:\n{stdout}"
    );
    // With its signed thinking first in the assistant turn.
    if std::env::var_os("PENNYWORTH_DEBUG_CODEX").is_some() {
        for r in &recorded {
            eprintln!(
                "{}",
                serde_json::to_string(&r.body["messages"]).unwrap_or_default()
            );
        }
    }
    assert!(recorded.iter().any(|r| {
        r.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                m["role"] == "assistant"
                    && m["content"][0]["reasoningContent"]["reasoningText"]["signature"]
                        == "test-signature"
            })
    }));
    assert!(
        stdout.contains("pennyworth-ok"),
        "the final answer does not quote the command's output:\n{stdout}"
    );

    eprintln!("codex answered: {}", stdout.trim());

    // A model the user may not use fails cleanly, without reaching Bedrock.
    bedrock.clear();
    let (ok, stdout, _) = run_codex(&cli, &url, &user_key, "premium-only", home.path());
    assert!(!ok, "a denied model answered:\n{stdout}");
    eprintln!("codex with a denied model: {}", stdout.trim());
    assert!(
        bedrock
            .recorded()
            .iter()
            .all(|r| r.model() != "premium-model"),
        "the denied model reached Bedrock"
    );
    drop(bedrock);
    drop(runtime);
}
