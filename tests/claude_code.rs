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

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

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
    let mut cmd = Command::new(cli);
    cmd.args([
        "-p",
        "Run the shell command `echo pennyworth-ok` and tell me what it printed.",
        "--allowedTools",
        "Bash",
    ]);
    gateway::run_cli(
        cmd,
        home,
        &[
            ("ANTHROPIC_BASE_URL", url),
            ("ANTHROPIC_API_KEY", key),
            ("ANTHROPIC_MODEL", model),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ],
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
    g.check_agent("claude", "claude-opus-5-5", "premium-only", |model| {
        run_claude(&cli, &g.url, &g.user_key, model, home.path())
    });
}
