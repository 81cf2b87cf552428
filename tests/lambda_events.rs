//! Real API Gateway REST (v1) and HTTP API (v2) event JSON through `lambda_http`'s decoder and
//! the Lambda adapter into the engine.

mod common;

use base64::Engine as _;
use http::StatusCode;
use pennyworth::engine::ClientAddr;

fn event(name: &str, key: &str) -> lambda_http::Request {
    let path = common::repo_root().join("tests/fixtures/lambda").join(name);
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"binary safe body"}]}"#;
    let text = std::fs::read_to_string(&path)
        .expect("read event")
        .replace("{{key}}", key)
        .replace(
            "{{body_base64}}",
            &base64::engine::general_purpose::STANDARD.encode(body),
        );
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name} does not decode: {e}"))
}

async fn run(
    engine: &pennyworth::Engine,
    req: lambda_http::Request,
) -> (StatusCode, http::HeaderMap, String) {
    let resp = pennyworth::lambda::handle(engine, req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body");
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

#[tokio::test]
async fn rest_api_health_without_stage_in_path() {
    let (engine, _dir) = common::engine(&common::repo_root()).await;
    let (status, _, body) = run(&engine, event("rest_v1_health.json", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn rest_api_streamed_chat() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let (status, headers, body) =
        run(&engine, event("rest_v1_chat_stream.json", dir.key("admin"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let text: String = events
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).expect("chunk json"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "hello from lambda");
    let usage: serde_json::Value = serde_json::from_str(
        events[events.len() - 2]
            .strip_prefix("data: ")
            .expect("data"),
    )
    .expect("json");
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn http_api_named_stage_is_stripped_and_source_ip_kept() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let req = event("http_v2_whoami_stage.json", dir.key("dev"));
    let converted =
        pennyworth::lambda::to_engine_request(event("http_v2_whoami_stage.json", dir.key("dev")));
    assert_eq!(converted.uri().path(), "/v1/whoami");
    assert_eq!(converted.uri().query(), Some("verbose=1"));
    assert_eq!(
        converted
            .extensions()
            .get::<ClientAddr>()
            .map(|a| a.0.ip().to_string()),
        Some("1.2.3.4".to_string())
    );
    let (status, _, body) = run(&engine, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["user"], "dev");
    assert_eq!(v["groups"], serde_json::json!(["developers"]));
}

#[tokio::test]
async fn http_api_base64_body_and_x_api_key() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let (status, _, body) = run(&engine, event("http_v2_chat_base64.json", dir.key("user"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "binary safe body");
}

#[tokio::test]
async fn http_api_without_key_is_401() {
    let (engine, _dir) = common::engine(&common::repo_root()).await;
    let (status, headers, body) = run(&engine, event("http_v2_no_key.json", "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert!(body.contains("missing_api_key"), "{body}");
}
