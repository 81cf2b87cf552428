//! The same behaviour suite for every `UsageStore`: exact sums, spend per day and month,
//! rate-limit windows, queries, and exact totals under 20 concurrent writers.
#![allow(dead_code, reason = "each test binary uses a different part")]

use pennyworth::usage::period;
use pennyworth::usage::store::{Entry, Query, Scope, Spend, Totals, UsageStore, Window};
use std::sync::Arc;

pub fn entry(user: &str, key: &str, model: &str, at: i64, cost: i64, input: u64) -> Entry {
    Entry {
        at,
        user: user.into(),
        key: key.into(),
        model: model.into(),
        totals: Totals {
            requests: 1,
            input_tokens: input,
            output_tokens: 2 * input,
            cache_read_tokens: input / 2,
            cache_write_tokens: 1,
            cost_nanos: cost,
        },
        session: None,
        user_window: false,
        key_window: false,
    }
}

/// Runs the suite. `now` is the present (the SQLite store keeps the present month in memory).
pub async fn behaviour(store: Arc<dyn UsageStore>) {
    let now = pennyworth::directory::now();
    let today = period::day(now);
    let past = period::parse_day("2020-01-15").expect("date") + 3600;

    store.record(entry("alice", "alice.k1", "m1", now, 1_000, 10));
    store.record(entry("alice", "alice.k1", "m1", now, 2_500, 20));
    let mut with_session = entry("alice", "", "m2", now, 7, 1);
    with_session.session = Some("session-1".into());
    store.record(with_session);
    store.record(entry("bob", "bob.k2", "m1", now, 11, 3));
    store.record(entry("alice", "alice.k1", "m1", past, 100_000, 5));
    store.record(entry("alice", "alice.k1", "m1", past - 86_400, 3, 5));
    store.flush().await.expect("flush");

    // Spend: today and this month; a past month from storage.
    let s = store
        .spend("alice", Some("alice.k1"), now)
        .await
        .expect("spend");
    assert_eq!(
        s,
        Spend {
            user_day: 3_507,
            user_month: 3_507,
            key_day: 3_500,
            key_month: 3_500,
        }
    );
    let s = store.spend("alice", None, past).await.expect("spend");
    assert_eq!((s.user_day, s.user_month, s.key_day), (100_000, 100_003, 0));
    let s = store
        .spend("carol", Some("carol.k"), now)
        .await
        .expect("spend");
    assert_eq!(s, Spend::default());

    // Aggregates per (user, key, model, day), exact.
    let mut rows = store
        .query(&Query {
            from: today.clone(),
            to: today.clone(),
            user: Some("alice".into()),
        })
        .await
        .expect("query");
    rows.sort_by(|a, b| a.model.cmp(&b.model));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].key, "alice.k1");
    assert_eq!(
        rows[0].totals,
        Totals {
            requests: 2,
            input_tokens: 30,
            output_tokens: 60,
            cache_read_tokens: 15,
            cache_write_tokens: 2,
            cost_nanos: 3_500,
        }
    );
    assert_eq!(rows[1].key, "");
    assert_eq!(rows[1].session.as_deref(), Some("session-1"));
    let everyone = store
        .query(&Query {
            from: "2020-01-01".into(),
            to: today.clone(),
            user: None,
        })
        .await
        .expect("query all");
    let total: i64 = everyone.iter().map(|r| r.totals.cost_nanos).sum();
    assert_eq!(total, 103_521);
    assert_eq!(everyone.iter().filter(|r| r.user == "bob").count(), 1);
    let past_only = store
        .query(&Query {
            from: "2020-01-15".into(),
            to: "2020-01-15".into(),
            user: Some("alice".into()),
        })
        .await
        .expect("query past");
    assert_eq!(past_only.len(), 1);
    assert_eq!(past_only[0].totals.cost_nanos, 100_000);

    // Rate windows: requests counted per minute and scope; tokens from recorded calls.
    let minute_start = now - now.rem_euclid(60);
    let scopes = [Scope::User("rl".into()), Scope::Key("rl.k".into())];
    let w = store.admit(&scopes, minute_start).await.expect("admit");
    assert_eq!(
        w,
        vec![
            Window {
                requests: 1,
                tokens: 0
            };
            2
        ]
    );
    let w = store
        .admit(&scopes, minute_start + 59)
        .await
        .expect("admit");
    assert_eq!(w[0].requests, 2);
    let mut windowed = entry("rl", "rl.k", "m1", minute_start + 10, 1, 100);
    windowed.user_window = true;
    store.record(windowed);
    store.flush().await.expect("flush");
    let w = store
        .admit(&scopes[..1], minute_start + 20)
        .await
        .expect("admit");
    assert_eq!(
        w[0],
        Window {
            requests: 3,
            tokens: 300
        }
    );
    let w = store
        .admit(&scopes, minute_start + 60)
        .await
        .expect("admit");
    assert_eq!(
        w,
        vec![
            Window {
                requests: 1,
                tokens: 0
            };
            2
        ]
    );
}

/// 20 concurrent writers, `each` calls each: every count lands exactly once.
pub async fn concurrent(store: Arc<dyn UsageStore>, each: usize) {
    let now = pennyworth::directory::now();
    let mut tasks = Vec::new();
    for t in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let key = if t % 2 == 0 {
                    "crowd.even"
                } else {
                    "crowd.odd"
                };
                store.record(entry("crowd", key, "m", now, 3 + (i as i64 % 2), 1));
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    store.flush().await.expect("flush");
    let rows = store
        .query(&Query {
            from: period::day(now),
            to: period::day(now),
            user: Some("crowd".into()),
        })
        .await
        .expect("query");
    let mut sum = Totals::default();
    for r in &rows {
        sum.add(&r.totals);
    }
    let calls = 20 * each as u64;
    let odd_calls = 20 * (each / 2) as u64;
    assert_eq!(sum.requests, calls);
    assert_eq!(sum.input_tokens, calls);
    assert_eq!(sum.cost_nanos as u64, 3 * calls + odd_calls);
    let s = store
        .spend("crowd", Some("crowd.even"), now)
        .await
        .expect("spend");
    assert_eq!(s.user_day as u64, 3 * calls + odd_calls);
    assert_eq!(s.key_day as u64, (3 * calls + odd_calls) / 2);
}
