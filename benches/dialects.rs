//! What a dialect costs: the same call as OpenAI chat completions and as Anthropic Messages,
//! buffered and streamed, through the whole engine (route, key, Cedar, dialect conversion,
//! inference core, provider, rendering, usage record) to `echo` and to the Bedrock test
//! server on 127.0.0.1 (the Bedrock client: signing, event-stream decoding). A plain timing
//! harness: `cargo bench --bench dialects`. Rounds of the two dialects alternate so drift hits both;
//! the figure is the mean time per request, and the ratio Messages / chat.

#[path = "../tests/support/bedrock.rs"]
mod bedrock_server;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/harness.rs"]
mod harness;

use bedrock_server::Reply;
use bytes::Bytes;
use serde_json::json;
use std::time::{Duration, Instant};

const ROUNDS: u32 = 10;

async fn call(h: &harness::Harness, path: &str, body: &Bytes) {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", format!("Bearer {}", h.dir.key("user")))
        .header("content-type", "application/json")
        .body(body.clone())
        .expect("request");
    let resp = h.engine.handle(req).await;
    assert_eq!(resp.status(), 200, "{path}");
    let bytes = resp.into_body().collect().await.expect("body");
    assert!(!bytes.is_empty());
}

async fn time(h: &harness::Harness, path: &str, body: &Bytes, n: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        call(h, path, body).await;
    }
    t.elapsed()
}

fn per_request(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let h = harness::Harness::start().await;
    let words: Vec<String> = (0..20).map(|i| format!("w{i} ")).collect();
    let pieces: Vec<&str> = words.iter().map(String::as_str).collect();
    h.server
        .set_defaults(Reply::text(&words.concat()), Reply::stream_text(&pieces));
    let prompt = "Say twenty words.";
    println!("mean time per request, {ROUNDS} alternating rounds each");
    println!(
        "{:<10} {:<9} {:>12} {:>12} {:>8}",
        "model", "mode", "chat µs", "messages µs", "ratio"
    );
    for (model, n) in [("echo", 2_000u32), ("claude", 500)] {
        for stream in [false, true] {
            let chat = Bytes::from(
                json!({"model": model, "stream": stream, "max_tokens": 100,
                    "messages": [{"role": "user", "content": prompt}]})
                .to_string(),
            );
            let messages = Bytes::from(
                json!({"model": model, "stream": stream, "max_tokens": 100,
                    "messages": [{"role": "user", "content": prompt}]})
                .to_string(),
            );
            // Warm both paths (connections, caches).
            time(&h, "/v1/chat/completions", &chat, 50).await;
            time(&h, "/v1/messages", &messages, 50).await;
            let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..ROUNDS {
                a += time(&h, "/v1/chat/completions", &chat, n / ROUNDS).await;
                b += time(&h, "/v1/messages", &messages, n / ROUNDS).await;
            }
            let (a, b) = (per_request(a, n), per_request(b, n));
            println!(
                "{model:<10} {:<9} {a:>12.1} {b:>12.1} {:>8.3}",
                if stream { "streamed" } else { "buffered" },
                b / a
            );
        }
    }
}
