//! The spans of requests through the engine with the Bedrock test server, collected in memory
//! through the gateway's `tracing` → OpenTelemetry layer: SDK retries, fallbacks, a stream's span
//! lasting as long as the stream with its token counts, a refused caller.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use bedrock_server::{Item, Reply};
use harness::Harness;
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// Spans as they end.
#[derive(Debug, Clone, Default)]
struct Memory(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Memory {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Collects the gateway's spans on this thread while the guard lives (each request's as it
/// ends).
fn collect() -> (Memory, tracing::subscriber::DefaultGuard) {
    let memory = Memory::default();
    let layer = pennyworth::telemetry::export::layer(memory.clone(), false);
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (memory, guard)
}

fn attr(s: &SpanData, key: &str) -> Option<OtelValue> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn user(text: &str) -> serde_json::Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn bedrock_retries_fallbacks_and_tokens_are_on_the_model_spans() {
    let (memory, _guard) = collect();
    let h = Harness::start().await;
    // Two throttles the SDK retries, then the answer.
    let throttle = Reply::error(429, "ThrottlingException", "Too many requests");
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [throttle.clone(), throttle],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    let spans = memory.0.lock().unwrap().clone();
    let calls = named(&spans, "BedrockRuntime.Converse");
    assert_eq!(calls.len(), 1, "{spans:#?}");
    let call = calls[0];
    assert_eq!(attr(call, "retries"), Some(OtelValue::I64(2)));
    assert_eq!(attr(call, "rpc.system"), Some("aws-api".into()));
    assert_eq!(attr(call, "aws.region"), Some("us-east-1".into()));
    assert_eq!(attr(call, "pennyworth.model"), Some("claude".into()));
    assert_eq!(
        attr(call, "gen_ai.request.model"),
        Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0".into())
    );
    assert_eq!(
        attr(call, "gen_ai.usage.input_tokens"),
        Some(OtelValue::I64(12))
    );
    assert_eq!(
        attr(call, "gen_ai.usage.output_tokens"),
        Some(OtelValue::I64(5))
    );
    let handler = named(&spans, "handler")[0];
    assert_eq!(call.parent_span_id, handler.span_context.span_id());

    // The alias is refused upstream, its first fallback answers: two model spans.
    memory.0.lock().unwrap().clear();
    h.server.script(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [Reply::error(403, "AccessDeniedException", "no access")],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "nova");
    let spans = memory.0.lock().unwrap().clone();
    let calls = named(&spans, "BedrockRuntime.Converse");
    assert_eq!(calls.len(), 2, "{spans:#?}");
    let failed = calls
        .iter()
        .find(|s| attr(s, "pennyworth.fallback") == Some(OtelValue::I64(0)))
        .unwrap();
    assert_eq!(attr(failed, "error.type"), Some("access_denied".into()));
    assert_eq!(failed.status, opentelemetry::trace::Status::error(""));
    let served = calls
        .iter()
        .find(|s| attr(s, "pennyworth.fallback") == Some(OtelValue::I64(1)))
        .unwrap();
    assert_eq!(attr(served, "pennyworth.model"), Some("nova".into()));
    assert_eq!(attr(served, "error.type"), None);
    // Nothing of the message in any attribute.
    for s in &spans {
        for kv in &s.attributes {
            assert!(!kv.value.as_str().contains("no access"), "{kv:?}");
        }
    }
}

#[tokio::test]
async fn a_stream_keeps_its_spans_open_until_it_ends() {
    let (memory, _guard) = collect();
    let h = Harness::start().await;
    let Reply::Stream(mut items) = Reply::stream_text(&["one ", "two ", "three"]) else {
        unreachable!()
    };
    // The stream pauses after its first pieces, well after the answer's head has gone.
    let pause = std::time::Duration::from_millis(300);
    items.insert(3, Item::Pause(pause));
    h.server
        .set_defaults(Reply::text("unused"), Reply::Stream(items));
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(h.dir.key("user")),
        bytes::Bytes::from(
            json!({"model": "claude", "stream": true, "messages": user("count")}).to_string(),
        ),
    );
    let response = h.engine.handle(req).await;
    let head = std::time::SystemTime::now();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("[DONE]"));
    let spans = memory.0.lock().unwrap().clone();
    let call = named(&spans, "BedrockRuntime.ConverseStream")[0];
    let ttfb = attr(call, "ttfb_ms").unwrap();
    assert!(matches!(ttfb, OtelValue::I64(ms) if ms < 300), "{ttfb:?}");
    assert_eq!(
        attr(call, "gen_ai.usage.output_tokens"),
        Some(OtelValue::I64(3))
    );
    let root = named(&spans, "POST chat")[0];
    // The model call and the request lasted as long as the stream, past the head.
    assert!(call.end_time >= head + pause / 2, "{call:#?}");
    assert!(root.end_time >= call.end_time);
    assert_eq!(
        attr(root, "http.response.status_code"),
        Some(OtelValue::I64(200))
    );
}

#[tokio::test]
async fn a_refused_caller_ends_at_authenticate() {
    let (memory, _guard) = collect();
    let h = Harness::start().await;
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some("pw-nobody-0000"),
        bytes::Bytes::from(json!({"model": "claude", "messages": user("hi")}).to_string()),
    );
    let (status, _, _) = common::send(&h.engine, req).await;
    assert_eq!(status, 401);
    let spans = memory.0.lock().unwrap().clone();
    let auth = named(&spans, "authenticate")[0];
    assert_eq!(attr(auth, "error.type"), Some("unauthenticated".into()));
    assert!(named(&spans, "handler").is_empty());
    assert!(named(&spans, "authorize").is_empty());
    let root = named(&spans, "POST chat")[0];
    assert_eq!(
        attr(root, "http.response.status_code"),
        Some(OtelValue::I64(401))
    );
}

/// Requests an upstream MCP stand-in received: method and headers.
type Seen = Arc<Mutex<Vec<(String, http::HeaderMap)>>>;

/// A minimal MCP server on 127.0.0.1 (2025-06-18 handshake, one tool `ping`), recording what
/// it receives.
async fn mcp_upstream() -> (String, Seen) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let method = m["method"].as_str().unwrap_or("").to_string();
                        sink.lock().unwrap().push((method.clone(), headers));
                        let result = match method.as_str() {
                            "initialize" => json!({"protocolVersion": "2025-06-18",
                                "capabilities": {"tools": {}},
                                "serverInfo": {"name": "stand-in", "version": "1"}}),
                            "tools/list" => json!({"tools": [{"name": "ping",
                                "inputSchema": {"type": "object"}}]}),
                            "tools/call" => json!({"content": [{"type": "text", "text": "pong"}]}),
                            _ => {
                                return Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(202)
                                        .body(Full::new(bytes::Bytes::new()))
                                        .unwrap(),
                                );
                            }
                        };
                        let answer = json!({"jsonrpc": "2.0", "id": m["id"], "result": result});
                        Ok(http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(answer.to_string())))
                            .unwrap())
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (format!("http://{addr}/mcp"), seen)
}

#[tokio::test]
async fn an_upstream_mcp_server_gets_the_tool_call_span_as_traceparent() {
    let (memory, _guard) = collect();
    let (url, seen) = mcp_upstream().await;
    let config = common::copy_default_config();
    let routes = std::fs::read_to_string(config.path().join("routes.yaml")).unwrap();
    let routes = routes.replacen(
        "  servers: []\n",
        &format!("  servers:\n    - name: up\n      url: {url}\n      protocol: 2025-06-18\n"),
        1,
    );
    std::fs::write(config.path().join("routes.yaml"), routes).unwrap();
    let (engine, dir) = common::engine(config.path()).await;
    let engine = engine.mcp_env(Arc::new(|_| None));
    let mut req = common::request(
        "POST",
        "/v1/mcp",
        Some(dir.key("admin")),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "up__ping", "arguments": {}}})
        .to_string(),
    );
    req.headers_mut()
        .insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
    req.headers_mut().insert(
        "accept",
        "application/json, text/event-stream".parse().unwrap(),
    );
    let (status, _, body) = common::send(&engine, req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("pong"));
    let spans = memory.0.lock().unwrap().clone();
    let tool = named(&spans, "mcp.tool")[0];
    assert_eq!(attr(tool, "mcp.server"), Some("up".into()));
    assert_eq!(attr(tool, "mcp.tool"), Some("up__ping".into()));
    let expected = format!(
        "00-{}-{}-01",
        tool.span_context.trace_id(),
        tool.span_context.span_id()
    );
    let seen = seen.lock().unwrap().clone();
    let call = seen.iter().find(|(m, _)| m == "tools/call").unwrap();
    assert_eq!(call.1["traceparent"], expected.as_str());
    // The handshake before it was made within the same span.
    let init = seen.iter().find(|(m, _)| m == "initialize").unwrap();
    assert_eq!(init.1["traceparent"], expected.as_str());
}

#[tokio::test]
async fn a_request_the_caller_did_not_sample_records_no_span() {
    let (memory, _guard) = collect();
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let call = |flags: &str| {
        let mut req = common::request(
            "POST",
            "/v1/chat/completions",
            Some(dir.key("admin")),
            bytes::Bytes::from(json!({"model": "echo", "messages": user("hi")}).to_string()),
        );
        req.headers_mut().insert(
            "traceparent",
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}")
                .parse()
                .unwrap(),
        );
        req
    };
    let (status, headers, _) = common::send(&engine, call("00")).await;
    assert_eq!(status, 200);
    // The caller's trace id all the same.
    assert_eq!(headers["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(memory.0.lock().unwrap().is_empty());
    let (status, _, _) = common::send(&engine, call("01")).await;
    assert_eq!(status, 200);
    let spans = memory.0.lock().unwrap().clone();
    let root = named(&spans, "POST chat")[0];
    assert_eq!(
        hex::encode(root.parent_span_id.to_bytes()),
        "00f067aa0ba902b7"
    );
    assert!(spans.len() >= 8, "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_id() == root.span_context.trace_id())
    );
}
