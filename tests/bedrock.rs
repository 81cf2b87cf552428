//! The Bedrock provider end to end: the engine, the gateway's Bedrock client (SigV4 with
//! credentials from the AWS provider chain, the endpoint from the SDK's endpoint rules,
//! standard-mode retries, event-stream decoding) and the test server on 127.0.0.1.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use bedrock_server::{Item, Reply, event};
use harness::{ACCESS_KEY, Harness, sse_events};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn buffered_chat_is_signed_and_mapped() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "claude");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Bedrock");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let rec = h.server.recorded();
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse"
    );
    let auth = r.authorization();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(auth.contains("Signature="), "{auth}");
    assert!(r.headers.contains_key("x-amz-date"));
    assert_eq!(r.body["messages"][0]["content"][0]["text"], "hi");
}

#[tokio::test]
async fn per_model_region_signs_for_that_region() {
    let h = Harness::start().await;
    let (status, _, _) = h
        .chat_json(json!({"model": "nova", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200);
    let r = &h.server.recorded()[0];
    assert_eq!(r.model(), "us.amazon.nova-pro-v1:0");
    assert!(
        r.authorization()
            .contains("/us-west-2/bedrock/aws4_request"),
        "{}",
        r.authorization()
    );
}

#[tokio::test]
async fn streamed_chat_arrives_as_chunks_with_usage() {
    let h = Harness::start().await;
    let (status, headers, body) = h
        .chat(
            json!({"model": "claude", "messages": user("hi"), "stream": true,
            "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from Bedrock");
    assert_eq!(h.server.recorded()[0].operation(), "converse-stream");
    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    assert_eq!(events[n - 2]["usage"]["prompt_tokens"], 12);
    assert_eq!(events[n - 2]["usage"]["completion_tokens"], 3);
    assert_eq!(events[n - 3]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn stream_chunks_are_sent_as_events_arrive() {
    // The first chunk must reach the client while the upstream is still pausing.
    let h = Harness::start().await;
    h.server.script(
        "*",
        [Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "early"}}),
            ),
            Item::Pause(Duration::from_millis(600)),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": " late"}}),
            ),
            event("messageStop", json!({"stopReason": "end_turn"})),
        ])],
    );
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(h.dir.key("user")),
        json!({"model": "claude", "messages": user("hi"), "stream": true}).to_string(),
    );
    let started = Instant::now();
    let resp = h.engine.handle(req).await;
    let pennyworth::body::Body::Stream(mut s) = resp.into_body() else {
        panic!("not a stream")
    };
    use futures_util::StreamExt;
    let mut seen = String::new();
    while let Some(chunk) = s.next().await {
        seen.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
        if seen.contains("early") {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the first text chunk waited for the whole answer: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let h = Harness::start().await;
    let throttle = Reply::error(429, "ThrottlingException", "Too many requests");
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [throttle.clone(), throttle],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h.server.recorded().len(), 3, "two retries, then success");
}

#[tokio::test]
async fn throttling_after_retries_is_429_with_retry_after() {
    let h = Harness::start().await;
    let throttle = Reply::error(429, "ThrottlingException", "Too many requests");
    h.server
        .script("us.amazon.nova-pro-v1:0", std::iter::repeat_n(throttle, 3));
    let (status, headers, v) = h
        .chat_json(json!({"model": "nova", "messages": user("hi")}))
        .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        h.server.recorded().len(),
        3,
        "max_attempts bounds the retries"
    );
}

#[tokio::test]
async fn each_error_class_maps_to_its_status() {
    let h = Harness::start().await;
    let cases = [
        (400, "ValidationException", 400, "upstream_validation_error"),
        (403, "AccessDeniedException", 403, "upstream_access_denied"),
        (
            404,
            "ResourceNotFoundException",
            404,
            "upstream_model_not_found",
        ),
        (408, "ModelTimeoutException", 504, "upstream_timeout"),
        (503, "ServiceUnavailableException", 502, "upstream_error"),
        (500, "InternalServerException", 502, "upstream_error"),
        (424, "ModelErrorException", 502, "upstream_error"),
    ];
    for (upstream_status, kind, status, code) in cases {
        for stream in [false, true] {
            h.server.clear();
            h.server.script(
                "single-model",
                [Reply::error(
                    upstream_status,
                    kind,
                    "messages.0: account 123456789012 detail",
                )],
            );
            let (got, headers, v) = h
                .chat_json(json!({"model": "single", "messages": user("hi"), "stream": stream}))
                .await;
            assert_eq!(got, status, "{kind} (stream {stream}): {v}");
            assert_eq!(v["error"]["code"], code, "{kind}");
            let message = v["error"]["message"].as_str().unwrap_or_default();
            if kind == "ValidationException" {
                assert!(message.contains("messages.0"), "{message}");
            } else {
                assert!(
                    !message.contains("123456789012"),
                    "upstream detail leaked: {message}"
                );
            }
            assert!(!headers.contains_key("retry-after"));
            assert_eq!(h.server.recorded().len(), 1, "max_attempts 1: no retry");
        }
    }
}

#[tokio::test]
async fn fallback_answers_when_the_model_is_throttled() {
    let h = Harness::start().await;
    let throttle = Reply::error(429, "ThrottlingException", "Too many requests");
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        std::iter::repeat_n(throttle, 3),
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "nova", "the fallback answered");
    let models: Vec<String> = h
        .server
        .recorded()
        .iter()
        .map(|r| r.model().to_string())
        .collect();
    assert_eq!(
        models[..3],
        ["us.anthropic.claude-sonnet-4-5-20250929-v1:0"; 3]
    );
    assert_eq!(models[3], "us.amazon.nova-pro-v1:0");
    assert_eq!(models.len(), 4);
}

#[tokio::test]
async fn fallbacks_skip_models_the_caller_may_not_use() {
    let h = Harness::start().await;
    let down = Reply::error(503, "ServiceUnavailableException", "down");
    h.server.script("*", std::iter::repeat_n(down, 6));
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 502, "{v}");
    assert!(
        h.server
            .recorded()
            .iter()
            .all(|r| r.model() != "premium-model"),
        "`user` may not invoke the premium fallback"
    );
}

#[tokio::test]
async fn no_fallback_for_a_request_the_client_must_fix() {
    let h = Harness::start().await;
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [Reply::error(400, "ValidationException", "bad input")],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(h.server.recorded().len(), 1);
}

#[tokio::test]
async fn timeout_is_504_then_falls_back() {
    let h = Harness::start().await;
    h.server.script(
        "slow-model",
        [Reply::Delay(
            Duration::from_secs(3),
            Box::new(Reply::text("too late")),
        )],
    );
    let started = Instant::now();
    let (status, _, v) = h
        .chat_json(json!({"model": "slow", "messages": user("hi")}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "nova");

    // Without a fallback that fits, the timeout is the answer.
    h.server.script(
        "slow-model",
        [Reply::Delay(
            Duration::from_secs(3),
            Box::new(Reply::text("too late")),
        )],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "slow", "messages": user("hi"), "max_tokens": 20000}))
        .await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn mid_stream_error_ends_with_an_error_event() {
    let h = Harness::start().await;
    h.server.script(
        "single-model",
        [Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "partial"}}),
            ),
            Item::Exception("throttlingException".into(), "slow down".into()),
        ])],
    );
    let (status, _, body) = h
        .chat(json!({"model": "single", "messages": user("hi"), "stream": true}))
        .await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["delta"]["content"] == "partial")
    );
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "rate_limit_exceeded", "{events:?}");
    assert!(!events.contains(&Value::String("[DONE]".into())));
}

#[tokio::test]
async fn stalled_stream_times_out_with_an_error_event() {
    let h = Harness::start().await;
    h.server.script(
        "slow-model",
        [Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "partial"}}),
            ),
            Item::Pause(Duration::from_secs(3)),
            event("messageStop", json!({"stopReason": "end_turn"})),
        ])],
    );
    let started = Instant::now();
    let (_, _, body) = h
        .chat(json!({"model": "slow", "messages": user("hi"), "stream": true}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let events = sse_events(&body);
    assert_eq!(
        events.last().expect("events")["error"]["code"],
        "upstream_timeout"
    );
    assert!(
        h.server.wait_abandoned(1, Duration::from_secs(2)).await,
        "the stalled upstream call was cancelled"
    );
}

#[tokio::test]
async fn http_image_urls_are_refused_before_any_call() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .chat_json(
            json!({"model": "claude", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages[0].content[1].image_url.url");
    assert!(h.server.recorded().is_empty());
}

#[tokio::test]
async fn bedrock_without_providers_is_501() {
    // `Engine::new` has no provider clients: bedrock aliases answer 501, as before.
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let (status, _, _) = common::send(
        &engine,
        common::request(
            "POST",
            "/v1/chat/completions",
            Some(dir.key("dev")),
            common::chat_body("claude-sonnet-4.5", "hi"),
        ),
    )
    .await;
    assert_eq!(status.as_u16(), 501);
}

/// Serves the harness's engine on 127.0.0.1 and sends a raw HTTP/1.1 chat request; returns
/// the open connection.
async fn raw_chat(
    h: &Harness,
    body: Value,
) -> (tokio::net::TcpStream, tokio::sync::oneshot::Sender<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pennyworth::server::serve(
        h.engine.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        h.dir.key("user"),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(body.as_bytes()).await.expect("write");
    (conn, stop)
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    use tokio::io::AsyncReadExt;
    let h = Harness::start().await;
    let mut items = vec![event("messageStart", json!({"role": "assistant"}))];
    for _ in 0..50 {
        items.push(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "word "}}),
        ));
        items.push(Item::Pause(Duration::from_millis(100)));
    }
    items.push(event("messageStop", json!({"stopReason": "end_turn"})));
    h.server.script("*", [Reply::Stream(items)]);
    let (mut conn, _stop) = raw_chat(
        &h,
        json!({"model": "claude", "messages": user("hi"), "stream": true}),
    )
    .await;
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("word") {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "the gateway closed the stream early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(h.server.abandoned(), 0);
    drop(conn);
    assert!(
        h.server.wait_abandoned(1, Duration::from_secs(3)).await,
        "the upstream stream was not cancelled after the client left"
    );
}

#[tokio::test]
async fn client_disconnect_cancels_a_buffered_call() {
    let h = Harness::start().await;
    h.server.script(
        "*",
        [Reply::Delay(
            Duration::from_secs(5),
            Box::new(Reply::text("too late")),
        )],
    );
    let (conn, _stop) = raw_chat(&h, json!({"model": "claude", "messages": user("hi")})).await;
    // Wait until the upstream call is in flight, then leave.
    let start = Instant::now();
    while h.server.recorded().is_empty() && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.server.recorded().len(), 1);
    drop(conn);
    assert!(
        h.server.wait_abandoned(1, Duration::from_secs(3)).await,
        "the upstream call was not cancelled after the client left"
    );
}

fn lambda_chat(h: &Harness, body: Value, deadline_in: Duration) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut ctx = lambda_http::Context::default();
    ctx.deadline = now_ms + deadline_in.as_millis() as u64;
    http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", h.dir.key("user")))
        .header("content-type", "application/json")
        .body(lambda_http::Body::Text(body.to_string()))
        .expect("request")
        .with_lambda_context(ctx)
}

#[tokio::test]
async fn lambda_deadline_ends_a_stream_with_a_partial_answer_and_a_warning() {
    let h = Harness::start().await;
    h.server.script(
        "*",
        [Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "partial"}}),
            ),
            Item::Pause(Duration::from_secs(5)),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": " never sent"}}),
            ),
            event("messageStop", json!({"stopReason": "end_turn"})),
        ])],
    );
    // The deadline is 3.2 s away; the gateway keeps 2.5 s back, so it cuts after ~0.7 s.
    let req = lambda_chat(
        &h,
        json!({"model": "claude", "messages": user("hi"), "stream": true,
            "stream_options": {"include_usage": true}}),
        Duration::from_millis(3200),
    );
    let started = Instant::now();
    let resp = pennyworth::lambda::handle(&h.engine, req).await;
    let body = resp.into_body().collect().await.expect("body");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let events = sse_events(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "partial");
    let cut = events
        .iter()
        .find(|e| e["choices"][0]["finish_reason"] == "length")
        .expect("a finish chunk");
    assert!(
        cut["warning"]
            .as_str()
            .is_some_and(|w| w.contains("time limit")),
        "{cut}"
    );
    assert_eq!(events.last().expect("events"), "[DONE]");
    assert!(
        events[events.len() - 2]["usage"].is_object(),
        "the usage chunk still comes"
    );
    assert!(
        h.server.wait_abandoned(1, Duration::from_secs(2)).await,
        "the upstream stream was cancelled"
    );
}

#[tokio::test]
async fn lambda_deadline_bounds_a_buffered_call() {
    let h = Harness::start().await;
    h.server.script(
        "*",
        std::iter::repeat_n(
            Reply::Delay(Duration::from_secs(5), Box::new(Reply::text("late"))),
            3,
        ),
    );
    let req = lambda_chat(
        &h,
        json!({"model": "single", "messages": user("hi")}),
        Duration::from_millis(3000),
    );
    let started = Instant::now();
    let resp = pennyworth::lambda::handle(&h.engine, req).await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A streamed chat's usage record: the provider's counts when the stream ends; when the
/// client leaves first, a `partial` record with estimated counts (nothing goes unaccounted).
#[tokio::test]
async fn streamed_usage_is_recorded_at_the_end_and_when_the_client_leaves() {
    use http_body_util::BodyExt;
    let logs = common::logs::capture();
    let h = Harness::start().await;

    // A complete stream: one record with Bedrock's counts.
    let (status, _, body) = h
        .chat(
            json!({"model": "claude", "messages": user("hi"), "stream": true,
            "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    let shown = &events[events.len() - 2]["usage"];
    assert!(
        shown["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{shown}"
    );
    let records = logs.records("pennyworth::usage");
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["model"], "claude");
    assert_eq!(r["stream"], true);
    assert_eq!(r["partial"], false);
    assert_eq!(r["estimated"], false);
    assert_eq!(r["prompt_tokens"], shown["prompt_tokens"]);
    assert_eq!(r["completion_tokens"], shown["completion_tokens"]);
    let complete_cost = r["cost_usd"].as_str().expect("cost").to_string();
    assert_ne!(complete_cost, "0", "{r}");

    // A stream the client abandons after the first words: Bedrock has sent no counts yet.
    let mut items = vec![event("messageStart", json!({"role": "assistant"}))];
    for _ in 0..50 {
        items.push(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "word "}}),
        ));
        items.push(Item::Pause(Duration::from_millis(50)));
    }
    items.push(event("messageStop", json!({"stopReason": "end_turn"})));
    h.server.script("*", [Reply::Stream(items)]);
    let prompt = "a prompt of forty characters, more or...";
    assert_eq!(prompt.len(), 40);
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(h.dir.key("user")),
        json!({"model": "claude", "messages": user(prompt), "stream": true}).to_string(),
    );
    let resp = h.engine.handle(req).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut seen = String::new();
    while seen.matches("word").count() < 2 {
        let frame = body.frame().await.expect("a frame").expect("no error");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert_eq!(
        logs.records("pennyworth::usage").len(),
        1,
        "not recorded yet"
    );
    drop(body);
    let records = logs.records("pennyworth::usage");
    assert_eq!(records.len(), 2, "{records:?}");
    let r = &records[1];
    assert_eq!(r["partial"], true);
    assert_eq!(r["estimated"], true);
    assert_eq!(r["model"], "claude");
    // 40 characters of prompt: 10 tokens; "word word " or more streamed: at least 3.
    assert_eq!(r["prompt_tokens"], 10);
    let completion = r["completion_tokens"].as_u64().expect("tokens");
    let streamed = seen.matches("word").count() as u64 * 5;
    assert_eq!(completion, streamed.div_ceil(4), "{r} after {seen}");
    assert_ne!(r["cost_usd"], "0", "{r}");
    assert!(
        h.server.wait_abandoned(1, Duration::from_secs(3)).await,
        "the upstream stream was not cancelled"
    );
}
