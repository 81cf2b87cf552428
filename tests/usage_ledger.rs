//! The usage ledger: both stores (SQLite; DynamoDB on moto's server) against one behaviour
//! suite, exact costs of every kind of call through the engine, durability across a restart,
//! and `GET /v1/usage` for oneself, for an admin, and denied.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;
#[path = "support/ledger.rs"]
mod ledger;

use bedrock_server::{Item, Reply, event};
use harness::Harness;
use http_body_util::BodyExt;
use pennyworth::usage::dynamo::{DynamoSettings, DynamoUsageStore};
use pennyworth::usage::period;
use pennyworth::usage::sqlite::SqliteUsageStore;
use pennyworth::usage::store::{Query, UsageStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn sqlite() -> Arc<dyn UsageStore> {
    Arc::new(SqliteUsageStore::in_memory().expect("ledger"))
}

/// moto's DynamoDB applies an `UpdateItem` as read, modify, write without a lock, so its
/// threaded server loses concurrent `ADD`s that DynamoDB applies atomically. The ledger tests
/// use their own moto, single-threaded (HTTP/1.0, one request at a time), which serializes
/// updates the way DynamoDB does; the Cognito tests keep the shared threaded one.
fn serial_moto() -> Option<String> {
    static ENDPOINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            let python = common::repo_root().join(".venv/bin/python");
            common::moto::endpoint()?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let app = "import sys\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False, request_handler=MotoRequestHandler)\n";
            // The watchdog shell stops moto when this process's end of the pipe closes.
            let script = format!(
                "\"$0\" -c \"$1\" {port} >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null"
            );
            let child = std::process::Command::new("sh")
                .args(["-c", &script])
                .arg(&python)
                .arg(app)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn moto");
            // Kept open (leaked) for the life of the test binary: its stdin is the watchdog.
            std::mem::forget(child);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "moto did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(format!("http://127.0.0.1:{port}"))
        })
        .clone()
}

/// A fresh table on moto, shaped like the template's, or `None` without moto.
async fn dynamo() -> Option<Arc<dyn UsageStore>> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let endpoint = serial_moto()?;
    let table = format!("usage-{}-{}", std::process::id(), rand_suffix());
    let store = DynamoUsageStore::new(DynamoSettings {
        table: table.clone(),
        region: common::moto::REGION.into(),
        endpoint: Some(endpoint),
        static_credentials: Some((
            common::moto::ACCESS_KEY.into(),
            common::moto::SECRET_KEY.into(),
        )),
    })
    .await;
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    store
        .client()
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    Some(Arc::new(store))
}

fn rand_suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random");
    hex::encode(b)
}

#[tokio::test]
async fn sqlite_store_behaviour() {
    ledger::behaviour(sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_totals_exact_under_20_concurrent_writers() {
    ledger::concurrent(sqlite(), 200).await;
}

#[tokio::test]
async fn dynamodb_store_behaviour() {
    let Some(store) = dynamo().await else { return };
    ledger::behaviour(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_totals_exact_under_20_concurrent_writers() {
    let Some(store) = dynamo().await else { return };
    ledger::concurrent(store, 6).await;
}

#[tokio::test]
async fn sqlite_ledger_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let now = pennyworth::directory::now();
    {
        let store = SqliteUsageStore::open(tmp.path()).expect("open");
        store.record(ledger::entry("alice", "alice.k", "m", now, 1_234, 7));
        store.record(ledger::entry("alice", "alice.k", "m", now, 1, 7));
        store.flush().await.expect("flush");
    }
    let store = SqliteUsageStore::open(tmp.path()).expect("reopen");
    // The month's spend is reloaded into memory, and the aggregates are on disk.
    let s = store
        .spend("alice", Some("alice.k"), now)
        .await
        .expect("spend");
    assert_eq!(
        (s.user_day, s.user_month, s.key_month),
        (1_235, 1_235, 1_235)
    );
    let rows = store
        .query(&Query {
            from: period::day(now),
            to: period::day(now),
            user: Some("alice".into()),
        })
        .await
        .expect("query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].totals.requests, 2);
    assert_eq!(rows[0].totals.input_tokens, 14);
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

async fn harness_with(store: Arc<dyn UsageStore>) -> Harness {
    Harness::start_full("", Some(store), None).await
}

async fn get(h: &Harness, who: &str, query: &str) -> (u16, Value) {
    common::call(
        &h.engine,
        "GET",
        &format!("/v1/usage{query}"),
        h.dir.key(who),
        Value::Null,
    )
    .await
}

/// Every kind of call lands in the ledger at exactly the cost its usage record states, and
/// the exact cost is what the prices say.
#[tokio::test]
async fn every_call_costs_exactly_what_its_record_says() {
    let logs = common::logs::capture();
    let store = sqlite();
    let h = harness_with(store.clone()).await;

    // Buffered, with cache reads and writes: Bedrock's inputTokens leave the cache out.
    h.server.script(
        "*",
        [Reply::Converse(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 4700,
                      "cacheReadInputTokens": 3000, "cacheWriteInputTokens": 500},
        }))],
    );
    let (status, _, v) = h
        .chat_json(json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    // 1000 × 3 + 3000 × 0.30 + 500 × 3.75 + 200 × 15 USD per million tokens.
    store.flush().await.expect("flush");
    let (status, report) = get(&h, "user", "?group_by=model").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["total"]["cost_usd"], "0.008775");
    assert_eq!(report["total"]["cache_read_tokens"], 3000);
    assert_eq!(report["total"]["cache_write_tokens"], 500);
    assert_eq!(report["total"]["input_tokens"], 4500);

    // Streamed: 12 input tokens and one output token per piece.
    h.server
        .script("*", [Reply::stream_text(&["a", "b", "c", "d"])]);
    let (status, _, _) = h
        .chat(json!({"model": "claude", "messages": user("hi"), "stream": true}))
        .await;
    assert_eq!(status, 200);

    // An embedding: 3 tokens at 0.02 USD per million is 60 nano-dollars.
    let (status, _, v) = h
        .post_json(
            "/v1/embeddings",
            json!({"model": "titan", "input": ["hello world", "bye"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    // A stream the client abandons: partial, estimated, still accounted for.
    let mut items = vec![event("messageStart", json!({"role": "assistant"}))];
    for _ in 0..20 {
        items.push(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "word "}}),
        ));
        items.push(Item::Pause(Duration::from_millis(50)));
    }
    h.server.script("*", [Reply::Stream(items)]);
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(h.dir.key("user")),
        json!({"model": "claude", "messages": user("forty"), "stream": true}).to_string(),
    );
    let mut body = h.engine.handle(req).await.into_body();
    let frame = body.frame().await.expect("a frame").expect("no error");
    assert!(frame.is_data());
    drop(body);
    store.flush().await.expect("flush");

    let records = logs.records("pennyworth::usage");
    assert_eq!(records.len(), 4, "{records:?}");
    assert_eq!(records[3]["partial"], true);
    let (status, report) = get(&h, "user", "?group_by=model").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["total"]["requests"], 4);
    // The ledger's sum is the sum of the records' exact decimal costs.
    let mut expected = rust_decimal::Decimal::ZERO;
    for r in &records {
        expected += r["cost_usd"]
            .as_str()
            .and_then(|c| c.parse::<rust_decimal::Decimal>().ok())
            .expect("cost");
    }
    assert_eq!(
        report["total"]["cost_usd"],
        expected.normalize().to_string()
    );
    let titan = report["data"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["model"] == "titan")
        .expect("titan row")
        .clone();
    assert_eq!(titan["cost_usd"], "0.00000006");
    assert_eq!(titan["input_tokens"], 3);
    // 0.008775 buffered + (12 × 3 + 4 × 15) streamed = 0.008871 before the abandoned one.
    let claude = report["data"][0].clone();
    assert_eq!(claude["model"], "claude");
    assert_eq!(claude["requests"], 3);
}

#[tokio::test]
async fn usage_api_self_admin_and_denied() {
    let store = sqlite();
    let h = harness_with(store.clone()).await;
    let now = pennyworth::directory::now();
    let user_key = h.dir.key_ids["user"].clone();
    let dev_key = h.dir.key_ids["dev"].clone();
    store.record(ledger::entry(
        "user", &user_key, "claude", now, 2_000_000, 10,
    ));
    store.record(ledger::entry("user", "", "nova", now, 1_000_000, 10));
    store.record(ledger::entry(
        "dev",
        &dev_key,
        "claude",
        now,
        5_000_000_000,
        10,
    ));
    store.flush().await.expect("flush");

    // Oneself, by default this month, by day.
    let (status, v) = get(&h, "user", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], "user");
    assert_eq!(v["group_by"], "day");
    assert_eq!(v["to"], period::day(now));
    assert_eq!(v["from"], period::month_start(now));
    assert_eq!(v["total"]["cost_usd"], "0.003");
    assert_eq!(v["data"][0]["day"], period::day(now));
    let (_, v) = get(&h, "user", "?group_by=key").await;
    assert_eq!(v["data"][0]["key"], user_key.as_str());
    assert_eq!(v["data"][1]["key"], Value::Null);

    // Someone else's, or everyone's: denied to a user.
    let (status, v) = get(&h, "user", "?user=dev").await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = get(&h, "user", "?all=true").await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("usage:read_all"),
        "{v}"
    );

    // An admin reads a user's and everyone's.
    let (status, v) = get(&h, "admin", "?user=dev&group_by=model").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"]["cost_usd"], "5");
    let (status, v) = get(&h, "admin", "?all=true&group_by=user").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], Value::Null);
    assert_eq!(v["data"][0]["user"], "dev");
    assert_eq!(v["data"][1]["user"], "user");
    assert_eq!(v["total"]["cost_usd"], "5.003");

    // Bad parameters are 400 naming the parameter.
    for (q, param) in [
        ("?from=2026-02-30", "from"),
        ("?group_by=week", "group_by"),
        ("?from=2026-03-02&to=2026-03-01", "from"),
        ("?from=2020-01-01&to=2026-01-01", "from"),
        ("?all=maybe", "all"),
    ] {
        let (status, v) = get(&h, "admin", q).await;
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["error"]["param"], param, "{q}");
    }
    let (status, v) = get(&h, "admin", "?all=true&user=dev").await;
    assert_eq!(status, 400, "{v}");
}
