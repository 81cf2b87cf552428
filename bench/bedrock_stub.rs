//! An instant Bedrock upstream for benchmarks: the test server of `tests/support/bedrock.rs`
//! on a fixed loopback port, answering every Converse call with a short text and every
//! ConverseStream call with `--events` text deltas `--pause-ms` apart.
//!
//! `cargo run --release --example bedrock_stub -- --port 9101 [--events 8] [--pause-ms 0]`

#[path = "../tests/support/bedrock.rs"]
mod bedrock_server;

use bedrock_server::{BedrockServer, Item, Reply, event};
use serde_json::json;
use std::time::Duration;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let port = arg("--port", 9101);
    let events = arg("--events", 8);
    let pause = Duration::from_millis(arg("--pause-ms", 0));
    let server = BedrockServer::start_on(&format!("127.0.0.1:{port}")).await;
    let mut items = vec![event("messageStart", json!({"role": "assistant"}))];
    for i in 0..events {
        if i > 0 && !pause.is_zero() {
            items.push(Item::Pause(pause));
        }
        items.push(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "word "}}),
        ));
    }
    items.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    items.push(event("messageStop", json!({"stopReason": "end_turn"})));
    items.push(event(
        "metadata",
        json!({"usage": {"inputTokens": 10, "outputTokens": events, "totalTokens": 10 + events}, "metrics": {"latencyMs": 1}}),
    ));
    server.set_defaults(Reply::text("Hello from Bedrock"), Reply::Stream(items));
    println!("bedrock stub listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
}
