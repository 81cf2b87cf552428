//! The Responses API with the official OpenAI Python SDK (`client.responses.create` and
//! `client.responses.stream`: text, function and custom tools, JSON schema output, images, a
//! reasoning round trip) and the OpenAI Agents SDK (an agent with a function tool), each
//! against `serve` with a Bedrock alias on the Bedrock test server.
//!
//! The interpreter is `$PENNYWORTH_TEST_PYTHON`, else `<repo>/.venv/bin/python`; when it
//! cannot import `openai` and `agents` the test is skipped with a notice, unless
//! `PENNYWORTH_REQUIRE_PYTHON=1` (scripts/test), which makes it a failure.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/gateway.rs"]
mod gateway;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
"#;

fn python() -> Option<PathBuf> {
    let python = match std::env::var_os("PENNYWORTH_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    let ok = Command::new(&python)
        .args(["-c", "import openai, agents"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("PENNYWORTH_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "`{} -c \"import openai, agents\"` failed; run scripts/test (tests/python/requirements.txt)",
        python.display()
    );
    eprintln!("skipped: no Python with `openai` and `openai-agents` (run scripts/test)");
    None
}

fn run(python: &Path, script: &str, url: &str, key: &str) -> (bool, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = Command::new(python)
        .arg(path)
        .env("PENNYWORTH_BASE_URL", format!("{url}/v1"))
        .env("PENNYWORTH_API_KEY", key)
        .env("PENNYWORTH_MODEL", "claude")
        .env("OPENAI_AGENTS_DISABLE_TRACING", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll python").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("python output");
    (
        out.status.success(),
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn openai_and_agents_sdks_use_the_responses_api() {
    let Some(python) = python() else {
        return;
    };
    let g = gateway::Gateway::start(
        MODELS,
        "get_weather",
        json!({"city": "Paris"}),
        "dana",
        "sdk",
    );
    let (url, key) = (&g.url, &g.user_key);
    let (ok, out) = run(&python, "test_responses_sdk.py", url, key);
    assert!(ok, "the Responses SDK script failed\n{out}");
    eprintln!("{out}");
    // The reasoning round trip: the sealed signature came back to Bedrock, first in the turn.
    assert!(
        g.signed_reasoning_sent(),
        "no signed reasoning went back to Bedrock"
    );
    let recorded = g.bedrock.recorded();
    assert!(
        recorded
            .iter()
            .any(|r| r.body["outputConfig"]["textFormat"]["type"] == "json_schema"),
        "the JSON schema reached Bedrock"
    );
    assert!(
        recorded.iter().any(|r| r.body["messages"][0]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b.get("image").is_some())),
        "the image reached Bedrock"
    );

    let (ok, out) = run(&python, "test_agents_sdk.py", url, key);
    assert!(ok, "the Agents SDK script failed\n{out}");
    eprintln!("{out}");
}
