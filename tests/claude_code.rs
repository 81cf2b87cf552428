//! The real Claude Code CLI (npm `@anthropic-ai/claude-code`), headless, against `serve` with
//! a Bedrock alias on the Bedrock test server: the model thinks (signed), calls `Bash`, Claude
//! Code runs the command and sends its output back, and the final answer quotes it. A model
//! the user may not use fails without reaching Bedrock.
//!
//! The CLI is `$PENNYWORTH_CLAUDE` (scripts/test installs it under `~/.cache/pennyworth`);
//! without it the test is skipped with a notice, unless `PENNYWORTH_REQUIRE_AGENTS=1`.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/gateway.rs"]
mod gateway;

use serde_json::{Value, json};
use std::path::PathBuf;
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
    names: [claude-opus-5-5, claude-sonnet-4-6, claude-haiku-4-5, claude-haiku-4-5-20251001]
  premium-only:
    provider: bedrock
    upstream: premium-model
    region: us-east-1
    groups: [premium]
"#;

fn claude() -> Option<PathBuf> {
    let cli = std::env::var_os("PENNYWORTH_CLAUDE").map(PathBuf::from);
    match cli {
        Some(p) if p.exists() => Some(p),
        _ => {
            assert!(
                std::env::var("PENNYWORTH_REQUIRE_AGENTS").as_deref() != Ok("1"),
                "PENNYWORTH_CLAUDE does not name the Claude Code CLI (scripts/test installs it)"
            );
            eprintln!("skipped: set PENNYWORTH_CLAUDE to the Claude Code CLI to run this test");
            None
        }
    }
}

/// Runs `claude -p PROMPT --allowedTools Bash` against the gateway; returns status, stdout
/// and stderr.
fn run_claude(
    cli: &PathBuf,
    url: &str,
    key: &str,
    model: &str,
    home: &std::path::Path,
) -> (bool, String, String) {
    let mut child = Command::new(cli)
        .args([
            "-p",
            "Run the shell command `echo pennyworth-ok` and tell me what it printed.",
            "--allowedTools",
            "Bash",
        ])
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", url)
        .env("ANTHROPIC_API_KEY", key)
        .env("ANTHROPIC_MODEL", model)
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claude");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().expect("poll claude").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("claude output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn claude_code_runs_a_tool_through_the_gateway() {
    let Some(cli) = claude() else {
        return;
    };
    let g = gateway::Gateway::start(
        MODELS,
        "Bash",
        json!({"command": "echo pennyworth-ok", "description": "Print a marker"}),
        "carol",
        "claude-code",
    );
    let home = tempfile::tempdir().expect("home");
    let (ok, stdout, stderr) =
        run_claude(&cli, &g.url, &g.user_key, "claude-opus-5-5", home.path());
    assert!(ok, "claude failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    // The command ran on this machine and its output went back to the model, with its
    // signed thinking first in the assistant turn.
    assert!(
        g.tool_result_sent("pennyworth-ok"),
        "no tool result reached Bedrock\nstdout:\n{stdout}"
    );
    assert!(g.signed_reasoning_sent());
    assert!(
        stdout.contains("pennyworth-ok"),
        "the final answer does not quote the command's output:\n{stdout}"
    );

    eprintln!("claude answered: {}", stdout.trim());

    // A model the user may not use fails cleanly, without reaching Bedrock.
    g.bedrock.clear();
    let (ok, stdout, _) = run_claude(&cli, &g.url, &g.user_key, "premium-only", home.path());
    assert!(!ok, "a denied model answered:\n{stdout}");
    eprintln!("claude with a denied model: {}", stdout.trim());
    assert!(
        g.bedrock
            .recorded()
            .iter()
            .all(|r| r.model() != "premium-model"),
        "the denied model reached Bedrock"
    );
}
