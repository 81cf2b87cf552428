//! What tracing costs per request: the same chat call through the whole engine (route, key,
//! Cedar, limits, handler, `echo`, usage record), buffered and streamed, with tracing off and
//! on, under the subscriber `serve` and the Lambda binary install (log lines formatted as
//! JSON and thrown away). On: every span exported, each through its real pipeline, to a
//! receiver on 127.0.0.1: OTLP/HTTP (batch processor, the gateway's hyper client, a receiver
//! that reads and drops each export) and X-Ray (one nested segment document per request in one
//! UDP datagram from the exporter thread, to a socket a thread drains). Every request
//! continues a sampled caller trace; the last line counts what the receivers got.
//! A plain timing harness: `cargo bench --bench tracing`. Rounds alternate so drift hits
//! every mode; the figure is the mean time per request.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pennyworth::Engine;
use pennyworth::telemetry::export::{Exporter, install};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Dispatch;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;

const ROUNDS: u32 = 10;
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The subscriber of the binaries (`traces`, then the log layer), writing nowhere.
fn dispatch(traces: Option<pennyworth::telemetry::export::BoxLayer>) -> Dispatch {
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::sink)
        .with_filter(
            tracing_subscriber::EnvFilter::new("info")
                .and(pennyworth::cli::logging::not_trace_spans()),
        );
    let off = traces
        .is_none()
        .then(pennyworth::cli::logging::not_trace_spans);
    Dispatch::new(
        tracing_subscriber::registry()
            .with(traces)
            .with(logs)
            .with(off),
    )
}

async fn call(engine: &Engine, key: &str, body: &Bytes, xray: bool) {
    let mut req = common::request("POST", "/v1/chat/completions", Some(key), body.clone());
    if xray {
        let p = pennyworth::telemetry::Parent::from_xray(
            "Root=1-6b086095-a1b2c3d4e5f60718293a4b5c;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("header");
        req.extensions_mut().insert(p);
    } else {
        req.headers_mut()
            .insert("traceparent", PARENT.parse().expect("header"));
    }
    let resp = engine.handle(req).await;
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.expect("body");
    assert!(!bytes.is_empty());
}

/// CPU time of this thread, or of the whole process, so far.
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(clock, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall time, this thread's CPU time and the process's CPU time of `n` calls.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    thread: Duration,
    process: Duration,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, o: Self) {
        self.wall += o.wall;
        self.thread += o.thread;
        self.process += o.process;
    }
}

fn time(
    rt: &tokio::runtime::Runtime,
    d: &Dispatch,
    engine: &Engine,
    key: &str,
    body: &Bytes,
    xray: bool,
    n: u32,
) -> Spent {
    tracing::dispatcher::with_default(d, || {
        rt.block_on(async {
            let (t, th, pr) = (
                Instant::now(),
                cpu(libc::CLOCK_THREAD_CPUTIME_ID),
                cpu(libc::CLOCK_PROCESS_CPUTIME_ID),
            );
            for _ in 0..n {
                call(engine, key, body, xray).await;
            }
            Spent {
                wall: t.elapsed(),
                thread: cpu(libc::CLOCK_THREAD_CPUTIME_ID) - th,
                process: cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - pr,
            }
        })
    })
}

/// Exports and bytes the OTLP receiver got; datagrams the stand-in daemon got.
static POSTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static DATAGRAMS: AtomicU64 = AtomicU64::new(0);

/// An OTLP/HTTP receiver that reads each export and answers 200.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    if let Ok(b) = req.into_body().collect().await {
                        POSTS.fetch_add(1, Ordering::Relaxed);
                        BYTES.fetch_add(b.to_bytes().len() as u64, Ordering::Relaxed);
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    format!("http://{addr}")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The exporter's requests and the receiver run on their own runtime, as `serve`'s run on
    // its worker threads.
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = io.block_on(receiver());
    // SAFETY: set before any other thread of this process reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    }
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let sink_addr = sink.local_addr().expect("addr");
    // The stand-in daemon reads every datagram (a full socket buffer would make sends fail
    // early, which is cheaper than sending).
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while sink.recv(&mut buf).is_ok() {
            DATAGRAMS.fetch_add(1, Ordering::Relaxed);
        }
    });

    let (engine, dir) = rt.block_on(common::engine(&common::repo_root()));
    let key = dir.key("admin").to_string();
    // Off first: installing a pipeline turns the gateway's tracing on for the process.
    let off = dispatch(None);
    // What tracing off leaves on the request path: the root's trace id (a fresh one) and the
    // dozen disabled spans of a chat call.
    let m = 200_000u32;
    let path = || {
        let t = Instant::now();
        for _ in 0..m {
            let r = pennyworth::telemetry::request("POST", "/v1/chat/completions", "req_1", None);
            std::hint::black_box(&r.trace_id);
            for _ in 0..12 {
                let s = tracing::info_span!(target: "pennyworth::trace", "stage", a = 1);
                let _in = s.enter();
                std::hint::black_box(&s);
            }
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(m)
    };
    let with_logs = tracing::dispatcher::with_default(&off, path);
    let trace_id_only = {
        let t = Instant::now();
        for _ in 0..m {
            let r = pennyworth::telemetry::request("POST", "/v1/chat/completions", "req_1", None);
            std::hint::black_box(&r.trace_id);
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(m)
    };
    println!(
        "tracing off, per request: trace id and 12 disabled spans {with_logs:.0} ns under the log subscriber; the trace id alone {trace_id_only:.0} ns"
    );
    let (otlp_layer, _otlp) = install(&Exporter::Otlp, Some(io.handle().clone())).expect("otlp");
    let otlp = dispatch(Some(otlp_layer));
    let (xray_layer, _xray) = install(&Exporter::Xray(sink_addr), None).expect("xray");
    let xray = dispatch(Some(xray_layer));

    println!(
        "per request through Engine::handle, {ROUNDS} alternating rounds: wall time; CPU time of \
         the request's thread; CPU time of the process (exporter threads and receivers included)"
    );
    println!(
        "{:<9} {:<8} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "mode", "clock", "off µs", "otlp µs", "xray µs", "otlp +µs", "xray +µs"
    );
    let n = 4_000u32;
    for stream in [false, true] {
        let body = Bytes::from(
            serde_json::json!({"model": "echo", "stream": stream,
                "messages": [{"role": "user", "content": "Say something."}]})
            .to_string(),
        );
        for (d, x) in [(&off, false), (&otlp, false), (&xray, true)] {
            time(&rt, d, &engine, &key, &body, x, 200);
        }
        let mut t = [Spent::default(); 3];
        for _ in 0..ROUNDS {
            for (i, (d, x)) in [(&off, false), (&otlp, false), (&xray, true)]
                .into_iter()
                .enumerate()
            {
                t[i] += time(&rt, d, &engine, &key, &body, x, n / ROUNDS);
            }
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
        for (clock, pick) in [
            ("wall", (|s: &Spent| s.wall) as fn(&Spent) -> Duration),
            ("thread", |s: &Spent| s.thread),
            ("process", |s: &Spent| s.process),
        ] {
            let (a, b, c) = (us(pick(&t[0])), us(pick(&t[1])), us(pick(&t[2])));
            println!(
                "{:<9} {clock:<8} {a:>9.1} {b:>9.1} {c:>9.1} {:>10.1} {:>10.1}",
                if stream { "streamed" } else { "buffered" },
                b - a,
                c - a
            );
        }
    }
    // Let the batch processor's last export and the last datagrams arrive.
    std::thread::sleep(Duration::from_secs(6));
    println!(
        "received: {} OTLP exports ({} bytes), {} X-Ray datagrams",
        POSTS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        DATAGRAMS.load(Ordering::Relaxed)
    );
}
