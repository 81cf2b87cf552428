//! What usage accounting and limits add to a model call on `pennyworth serve` (SQLite
//! ledger). A plain timing harness: `cargo bench --bench ledger`.
//!
//! - Engine: `POST /v1/chat/completions` on the built-in `echo` model through
//!   `Engine::handle`, without a ledger and with the SQLite ledger and a `limits.yaml` that
//!   sets every kind of limit (so the spend read, the budget checks, the rate window and the
//!   record all run), interleaved rounds, median per request.
//! - Ledger alone: spend + check + record per call.
//! - Writer: how fast the writer thread drains the queue into the file (synchronous=FULL).

use bytes::Bytes;
use pennyworth::auth::issue_key;
use pennyworth::directory::local::LocalDirectory;
use pennyworth::directory::{Directory, NewUser};
use pennyworth::usage::UsageRecord;
use pennyworth::usage::sqlite::SqliteUsageStore;
use pennyworth::usage::store::UsageStore;
use pennyworth::{CompiledConfig, Engine};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMITS: &str = "groups:\n  users: { usd_per_day: \"1000\", usd_per_month: \"10000\", requests_per_minute: 100000000, tokens_per_minute: 100000000000 }\n\
keys:\n  bench.any: { usd_per_month: \"5\" }\n";

fn config(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["routes.yaml", "models.yaml"] {
        std::fs::copy(root.join(f), dir.join(f)).expect("copy");
    }
    std::fs::create_dir_all(dir.join("policies")).expect("policies");
    for e in std::fs::read_dir(root.join("policies")).expect("read") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dir.join("policies").join(e.file_name())).expect("copy");
    }
    std::fs::write(dir.join("limits.yaml"), LIMITS).expect("limits");
}

async fn engine(dir: &Path, ledger: Option<Arc<dyn UsageStore>>) -> (Engine, String) {
    let directory = Arc::new(LocalDirectory::in_memory().expect("store"));
    directory
        .create_user(NewUser {
            username: "bench".into(),
            email: None,
            groups: vec!["users".into()],
        })
        .await
        .expect("user");
    let (_, key) = issue_key(directory.as_ref(), "bench", "bench", None)
        .await
        .expect("key");
    let config = CompiledConfig::load(dir).expect("config");
    let mut e = Engine::new(config, directory);
    if let Some(l) = ledger {
        e = e.usage_store(l);
    }
    (e, key.expose().to_string())
}

async fn round(engine: &Engine, key: &str, n: u32) -> Duration {
    let body =
        Bytes::from_static(br#"{"model":"echo","messages":[{"role":"user","content":"hello"}]}"#);
    let started = Instant::now();
    for _ in 0..n {
        let req = http::Request::builder()
            .method("POST")
            .uri("/v1/chat/completions")
            .header("authorization", format!("Bearer {key}"))
            .body(body.clone())
            .expect("request");
        let resp = engine.handle(req).await;
        assert_eq!(resp.status(), 200);
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    }
    started.elapsed()
}

fn us(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Usage lines go nowhere: the bench measures the ledger, not the log.
    let cfg = tempfile::tempdir().expect("tmp");
    config(cfg.path());
    let data = tempfile::tempdir().expect("tmp");
    let store: Arc<dyn UsageStore> = Arc::new(SqliteUsageStore::open(data.path()).expect("ledger"));
    let (plain, plain_key) = engine(cfg.path(), None).await;
    let (metered, metered_key) = engine(cfg.path(), Some(store.clone())).await;

    let n = 5_000;
    round(&plain, &plain_key, n).await;
    round(&metered, &metered_key, n).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        a.push(us(round(&plain, &plain_key, n).await, n));
        b.push(us(round(&metered, &metered_key, n).await, n));
    }
    let (a, b) = (median(a), median(b));
    println!("engine, echo chat, no ledger:          {a:.2} µs/request");
    println!("engine, echo chat, SQLite ledger+limits: {b:.2} µs/request");
    println!(
        "added by accounting and limits:        {:.2} µs/request",
        b - a
    );
    store.flush().await.expect("flush");

    // The ledger calls alone.
    let ledger = metered.ledger().clone();
    let identity = pennyworth::auth::Identity {
        user_id: "id".into(),
        username: "bench2".into(),
        groups: vec!["users".into()],
        method: pennyworth::config::routes::AuthMethod::ApiKey,
        key_id: Some("bench.any".into()),
        key_expires_at: None,
    };
    let usage = pennyworth::providers::TokenUsage {
        prompt: 1200,
        completion: 300,
        cache_read: 1000,
        cache_write: 0,
    };
    let m = 100_000;
    let started = Instant::now();
    for _ in 0..m {
        let now = pennyworth::directory::now();
        let spend = ledger.spend(&identity, now).await;
        ledger
            .check(&identity, spend, now)
            .await
            .expect("within limits");
        ledger.record(&UsageRecord {
            request_id: "req",
            trace_id: "",
            user: &identity.username,
            groups: &identity.groups,
            key_id: identity.key_id.as_deref(),
            model: "claude",
            session: None,
            stream: false,
            usage,
            cost: rust_decimal::Decimal::new(1, 9),
            partial: false,
            estimated: false,
        });
    }
    let per_call = us(started.elapsed(), m);
    let started = Instant::now();
    store.flush().await.expect("flush");
    println!("ledger alone (spend + check + record): {per_call:.2} µs/call");
    println!(
        "writer drained the rest in {:.1} ms ({} records total queued)",
        started.elapsed().as_secs_f64() * 1e3,
        m
    );
}
