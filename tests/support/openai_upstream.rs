//! An OpenAI-compatible upstream on 127.0.0.1 for the `openai` provider's tests: chat
//! completions (JSON or SSE) and embeddings, scripted per test, recording every request.
#![allow(dead_code, reason = "each test binary uses a different part")]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum UpReply {
    /// A JSON answer with a status and extra headers.
    Json(u16, Value, Vec<(&'static str, String)>),
    /// An SSE answer: `data:` payloads (`None` is a pause of 100 ms).
    Sse(Vec<Option<String>>),
}

/// A received request.
#[derive(Debug, Clone)]
pub struct UpRecorded {
    /// Path.
    pub path: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// JSON body.
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: VecDeque<UpReply>,
    recorded: Vec<UpRecorded>,
}

/// The running upstream; stops when dropped.
pub struct OpenAiUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    abandoned: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpenAiUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A chunk of a streamed chat answer.
pub fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn default_reply(path: &str, body: &Value) -> UpReply {
    if path.ends_with("/embeddings") {
        let inputs: Vec<String> = match &body["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": [t.len() as f64, 0.5, -0.25]}))
            .collect();
        return UpReply::Json(
            200,
            json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": inputs.len() * 2, "total_tokens": inputs.len() * 2}}),
            Vec::new(),
        );
    }
    let tool = body["tools"][0]["function"]["name"].as_str();
    let last_is_tool = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let stream = body["stream"] == true;
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14});
    match (tool, last_is_tool, stream) {
        (Some(name), false, false) => UpReply::Json(
            200,
            json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": "call_up_1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": usage}),
            Vec::new(),
        ),
        (Some(name), false, true) => {
            let mut events = vec![
                Some(chunk(json!({"role": "assistant", "content": null}), None)),
                Some(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_up_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                )),
                Some(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    None,
                )),
                Some(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    None,
                )),
                Some(chunk(json!({}), Some("tool_calls"))),
            ];
            if body["stream_options"]["include_usage"] == true {
                events.push(Some(json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": [], "usage": usage}).to_string()));
            }
            events.push(Some("[DONE]".into()));
            UpReply::Sse(events)
        }
        (_, _, false) => {
            let text = if last_is_tool {
                format!(
                    "The tool said: {}",
                    body["messages"]
                        .as_array()
                        .and_then(|m| m.last())
                        .map_or("", |m| m["content"].as_str().unwrap_or(""))
                )
            } else {
                "Hello from upstream".to_string()
            };
            UpReply::Json(
                200,
                json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    "usage": usage}),
                Vec::new(),
            )
        }
        (_, _, true) => {
            let mut events = vec![Some(chunk(
                json!({"role": "assistant", "content": ""}),
                None,
            ))];
            for piece in ["Hello", " from", " upstream"] {
                events.push(Some(chunk(json!({"content": piece}), None)));
            }
            events.push(Some(chunk(json!({}), Some("stop"))));
            if body["stream_options"]["include_usage"] == true {
                events.push(Some(json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": [], "usage": usage}).to_string()));
            }
            events.push(Some("[DONE]".into()));
            UpReply::Sse(events)
        }
    }
}

struct Guard(Arc<AtomicUsize>, bool);

impl Guard {
    fn done(&mut self) {
        self.1 = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn respond(reply: UpReply, abandoned: Arc<AtomicUsize>) -> Response<BoxBody<Bytes, Infallible>> {
    match reply {
        UpReply::Json(status, v, headers) => {
            let mut b = Response::builder()
                .status(StatusCode::from_u16(status).expect("status"))
                .header("content-type", "application/json");
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Full::new(Bytes::from(v.to_string())).boxed())
                .expect("response")
        }
        UpReply::Sse(events) => {
            let guard = Guard(abandoned, false);
            let body = futures_util::stream::unfold(
                (VecDeque::from(events), guard),
                |(mut events, mut g)| async move {
                    loop {
                        match events.pop_front() {
                            None => {
                                g.done();
                                return None;
                            }
                            Some(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                            Some(Some(data)) => {
                                let frame = Frame::data(Bytes::from(format!("data: {data}\n\n")));
                                return Some((Ok::<_, Infallible>(frame), (events, g)));
                            }
                        }
                    }
                },
            );
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(body)))
                .expect("response")
        }
    }
}

impl OpenAiUpstream {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let (st, ab) = (state.clone(), abandoned.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, ab) = (st.clone(), ab.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (st, ab) = (st.clone(), ab.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        let path = parts.uri.path().to_string();
                        let reply = {
                            let mut s = st.lock().expect("state");
                            s.recorded.push(UpRecorded {
                                path: path.clone(),
                                headers: parts.headers,
                                body: body.clone(),
                            });
                            s.script.pop_front()
                        }
                        .unwrap_or_else(|| default_reply(&path, &body));
                        Ok::<_, Infallible>(respond(reply, ab))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            abandoned,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies (any path).
    pub fn script(&self, replies: impl IntoIterator<Item = UpReply>) {
        self.state.lock().expect("state").script.extend(replies);
    }

    /// Requests received.
    pub fn recorded(&self) -> Vec<UpRecorded> {
        self.state.lock().expect("state").recorded.clone()
    }

    /// Streams the client dropped before their end.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }
}
