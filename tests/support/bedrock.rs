//! A Bedrock Runtime test server on 127.0.0.1: Converse answers in JSON, ConverseStream in
//! `application/vnd.amazon.eventstream` binary framing (encoded with `aws-smithy-eventstream`),
//! request errors as the SDK expects them (status, `x-amzn-errortype`, JSON body) and
//! mid-stream errors as `:message-type: exception` events.
//!
//! Tests script it per model id (a queue of replies; an empty queue answers a default), and
//! read back every request it received (path, headers, JSON body) and how many answers were
//! abandoned by the client before they ended.
#![allow(dead_code, reason = "each test binary uses a different part")]

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this Converse JSON.
    Converse(Value),
    /// 200 with these ConverseStream items.
    Stream(Vec<Item>),
    /// An error status with `x-amzn-errortype` and `{"message":..}`.
    Error {
        /// HTTP status.
        status: u16,
        /// Error type, e.g. `ThrottlingException`.
        kind: String,
        /// Message.
        message: String,
    },
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
}

/// One item of a ConverseStream answer.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event: its `:event-type` and JSON payload.
    Event(String, Value),
    /// An exception event: its `:exception-type` (e.g. `throttlingException`) and message.
    Exception(String, String),
    /// A pause before the next item.
    Pause(Duration),
}

impl Reply {
    /// An error reply.
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Reply::Error {
            status,
            kind: kind.to_string(),
            message: message.to_string(),
        }
    }

    /// A Converse answer of one text block.
    pub fn text(text: &str) -> Self {
        Reply::Converse(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
            "metrics": {"latencyMs": 42}
        }))
    }

    /// A stream of text pieces, then `end_turn` and usage.
    pub fn stream_text(pieces: &[&str]) -> Self {
        let mut items = vec![event("messageStart", json!({"role": "assistant"}))];
        for p in pieces {
            items.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": p}}),
            ));
        }
        items.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
        items.push(event("messageStop", json!({"stopReason": "end_turn"})));
        items.push(event(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": pieces.len(), "totalTokens": 12 + pieces.len()}, "metrics": {"latencyMs": 42}}),
        ));
        Reply::Stream(items)
    }
}

/// An event item.
pub fn event(kind: &str, payload: Value) -> Item {
    Item::Event(kind.to_string(), payload)
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path, percent-decoded (`/model/<id>/converse`).
    pub path: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// JSON body.
    pub body: Value,
}

impl Recorded {
    /// The model id of the path.
    pub fn model(&self) -> &str {
        self.path
            .strip_prefix("/model/")
            .and_then(|r| r.rsplit_once('/'))
            .map_or("", |(m, _)| m)
    }

    /// The operation (`converse` or `converse-stream`).
    pub fn operation(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// The `authorization` header.
    pub fn authorization(&self) -> &str {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, VecDeque<Reply>>,
    recorded: Vec<Recorded>,
    /// Replaces the built-in default replies (buffered, streamed) when set.
    defaults: Option<(Reply, Reply)>,
    /// The tool the default reply calls, with its input, after signed thinking.
    prefer: Option<(String, Value)>,
    /// Keep no record (benchmarks).
    no_record: bool,
}

/// The running server; stops when dropped.
pub struct BedrockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    abandoned: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BedrockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts an answer as abandoned when it is dropped before it ended.
struct Guard {
    abandoned: Arc<AtomicUsize>,
    finished: bool,
}

impl Guard {
    fn done(&mut self) {
        self.finished = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn encode(item: &Item) -> Option<Bytes> {
    let message = match item {
        Item::Event(kind, payload) => Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String(kind.clone().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            )),
        Item::Exception(kind, message) => {
            Message::new(Bytes::from(json!({"message": message}).to_string()))
                .add_header(Header::new(
                    ":exception-type",
                    HeaderValue::String(kind.clone().into()),
                ))
                .add_header(Header::new(
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ))
                .add_header(Header::new(
                    ":message-type",
                    HeaderValue::String("exception".into()),
                ))
        }
        Item::Pause(_) => return None,
    };
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buf).expect("encode event");
    Some(Bytes::from(buf))
}

async fn answer(reply: Reply, abandoned: Arc<AtomicUsize>) -> Response<Body> {
    let mut guard = Guard {
        abandoned: abandoned.clone(),
        finished: false,
    };
    let mut reply = reply;
    while let Reply::Delay(d, next) = reply {
        tokio::time::sleep(d).await;
        reply = *next;
    }
    let response = match reply {
        Reply::Converse(v) => Response::builder()
            .header("content-type", "application/json")
            .header("x-amzn-requestid", "test-request-id")
            .body(Full::new(Bytes::from(v.to_string())).boxed())
            .expect("response"),
        Reply::Error {
            status,
            kind,
            message,
        } => Response::builder()
            .status(StatusCode::from_u16(status).expect("status"))
            .header("content-type", "application/json")
            .header(
                "x-amzn-errortype",
                format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            )
            .body(Full::new(Bytes::from(json!({"message": message}).to_string())).boxed())
            .expect("response"),
        Reply::Stream(items) => {
            let stream_guard = Guard {
                abandoned,
                finished: false,
            };
            let body = futures_util::stream::unfold(
                (VecDeque::from(items), stream_guard),
                |(mut items, mut g)| async move {
                    loop {
                        match items.pop_front() {
                            None => {
                                g.done();
                                return None;
                            }
                            Some(Item::Pause(d)) => tokio::time::sleep(d).await,
                            Some(item) => {
                                let bytes = encode(&item)?;
                                return Some((Ok::<_, Infallible>(Frame::data(bytes)), (items, g)));
                            }
                        }
                    }
                },
            );
            Response::builder()
                .header("content-type", "application/vnd.amazon.eventstream")
                .header("x-amzn-requestid", "test-request-id")
                .body(BodyExt::boxed(StreamBody::new(body)))
                .expect("response")
        }
        Reply::Delay(..) => unreachable!("delays are unwrapped above"),
    };
    guard.done();
    response
}

/// A deterministic vector for a text: its length, then a ramp.
pub fn test_vector(text: &str, dims: usize) -> Vec<f64> {
    (0..dims)
        .map(|i| {
            if i == 0 {
                text.len() as f64
            } else {
                i as f64 / 8.0
            }
        })
        .collect()
}

/// InvokeModel with nothing scripted: Titan (`inputText`) or Cohere (`texts`) embeddings.
fn embedding_reply(body: &Value) -> Reply {
    if let Some(text) = body["inputText"].as_str() {
        let dims = body["dimensions"].as_u64().unwrap_or(8) as usize;
        return Reply::Converse(json!({
            "embedding": test_vector(text, dims),
            "inputTextTokenCount": text.split_whitespace().count(),
        }));
    }
    let texts: Vec<&str> = body["texts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let dims = body["output_dimension"].as_u64().unwrap_or(8) as usize;
    let vectors: Vec<Vec<f64>> = texts.iter().map(|t| test_vector(t, dims)).collect();
    if body.get("embedding_types").is_some() {
        Reply::Converse(
            json!({"id": "emb-1", "embeddings": {"float": vectors}, "texts": texts, "response_type": "embeddings_by_type"}),
        )
    } else {
        Reply::Converse(
            json!({"id": "emb-1", "embeddings": vectors, "texts": texts, "response_type": "embeddings_floats"}),
        )
    }
}

/// A CountTokens answer: one token per four characters of the request's JSON (a stand-in
/// rule, deterministic for tests), refused for an inference profile id as Bedrock does.
fn count_reply(body: &Value) -> Reply {
    let n = body["input"]["converse"].to_string().len().div_ceil(4);
    Reply::Converse(json!({"inputTokens": n}))
}

/// Bedrock's documented request rules the mapping must respect; `Some(why)` when one is
/// broken (answered as a `ValidationException`).
pub fn validate(body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    let mut expected = "user";
    let mut tool_blocks = false;
    let mut cache_points = 0;
    let thinking = body["additionalModelRequestFields"]["thinking"]["type"] == "enabled";
    for system in body["system"].as_array().into_iter().flatten() {
        cache_points += usize::from(system.get("cachePoint").is_some());
    }
    for t in body["toolConfig"]["tools"].as_array().into_iter().flatten() {
        cache_points += usize::from(t.get("cachePoint").is_some());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != expected {
            return Some(format!(
                "A conversation must alternate between user and assistant roles (messages.{i} is {role})"
            ));
        }
        expected = if role == "user" { "assistant" } else { "user" };
        let content = m["content"].as_array().cloned().unwrap_or_default();
        if content.is_empty() {
            return Some(format!("messages.{i}.content must not be empty"));
        }
        for (j, b) in content.iter().enumerate() {
            cache_points += usize::from(b.get("cachePoint").is_some());
            if let Some(t) = b.get("text").and_then(Value::as_str)
                && t.trim().is_empty()
            {
                return Some(format!(
                    "messages.{i}.content.{j}: text content blocks must be non-empty"
                ));
            }
            if let Some(r) = b.get("toolResult") {
                tool_blocks = true;
                if r["content"].as_array().is_none_or(Vec::is_empty) {
                    return Some(format!(
                        "messages.{i}.content.{j}: the toolResult content must not be empty"
                    ));
                }
            }
            if let Some(u) = b.get("toolUse") {
                tool_blocks = true;
                let id = u["toolUseId"].as_str().unwrap_or("");
                let name = u["name"].as_str().unwrap_or("");
                let ok = |s: &str, max: usize| {
                    !s.is_empty()
                        && s.len() <= max
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                };
                if !ok(id, 64) || !ok(name, 64) {
                    return Some(format!(
                        "messages.{i}.content.{j}: invalid toolUse id or name"
                    ));
                }
                if thinking
                    && content
                        .first()
                        .and_then(|f| f.get("reasoningContent"))
                        .is_none()
                {
                    return Some("Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block".into());
                }
            }
        }
    }
    if tool_blocks && body.get("toolConfig").is_none() {
        return Some(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks"
                .into(),
        );
    }
    if cache_points > 4 {
        return Some(format!(
            "A maximum of 4 cache points is allowed, got {cache_points}"
        ));
    }
    None
}

/// The default reply with a preferred tool: signed thinking, then a call of `tool` with
/// `input` while the last turn holds no tool result; the results quoted back after that.
fn preferred_reply(body: &Value, stream: bool, (tool, input): &(String, Value)) -> Reply {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let answered = last["content"]
        .as_array()
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    let offered = body["toolConfig"]["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["toolSpec"]["name"] == *tool));
    if answered || !offered || !stream {
        return default_reply(body, stream);
    }
    let args = input.to_string();
    Reply::Stream(vec![
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "I will run the command."}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "test-signature"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_pref_1", "name": tool}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": args}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 40, "outputTokens": 12, "totalTokens": 52}, "metrics": {"latencyMs": 1}}),
        ),
    ])
}

/// What the server answers when nothing is scripted: a call of the first tool when tools are
/// offered and the last turn holds no tool result (each required argument `"Paris"`), the
/// tool results quoted back when it does, and a greeting otherwise.
fn default_reply(body: &Value, stream: bool) -> Reply {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let results: Vec<String> = last["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["toolResult"]["content"][0]["text"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let tool = &body["toolConfig"]["tools"][0]["toolSpec"];
    if results.is_empty()
        && let Some(name) = tool["name"].as_str()
    {
        let mut input = serde_json::Map::new();
        for r in tool["inputSchema"]["json"]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            input.insert(r.to_string(), json!("Paris"));
        }
        let input = Value::Object(input);
        if !stream {
            return Reply::Converse(json!({
                "output": {"message": {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "tooluse_test_1", "name": name, "input": input}}
                ]}},
                "stopReason": "tool_use",
                "usage": {"inputTokens": 30, "outputTokens": 10, "totalTokens": 40}
            }));
        }
        let args = input.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        return Reply::Stream(vec![
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_test_1", "name": name}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": a}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": b}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 30, "outputTokens": 10, "totalTokens": 40}, "metrics": {"latencyMs": 1}}),
            ),
        ]);
    }
    let text = if results.is_empty() {
        "Hello from Bedrock".to_string()
    } else {
        format!("The tool said: {}", results.join("; "))
    };
    if stream {
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        Reply::stream_text(&refs)
    } else {
        Reply::text(&text)
    }
}

impl BedrockServer {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts a server on a loopback address.
    pub async fn start_on(addr: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the Bedrock test server");
        let addr = listener.local_addr().expect("local addr");
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
                        let recorded = Recorded {
                            method: parts.method.to_string(),
                            path: percent_decode(parts.uri.path()),
                            headers: parts.headers,
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        };
                        let reply = {
                            let mut s = st.lock().expect("state");
                            let model = recorded.model().to_string();
                            let stream = recorded.operation() == "converse-stream";
                            let invoke = recorded.operation() == "invoke";
                            let count = recorded.operation() == "count-tokens";
                            let body = recorded.body.clone();
                            if !s.no_record {
                                s.recorded.push(recorded);
                            }
                            let scripted = s
                                .scripts
                                .get_mut(&model)
                                .and_then(VecDeque::pop_front)
                                .or_else(|| s.scripts.get_mut("*").and_then(VecDeque::pop_front));
                            let refused = if invoke {
                                None
                            } else if count && model.split('.').count() > 2 {
                                Some(format!("The provided model identifier is invalid: {model}"))
                            } else if count {
                                validate(&body["input"]["converse"])
                            } else {
                                validate(&body)
                            };
                            match (scripted, &s.defaults) {
                                _ if refused.is_some() => Reply::error(
                                    400,
                                    "ValidationException",
                                    refused.as_deref().unwrap_or_default(),
                                ),
                                (Some(r), _) => r,
                                (None, Some((buffered, streamed))) => {
                                    if stream {
                                        streamed.clone()
                                    } else {
                                        buffered.clone()
                                    }
                                }
                                (None, None) if invoke => embedding_reply(&body),
                                (None, None) if count => count_reply(&body),
                                (None, None) => match &s.prefer {
                                    Some(p) => preferred_reply(&body, stream, p),
                                    None => default_reply(&body, stream),
                                },
                            }
                        };
                        Ok::<_, Infallible>(answer(reply, ab).await)
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

    /// Makes the default streamed reply call `tool` with `input` after signed thinking.
    pub fn prefer_tool(&self, tool: &str, input: Value) {
        self.state.lock().expect("state").prefer = Some((tool.to_string(), input));
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies for a model id (`*`: any model without its own queue).
    pub fn script(&self, model: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut s = self.state.lock().expect("state");
        s.scripts
            .entry(model.to_string())
            .or_default()
            .extend(replies);
    }

    /// Answers these (buffered, streamed) when nothing is scripted, and records nothing
    /// (benchmarks).
    pub fn set_defaults(&self, buffered: Reply, streamed: Reply) {
        let mut s = self.state.lock().expect("state");
        s.defaults = Some((buffered, streamed));
        s.no_record = true;
    }

    /// Every request received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.lock().expect("state").recorded.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.state.lock().expect("state").recorded.clear();
    }

    /// Answers the client dropped before they ended.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for `abandoned() >= n`.
    pub async fn wait_abandoned(&self, n: usize, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.abandoned() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.abandoned() >= n
    }
}
