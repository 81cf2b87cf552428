//! The `openai` provider against a local OpenAI-compatible upstream: bodies forwarded with
//! the upstream model id, answers and chunks mapped back, errors, retries, disconnects.

mod common;
#[path = "support/openai_upstream.rs"]
mod upstream;

use bytes::Bytes;
use pennyworth::providers::{ProviderSettings, Providers};
use pennyworth::{CompiledConfig, Engine};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use upstream::{OpenAiUpstream, UpReply, chunk};

const MODELS: &str = r#"
models:
  gpt:
    provider: openai
    upstream: upstream-model
    base_url: {url}
    api_key_env: PENNYWORTH_TEST_UPSTREAM_KEY
    passthrough: true
    retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 5 }
    groups: [standard]
  local:
    provider: openai
    base_url: {url}/
    retry: { max_attempts: 1 }
    groups: [standard]
  embed:
    provider: openai
    upstream: text-embedding-3-small
    kind: embedding
    base_url: {url}
    groups: [standard]
"#;

struct Setup {
    engine: Arc<Engine>,
    dir: common::TestDirectory,
    up: OpenAiUpstream,
    _config: tempfile::TempDir,
}

fn env() -> pennyworth::providers::openai::EnvLookup {
    Arc::new(|name| (name == "PENNYWORTH_TEST_UPSTREAM_KEY").then(|| "sk-test-123".to_string()))
}

async fn setup() -> Setup {
    let up = OpenAiUpstream::start().await;
    let config = common::copy_default_config();
    std::fs::write(
        config.path().join("models.yaml"),
        MODELS.replace("{url}", &up.base_url()),
    )
    .expect("write");
    let compiled = CompiledConfig::load(config.path()).unwrap_or_else(|e| panic!("{e}"));
    let providers = Providers::build(
        &compiled,
        ProviderSettings {
            env: env(),
            ..ProviderSettings::default()
        },
    )
    .await
    .expect("providers");
    let dir = common::TestDirectory::new().await;
    let engine = Arc::new(Engine::with_providers(
        compiled,
        dir.directory.clone(),
        providers,
    ));
    Setup {
        engine,
        dir,
        up,
        _config: config,
    }
}

impl Setup {
    async fn post(&self, path: &str, body: Value) -> (u16, http::HeaderMap, Bytes) {
        let req = common::request(
            "POST",
            path,
            Some(self.dir.key("user")),
            Bytes::from(body.to_string()),
        );
        let (s, h, b) = common::send(&self.engine, req).await;
        (s.as_u16(), h, b)
    }
}

fn sse(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("utf8")
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").expect("data line");
            if d == "[DONE]" {
                Value::String(d.into())
            } else {
                serde_json::from_str(d).expect("json")
            }
        })
        .collect()
}

#[tokio::test]
async fn buffered_chat_is_forwarded_with_every_field() {
    let s = setup().await;
    let (status, _, body) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "seed": 7, "logprobs": false, "temperature": 0.5}),
        )
        .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["model"], "gpt");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from upstream");
    assert_eq!(v["usage"]["total_tokens"], 14);
    let rec = s.up.recorded();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].path, "/v1/chat/completions");
    assert_eq!(rec[0].headers["authorization"], "Bearer sk-test-123");
    assert_eq!(
        rec[0].body,
        json!({"model": "upstream-model", "messages": [{"role": "user", "content": "hi"}], "seed": 7, "logprobs": false, "temperature": 0.5, "stream": false})
    );
}

/// Without `passthrough` the body is rendered from the gateway's neutral request: the fields
/// the gateway understands, in OpenAI's shape; others (`seed`) are not forwarded.
#[tokio::test]
async fn rendered_body_carries_what_the_gateway_understands() {
    let s = setup().await;
    let (status, _, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "local", "seed": 7, "temperature": 0.5, "max_tokens": 9,
                "messages": [{"role": "developer", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "42"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": "auto"}),
        )
        .await;
    assert_eq!(status, 200);
    let rec = s.up.recorded();
    assert_eq!(
        rec[0].body,
        json!({"model": "local", "stream": false, "temperature": 0.5, "max_tokens": 9,
            "messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto"})
    );
}

#[tokio::test]
async fn no_key_no_authorization_and_alias_as_model_id() {
    let s = setup().await;
    let (status, _, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let r = &s.up.recorded()[0];
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(r.body["model"], "local");
    assert_eq!(r.path, "/v1/chat/completions", "trailing slash of base_url");
}

#[tokio::test]
async fn stream_is_mapped_chunk_by_chunk() {
    let s = setup().await;
    let (status, headers, body) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from upstream");
    assert!(
        events.iter().all(|e| e.get("usage").is_none()),
        "no usage chunk when the client did not ask"
    );
    assert_eq!(events.last().expect("events"), "[DONE]");
    let sent = &s.up.recorded()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "usage is always asked for upstream"
    );
}

#[tokio::test]
async fn streamed_tool_calls_keep_their_index() {
    let s = setup().await;
    let (_, _, body) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "weather?"}], "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
        )
        .await;
    let events = sse(&body);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .map(|_| &e["choices"][0]["delta"]["tool_calls"][0])
        })
        .collect();
    assert_eq!(calls[0]["id"], "call_up_1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let n = events.len();
    assert_eq!(events[n - 2]["usage"]["prompt_tokens"], 11);
}

#[tokio::test]
async fn throttling_is_retried_and_passes_retry_after() {
    let s = setup().await;
    let throttled = UpReply::Json(
        429,
        json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}),
        vec![("retry-after", "0".to_string())],
    );
    s.up.script([throttled.clone(), throttled.clone(), throttled]);
    let (status, headers, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "0");
    assert_eq!(s.up.recorded().len(), 3);
}

#[tokio::test]
async fn upstream_errors_map_to_statuses() {
    let s = setup().await;
    for (up, want) in [(400, 400), (401, 403), (404, 404), (504, 504), (500, 502)] {
        s.up.script([UpReply::Json(
            up,
            json!({"error": {"message": "upstream says no: secret detail"}}),
            Vec::new(),
        )]);
        let (status, _, body) = s
            .post(
                "/v1/chat/completions",
                json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(status, want, "upstream {up}");
        let v: Value = serde_json::from_slice(&body).expect("json");
        let msg = v["error"]["message"].as_str().expect("message");
        assert_eq!(
            msg.contains("secret detail"),
            up == 400,
            "only validation messages pass: {msg}"
        );
    }
}

#[tokio::test]
async fn mid_stream_upstream_error_becomes_an_error_event() {
    let s = setup().await;
    s.up.script([UpReply::Sse(vec![
        Some(chunk(json!({"content": "partial"}), None)),
        Some(json!({"error": {"message": "overloaded", "code": "server_error"}}).to_string()),
    ])]);
    let (_, _, body) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "local", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
        .await;
    let events = sse(&body);
    assert_eq!(events[1]["choices"][0]["delta"]["content"], "partial");
    assert_eq!(
        events.last().expect("last")["error"]["code"],
        "upstream_error"
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_upstream() {
    use futures_util::StreamExt;
    let s = setup().await;
    let mut events = vec![Some(chunk(json!({"content": "a"}), None))];
    events.extend(std::iter::repeat_n(None, 30));
    events.push(Some("[DONE]".into()));
    s.up.script([UpReply::Sse(events)]);
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(s.dir.key("user")),
        json!({"model": "local", "messages": [{"role": "user", "content": "hi"}], "stream": true})
            .to_string(),
    );
    let resp = s.engine.handle(req).await;
    let pennyworth::body::Body::Stream(mut body) = resp.into_body() else {
        panic!("not a stream")
    };
    let _ = body.next().await;
    let _ = body.next().await;
    drop(body);
    let start = std::time::Instant::now();
    while s.up.abandoned() == 0 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.up.abandoned(), 1);
}

#[tokio::test]
async fn embeddings_are_forwarded() {
    let s = setup().await;
    let (status, _, body) = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": ["ab", "c"], "encoding_format": "float", "dimensions": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["data"][0]["embedding"], json!([2.0, 0.5, -0.25]));
    assert_eq!(v["data"][1]["embedding"], json!([1.0, 0.5, -0.25]));
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    let r = &s.up.recorded()[0];
    assert_eq!(r.path, "/v1/embeddings");
    assert_eq!(
        r.body,
        json!({"model": "text-embedding-3-small", "input": ["ab", "c"], "encoding_format": "float", "dimensions": 3})
    );
}

#[tokio::test]
async fn a_missing_key_variable_fails_the_build() {
    let up = OpenAiUpstream::start().await;
    let config = common::copy_default_config();
    std::fs::write(
        config.path().join("models.yaml"),
        MODELS.replace("{url}", &up.base_url()),
    )
    .expect("write");
    let compiled = CompiledConfig::load(config.path()).unwrap_or_else(|e| panic!("{e}"));
    let err = Providers::build(
        &compiled,
        ProviderSettings {
            env: Arc::new(|_| None),
            ..ProviderSettings::default()
        },
    )
    .await
    .expect_err("an error");
    assert_eq!(
        err,
        "model `gpt`: the environment variable `PENNYWORTH_TEST_UPSTREAM_KEY` (its `api_key_env`) is not set"
    );
}
