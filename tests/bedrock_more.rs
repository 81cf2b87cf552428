//! Embeddings (InvokeModel) and legacy completions on Bedrock, end to end through the SDK and
//! the test server.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use base64::Engine as _;
use bedrock_server::{Reply, test_vector};
use harness::{Harness, sse_events};
use serde_json::json;

fn as_f32(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| *x as f32 as f64).collect()
}

#[tokio::test]
async fn titan_embeddings_one_call_per_input() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .post_json(
            "/v1/embeddings",
            json!({"model": "titan", "input": ["hello world", "bye"], "dimensions": 256}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "titan");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for (i, (d, text)) in data.iter().zip(["hello world", "bye"]).enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        let got: Vec<f64> = d["embedding"]
            .as_array()
            .expect("floats")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect();
        assert_eq!(got, as_f32(&test_vector(text, 256)));
    }
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 3);
    let rec = h.server.recorded();
    assert_eq!(rec.len(), 2);
    let mut bodies: Vec<_> = rec.iter().map(|r| r.body.clone()).collect();
    bodies.sort_by_key(|b| b["inputText"].as_str().map(str::to_string));
    assert_eq!(
        bodies[0],
        json!({"inputText": "bye", "dimensions": 256, "normalize": true})
    );
    for r in &rec {
        assert_eq!(r.path, "/model/amazon.titan-embed-text-v2:0/invoke");
        assert!(r.authorization().starts_with("AWS4-HMAC-SHA256 "));
    }
}

#[tokio::test]
async fn embeddings_as_base64() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .post_json(
            "/v1/embeddings",
            json!({"model": "titan", "input": "abc", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let b64 = v["data"][0]["embedding"].as_str().expect("base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let floats: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    assert_eq!(floats, as_f32(&test_vector("abc", 8)));
}

#[tokio::test]
async fn cohere_embeddings_in_one_call() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .post_json(
            "/v1/embeddings",
            json!({"model": "cohere", "input": ["one", "two", "three"], "input_type": "search_query"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().expect("data").len(), 3);
    assert_eq!(v["data"][2]["embedding"][0], 5.0);
    let rec = h.server.recorded();
    assert_eq!(rec.len(), 1);
    assert_eq!(
        rec[0].body,
        json!({"texts": ["one", "two", "three"], "input_type": "search_query"})
    );

    h.server.clear();
    let (status, _, v) = h
        .post_json(
            "/v1/embeddings",
            json!({"model": "cohere-v4", "input": "x", "dimensions": 512}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().expect("v").len(), 512);
    assert_eq!(
        h.server.recorded()[0].body,
        json!({"texts": ["x"], "input_type": "search_document", "embedding_types": ["float"], "output_dimension": 512})
    );
}

#[tokio::test]
async fn embedding_requests_are_checked() {
    let h = Harness::start().await;
    for (body, status, param) in [
        (json!({"model": "titan"}), 400, "input"),
        (json!({"model": "titan", "input": [1, 2, 3]}), 400, "input"),
        (json!({"model": "titan", "input": []}), 400, "input"),
        (json!({"model": "titan", "input": ["a", ""]}), 400, "input"),
        (
            json!({"model": "titan", "input": "a", "encoding_format": "int8"}),
            400,
            "encoding_format",
        ),
        (
            json!({"model": "titan", "input": "a", "dimensions": 300}),
            400,
            "dimensions",
        ),
        (
            json!({"model": "cohere", "input": "a", "dimensions": 512}),
            400,
            "dimensions",
        ),
        (json!({"model": "claude", "input": "a"}), 400, "model"),
    ] {
        let (got, _, v) = h.post_json("/v1/embeddings", body.clone()).await;
        assert_eq!(got, status, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    assert!(h.server.recorded().is_empty());
    let (got, _, v) = h
        .post_json(
            "/v1/chat/completions",
            json!({"model": "titan", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(got, 400, "{v}");
    assert_eq!(v["error"]["code"], "wrong_model_kind");
}

#[tokio::test]
async fn embedding_errors_map_like_chat() {
    let h = Harness::start().await;
    h.server.script(
        "amazon.titan-embed-text-v2:0",
        std::iter::repeat_n(Reply::error(429, "ThrottlingException", "slow down"), 3),
    );
    let (status, headers, v) = h
        .post_json("/v1/embeddings", json!({"model": "titan", "input": "a"}))
        .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(h.server.recorded().len(), 3, "retried");
}

#[tokio::test]
async fn legacy_completion_buffered() {
    let h = Harness::start().await;
    let (status, _, v) = h
        .post_json(
            "/v1/completions",
            json!({"model": "claude", "prompt": "Say hi", "max_tokens": 20, "temperature": 0.1, "stop": "\n"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(v["choices"][0]["text"], "Hello from Bedrock");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 17);
    let body = &h.server.recorded()[0].body;
    assert_eq!(body["messages"][0]["content"][0]["text"], "Say hi");
    assert_eq!(body["inferenceConfig"]["maxTokens"], 20);
    assert_eq!(body["inferenceConfig"]["stopSequences"], json!(["\n"]));
}

#[tokio::test]
async fn legacy_completion_streamed() {
    let h = Harness::start().await;
    let req = common::request(
        "POST",
        "/v1/completions",
        Some(h.dir.key("user")),
        json!({"model": "claude", "prompt": ["Say hi"], "stream": true, "stream_options": {"include_usage": true}}).to_string(),
    );
    let (status, headers, body) = common::send(&h.engine, req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from Bedrock");
    for e in &events[..events.len() - 1] {
        assert_eq!(e["object"], "text_completion");
    }
    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    assert_eq!(events[n - 2]["usage"]["prompt_tokens"], 12);
    assert_eq!(events[n - 3]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn legacy_completion_refuses_what_it_cannot_do() {
    let h = Harness::start().await;
    for (body, param) in [
        (json!({"model": "claude"}), "prompt"),
        (json!({"model": "claude", "prompt": ["a", "b"]}), "prompt"),
        (
            json!({"model": "claude", "prompt": "a", "suffix": "z"}),
            "suffix",
        ),
        (
            json!({"model": "claude", "prompt": "a", "echo": true}),
            "echo",
        ),
        (
            json!({"model": "claude", "prompt": "a", "logprobs": 2}),
            "logprobs",
        ),
        (
            json!({"model": "claude", "prompt": "a", "temperature": 3}),
            "temperature",
        ),
    ] {
        let (status, _, v) = h.post_json("/v1/completions", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    assert!(h.server.recorded().is_empty());
}
