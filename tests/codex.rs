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
#[path = "support/gateway.rs"]
mod gateway;

use serde_json::json;
use std::path::{Path, PathBuf};
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
    let mut cmd = Command::new(cli);
    cmd.args([
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "Run the shell command `echo pennyworth-ok` and tell me what it printed.",
    ]);
    let codex_home = codex_home.to_string_lossy().into_owned();
    gateway::run_cli(cmd, home, &[("CODEX_HOME", &codex_home), ("PW_KEY", key)])
}

#[test]
fn codex_runs_exec_command_through_the_gateway() {
    let Some(cli) = codex() else {
        return;
    };
    let g = gateway::Gateway::start(
        MODELS,
        "exec_command",
        json!({"cmd": "echo pennyworth-ok"}),
        "carol",
        "codex",
    );
    let home = tempfile::tempdir().expect("home");
    g.check_agent("codex", "claude", "premium-only", |model| {
        run_codex(&cli, &g.url, &g.user_key, model, home.path())
    });
}
