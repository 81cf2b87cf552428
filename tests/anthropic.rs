//! The Anthropic Messages API end to end: the engine, the neutral inference core, the real
//! Bedrock client and the Bedrock test server. What reaches Converse is checked field by
//! field; answers and streams are checked against Anthropic's shapes.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use bedrock_server::{Reply, event};
use bytes::Bytes;
use harness::Harness;
use serde_json::{Value, json};

/// Sends `body` to `path` with `x-api-key` and `anthropic-version`, as the Anthropic SDK does.
async fn post(h: &Harness, path: &str, key: Option<&str>, body: Value) -> (u16, Bytes) {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("content-type", "application/json")
        .header("x-claude-code-session-id", "session-1");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    let req = b.body(Bytes::from(body.to_string())).expect("request");
    let (status, _, bytes) = common::send(&h.engine, req).await;
    (status.as_u16(), bytes)
}

async fn post_json(h: &Harness, body: Value) -> (u16, Value) {
    let (status, bytes) = post(h, "/v1/messages", Some(h.dir.key("user")), body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `(event name, data)` of an Anthropic SSE body.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("event and data lines");
            let name = name.strip_prefix("event: ").expect("event line");
            let data = data.strip_prefix("data: ").expect("data line");
            (
                name.to_string(),
                serde_json::from_str(data).expect("JSON data"),
            )
        })
        .collect()
}

#[tokio::test]
async fn buffered_message_maps_system_cache_points_and_answers_in_anthropic_shape() {
    let h = Harness::start().await;
    let (status, v) = post_json(
        &h,
        json!({"model": "claude", "max_tokens": 100,
            "system": [{"type": "text", "text": "You are terse."},
                       {"type": "text", "text": "Big context.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u-1"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude");
    assert!(v["id"].as_str().unwrap_or("").starts_with("msg_"));
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from Bedrock"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(v["usage"]["output_tokens"], 5);
    let r = &h.server.recorded()[0];
    assert_eq!(r.operation(), "converse");
    assert_eq!(
        r.body["system"],
        json!([{"text": "You are terse."}, {"text": "Big context."}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(r.body["inferenceConfig"]["maxTokens"], 100);
}

#[tokio::test]
async fn thinking_and_tool_use_round_trip_keeps_the_signed_reasoning_first() {
    let h = Harness::start().await;
    let (status, v) = post_json(
        &h,
        json!({"model": "claude", "max_tokens": 4096,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"},
                       "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "list files"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should run ls.", "signature": "sig-1"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]},
                {"role": "system", "content": "Be brief."}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = &h.server.recorded()[0];
    let msgs = &r.body["messages"];
    assert_eq!(
        msgs[1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "I should run ls.", "signature": "sig-1"}}})
    );
    assert_eq!(msgs[1]["content"][1]["toolUse"]["toolUseId"], "toolu_1");
    assert_eq!(
        msgs[2]["content"][0]["toolResult"]["content"],
        json!([{"text": "a.txt"}])
    );
    // The mid-conversation system message joins the user turn, in place.
    assert_eq!(
        msgs[2]["content"][1],
        json!({"text": "<system>Be brief.</system>"})
    );
    assert_eq!(
        r.body["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(
        r.body["toolConfig"]["tools"][1],
        json!({"cachePoint": {"type": "default"}})
    );
}

#[tokio::test]
async fn a_dropped_signature_turns_thinking_off_instead_of_failing() {
    let h = Harness::start().await;
    let (status, v) = post_json(
        &h,
        json!({"model": "claude", "max_tokens": 4096,
            "thinking": {"type": "adaptive"},
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "list files"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": []}]}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = &h.server.recorded()[0];
    assert!(
        r.body.get("additionalModelRequestFields").is_none(),
        "{}",
        r.body
    );
    // An empty tool result still carries content (Bedrock refuses empty results).
    assert_eq!(
        r.body["messages"][2]["content"][0]["toolResult"]["content"],
        json!([{"text": "(no output)"}])
    );
}

#[tokio::test]
async fn streamed_thinking_and_tool_use_follow_anthropics_event_sequence() {
    let h = Harness::start().await;
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Need ls."}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig-9"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "toolu_9", "name": "Bash"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"command\":"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"ls\"}"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 30, "outputTokens": 7, "totalTokens": 37, "cacheReadInputTokens": 10}, "metrics": {"latencyMs": 5}}),
            ),
        ])],
    );
    let (status, body) = post(
        &h,
        "/v1/messages?beta=true",
        Some(h.dir.key("user")),
        json!({"model": "claude", "max_tokens": 4096, "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "list files"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let ev = events(&body);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        ev[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "Need ls."})
    );
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "signature_delta", "signature": "sig-9"})
    );
    assert_eq!(
        ev[5].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {}})
    );
    assert_eq!(ev[5].1["index"], 1);
    assert_eq!(ev[6].1["delta"]["type"], "input_json_delta");
    let delta = &ev[9].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 30, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})
    );
}

#[tokio::test]
async fn errors_come_in_anthropics_shape() {
    let h = Harness::start().await;
    let (status, body) = post(
        &h,
        "/v1/messages",
        None,
        json!({"model": "claude", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let (status, v) = post_json(
        &h,
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_tokens"),
        "{v}"
    );

    let (status, v) = post_json(
        &h,
        json!({"model": "no-such", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");

    let (status, v) = post_json(
        &h,
        json!({"model": "premium-only", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    // An alias the caller may not use answers exactly as one that does not exist.
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(
        v["error"]["message"],
        "the model `premium-only` does not exist or you do not have access to it"
    );
    assert!(h.server.recorded().is_empty(), "nothing reached Bedrock");

    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [
            Reply::error(429, "ThrottlingException", "slow down"),
            Reply::error(429, "ThrottlingException", "slow down"),
            Reply::error(429, "ThrottlingException", "slow down"),
        ],
    );
    let (status, v) = post_json(
        &h,
        json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    // The fallbacks of `claude` answer instead (nova); without them this would be a 429.
    assert!(status == 200 || status == 429, "{status} {v}");
}

#[tokio::test]
async fn count_tokens_and_model_list() {
    let h = Harness::start().await;
    let (status, body) = post(
        &h,
        "/v1/messages/count_tokens",
        Some(h.dir.key("user")),
        json!({"model": "claude", "messages": [{"role": "user", "content": "count these words please"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v["input_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    // Claude: Bedrock's CountTokens, on the base model id (not the inference profile).
    let r = &h.server.recorded()[0];
    assert_eq!(r.operation(), "count-tokens");
    assert_eq!(r.model(), "anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(
        r.body["input"]["converse"]["messages"][0]["content"][0]["text"],
        "count these words please"
    );
    let expected = r.body["input"]["converse"].to_string().len().div_ceil(4);
    assert_eq!(v["input_tokens"], expected);
    // Another model: the estimate, marked as such.
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/messages/count_tokens")
        .header("x-api-key", h.dir.key("user"))
        .body(Bytes::from(
            json!({"model": "nova", "messages": [{"role": "user", "content": "count these words please"}]})
                .to_string(),
        ))
        .expect("request");
    let (status, headers, body) = common::send(&h.engine, req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-pennyworth-estimate"], "true");
    let v: Value = serde_json::from_slice(&body).expect("json");
    // 24 characters: 6 tokens.
    assert_eq!(v["input_tokens"], 6, "{v}");

    let req = http::Request::builder()
        .method("GET")
        .uri("/v1/models")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", h.dir.key("user"))
        .body(Bytes::new())
        .expect("request");
    let (status, _, body) = common::send(&h.engine, req).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["has_more"], false);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"claude"), "{v}");
    assert!(!ids.contains(&"premium-only"), "{v}");
    assert_eq!(v["data"][0]["type"], "model");
}

const CAPABILITY_MODELS: &str = r#"
  text-only:
    provider: bedrock
    upstream: us.amazon.nova-micro-v1:0
    region: us-east-1
    groups: [standard]
    limits: { context_tokens: 50 }
  cached:
    provider: bedrock
    upstream: us.anthropic.claude-haiku-4-5-20251001-v1:0
    region: us-east-1
    groups: [standard]
    cache: { system: true, tools: true }
  betas:
    provider: bedrock
    upstream: us.anthropic.claude-sonnet-4-5-20250929-v1:0
    region: us-east-1
    groups: [standard]
    betas: [interleaved-thinking-2025-05-14, context-1m-2025-08-07]
  profile:
    provider: bedrock
    upstream: arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123
    region: us-east-1
    groups: [standard]
    capabilities: { reasoning: budget, prompt_caching: false }
"#;

#[tokio::test]
async fn capabilities_refuse_before_bedrock_and_shape_the_call() {
    let h = Harness::start_with(CAPABILITY_MODELS).await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAarVyFEAAAAASUVORK5CYII=";
    let (status, v) = post_json(
        &h,
        json!({"model": "text-only", "max_tokens": 50, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not accept images"),
        "{v}"
    );
    let long = "word ".repeat(100);
    let (status, v) = post_json(
        &h,
        json!({"model": "text-only", "max_tokens": 50, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(h.server.recorded().is_empty(), "nothing reached Bedrock");

    // The alias's cache settings add cache points where the client put none.
    let (status, _) = post_json(
        &h,
        json!({"model": "cached", "max_tokens": 50, "system": "You are terse.",
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let r = &h.server.recorded()[0];
    assert_eq!(
        r.body["system"][1],
        json!({"cachePoint": {"type": "default"}})
    );
    assert_eq!(
        r.body["toolConfig"]["tools"][1],
        json!({"cachePoint": {"type": "default"}})
    );

    // Only the alias's allowed beta flags reach Bedrock.
    h.server.clear();
    let (status, _) = post_json(
        &h,
        json!({"model": "betas", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.server.recorded()[0].body["additionalModelRequestFields"],
        json!({"anthropic_beta": ["interleaved-thinking-2025-05-14"]})
    );

    // An application inference profile declared to reason with a budget; no cache points
    // for a model declared without prompt caching.
    h.server.clear();
    let (status, v) = post_json(
        &h,
        json!({"model": "profile", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "system": [{"type": "text", "text": "ctx", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = &h.server.recorded()[0];
    assert_eq!(
        r.body["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        2048
    );
    assert_eq!(r.body["system"], json!([{"text": "ctx"}]));
}
