//! End to end with the official OpenAI Python SDK: starts `pennyworth serve` on a fresh store
//! and runs `tests/python/test_openai_sdk.py` against it.
//!
//! The interpreter is `$PENNYWORTH_TEST_PYTHON`, else `<repo>/.venv/bin/python`. When it cannot
//! `import openai` the test is skipped with a notice, unless `PENNYWORTH_REQUIRE_PYTHON=1`, in
//! which case it fails (set it wherever the SDK must be present, such as CI).

#[path = "support/bedrock.rs"]
mod bedrock_server;
#[path = "support/openai_upstream.rs"]
mod openai_upstream;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the Python script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_mins(2);
/// The line `serve` prints on stdout once it accepts connections.
const LISTENING: &str = "pennyworth listening on ";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter to use.
fn python() -> PathBuf {
    match std::env::var_os("PENNYWORTH_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv").join("bin").join("python"),
    }
}

/// `Ok(())` when `python -c "import openai, anthropic"` succeeds, else why not.
fn check_openai(python: &Path) -> Result<(), String> {
    match Command::new(python)
        .args(["-c", "import openai, anthropic"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{} -c \"import openai\"` failed ({}): {}",
            python.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
        )),
        Err(e) => Err(format!("cannot run `{}`: {e}", python.display())),
    }
}

/// A child process that is killed and reaped when dropped, whatever happened before.
struct KillOnDrop {
    child: Child,
    what: &'static str,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill()
            && e.kind() != std::io::ErrorKind::InvalidInput
        {
            eprintln!("warning: cannot kill the {}: {e}", self.what);
        }
        let _ = self.child.wait();
    }
}

fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cannot read `{}`: {e}>", path.display()),
    }
}

/// `pennyworth init --data-dir DIR --json`; returns the admin key.
fn init_store(data_dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pennyworth"))
        .arg("init")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run `pennyworth init`");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`pennyworth init` failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("`pennyworth init --json` printed no JSON line:\n{stdout}"));
    let v: serde_json::Value =
        serde_json::from_str(line).expect("parse the JSON line of `pennyworth init --json`");
    assert_eq!(v["user"], "admin", "user created by `pennyworth init`: {v}");
    let key = v["key"].as_str().unwrap_or_else(|| {
        panic!("no string `key` in the output of `pennyworth init --json`: {v}")
    });
    assert!(
        key.starts_with("pw-"),
        "the admin key does not start with `pw-`"
    );
    key.to_string()
}

/// Starts `pennyworth serve` on 127.0.0.1:0 and waits for its listening line; returns the
/// guard and the base URL (`http://127.0.0.1:PORT`). Its stderr goes to `log`.
fn start_server(
    config_dir: &Path,
    data_dir: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> (KillOnDrop, String) {
    let log_file = File::create(log).expect("create the server log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pennyworth"));
    // An empty value removes the variable from the child's environment.
    for (k, v) in env {
        if v.is_empty() {
            command.env_remove(k);
        } else {
            command.env(k, v);
        }
    }
    let child = command
        .arg("serve")
        .arg("--config")
        .arg(config_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("PENNYWORTH_LOG", "info")
        .env_remove("PENNYWORTH_LOG_FORMAT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn `pennyworth serve`");
    let mut server = KillOnDrop {
        child,
        what: "gateway",
    };
    let stdout = server
        .child
        .stdout
        .take()
        .expect("the server's stdout is piped");

    // Read stdout on a thread so the wait can time out; it keeps draining after the
    // listening line so the server never blocks on a full pipe.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Once nobody listens any more, keep reading anyway to drain the pipe.
            let _ = tx.send(line);
        }
    });

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.trim().strip_prefix(LISTENING) {
                    return (server, url.trim_end_matches('/').to_string());
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "`pennyworth serve` printed no `{LISTENING}...` line within {STARTUP_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                seen.join("\n"),
                read_lossy(log)
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().expect("wait for the exited server");
                panic!(
                    "`pennyworth serve` closed its stdout before listening ({status})\nstdout:\n{}\nstderr:\n{}",
                    seen.join("\n"),
                    read_lossy(log)
                );
            }
        }
    }
}

/// `Ok(python)` when the SDK test can run; `Err(())` when it is skipped (with a notice).
fn python_or_skip(test: &str) -> Result<PathBuf, ()> {
    let python = python();
    if let Err(why) = check_openai(&python) {
        if std::env::var("PENNYWORTH_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!(
                "the OpenAI Python SDK is required (PENNYWORTH_REQUIRE_PYTHON=1) but unusable: {why}\n\
                 run `scripts/test` to create .venv with tests/python/requirements.txt, or set \
                 PENNYWORTH_TEST_PYTHON to an interpreter that has the `openai` package"
            );
        }
        eprintln!(
            "SKIPPED {test}: {why}\n\
             (run `scripts/test`, or create .venv and `pip install -r tests/python/requirements.txt`; \
             set PENNYWORTH_REQUIRE_PYTHON=1 to make this a failure)"
        );
        return Err(());
    }
    Ok(python)
}

/// Starts `serve` over `config_dir` (with `server_env` added to its environment) on a fresh
/// store and runs `tests/python/<script>` against it; panics with every log on failure.
fn run_script(
    python: &Path,
    config_dir: &Path,
    server_env: &[(&str, &str)],
    script: &str,
    script_env: &[(&str, &str)],
) {
    let tmp = tempfile::tempdir().expect("create a temp dir");
    let data_dir = tmp.path().join("data");
    let key = init_store(&data_dir);
    let server_log = tmp.path().join("server.log");
    let (mut server, url) = start_server(config_dir, &data_dir, &server_log, server_env);

    let script = repo_root().join("tests").join("python").join(script);
    let out_path = tmp.path().join("python.stdout");
    let err_path = tmp.path().join("python.stderr");
    let child = Command::new(python)
        .arg(&script)
        .env("PENNYWORTH_BASE_URL", format!("{url}/v1"))
        .env("PENNYWORTH_API_KEY", &key)
        .envs(script_env.iter().copied())
        // Loopback only, whatever proxy the environment names.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            File::create(&out_path).expect("create the script's stdout file"),
        ))
        .stderr(Stdio::from(
            File::create(&err_path).expect("create the script's stderr file"),
        ))
        .spawn()
        .expect("spawn the Python script");
    let mut script_run = KillOnDrop {
        child,
        what: "Python script",
    };
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = script_run.child.try_wait().expect("poll the Python script") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = read_lossy(&out_path);
    let stderr = read_lossy(&err_path);
    // The server must still be up after the script; an exit means it crashed on a request.
    let server_exit = server.child.try_wait().expect("poll the server");
    let report = || {
        format!(
            "\n--- script stdout ---\n{stdout}\n--- script stderr ---\n{stderr}\n--- server stderr ---\n{}",
            read_lossy(&server_log)
        )
    };
    match status {
        None => panic!(
            "`{}` did not finish within {SCRIPT_TIMEOUT:?}{}",
            script.display(),
            report()
        ),
        Some(s) if !s.success() => panic!("`{}` failed ({s}){}", script.display(), report()),
        Some(_) => {}
    }
    assert!(
        server_exit.is_none(),
        "the gateway exited during the run ({server_exit:?}){}",
        report()
    );
    eprint!("{stdout}");
}

#[test]
fn openai_python_sdk_against_a_running_gateway() {
    let Ok(python) = python_or_skip("openai_python_sdk_against_a_running_gateway") else {
        return;
    };
    run_script(&python, &repo_root(), &[], "test_openai_sdk.py", &[]);
}

/// The Bedrock aliases of the SDK test; `{url}` is the Bedrock test server.
const BEDROCK_MODELS: &str = r#"
providers:
  bedrock:
    endpoint_url: {url}
    retry: { max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 5 }
models:
  echo:
    provider: echo
    groups: [standard]
  claude:
    provider: bedrock
    upstream: us.anthropic.claude-sonnet-4-5-20250929-v1:0
    region: us-east-1
    groups: [standard]
    owned_by: anthropic
  titan:
    provider: bedrock
    upstream: amazon.titan-embed-text-v2:0
    region: us-east-1
    kind: embedding
    groups: [standard]
"#;

#[test]
fn openai_python_sdk_against_bedrock() {
    let Ok(python) = python_or_skip("openai_python_sdk_against_bedrock") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bedrock = runtime.block_on(bedrock_server::BedrockServer::start());
    let config = config_dir_with_models(&BEDROCK_MODELS.replace("{url}", &bedrock.url()));
    run_script(
        &python,
        config.path(),
        &BEDROCK_ENV,
        "test_openai_sdk_bedrock.py",
        &[
            ("PENNYWORTH_MODEL", "claude"),
            ("PENNYWORTH_EMBEDDING_MODEL", "titan"),
        ],
    );
    check_bedrock_calls(&bedrock.recorded());
    drop(bedrock);
    drop(runtime);
}

/// The server's environment for Bedrock aliases: static test credentials, and no profile
/// files or instance metadata to look at, so the default credential chain never leaves the
/// machine (an empty value removes a variable).
const BEDROCK_ENV: [(&str, &str); 11] = [
    ("AWS_ACCESS_KEY_ID", "AKIDPENNYWORTHSDK"),
    ("AWS_SECRET_ACCESS_KEY", "pennyworth-sdk-test-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/pennyworth-test"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/pennyworth-test",
    ),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
    ("AWS_PROFILE", ""),
    ("AWS_ENDPOINT_URL", ""),
];

/// Every recorded call went to one of the test's models, signed with the test credentials.
fn check_bedrock_calls(recorded: &[bedrock_server::Recorded]) {
    assert!(recorded.len() >= 4, "the SDK calls reached Bedrock");
    for r in recorded {
        assert!(
            [
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                // CountTokens takes the base model id.
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                "amazon.titan-embed-text-v2:0"
            ]
            .contains(&r.model()),
            "{}",
            r.path
        );
        assert!(
            r.authorization()
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDPENNYWORTHSDK/"),
            "{}",
            r.authorization()
        );
    }
}

#[test]
fn openai_python_sdk_against_openai_upstream() {
    let Ok(python) = python_or_skip("openai_python_sdk_against_openai_upstream") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let upstream = runtime.block_on(openai_upstream::OpenAiUpstream::start());
    let config = config_dir_with_models(&format!(
        "models:\n  gpt:\n    provider: openai\n    upstream: upstream-model\n    base_url: {url}\n    api_key_env: PENNYWORTH_SDK_UPSTREAM_KEY\n    groups: [standard]\n  embed:\n    provider: openai\n    upstream: text-embedding-3-small\n    kind: embedding\n    base_url: {url}\n    groups: [standard]\n",
        url = upstream.base_url()
    ));
    run_script(
        &python,
        config.path(),
        &[("PENNYWORTH_SDK_UPSTREAM_KEY", "sk-sdk-test")],
        "test_openai_sdk_upstream.py",
        &[
            ("PENNYWORTH_MODEL", "gpt"),
            ("PENNYWORTH_EMBEDDING_MODEL", "embed"),
        ],
    );
    let recorded = upstream.recorded();
    assert!(recorded.len() >= 5, "the SDK calls reached the upstream");
    for r in &recorded {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match r.body["model"].as_str() {
            Some("upstream-model") => assert_eq!(auth, "Bearer sk-sdk-test"),
            Some("text-embedding-3-small") => assert_eq!(auth, ""),
            other => panic!("unexpected upstream model {other:?}"),
        }
    }
    drop(upstream);
    drop(runtime);
}

#[test]
fn anthropic_python_sdk_against_bedrock() {
    let Ok(python) = python_or_skip("anthropic_python_sdk_against_bedrock") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bedrock = runtime.block_on(bedrock_server::BedrockServer::start());
    let config = config_dir_with_models(&BEDROCK_MODELS.replace("{url}", &bedrock.url()));
    run_script(
        &python,
        config.path(),
        &BEDROCK_ENV,
        "test_anthropic_sdk.py",
        &[("PENNYWORTH_MODEL", "claude")],
    );
    let recorded = bedrock.recorded();
    check_bedrock_calls(&recorded);
    // The signed thinking of the round trip went back first in the assistant turn.
    assert!(
        recorded.iter().any(|r| r.body["messages"][1]["content"][0]["reasoningContent"]
            ["reasoningText"]["signature"]
            == "sig-from-before"),
        "the signature reached Bedrock"
    );
    // The image and the PDF reached Bedrock as bytes, the PDF followed by its cache point.
    assert!(recorded.iter().any(|r| {
        let c = &r.body["messages"][0]["content"];
        c[0]["image"]["format"] == "png"
            && c[1]["document"]["format"] == "pdf"
            && c[2]["cachePoint"]["type"] == "default"
    }));
    drop(bedrock);
    drop(runtime);
}

/// A config directory with the repository's routes and policies and `models` as models.yaml.
fn config_dir_with_models(models: &str) -> tempfile::TempDir {
    let config = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        repo_root().join("routes.yaml"),
        config.path().join("routes.yaml"),
    )
    .expect("copy routes.yaml");
    std::fs::create_dir(config.path().join("policies")).expect("mkdir policies");
    for e in std::fs::read_dir(repo_root().join("policies")).expect("read policies") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), config.path().join("policies").join(e.file_name()))
            .expect("copy policy");
    }
    std::fs::write(config.path().join("models.yaml"), models).expect("write models.yaml");
    config
}
