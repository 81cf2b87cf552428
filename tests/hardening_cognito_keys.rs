//! Concurrent key changes on Cognito (issue 16, item 2), against moto's server: two
//! `CognitoDirectory` values stand for two Lambda instances, and a pause hook holds one writer
//! between its read and its write while the other changes the same user's keys.

mod common;

use common::call;
use pennyworth::auth::issue_key;
use pennyworth::directory::cognito::{CognitoDirectory, PauseHook};
use pennyworth::directory::cognito_keys::{KeyTiming, LEGACY_ATTRIBUTE, slot_attribute};
use pennyworth::directory::{Directory, DirectoryError, KeyRecord, NewUser, now};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Holds the first `op` that passes (once armed) until released.
struct Gate {
    op: &'static str,
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

impl Gate {
    fn new(op: &'static str) -> Arc<Self> {
        Arc::new(Self {
            op,
            armed: AtomicBool::new(true),
            reached: Notify::new(),
            release: Notify::new(),
        })
    }

    fn hook(self: &Arc<Self>) -> PauseHook {
        let gate = self.clone();
        Arc::new(move |op| {
            let gate = gate.clone();
            Box::pin(async move {
                if op == gate.op && gate.armed.swap(false, Ordering::SeqCst) {
                    gate.reached.notify_one();
                    gate.release.notified().await;
                }
            })
        })
    }
}

fn timing(max_staleness_ms: u64, settle_ms: u64) -> KeyTiming {
    KeyTiming {
        max_staleness: Duration::from_millis(max_staleness_ms),
        attempt_timeout: Duration::from_secs(5),
        settle: Duration::from_millis(settle_ms),
    }
}

async fn user(d: &CognitoDirectory, name: &str) {
    d.create_user(NewUser {
        username: name.into(),
        email: None,
        groups: vec!["users".into()],
    })
    .await
    .expect("create user");
}

async fn attribute(pool: &common::moto::Pool, user: &str, name: &str) -> Option<String> {
    let out = pool
        .client
        .admin_get_user()
        .user_pool_id(&pool.pool_id)
        .username(user)
        .send()
        .await
        .expect("get user");
    out.user_attributes()
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.value())
        .map(str::to_string)
}

async fn wait_until<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn a_revoke_is_never_undone_by_a_create_that_read_before_it() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let a = pool.directory_with(timing(5_000, 200)).await;
    let gate = Gate::new("create");
    let b = pool
        .directory_with(timing(5_000, 200))
        .await
        .with_pause(gate.hook());
    user(&a, "race").await;
    let (old, _) = issue_key(&a, "race", "old", None).await.expect("old key");

    // Instance B reads the keys (the old one among them) for a create, and stalls.
    let creating = tokio::spawn(async move { issue_key(&b, "race", "new", None).await });
    gate.reached.notified().await;
    // Instance A revokes the old key meanwhile, and answers success.
    assert!(a.delete_key("race", &old.id).await.expect("revoke"));
    // B writes last.
    gate.release.notify_one();
    let (new, _) = creating.await.expect("join").expect("create");

    // The revocation stands and the new key is there.
    assert!(a.find_key("race", &old.id).await.expect("find").is_none());
    assert!(a.find_key("race", &new.id).await.expect("find").is_some());
    let ids: Vec<String> = a
        .list_keys("race")
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, vec![new.id]);
}

#[tokio::test]
async fn a_create_that_loses_its_slot_does_not_answer_success() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let a = pool.directory_with(timing(5_000, 1_000)).await;
    let gate = Gate::new("create");
    let b = pool
        .directory_with(timing(5_000, 1_000))
        .await
        .with_pause(gate.hook());
    user(&a, "full").await;
    let fast = pool.directory().await;
    for i in 0..9 {
        issue_key(&fast, "full", &format!("k{i}"), None)
            .await
            .expect("key");
    }
    // One slot is free: B reads it as free and stalls; A takes it.
    let b_create = tokio::spawn(async move { issue_key(&b, "full", "b", None).await });
    gate.reached.notified().await;
    let a_create = tokio::spawn(async move { issue_key(&a, "full", "a", None).await });
    // Once A's key is written (A now waits out its settle time), B writes the same slot.
    wait_until(|| async { fast.list_keys("full").await.expect("list").len() == 10 }).await;
    gate.release.notify_one();
    let b_result = b_create.await.expect("join");
    let a_result = a_create.await.expect("join");

    // B wrote last and keeps the slot; A saw its key overwritten, tried again with a new key,
    // found no room and says so: no success for a key that is not there.
    let (b_key, _) = b_result.expect("b's create");
    assert!(
        matches!(
            a_result,
            Err(pennyworth::auth::ProvisionError::Directory(
                DirectoryError::TooManyKeys(_)
            ))
        ),
        "{a_result:?}"
    );
    let keys = fast.list_keys("full").await.expect("list");
    assert_eq!(keys.len(), 10);
    assert!(keys.iter().any(|k| k.id == b_key.id));
    assert!(!keys.iter().any(|k| k.name == "a"));
}

fn legacy_record(owner: &str, n: u8) -> KeyRecord {
    let generated = pennyworth::auth::api_key::generate(owner).expect("generate");
    KeyRecord {
        id: generated.id,
        owner: owner.into(),
        name: format!("legacy{n}"),
        hash: generated.hash.to_vec(),
        last4: generated.last4,
        created_at: now() - 100 + i64::from(n),
        expires_at: None,
    }
}

#[tokio::test]
async fn keys_in_the_old_list_attribute_work_and_concurrent_removals_stick() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let a = pool.directory_with(timing(5_000, 1_000)).await;
    let gate = Gate::new("revoke");
    let b = pool
        .directory_with(timing(5_000, 1_000))
        .await
        .with_pause(gate.hook());
    user(&a, "old").await;
    // Two keys as an earlier version stored them: one JSON list in custom:pw_keys.
    let l1 = legacy_record("old", 1);
    let l2 = legacy_record("old", 2);
    let list = json!([
        {"k": l1.id.split_once('.').expect("id").1, "n": l1.name, "h": base64_std(&l1.hash), "c": l1.created_at, "l": l1.last4},
        {"k": l2.id.split_once('.').expect("id").1, "n": l2.name, "h": base64_std(&l2.hash), "c": l2.created_at, "l": l2.last4},
    ]);
    pool.client
        .admin_update_user_attributes()
        .user_pool_id(&pool.pool_id)
        .username("old")
        .user_attributes(
            aws_sdk_cognitoidentityprovider::types::AttributeType::builder()
                .name(LEGACY_ATTRIBUTE)
                .value(list.to_string())
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("write legacy list");
    assert_eq!(
        a.list_keys("old").await.expect("list"),
        vec![l1.clone(), l2.clone()]
    );
    assert!(a.find_key("old", &l1.id).await.expect("find").is_some());

    // B reads the list to revoke l2 and stalls; A revokes l1 (and waits out its settle time);
    // B then writes the list it computed, which still holds l1.
    let l2_id = l2.id.clone();
    let b_revoke = tokio::spawn(async move { b.delete_key("old", &l2_id).await });
    gate.reached.notified().await;
    let l1_id = l1.id.clone();
    let a2 = pool.directory_with(timing(5_000, 1_000)).await;
    let a_revoke = tokio::spawn(async move { a2.delete_key("old", &l1_id).await });
    wait_until(|| async {
        attribute(&pool, "old", LEGACY_ATTRIBUTE)
            .await
            .is_some_and(|v| !v.contains(l1.id.split_once('.').expect("id").1))
    })
    .await;
    gate.release.notify_one();
    assert!(b_revoke.await.expect("join").expect("b revoke"));
    assert!(a_revoke.await.expect("join").expect("a revoke"));
    // A saw l1 come back within its settle time and removed it again.
    assert!(a.list_keys("old").await.expect("list").is_empty());
    // A new key goes to a slot, not to the old list.
    let (new, _) = issue_key(&a, "old", "new", None).await.expect("create");
    assert_eq!(
        attribute(&pool, "old", LEGACY_ATTRIBUTE).await.as_deref(),
        Some("[]")
    );
    let slotted = {
        let mut found = false;
        for i in 0..pennyworth::directory::cognito_keys::SLOTS {
            if attribute(&pool, "old", &slot_attribute(i))
                .await
                .is_some_and(|v| v.contains(new.id.split_once('.').expect("id").1))
            {
                found = true;
            }
        }
        found
    };
    assert!(slotted);
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_revoke_racing_a_cached_lookup_on_cognito_is_not_undone() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let gate = Gate::new("find");
    gate.armed.store(false, Ordering::SeqCst);
    let directory = Arc::new(pool.directory().await.with_pause(gate.hook()));
    let (_, _, admin) = pennyworth::auth::initialize(directory.as_ref(), "root")
        .await
        .expect("init");
    let admin = admin.expose().to_string();
    user(&directory, "carol").await;
    let (record, key) = issue_key(directory.as_ref(), "carol", "c", None)
        .await
        .expect("key");
    let key = key.expose().to_string();
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    // The default identity cache: 60 s.
    let engine = Arc::new(pennyworth::Engine::new(config, directory.clone()));
    // Warm the admin's entry so the revoke below does not stop at the gate.
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &admin, Value::Null)
            .await
            .0,
        200
    );

    // A lookup of carol's key reads her record from Cognito and stalls before caching it.
    gate.armed.store(true, Ordering::SeqCst);
    let e = engine.clone();
    let k = key.clone();
    let lookup =
        tokio::spawn(async move { call(&e, "GET", "/v1/whoami", &k, Value::Null).await.0 });
    gate.reached.notified().await;
    let (status, body) = call(
        &engine,
        "DELETE",
        &format!("/v1/keys/{}", record.id),
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    gate.release.notify_one();
    // The lookup that started before the revoke may still answer; it must not be cached.
    let _ = lookup.await.expect("join");
    let (status, body) = call(&engine, "GET", "/v1/whoami", &key, Value::Null).await;
    assert_eq!(status, 401, "{body}");
}
