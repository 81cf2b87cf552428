//! Tracing (doc/observability.md): the trace id in the log lines and the response header, the
//! spans of a `serve` request at an OTLP/HTTP receiver (parent from `traceparent`), an
//! unreachable collector that does not slow requests, and X-Ray segment documents of a chat
//! call through the Lambda binary at a stand-in X-Ray daemon (UDP).

mod common;
#[path = "support/lambda_runtime.rs"]
mod runtime_api;
#[path = "support/openai_upstream.rs"]
mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_pennyworth");
const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const PROMPT: &str = "the secret prompt text";

#[tokio::test]
async fn the_trace_id_is_in_the_access_audit_and_usage_lines_and_the_answer() {
    let logs = common::logs::capture();
    let (engine, dir) = common::engine(&common::repo_root()).await;

    let mut req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(dir.key("admin")),
        common::chat_body("echo", "hi"),
    );
    req.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-01").parse().unwrap(),
    );
    let (status, headers, _) = common::send(&engine, req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-trace-id"], TRACE);
    let request_id = headers["x-request-id"].to_str().unwrap().to_string();

    // No caller trace: a fresh id, the same in the header and every line of the request.
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(dir.key("admin")),
        common::chat_body("echo", "again"),
    );
    let (status, headers, _) = common::send(&engine, req).await;
    assert_eq!(status, 200);
    let fresh = headers["x-trace-id"].to_str().unwrap().to_string();
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, TRACE);
    let fresh_request = headers["x-request-id"].to_str().unwrap().to_string();

    for target in [
        "pennyworth::access",
        "pennyworth::audit",
        "pennyworth::usage",
    ] {
        let lines = logs.records(target);
        let of = |rid: &str| -> Vec<Value> {
            lines
                .iter()
                .filter(|l| l["request_id"] == rid)
                .cloned()
                .collect()
        };
        let first = of(&request_id);
        let second = of(&fresh_request);
        assert_eq!(first.len(), 1, "{target}: {lines:?}");
        assert_eq!(second.len(), 1, "{target}: {lines:?}");
        assert_eq!(first[0]["trace_id"], TRACE, "{target}");
        assert_eq!(second[0]["trace_id"], fresh.as_str(), "{target}");
    }
}

/// Spans received by the stand-in collector.
type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on 127.0.0.1: decodes each `ExportTraceServiceRequest` (protobuf).
async fn otlp_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans: Received = Arc::default();
    let sink = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sink = sink.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let ctype = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap_or("").to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(path, "/v1/traces");
                        assert_eq!(ctype.as_deref(), Some("application/x-protobuf"));
                        let export = ExportTraceServiceRequest::decode(body).expect("protobuf");
                        for rs in export.resource_spans {
                            for ss in rs.scope_spans {
                                sink.lock().unwrap().extend(ss.spans);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (format!("http://{addr}"), spans)
}

/// `pennyworth serve` with `env`, its stderr in `dir/serve.log`; returns it, its address and
/// the admin key.
fn serve(
    config: &Path,
    dir: &Path,
    env: &[(&str, &str)],
) -> (common::server::Server, String, String) {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut cmd = Command::new(CLI);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("PENNYWORTH_LOG", "info")
        .env("PENNYWORTH_LOG_FORMAT", "json")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child: Child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let server = common::server::Server(child);
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "serve exited before listening");
        if let Some(addr) = line.trim().strip_prefix("pennyworth listening on http://") {
            let key = common::server::admin_key_file(&dir.join("data")).expect("admin key");
            return (server, addr.to_string(), key);
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Any::StringValue(s) => s.clone(),
            Any::IntValue(i) => i.to_string(),
            Any::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn an_otlp_receiver_gets_the_spans_of_a_serve_request() {
    let (endpoint, spans) = otlp_receiver().await;
    let up = upstream::OpenAiUpstream::start().await;
    let config = common::copy_default_config();
    let models = std::fs::read_to_string(config.path().join("models.yaml")).unwrap();
    std::fs::write(
        config.path().join("models.yaml"),
        format!(
            "{models}\n  gpt:\n    provider: openai\n    upstream: upstream-model\n    base_url: {}\n    retry: {{ max_attempts: 1 }}\n    groups: [standard]\n",
            up.base_url()
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, key) = serve(
        config.path(),
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({"model": "echo", "messages": [{"role": "user", "content": PROMPT}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-trace-id"], TRACE);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    // An OpenAI-compatible upstream continues the trace from the model call's span.
    up.script([upstream::UpReply::Json(
        200,
        json!({"id": "c1", "object": "chat.completion", "created": 0, "model": "upstream-model",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
        vec![],
    )]);
    let other_parent = "1111111111111111";
    let r = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-{other_parent}-01"))
        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": PROMPT}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let waited = Instant::now();
    let spans = loop {
        let got = spans.lock().unwrap().clone();
        let root_of = |p: &str| {
            got.iter()
                .any(|s| s.parent_span_id == hex::decode(p).unwrap())
        };
        if root_of(PARENT) && root_of(other_parent) {
            break got;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no root span; got {:?}",
            got.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let trace = hex::decode(TRACE).unwrap();
    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let names: HashMap<&str, &Span> = ours.iter().map(|s| (s.name.as_str(), *s)).collect();
    let gpt = names["chat upstream-model"];
    assert_eq!(attr(gpt, "server.address").as_deref(), Some("127.0.0.1"));
    let sent = up.recorded();
    assert_eq!(
        sent[0].headers["traceparent"],
        format!("00-{TRACE}-{}-01", hex::encode(&gpt.span_id)).as_str()
    );
    // The echo call's spans: those whose root hangs under PARENT.
    let under_parent = |s: &Span| {
        let mut id = s.span_id.clone();
        while let Some(p) = ours.iter().find(|x| x.span_id == id) {
            if p.parent_span_id == hex::decode(PARENT).unwrap() {
                return true;
            }
            id = p.parent_span_id.clone();
        }
        false
    };
    let ours: Vec<&Span> = ours.iter().copied().filter(|s| under_parent(s)).collect();
    let by_name: HashMap<&str, &Span> = ours.iter().map(|s| (s.name.as_str(), *s)).collect();
    let root = by_name["POST chat"];
    assert_eq!(root.parent_span_id, hex::decode(PARENT).unwrap());
    assert_eq!(root.kind, 2, "server");
    assert_eq!(
        attr(root, "request_id").as_deref(),
        Some(request_id.as_str())
    );
    assert_eq!(
        attr(root, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(root, "enduser.id").as_deref(), Some("admin"));
    for stage in ["route", "authenticate", "authorize", "limits", "handler"] {
        let s = by_name
            .get(stage)
            .unwrap_or_else(|| panic!("no `{stage}` span in {:?}", by_name.keys()));
        assert_eq!(s.parent_span_id, root.span_id, "{stage}");
    }
    let authorize = by_name["authorize"];
    assert_eq!(attr(authorize, "cedar.allowed").as_deref(), Some("true"));
    assert!(attr(authorize, "cedar.policies").is_some_and(|p| !p.is_empty()));
    let model = by_name["chat echo"];
    assert_eq!(model.parent_span_id, by_name["handler"].span_id);
    assert_eq!(model.kind, 3, "client");
    assert_eq!(attr(model, "pennyworth.model").as_deref(), Some("echo"));
    assert!(attr(model, "gen_ai.usage.input_tokens").is_some());
    assert!(attr(model, "ttfb_ms").is_some());
    // Nothing of the prompt or the key in any attribute.
    let secret = &key[key.len() - 12..];
    for s in &ours {
        for kv in &s.attributes {
            let v = format!("{:?}", kv.value);
            assert!(
                !v.contains(PROMPT) && !v.contains(secret),
                "{}: {v}",
                kv.key
            );
        }
    }
    // The log lines of the request carry the trace id.
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    for target in [
        "pennyworth::access",
        "pennyworth::audit",
        "pennyworth::usage",
    ] {
        let line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == target && v["fields"]["request_id"] == request_id.as_str())
            .unwrap_or_else(|| panic!("no {target} line in {log}"));
        assert_eq!(line["fields"]["trace_id"], TRACE, "{target}");
    }
}

#[tokio::test]
async fn an_unreachable_collector_neither_fails_nor_slows_requests() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, key) = serve(
        &common::repo_root(),
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
        ],
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    for _ in 0..50 {
        let r = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-trace-id"].len(), 32);
    }
    // 50 calls of a debug build on a shared machine: seconds at worst, not export timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The operator hears of it, once.
    let said = || {
        std::fs::read_to_string(dir.path().join("serve.log"))
            .unwrap_or_default()
            .matches("cannot send traces to the OTLP endpoint")
            .count()
    };
    let waited = Instant::now();
    while said() == 0 && waited.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(said(), 1);
}

/// A stand-in X-Ray daemon: a UDP socket on 127.0.0.1 that collects segment documents.
fn xray_daemon() -> (std::net::UdpSocket, String) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    (socket, addr)
}

/// The documents received so far: each datagram is the daemon header line and one document.
fn documents(socket: &std::net::UdpSocket, into: &mut Vec<Value>) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        let text = std::str::from_utf8(&buf[..n]).expect("UTF-8 datagram");
        let (header, doc) = text.split_once('\n').expect("header line");
        let header: Value = serde_json::from_str(header).expect("header is JSON");
        assert_eq!(header, json!({"format": "json", "version": 1}));
        into.push(serde_json::from_str(doc).expect("document is JSON"));
    }
}

/// Every subsegment of `docs`, a nested one with its container's id as `parent_id`.
fn flatten(docs: &[Value]) -> Vec<Value> {
    fn walk(d: &Value, parent: Option<&Value>, out: &mut Vec<Value>) {
        for s in d["subsegments"].as_array().into_iter().flatten() {
            walk(s, Some(d), out);
        }
        let mut d = d.clone();
        if let Some(p) = parent {
            assert!(d.get("parent_id").is_none_or(|id| *id == p["id"]), "{d}");
            d["parent_id"] = p["id"].clone();
        }
        if let Some(o) = d.as_object_mut() {
            o.remove("subsegments");
        }
        out.push(d);
    }
    let mut out = Vec::new();
    for d in docs {
        walk(d, None, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xray_daemon_gets_the_subsegments_of_a_chat_call_through_the_lambda_binary() {
    let (daemon, daemon_addr) = xray_daemon();
    let api = runtime_api::RuntimeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CLI)
        .args(["init", "--json", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("PENNYWORTH_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut child =
        runtime_api::bootstrap_command(BOOTSTRAP, &api, &common::repo_root(), dir.path())
            .env("AWS_XRAY_DAEMON_ADDRESS", &daemon_addr)
            .spawn()
            .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);

    let body = json!({"model": "echo", "messages": [{"role": "user", "content": PROMPT}]});
    let event = |key: &str| {
        use base64::Engine as _;
        std::fs::read_to_string(
            common::repo_root().join("tests/fixtures/lambda/http_v2_chat_base64.json"),
        )
        .unwrap()
        .replace("{{key}}", key)
        .replace(
            "{{body_base64}}",
            &base64::engine::general_purpose::STANDARD.encode(body.to_string()),
        )
    };
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let root = format!("1-{epoch:08x}-a1b2c3d4e5f60718293a4b5c");
    let function_segment = "53995c3f42cd8ad8";
    let header = format!("Root={root};Parent={function_segment};Sampled=1");
    let log = || std::fs::read_to_string(dir.path().join("function.log")).unwrap_or_default();
    let a = api
        .invoke_traced(event(&key), &header, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", log()));
    assert_eq!(a.status, 200, "{}", a.text());
    let trace_hex = format!("{epoch:08x}a1b2c3d4e5f60718293a4b5c");
    assert_eq!(a.header("x-trace-id"), Some(trace_hex.as_str()));
    let request_id = a.header("x-request-id").unwrap().to_string();

    let mut docs = Vec::new();
    let waited = Instant::now();
    while !docs
        .iter()
        .any(|d: &Value| d["parent_id"] == function_segment)
    {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "got {docs:?}; log:\n{}",
            log()
        );
        documents(&daemon, &mut docs);
    }
    // A moment for any span that ends after the request's.
    std::thread::sleep(Duration::from_millis(200));
    documents(&daemon, &mut docs);
    // The request's subsegments arrive nested in one document.
    assert_eq!(docs.len(), 1, "{docs:#?}");
    for d in &docs {
        assert_eq!(d["trace_id"], root.as_str(), "{d}");
        assert_eq!(d["type"], "subsegment", "{d}");
    }
    let docs = flatten(&docs);
    for d in &docs {
        let id = d["id"].as_str().unwrap();
        assert!(
            id.len() == 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{d}"
        );
        let (start, end) = (
            d["start_time"].as_f64().unwrap(),
            d["end_time"].as_f64().unwrap(),
        );
        assert!(start <= end && start > epoch as f64 - 5.0, "{d}");
        assert!(d["parent_id"].is_string(), "{d}");
        assert!(!d.to_string().contains(PROMPT), "{d}");
        assert!(!d.to_string().contains(&key[key.len() - 12..]), "{d}");
    }
    let named = |name: &str| -> &Value {
        docs.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` subsegment in {docs:#?}"))
    };
    let request = named("POST chat");
    assert_eq!(request["parent_id"], function_segment);
    assert_eq!(request["annotations"]["request_id"], request_id.as_str());
    for stage in ["route", "authenticate", "authorize", "limits", "handler"] {
        assert_eq!(named(stage)["parent_id"], request["id"], "{stage}");
    }
    assert_eq!(named("directory")["parent_id"], named("authenticate")["id"]);
    let model = named("chat echo");
    assert_eq!(model["parent_id"], named("handler")["id"]);
    assert_eq!(model["annotations"]["pennyworth_model"], "echo", "{model}");

    // The function's log lines carry the trace id.
    let text = log();
    for target in [
        "pennyworth::access",
        "pennyworth::audit",
        "pennyworth::usage",
    ] {
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                let fields = if v["fields"].is_object() {
                    &v["fields"]
                } else {
                    v
                };
                v["target"] == target && fields["request_id"] == request_id.as_str()
            })
            .unwrap_or_else(|| panic!("no {target} line in {text}"));
        let fields = if line["fields"].is_object() {
            &line["fields"]
        } else {
            &line
        };
        assert_eq!(fields["trace_id"], trace_hex.as_str(), "{target}");
    }

    // An invocation Lambda did not sample sends nothing.
    let unsampled =
        format!("Root=1-{epoch:08x}-00000000000000000000beef;Parent={function_segment};Sampled=0");
    let a = api
        .invoke_traced(event(&key), &unsampled, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let mut later = Vec::new();
    documents(&daemon, &mut later);
    assert!(
        later
            .iter()
            .all(|d| !d["trace_id"].as_str().unwrap_or("").ends_with("beef")),
        "{later:?}"
    );
}
