//! An upstream that answers instantly, for bench/overhead.sh: every answer is encoded once at
//! start-up and sent as one body (what nginx serving a static file does), so the gateway's
//! cost stands out against the direct baseline. One thread, `TCP_NODELAY`, HTTP/1.1
//! keep-alive, the request body read and discarded.
//!
//! - `POST /v1/chat/completions` (OpenAI-compatible): a chat completion, or with
//!   `"stream":true` in the body `--chunks` content chunks, a finish chunk, a usage chunk and
//!   `[DONE]` as server-sent events;
//! - `POST /model/<id>/converse` (Bedrock): a Converse answer;
//! - `POST /model/<id>/converse-stream` (Bedrock): `messageStart`, `--chunks`
//!   `contentBlockDelta` events, `contentBlockStop`, `messageStop` and `metadata`, in
//!   `application/vnd.amazon.eventstream` framing.
//!
//! `cargo run --release --example instant_upstream -- --port 9201 [--chunks 20]`; with
//! `--dump DIR` it writes the answers as files for nginx instead (`BENCH_UPSTREAM=nginx`).

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Answers {
    chat: Bytes,
    chat_stream: Bytes,
    converse: Bytes,
    converse_stream: Bytes,
}

fn frame(kind: &str, payload: &Value) -> Vec<u8> {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buf).expect("encode event");
    buf
}

fn answers(chunks: u64) -> Answers {
    let chat = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench-upstream",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the upstream"},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    });
    let sse_chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
            "model": "bench-upstream", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut stream = String::new();
    let mut data = |v: Value| {
        stream.push_str("data: ");
        stream.push_str(&v.to_string());
        stream.push_str("\n\n");
    };
    data(sse_chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for _ in 0..chunks {
        data(sse_chunk(json!({"content": "word "}), Value::Null));
    }
    data(sse_chunk(json!({}), json!("stop")));
    data(
        json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
        "model": "bench-upstream", "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}}),
    );
    stream.push_str("data: [DONE]\n\n");

    let converse = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
        "metrics": {"latencyMs": 1}
    });
    let mut frames = frame("messageStart", &json!({"role": "assistant"}));
    for _ in 0..chunks {
        frames.extend(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "word "}}),
        ));
    }
    frames.extend(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    frames.extend(frame("messageStop", &json!({"stopReason": "end_turn"})));
    frames.extend(frame(
        "metadata",
        &json!({"usage": {"inputTokens": 12, "outputTokens": chunks, "totalTokens": 12 + chunks},
            "metrics": {"latencyMs": 1}}),
    ));
    Answers {
        chat: Bytes::from(chat.to_string()),
        chat_stream: Bytes::from(stream),
        converse: Bytes::from(converse.to_string()),
        converse_stream: Bytes::from(frames),
    }
}

fn reply(content_type: &'static str, body: &Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.clone()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

async fn answer(
    a: Arc<Answers>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
    Ok(if path.ends_with("/converse-stream") {
        reply("application/vnd.amazon.eventstream", &a.converse_stream)
    } else if path.ends_with("/converse") {
        reply("application/json", &a.converse)
    } else if path.ends_with("/chat/completions") && stream {
        reply("text/event-stream", &a.chat_stream)
    } else if path.ends_with("/chat/completions") {
        reply("application/json", &a.chat)
    } else {
        let mut r = reply("application/json", &Bytes::from_static(b"{}"));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        r
    })
}

/// Writes the four answers under `dir` at their request paths (for a static file server such
/// as nginx): `v1/chat/completions`, `stream/v1/chat/completions`,
/// `model/bench-model/converse` and `model/bench-model/converse-stream`.
fn dump(dir: &str, a: &Answers) {
    for (path, body) in [
        ("v1/chat/completions", &a.chat),
        ("stream/v1/chat/completions", &a.chat_stream),
        ("model/bench-model/converse", &a.converse),
        ("model/bench-model/converse-stream", &a.converse_stream),
    ] {
        let file = std::path::Path::new(dir).join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("create the answer's folder");
        }
        std::fs::write(&file, body).expect("write the answer");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = arg("--port", 9201);
    let answers = Arc::new(answers(arg("--chunks", 20)));
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1))
    {
        dump(dir, &answers);
        return;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
        .await
        .expect("bind");
    println!("instant upstream listening on 127.0.0.1:{port}");
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let a = answers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| answer(a.clone(), r));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                .await;
        });
    }
}
