//! No input makes the engine panic or answer 500: every truncation of a valid chat body,
//! byte-flipped bodies, odd paths and odd headers all get a 2xx or an OpenAI-style 4xx.

mod common;

use bytes::Bytes;

fn assert_clean(status: http::StatusCode, body: &[u8], what: &str) {
    assert!(status.as_u16() < 500, "{what}: status {status}");
    if status.as_u16() >= 400 {
        let v: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| panic!("{what}: error body is not JSON"));
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
}

#[tokio::test]
async fn malformed_bodies_never_fail_the_gateway() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let key = dir.key("admin").to_string();
    let valid = br#"{"model":"echo","stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"temperature":0.5,"stop":["x"],"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a b c"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"r"}]}"#;
    for cut in 0..=valid.len() {
        let body = Bytes::copy_from_slice(&valid[..cut]);
        let (status, _, out) = common::send(
            &engine,
            common::request("POST", "/v1/chat/completions", Some(&key), body),
        )
        .await;
        assert_clean(status, &out, &format!("truncated at {cut}"));
    }
    // Deterministic pseudo-random byte flips (xorshift).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let mut body = valid.to_vec();
        for _ in 0..(1 + round % 4) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % body.len() as u64) as usize;
            body[i] = (state >> 32) as u8;
        }
        let (status, _, out) = common::send(
            &engine,
            common::request("POST", "/v1/chat/completions", Some(&key), body),
        )
        .await;
        assert_clean(status, &out, &format!("flip round {round}"));
    }
}

#[tokio::test]
async fn odd_paths_and_headers() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let key = dir.key("admin");
    for path in [
        "/",
        "//",
        "/v1",
        "/v1/",
        "/v1/models/",
        "/v1/models/a/b",
        "/v1/models/%00",
        "/v1/models/..%2f",
        "/v1/chat/completions/",
    ] {
        let (status, _, out) =
            common::send(&engine, common::request("GET", path, Some(key), "")).await;
        assert_clean(status, &out, path);
    }
    for header in [
        "Bearer",
        "Bearer  ",
        "bearer pw-",
        "Token x",
        "Bearer pw-....",
        "Bearer pw-YQ.0011223344556677.ÿ",
    ] {
        let req = http::Request::builder()
            .uri("/v1/whoami")
            .header(
                "authorization",
                http::HeaderValue::from_bytes(header.as_bytes()).expect("header"),
            )
            .body(Bytes::new())
            .expect("request");
        let (status, _, out) = common::send(&engine, req).await;
        assert_eq!(status, 401, "{header}");
        assert_clean(status, &out, header);
    }
}
