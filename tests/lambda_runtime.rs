//! The packaged Lambda binary, `bootstrap`, run as Lambda runs it: a child process whose
//! `AWS_LAMBDA_RUNTIME_API` points at a stand-in of the Runtime API on 127.0.0.1
//! (`tests/support/lambda_runtime.rs`), fed recorded API Gateway REST (v1) and HTTP API (v2)
//! events from `tests/fixtures/lambda/`. This proves the binary (start-up, config and policy
//! loading, the runtime loop, the streaming response framing), not only the library.
//!
//! The child's environment is cleared and rebuilt: the embedded store in a temp dir (no user
//! pool), static dummy AWS credentials, no instance metadata, so nothing leaves loopback.

#[path = "support/lambda_runtime.rs"]
mod runtime_api;

use base64::Engine as _;
use runtime_api::{Answer, Mode, RuntimeApi, bootstrap_command};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");
const CLI: &str = env!("CARGO_BIN_EXE_pennyworth");
/// A debug build's cold start plus one answer; generous for a loaded CI machine.
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `bootstrap` with its stand-in runtime, store and log; killed when dropped.
struct Function {
    api: RuntimeApi,
    child: Child,
    key: String,
    dir: tempfile::TempDir,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an embedded store with an admin key in `data` (`pennyworth init --json`).
fn init_store(data: &Path) -> String {
    let out = Command::new(CLI)
        .args(["init", "--json", "--data-dir"])
        .arg(data)
        .env("PENNYWORTH_LOG", "warn")
        .env_remove("PENNYWORTH_USER_POOL_ID")
        .output()
        .expect("run pennyworth init");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("init prints JSON");
    v["key"].as_str().expect("key").to_string()
}

impl Function {
    /// Starts `bootstrap` over the repository's config.
    async fn start() -> Self {
        let api = RuntimeApi::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let key = init_store(&dir.path().join("data"));
        let child = bootstrap_command(BOOTSTRAP, &api, &repo_root(), dir.path())
            .spawn()
            .expect("spawn bootstrap");
        Self {
            api,
            child,
            key,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("function.log")).unwrap_or_default()
    }

    /// Sends one fixture event and waits for its answer.
    async fn invoke(&mut self, fixture: &str) -> Answer {
        let event = event(fixture, &self.key);
        match self.api.invoke(event, TIMEOUT).await {
            Ok(a) => a,
            Err(e) => {
                let exited = self.child.try_wait().ok().flatten();
                panic!(
                    "{fixture}: {e}; process exit: {exited:?}; function log:\n{}",
                    self.log()
                )
            }
        }
    }
}

/// A recorded event with the key (and, for the base64 event, the chat body) filled in.
fn event(name: &str, key: &str) -> String {
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"hello from the binary"}]}"#;
    std::fs::read_to_string(repo_root().join("tests/fixtures/lambda").join(name))
        .expect("read event")
        .replace("{{key}}", key)
        .replace(
            "{{body_base64}}",
            &base64::engine::general_purpose::STANDARD.encode(body),
        )
}

/// The runner always answers in streaming mode, with the HTTP integration prelude.
fn assert_streamed(a: &Answer) {
    assert_eq!(a.mode, Mode::Streamed, "{a:?}");
    assert_eq!(
        a.post_content_type.as_deref(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    assert!(a.trailers.is_empty(), "error trailers: {:?}", a.trailers);
}

#[tokio::test]
async fn rest_api_health_through_the_binary() {
    let mut f = Function::start().await;
    let a = f.invoke("rest_v1_health.json").await;
    assert_streamed(&a);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), r#"{"status":"ok"}"#);
    assert_eq!(a.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn http_api_chat_with_echo_through_the_binary() {
    let mut f = Function::start().await;
    let a = f.invoke("http_v2_chat_base64.json").await;
    assert_streamed(&a);
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "echo");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "hello from the binary"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(a.header("x-request-id").is_some(), "{:?}", a.headers);
}

#[tokio::test]
async fn rest_api_stream_through_the_binary() {
    let mut f = Function::start().await;
    let a = f.invoke("rest_v1_chat_stream.json").await;
    assert_streamed(&a);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    // Prelude, delimiter and the SSE events arrive as separate chunks, not one buffer.
    assert!(a.frames >= 4, "{} frames", a.frames);
    let text = a.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{text}");
    let content: String = events
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).expect("chunk is JSON"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "hello from lambda");
    let usage: serde_json::Value = serde_json::from_str(
        events[events.len() - 2]
            .strip_prefix("data: ")
            .expect("data event"),
    )
    .expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn http_api_without_key_is_401_through_the_binary() {
    let mut f = Function::start().await;
    let a = f.invoke("http_v2_no_key.json").await;
    assert_streamed(&a);
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(a.header("www-authenticate").is_some(), "{:?}", a.headers);
    assert_eq!(a.json()["error"]["code"], "missing_api_key");
}

#[tokio::test]
async fn one_warm_process_answers_every_event_in_turn() {
    let mut f = Function::start().await;
    let first = f.invoke("rest_v1_health.json").await;
    assert_eq!(first.status, 200);
    let whoami = f.invoke("http_v2_whoami_stage.json").await;
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json()["user"], "admin");
    assert_eq!(f.invoke("http_v2_no_key.json").await.status, 401);
    assert_eq!(f.invoke("http_v2_chat_base64.json").await.status, 200);
    let stream = f.invoke("rest_v1_chat_stream.json").await;
    assert!(
        stream.text().ends_with("data: [DONE]\n\n"),
        "{}",
        stream.text()
    );
    // Five answers, and the process is back polling for the sixth.
    tokio::time::timeout(TIMEOUT, async {
        while f.api.polls() < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the function polls for the next event");
    assert!(f.child.try_wait().expect("child status").is_none());
    // Every line is one JSON object (EMF lines and log lines do not interleave), no key in
    // any line; one EMF access line per request and one EMF usage line per model call.
    let log = f.log();
    assert!(!log.contains(&f.key), "the key was logged");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let emf = |target: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|v| v["target"] == target && v["_aws"].is_object())
            .collect()
    };
    let access = emf("pennyworth::access");
    let statuses: Vec<u64> = access.iter().filter_map(|v| v["status"].as_u64()).collect();
    assert_eq!(statuses, [200, 200, 401, 200, 200], "{log}");
    for v in &access {
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Pennyworth");
        for m in directive["Metrics"].as_array().expect("metrics") {
            let name = m["Name"].as_str().expect("name");
            assert!(v[name].is_number(), "{name} missing in {v}");
        }
    }
    let errors: u64 = access.iter().filter_map(|v| v["Status4xx"].as_u64()).sum();
    assert_eq!(errors, 1);
    let usage = emf("pennyworth::usage");
    assert_eq!(usage.len(), 2, "{log}");
    for v in &usage {
        assert_eq!(v["Model"], "echo");
        assert_eq!(v["user"], "admin");
        assert_eq!(v["ModelCalls"], 1);
        assert!(v["PromptTokens"].as_u64().unwrap_or(0) > 0, "{v}");
        assert!(v["CompletionTokens"].as_u64().unwrap_or(0) > 0, "{v}");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Model"
        );
    }
    assert_eq!(usage[1]["stream"], true);
    // Only EMF lines carry these targets: no plain duplicate lines.
    let plain = lines
        .iter()
        .filter(|v| v["target"] == "pennyworth::usage" && !v["_aws"].is_object())
        .count();
    assert_eq!(plain, 0, "{log}");
}

#[tokio::test]
async fn invalid_config_fails_the_cold_start_naming_the_file() {
    let api = RuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("policies")).expect("mkdir");
    for f in ["routes.yaml", "models.yaml"] {
        std::fs::copy(repo_root().join(f), config.join(f)).expect("copy");
    }
    for e in std::fs::read_dir(repo_root().join("policies")).expect("policies") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), config.join("policies").join(e.file_name())).expect("copy");
    }
    let models = std::fs::read_to_string(config.join("models.yaml")).expect("read");
    std::fs::write(
        config.join("models.yaml"),
        models.replacen("provider: echo", "provider: nonesuch", 1),
    )
    .expect("write");
    let mut child = bootstrap_command(BOOTSTRAP, &api, &config, dir.path())
        .spawn()
        .expect("spawn bootstrap");
    let status = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(s) = child.try_wait().expect("child status") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("bootstrap kept running with an invalid config")
    });
    assert!(!status.success());
    assert_eq!(api.polls(), 0, "it must not ask for events");
    let log = std::fs::read_to_string(dir.path().join("function.log")).expect("log");
    assert!(log.contains("models.yaml:"), "{log}");
    assert!(log.contains("nonesuch"), "{log}");
}
