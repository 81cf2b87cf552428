//! A stand-in for the AWS Lambda Runtime API on 127.0.0.1, enough to run the `bootstrap`
//! binary as Lambda would: `GET /2018-06-01/runtime/invocation/next` hands out queued events
//! with the headers the runtime client needs, and `POST .../invocation/{id}/response` accepts
//! both response modes:
//!
//! - buffered: the body is the API Gateway proxy response JSON
//!   (`{"statusCode","headers","body","isBase64Encoded"}`);
//! - streamed (`Lambda-Runtime-Function-Response-Mode: streaming`, chunked): a JSON metadata
//!   prelude `{"statusCode","headers","cookies"}`, eight NUL bytes, then the body as written.
//!
//! Errors the function reports (`.../invocation/{id}/error`, `/runtime/init/error`) end the
//! invocation with the reported text. Used by `tests/lambda_runtime.rs` and
//! `bench/lambda_cold_start.rs`.
#![allow(dead_code, reason = "the test and the benchmark use different parts")]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// The ARN the stand-in reports as the invoked function.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:pennyworth-test";

/// How the function answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON document.
    Buffered,
    /// A chunked stream with a metadata prelude.
    Streamed,
}

/// One invocation's answer, as API Gateway would turn it into an HTTP response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Response mode the runtime client used.
    pub mode: Mode,
    /// `Content-Type` of the runtime client's POST (streamed: the HTTP integration type).
    pub post_content_type: Option<String>,
    /// HTTP status for the client.
    pub status: u16,
    /// Headers for the client, names lowercased.
    pub headers: HashMap<String, String>,
    /// Body for the client.
    pub body: Vec<u8>,
    /// Data frames the stand-in received for this answer (streamed: prelude, delimiter and
    /// body chunks arrive as separate chunks).
    pub frames: usize,
    /// HTTP trailers of the POST, if any (mid-stream errors).
    pub trailers: HashMap<String, String>,
    /// When the response's request line and headers arrived.
    pub started: Instant,
    /// When the last byte arrived.
    pub finished: Instant,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The function answered.
    Answer(Answer),
    /// The function reported an error (`/error`, or `/init/error` before any invocation).
    Error(String),
}

struct Invocation {
    id: String,
    payload: String,
    deadline: Duration,
    /// `Lambda-Runtime-Trace-Id` (default: a fresh, unsampled X-Ray header).
    trace: Option<String>,
}

#[derive(Default)]
struct Waiting {
    answers: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<String>,
    first_poll: Option<Instant>,
    polls: usize,
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<Waiting>,
}

/// The running stand-in; its server stops when this is dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Starts the stand-in on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API stand-in");
        let addr = listener.local_addr().expect("local addr");
        let (queue, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(events),
            waiting: Mutex::new(Waiting::default()),
        });
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let sh = sh.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sh = sh.clone();
                    async move { Ok::<_, Infallible>(route(&sh, req).await) }
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
            queue,
            shared,
            next_id: AtomicU64::new(1),
            task,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:PORT`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; the receiver yields how the invocation ended.
    pub fn submit(&self, payload: impl Into<String>) -> oneshot::Receiver<Outcome> {
        self.submit_with_deadline(payload, Duration::from_secs(60))
    }

    /// Queues an event whose deadline is `deadline` from when it is handed out.
    pub fn submit_with_deadline(
        &self,
        payload: impl Into<String>,
        deadline: Duration,
    ) -> oneshot::Receiver<Outcome> {
        self.submit_full(payload, deadline, None)
    }

    /// Queues an event with this X-Ray trace header (active tracing, the function's segment
    /// as `Parent`) and waits for its outcome.
    pub async fn invoke_traced(
        &self,
        payload: impl Into<String>,
        trace: &str,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let rx = self.submit_traced(payload, Some(trace.to_string()));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Outcome::Answer(a))) => Ok(a),
            Ok(Ok(Outcome::Error(e))) => Err(format!("the function reported an error: {e}")),
            Ok(Err(_)) => Err("the stand-in dropped the invocation".to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Queues an event with this X-Ray trace header (`None`: an unsampled one).
    pub fn submit_traced(
        &self,
        payload: impl Into<String>,
        trace: Option<String>,
    ) -> oneshot::Receiver<Outcome> {
        self.submit_full(payload, Duration::from_secs(60), trace)
    }

    fn submit_full(
        &self,
        payload: impl Into<String>,
        deadline: Duration,
        trace: Option<String>,
    ) -> oneshot::Receiver<Outcome> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("state")
            .answers
            .insert(id.clone(), tx);
        let _ = self.queue.send(Invocation {
            id,
            payload: payload.into(),
            deadline,
            trace,
        });
        rx
    }

    /// Queues an event and waits for its outcome (at most `timeout`).
    pub async fn invoke(
        &self,
        payload: impl Into<String>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let rx = self.submit(payload);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Outcome::Answer(a))) => Ok(a),
            Ok(Ok(Outcome::Error(e))) => Err(format!("the function reported an error: {e}")),
            Ok(Err(_)) => Err("the stand-in dropped the invocation".to_string()),
            Err(_) => Err(match self.init_error() {
                Some(e) => format!("no answer; init error: {e}"),
                None => format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// The error reported to `/runtime/init/error`, if any.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .waiting
            .lock()
            .expect("state")
            .init_error
            .clone()
    }

    /// When the function first asked for an event (its initialization was over).
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.waiting.lock().expect("state").first_poll
    }

    /// How many times the function asked for an event.
    pub fn polls(&self) -> usize {
        self.shared.waiting.lock().expect("state").polls
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#);
    };
    match (req.method().as_str(), rest) {
        ("GET", "invocation/next") => next(shared).await,
        ("POST", "init/error") => {
            let body = collect(req).await.0;
            shared.waiting.lock().expect("state").init_error =
                Some(String::from_utf8_lossy(&body).into_owned());
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        ("POST", r) if r.starts_with("invocation/") => {
            let mut parts = r.split('/');
            let (_, id, what) = (parts.next(), parts.next(), parts.next());
            let (Some(id), Some(what)) = (id.map(str::to_string), what) else {
                return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#);
            };
            let outcome = match what {
                "response" => match decode_response(req).await {
                    Ok(a) => Outcome::Answer(a),
                    Err(e) => Outcome::Error(format!("malformed response: {e}")),
                },
                "error" => Outcome::Error(String::from_utf8_lossy(&collect(req).await.0).into()),
                _ => return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#),
            };
            let waiter = shared.waiting.lock().expect("state").answers.remove(&id);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(outcome);
                    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
                }
                None => reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"errorMessage":"unknown or finished invocation"}"#,
                ),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#),
    }
}

/// Long-polls like the real API: answers when an event is queued.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    {
        let mut w = shared.waiting.lock().expect("state");
        w.polls += 1;
        w.first_poll.get_or_insert_with(Instant::now);
    }
    let inv = {
        let mut events = shared.events.lock().await;
        events.recv().await
    };
    let Some(inv) = inv else {
        return reply(StatusCode::GONE, r#"{"errorMessage":"shutting down"}"#);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let deadline_ms = (now + inv.deadline).as_millis();
    let mut r = reply(StatusCode::OK, &inv.payload);
    let h = r.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: String| {
        h.insert(k, http::HeaderValue::from_str(&v).expect("header value"));
    };
    set(h, "lambda-runtime-aws-request-id", inv.id.clone());
    set(h, "lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        h,
        "lambda-runtime-invoked-function-arn",
        FUNCTION_ARN.into(),
    );
    let trace = inv.trace.clone().unwrap_or_else(|| {
        format!(
            "Root=1-{:08x}-{:024x};Parent=53995c3f42cd8ad8;Sampled=0",
            now.as_secs(),
            now.as_nanos() % (1u128 << 96)
        )
    });
    set(h, "lambda-runtime-trace-id", trace);
    r
}

/// The body's bytes, the number of data frames and the trailers.
async fn collect(req: Request<Incoming>) -> (Vec<u8>, usize, HashMap<String, String>) {
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut frames = 0;
    let mut trailers = HashMap::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        match frame.into_data() {
            Ok(data) => {
                frames += 1;
                bytes.extend_from_slice(&data);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    for (k, v) in &t {
                        trailers.insert(
                            k.as_str().to_string(),
                            v.to_str().unwrap_or_default().to_string(),
                        );
                    }
                }
            }
        }
    }
    (bytes, frames, trailers)
}

fn header_map(v: &serde_json::Value) -> HashMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.to_ascii_lowercase(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

const DELIMITER: [u8; 8] = [0; 8];

async fn decode_response(req: Request<Incoming>) -> Result<Answer, String> {
    let started = Instant::now();
    let streamed = req
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"));
    let post_content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (bytes, frames, trailers) = collect(req).await;
    let finished = Instant::now();
    if streamed {
        let at = bytes
            .windows(DELIMITER.len())
            .position(|w| w == DELIMITER)
            .ok_or("no metadata prelude delimiter (8 NUL bytes)")?;
        let prelude: serde_json::Value = serde_json::from_slice(&bytes[..at])
            .map_err(|e| format!("metadata prelude is not JSON: {e}"))?;
        let status = prelude["statusCode"]
            .as_u64()
            .ok_or("metadata prelude without statusCode")?;
        Ok(Answer {
            mode: Mode::Streamed,
            post_content_type,
            status: u16::try_from(status).map_err(|e| e.to_string())?,
            headers: header_map(&prelude["headers"]),
            body: bytes[at + DELIMITER.len()..].to_vec(),
            frames,
            trailers,
            started,
            finished,
        })
    } else {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("buffered response is not JSON: {e}"))?;
        let status = v["statusCode"]
            .as_u64()
            .ok_or("buffered response without statusCode")?;
        let text = v["body"].as_str().unwrap_or_default();
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("body is not base64: {e}"))?
        } else {
            text.as_bytes().to_vec()
        };
        Ok(Answer {
            mode: Mode::Buffered,
            post_content_type,
            status: u16::try_from(status).map_err(|e| e.to_string())?,
            headers: header_map(&v["headers"]),
            body,
            frames,
            trailers,
            started,
            finished,
        })
    }
}

/// The `bootstrap` command (`bin`) with a clean environment as Lambda sets it: this
/// stand-in as the Runtime API, `config` as the task root and config directory, an embedded
/// store in `dir/data`, dummy static AWS credentials and no instance metadata (nothing leaves
/// loopback), stdout and stderr into `dir/function.log`.
pub fn bootstrap_command(bin: &str, api: &RuntimeApi, config: &Path, dir: &Path) -> Command {
    let log = std::fs::File::create(dir.join("function.log")).expect("log file");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .current_dir(dir)
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.address().as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "pennyworth-test"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/pennyworth-test"),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/23/[$LATEST]0123456789abcdef",
            ),
            ("_HANDLER", "bootstrap"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "test-session-token"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("PENNYWORTH_LOG", "info"),
        ])
        .env("LAMBDA_TASK_ROOT", config)
        .env("PENNYWORTH_CONFIG_DIR", config)
        .env("PENNYWORTH_DATA_DIR", dir.join("data"))
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log));
    cmd
}
