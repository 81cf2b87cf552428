//! Budgets and rate limits from `limits.yaml`, checked after authorization and before the
//! upstream call: 429 with `Retry-After` and OpenAI's codes in every OpenAI dialect; the
//! caller's spend in the Cedar context (the shipped example policy).

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;
#[path = "support/ledger.rs"]
mod ledger;

use bedrock_server::Reply;
use harness::Harness;
use pennyworth::auth::Identity;
use pennyworth::config::SourceFile;
use pennyworth::config::routes::AuthMethod;
use pennyworth::usage::Ledger;
use pennyworth::usage::limits::Limits;
use pennyworth::usage::period;
use pennyworth::usage::sqlite::SqliteUsageStore;
use pennyworth::usage::store::{Spend, UsageStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn store() -> Arc<dyn UsageStore> {
    Arc::new(SqliteUsageStore::in_memory().expect("ledger"))
}

/// Waits until at least `secs` seconds are left in this minute, so a per-minute test does
/// not straddle two windows.
async fn fresh_minute(secs: i64) {
    let now = pennyworth::directory::now();
    if period::until_next_minute(now) < secs {
        tokio::time::sleep(Duration::from_secs(
            period::until_next_minute(now) as u64 + 1,
        ))
        .await;
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(h: &Harness, who: &str, path: &str, body: Value) -> (u16, http::HeaderMap, Value) {
    let req = common::request("POST", path, Some(h.dir.key(who)), body.to_string());
    let (status, headers, bytes) = common::send(&h.engine, req).await;
    (
        status.as_u16(),
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_429(status: u16, headers: &http::HeaderMap, v: &Value, code: &str, max_wait: i64) {
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    let wait: i64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
}

#[tokio::test]
async fn requests_per_minute_in_every_openai_dialect() {
    let limits = "groups:\n  users: { requests_per_minute: 2 }\n";
    let h = Harness::start_full("", Some(store()), Some(limits)).await;
    h.server.script("*", (0..10).map(|_| Reply::text("ok")));
    fresh_minute(10).await;
    for _ in 0..2 {
        let (status, _, v) = post(&h, "user", "/v1/chat/completions", chat("claude")).await;
        assert_eq!(status, 200, "{v}");
    }
    // The window is the user's, whatever the dialect; refused before any upstream call.
    let upstream = h.server.recorded().len();
    for (path, body) in [
        ("/v1/chat/completions", chat("claude")),
        (
            "/v1/completions",
            json!({"model": "claude", "prompt": "hi"}),
        ),
        ("/v1/embeddings", json!({"model": "titan", "input": "hi"})),
    ] {
        let (status, headers, v) = post(&h, "user", path, body).await;
        assert_429(status, &headers, &v, "rate_limit_exceeded", 60);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("2 requests per minute"),
            "{path}: {v}"
        );
    }
    assert_eq!(h.server.recorded().len(), upstream, "no upstream call");
    // Other users have their own windows.
    let (status, _, v) = post(&h, "dev", "/v1/chat/completions", chat("claude")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn daily_budget_then_insufficient_quota() {
    // One answer of 12 input and 5 output tokens on `claude` costs 0.000111 USD.
    let limits = "users:\n  user: { usd_per_day: \"0.0002\" }\n";
    let store = store();
    let h = Harness::start_full("", Some(store.clone()), Some(limits)).await;
    h.server.script("*", (0..5).map(|_| Reply::text("ok")));
    for _ in 0..2 {
        let (status, _, v) = post(&h, "user", "/v1/chat/completions", chat("claude")).await;
        assert_eq!(status, 200, "{v}");
    }
    // 0.000222 spent: over the budget (a call in flight may cross it by its own cost).
    let upstream = h.server.recorded().len();
    let (status, headers, v) = post(&h, "user", "/v1/chat/completions", chat("claude")).await;
    assert_429(status, &headers, &v, "insufficient_quota", 86_400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("daily budget of 0.0002 USD"),
        "{v}"
    );
    assert_eq!(h.server.recorded().len(), upstream, "no upstream call");
    store.flush().await.expect("flush");
    let s = store
        .spend("user", None, pennyworth::directory::now())
        .await
        .expect("spend");
    assert_eq!(s.user_day, 222_000, "the refused call costs nothing");
    // Others are not affected.
    let (status, _, v) = post(&h, "dev", "/v1/chat/completions", chat("claude")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn tokens_per_minute() {
    let limits = "defaults: { tokens_per_minute: 30 }\n";
    let h = Harness::start_full("", Some(store()), Some(limits)).await;
    h.server.script("*", (0..5).map(|_| Reply::text("ok")));
    fresh_minute(15).await;
    // 17 tokens a call: the second starts under 30, the third does not.
    for _ in 0..2 {
        let (status, _, v) = post(&h, "dev", "/v1/chat/completions", chat("claude")).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, headers, v) = post(&h, "dev", "/v1/chat/completions", chat("claude")).await;
    assert_429(status, &headers, &v, "rate_limit_exceeded", 60);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tokens per minute")
    );
}

#[tokio::test]
async fn monthly_spend_in_the_cedar_context() {
    // The shipped policy `users-monthly-budget` forbids model calls to `users` members who
    // have spent 100 USD this month.
    let store = store();
    let h = Harness::start_full("", Some(store.clone()), None).await;
    h.server.script("*", (0..5).map(|_| Reply::text("ok")));
    let now = pennyworth::directory::now();
    // `echo` is free, so the calls themselves do not move the spend.
    store.record(ledger::entry("user", "", "claude", now, 99_999_999_999, 1));
    let (status, _, v) = post(&h, "user", "/v1/chat/completions", chat("echo")).await;
    assert_eq!(status, 200, "{v}");
    store.record(ledger::entry("user", "", "claude", now, 1, 1));
    let (status, _, v) = post(&h, "user", "/v1/chat/completions", chat("echo")).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`chat`")
    );
    // Developers are not in the policy's group.
    store.record(ledger::entry("dev", "", "claude", now, 500_000_000_000, 1));
    let (status, _, v) = post(&h, "dev", "/v1/chat/completions", chat("claude")).await;
    assert_eq!(status, 200, "{v}");
}

fn identity(user: &str, key: Option<&str>) -> Identity {
    Identity {
        user_id: format!("id-{user}"),
        username: user.into(),
        groups: vec!["users".into()],
        method: AuthMethod::ApiKey,
        key_id: key.map(str::to_string),
        key_expires_at: None,
    }
}

#[tokio::test]
async fn key_limits_apply_on_top_of_the_owner() {
    let file = SourceFile {
        name: "limits.yaml".into(),
        text: "groups:\n  users: { usd_per_month: \"10\" }\n\
               keys:\n  alice.k1: { usd_per_month: \"1\", requests_per_minute: 1 }\n"
            .into(),
    };
    let limits = Limits::compile(Some(&file), &[]).expect("limits");
    let store = store();
    let ledger = Ledger::new(Some(store.clone()), Arc::new(limits));
    let now = pennyworth::directory::now();
    let k1 = identity("alice", Some("alice.k1"));
    let k2 = identity("alice", Some("alice.k2"));
    assert!(ledger.needs_spend(&k1));

    // One request a minute on k1; k2 has no rate limit.
    let at = now - now.rem_euclid(60);
    ledger
        .check(&k1, Spend::default(), at)
        .await
        .expect("first");
    let e = ledger
        .check(&k1, Spend::default(), at + 1)
        .await
        .unwrap_err();
    assert_eq!(e.code, "rate_limit_exceeded");
    ledger
        .check(&k2, Spend::default(), at + 1)
        .await
        .expect("other key");

    // 1 USD on k1 this month: k1 is over its budget, k2 is not, until the owner's 10 USD.
    store.record(ledger::entry(
        "alice",
        "alice.k1",
        "m",
        now,
        1_000_000_000,
        1,
    ));
    let s = ledger.spend(&k1, now).await;
    assert_eq!((s.key_month, s.user_month), (1_000_000_000, 1_000_000_000));
    let e = ledger.check(&k1, s, at + 120).await.unwrap_err();
    assert_eq!(e.code, "insufficient_quota");
    assert!(
        e.message.contains("this API key's monthly budget of 1 USD"),
        "{}",
        e.message
    );
    let s = ledger.spend(&k2, now).await;
    ledger.check(&k2, s, at + 120).await.expect("k2 within");
    store.record(ledger::entry(
        "alice",
        "alice.k2",
        "m",
        now,
        9_000_000_000,
        1,
    ));
    let s = ledger.spend(&k2, now).await;
    let e = ledger.check(&k2, s, at + 120).await.unwrap_err();
    assert!(
        e.message.contains("your monthly budget of 10 USD"),
        "{}",
        e.message
    );
    let wait: i64 = e
        .headers
        .iter()
        .find(|(n, _)| *n == http::header::RETRY_AFTER)
        .and_then(|(_, v)| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    assert_eq!(wait, period::until_next_month(at + 120));
}

/// The examples in the docs compile, and a bad `limits.yaml` fails the config load (and so
/// `pennyworth check`) with its file and line.
#[test]
fn documented_examples_compile_and_errors_name_the_line() {
    let root = common::repo_root();
    for (doc, heading) in [
        ("doc/configuration.md", "## limits.yaml"),
        ("doc/observability.md", "## Budgets and rate limits"),
    ] {
        let text = std::fs::read_to_string(root.join(doc)).expect("doc");
        let after = &text[text.find(heading).expect("heading")..];
        let start = after.find("```yaml\n").expect("yaml block") + 8;
        let block = &after[start..start + after[start..].find("```").expect("end")];
        let file = SourceFile {
            name: "limits.yaml".into(),
            text: block.into(),
        };
        let limits = Limits::compile(Some(&file), &[]).unwrap_or_else(|e| panic!("{doc}: {e:?}"));
        let alice = limits.for_user("alice", &["users".to_string()]);
        assert_eq!(alice.month_nanos, Some(200_000_000_000), "{doc}");
        assert_eq!(alice.day_nanos, Some(5_000_000_000), "{doc}");
        assert_eq!(alice.requests_per_minute, Some(120), "{doc}");
    }

    let config = common::copy_default_config();
    std::fs::write(
        config.path().join("limits.yaml"),
        "groups:\n  users:\n    usd_per_day: \"5\"\n    requests_per_hour: 3\n",
    )
    .expect("write");
    let errors = pennyworth::CompiledConfig::load(config.path()).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("limits.yaml:"), "{text}");
    assert!(text.contains("requests_per_hour"), "{text}");
}
