//! Anonymous traffic costs nothing upstream (issue 16, item 5): a key whose owner part no
//! directory accepts is refused without a directory call, "no such user / invalid name" is a
//! 401 (never a 503 that feeds the 5xx alarm), and unknown key ids are remembered briefly.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::wrapped::Wrapped;
use pennyworth::directory::{Directory, NewUser};
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn forged(owner: &str, kid: &str) -> String {
    format!(
        "pw-{}.{kid}.{}",
        URL_SAFE_NO_PAD.encode(owner.as_bytes()),
        "A".repeat(43)
    )
}

async fn setup() -> (pennyworth::Engine, Arc<Wrapped>) {
    let dir = Arc::new(Wrapped::in_memory());
    dir.cognito_names.store(true, Ordering::SeqCst);
    dir.create_user(NewUser {
        username: "ann".into(),
        email: None,
        groups: vec!["users".into()],
    })
    .await
    .expect("user");
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    (pennyworth::Engine::new(config, dir.clone()), dir)
}

async fn whoami(engine: &pennyworth::Engine, key: &str) -> (u16, serde_json::Value) {
    common::call(engine, "GET", "/v1/whoami", key, serde_json::Value::Null).await
}

#[tokio::test]
async fn a_crafted_owner_is_401_without_a_directory_call() {
    let (engine, dir) = setup().await;
    for owner in [
        "bad name",
        "new\nline",
        "tab\there",
        &"x".repeat(200),
        "\u{1b}[31m",
    ] {
        let (status, body) = whoami(&engine, &forged(owner, "0011223344556677")).await;
        assert_eq!(status, 401, "{owner:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(dir.finds.load(Ordering::SeqCst), 0, "no directory call");
}

#[tokio::test]
async fn bogus_keys_are_looked_up_once_per_interval() {
    let (engine, dir) = setup().await;
    // 300 requests with one bogus key of an unknown user, and 300 with an unknown key id of a
    // real user: one directory lookup each.
    for key in [
        forged("ghost", "0011223344556677"),
        forged("ann", "8899aabbccddeeff"),
    ] {
        let before = dir.finds.load(Ordering::SeqCst);
        for _ in 0..300 {
            assert_eq!(whoami(&engine, &key).await.0, 401);
        }
        assert_eq!(dir.finds.load(Ordering::SeqCst) - before, 1, "{key}");
    }
    // A real key of that user still works (the negative entry is per key id, not per user).
    let (_, key) = pennyworth::auth::issue_key(dir.as_ref(), "ann", "k", None)
        .await
        .expect("key");
    assert_eq!(whoami(&engine, key.expose()).await.0, 200);
}

/// Item 6: a non-admin's `GET /v1/keys?all=true` lists their own keys without scanning the
/// whole directory; an admin's still lists everyone's.
#[tokio::test]
async fn listing_all_keys_scans_only_for_those_who_may_see_them() {
    let (engine, dir) = setup().await;
    dir.create_user(NewUser {
        username: "root".into(),
        email: None,
        groups: vec!["admins".into()],
    })
    .await
    .expect("admin");
    let (_, ann) = pennyworth::auth::issue_key(dir.as_ref(), "ann", "k", None)
        .await
        .expect("key");
    let (_, root) = pennyworth::auth::issue_key(dir.as_ref(), "root", "k", None)
        .await
        .expect("key");
    let (status, body) = common::call(
        &engine,
        "GET",
        "/v1/keys?all=true",
        ann.expose(),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(dir.scans.load(Ordering::SeqCst), 0, "no scan for a user");
    let (status, body) = common::call(
        &engine,
        "GET",
        "/v1/keys?all=true",
        root.expose(),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(dir.scans.load(Ordering::SeqCst), 1);
}
