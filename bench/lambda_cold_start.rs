//! Cold start of the Lambda binary: process start to the first invocation answered.
//!
//! `cargo run --example lambda_cold_start -- --bin target/release/bootstrap [--runs 30]`
//!
//! Each run starts a fresh Runtime API stand-in on 127.0.0.1 (`tests/support/lambda_runtime.rs`)
//! with one recorded API Gateway event already queued, reads the clock, spawns `bootstrap`
//! (clean environment, the repository's config, an embedded store initialized once before the
//! runs) and stops the clock when the last byte of the streamed answer has arrived. The time
//! therefore includes fork/exec, the dynamic loader, reading and compiling routes.yaml,
//! models.yaml and the Cedar schema and policies, opening the store, building the provider
//! clients, the first poll of `/runtime/invocation/next`, answering and streaming the response.
//! It also reports when the first poll arrived (initialization over). Two events alternate:
//! `GET /v1/health` (REST API, public) and a chat with `echo` (HTTP API, API key, so the key
//! lookup and Cedar authorization are in it). One untimed warm-up run comes first.
//!
//! With `--xray`, every run is repeated with X-Ray tracing on (the runtime's
//! `AWS_XRAY_DAEMON_ADDRESS` pointing at a UDP socket this driver drains, and a sampled trace
//! header on the invocation, so every span of the first request is sent), runs of the two
//! alternating, and the second set is printed under `xray`.
//!
//! Prints one JSON object. Everything stays on loopback.

#[path = "../tests/support/lambda_runtime.rs"]
mod runtime_api;

use base64::Engine as _;
use pennyworth::directory::local::LocalDirectory;
use runtime_api::{Outcome, RuntimeApi, bootstrap_command};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn event(root: &Path, name: &str, key: &str) -> String {
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"cold start"}]}"#;
    std::fs::read_to_string(root.join("tests/fixtures/lambda").join(name))
        .expect("read event")
        .replace("{{key}}", key)
        .replace(
            "{{body_base64}}",
            &base64::engine::general_purpose::STANDARD.encode(body),
        )
}

/// One cold start: ms to the first poll, to the first byte of the answer, to its last byte.
async fn run(
    bin: &str,
    root: &Path,
    dir: &Path,
    payload: &str,
    xray: Option<&str>,
) -> (f64, f64, f64) {
    let api = RuntimeApi::start().await;
    let answer = match xray {
        None => api.submit(payload),
        Some(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            api.submit_traced(
                payload,
                Some(format!(
                    "Root=1-{:08x}-{:024x};Parent=53995c3f42cd8ad8;Sampled=1",
                    now.as_secs(),
                    now.as_nanos() % (1u128 << 96)
                )),
            )
        }
    };
    let mut cmd = bootstrap_command(bin, &api, root, dir);
    cmd.env("PENNYWORTH_LOG", "warn");
    if let Some(addr) = xray {
        cmd.env("AWS_XRAY_DAEMON_ADDRESS", addr);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn bootstrap");
    let outcome = tokio::time::timeout(Duration::from_secs(30), answer).await;
    let _ = child.kill();
    let _ = child.wait();
    let a = match outcome {
        Ok(Ok(Outcome::Answer(a))) => a,
        other => panic!(
            "no answer: {other:?}\n{}",
            std::fs::read_to_string(dir.join("function.log")).unwrap_or_default()
        ),
    };
    assert_eq!(a.status, 200, "{}", a.text());
    let poll = api.first_poll().expect("the function polled");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(poll - start),
        ms(a.started - start),
        ms(a.finished - start),
    )
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({
        "min_ms": round(v[0]),
        "median_ms": round(median),
        "p90_ms": round(v[(v.len() * 9 / 10).min(v.len() - 1)]),
        "max_ms": round(v[v.len() - 1]),
    })
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = arg("--bin").unwrap_or_else(|| "target/release/bootstrap".to_string());
    // The child runs in a temp dir, so a relative path must be made absolute first.
    let bin = std::fs::canonicalize(&bin)
        .unwrap_or_else(|e| panic!("`{bin}`: {e}"))
        .display()
        .to_string();
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalDirectory::open(&dir.path().join("data")).expect("open store");
    let (_, _, key) = pennyworth::auth::initialize(&store, "admin")
        .await
        .expect("initialize the store");
    drop(store);
    let health = event(&root, "rest_v1_health.json", "");
    let chat = event(&root, "http_v2_chat_base64.json", key.expose());

    // The stand-in X-Ray daemon of `--xray`: read everything, so sends never fail early.
    let daemon = std::env::args().any(|a| a == "--xray").then(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let addr = socket.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while socket.recv(&mut buf).is_ok() {}
        });
        addr
    });
    let modes: Vec<Option<&str>> = match &daemon {
        Some(a) => vec![None, Some(a.as_str())],
        None => vec![None],
    };
    run(&bin, &root, dir.path(), &health, None).await;
    let mut results: Vec<[Vec<f64>; 5]> = modes.iter().map(|_| Default::default()).collect();
    for _ in 0..runs {
        for (mode, r) in modes.iter().zip(results.iter_mut()) {
            let (p, f, h) = run(&bin, &root, dir.path(), &health, *mode).await;
            r[0].push(p);
            r[1].push(f);
            r[2].push(h);
            let (p, f, c) = run(&bin, &root, dir.path(), &chat, *mode).await;
            r[0].push(p);
            r[3].push(f);
            r[4].push(c);
        }
    }
    let report = |r: [Vec<f64>; 5]| {
        let [poll, health_first, health_ms, chat_first, chat_ms] = r;
        json!({
            "to_first_poll": summary(poll),
            "to_health_response_started": summary(health_first),
            "to_health_answered": summary(health_ms),
            "to_echo_chat_response_started": summary(chat_first),
            "to_echo_chat_answered": summary(chat_ms),
        })
    };
    let mut results = results.into_iter();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let mut out = report(results.next().unwrap_or_default());
    out["binary"] = json!(bin);
    out["binary_bytes"] = json!(size);
    out["runs_per_event"] = json!(runs);
    if let Some(xray) = results.next() {
        out["xray"] = report(xray);
    }
    println!("{out}");
}
