//! Key and user management end to end through the engine: what a revoke, a rotation, a
//! disable, a group change or a delete does to the next request.

mod common;

use common::call;
use serde_json::{Value, json};

#[tokio::test]
async fn keys_lifecycle() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let user_key = dir.key("user").to_string();
    // Keys are minted by an admin (or the user's own sign-in, `tests/hardening_keys.rs`).
    let admin = dir.key("admin").to_string();

    // Create a second key; it works at once and is listed without its secret.
    let (status, created) = call(
        &engine,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "ci", "user": "user"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let new_key = created["key"].as_str().expect("key").to_string();
    let new_id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &new_key, Value::Null)
            .await
            .0,
        200
    );
    let (_, list) = call(&engine, "GET", "/v1/keys", &user_key, Value::Null).await;
    let text = list.to_string();
    assert_eq!(list["data"].as_array().expect("data").len(), 2);
    assert!(!text.contains(&new_key) && !text.contains("hash"), "{text}");

    // Rotate: the old key dies, the new one works, the name stays.
    let (status, rotated) = call(
        &engine,
        "POST",
        &format!("/v1/keys/{new_id}/rotate"),
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_key = rotated["key"].as_str().expect("key").to_string();
    assert_eq!(rotated["name"], "ci");
    assert_ne!(rotated["id"], json!(new_id));
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &new_key, Value::Null)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &rotated_key, Value::Null)
            .await
            .0,
        200
    );
    // Rotating the dead id again is a 404.
    assert_eq!(
        call(
            &engine,
            "POST",
            &format!("/v1/keys/{new_id}/rotate"),
            &admin,
            Value::Null
        )
        .await
        .0,
        404
    );

    // Revoke with the key itself: it stops working on the next request.
    let rotated_id = rotated["id"].as_str().expect("id").to_string();
    let (status, _) = call(
        &engine,
        "DELETE",
        &format!("/v1/keys/{rotated_id}"),
        &rotated_key,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &rotated_key, Value::Null)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &user_key, Value::Null)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn key_limit_is_enforced() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let key = dir.key("admin").to_string();
    // The test setup gave each user one key.
    for i in 1..pennyworth::directory::MAX_KEYS_PER_USER {
        let (status, body) = call(
            &engine,
            "POST",
            "/v1/keys",
            &key,
            json!({"name": format!("k{i}"), "user": "dev"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = call(
        &engine,
        "POST",
        "/v1/keys",
        &key,
        json!({"name": "one too many", "user": "dev"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "key_limit_reached");
}

#[tokio::test]
async fn user_changes_take_effect_on_the_next_request() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let admin = dir.key("admin").to_string();
    let user = dir.key("user").to_string();
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    // Group change: `users` may not use premium models (hidden: 404); `developers` may.
    assert_eq!(
        call(
            &engine,
            "POST",
            "/v1/chat/completions",
            &user,
            chat("claude-opus-4.1")
        )
        .await
        .0,
        404
    );
    let (status, _) = call(
        &engine,
        "PATCH",
        "/v1/admin/users/user",
        &admin,
        json!({"groups": ["developers"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, me) = call(&engine, "GET", "/v1/whoami", &user, Value::Null).await;
    assert_eq!(me["groups"], json!(["developers"]));
    // Authorized now; bedrock is not in this build, so the provider answers 501.
    assert_eq!(
        call(
            &engine,
            "POST",
            "/v1/chat/completions",
            &user,
            chat("claude-opus-4.1")
        )
        .await
        .0,
        501
    );

    // Disable, then enable again.
    call(
        &engine,
        "PATCH",
        "/v1/admin/users/user",
        &admin,
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &user, Value::Null)
            .await
            .0,
        401
    );
    call(
        &engine,
        "PATCH",
        "/v1/admin/users/user",
        &admin,
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &user, Value::Null)
            .await
            .0,
        200
    );

    // Delete: the user's keys go with them.
    assert_eq!(
        call(
            &engine,
            "DELETE",
            "/v1/admin/users/user",
            &admin,
            Value::Null
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &user, Value::Null)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&engine, "GET", "/v1/admin/users/user", &admin, Value::Null)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn new_user_gets_a_key_from_an_admin_and_uses_it() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let admin = dir.key("admin").to_string();
    let (status, _) = call(
        &engine,
        "POST",
        "/v1/admin/users",
        &admin,
        json!({"username": "erin", "groups": ["users"], "password": "Corr3ct-horse!"}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(
        dir.directory
            .verify_password(
                "erin",
                &pennyworth::directory::Password("Corr3ct-horse!".into())
            )
            .expect("verify")
    );
    let (status, created) = call(
        &engine,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "erin", "user": "erin"}),
    )
    .await;
    assert_eq!(status, 201);
    let erin = created["key"].as_str().expect("key").to_string();
    let (_, me) = call(&engine, "GET", "/v1/whoami", &erin, Value::Null).await;
    assert_eq!(me["user"], "erin");
    let (_, models) = call(&engine, "GET", "/v1/models", &erin, Value::Null).await;
    assert!(
        models["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["id"] == "echo")
    );
    // Erin can see only her own keys, also with all=true.
    let (_, keys) = call(&engine, "GET", "/v1/keys?all=true", &erin, Value::Null).await;
    assert_eq!(keys["data"].as_array().expect("data").len(), 1);
}

#[tokio::test]
async fn changes_made_elsewhere_apply_within_the_cache_ttl() {
    use pennyworth::directory::Directory;
    let dir = common::TestDirectory::new().await;
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let ttl = std::time::Duration::from_millis(300);
    let engine = pennyworth::Engine::with_cache(
        config,
        dir.directory.clone(),
        pennyworth::auth::cache::IdentityCache::new(ttl, 100),
    );
    let key = dir.key("user").to_string();
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &key, Value::Null)
            .await
            .0,
        200
    );
    // Revoked behind the engine's back (as another Lambda instance would): still cached...
    assert!(
        dir.directory
            .delete_key("user", &dir.key_ids["user"])
            .await
            .expect("delete")
    );
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &key, Value::Null)
            .await
            .0,
        200
    );
    // ...and dead once the TTL has passed.
    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &key, Value::Null)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn a_throttled_directory_is_503_with_retry_after_never_open() {
    use pennyworth::directory::{Directory, NewUser};
    use std::sync::atomic::Ordering;
    let flaky = std::sync::Arc::new(common::wrapped::Wrapped::in_memory());
    flaky
        .create_user(NewUser {
            username: "ann".into(),
            email: None,
            groups: vec!["admins".into()],
        })
        .await
        .expect("user");
    let (_, key) = pennyworth::auth::issue_key(flaky.as_ref(), "ann", "k", None)
        .await
        .expect("key");
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let engine = pennyworth::Engine::with_cache(
        config,
        flaky.clone(),
        pennyworth::auth::cache::IdentityCache::new(std::time::Duration::ZERO, 0),
    );
    // Authentication needs the directory: 503, not 401 and not a pass.
    flaky.throttled.store(true, Ordering::SeqCst);
    let (status, headers, _) = common::send(
        &engine,
        common::request("GET", "/v1/whoami", Some(key.expose()), ""),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    // A handler that needs the directory after a cached authentication: 503 too.
    flaky.throttled.store(false, Ordering::SeqCst);
    let cached = pennyworth::Engine::new(
        pennyworth::CompiledConfig::load(&common::repo_root()).expect("config"),
        flaky.clone(),
    );
    let (status, _, _) = common::send(
        &cached,
        common::request("GET", "/v1/whoami", Some(key.expose()), ""),
    )
    .await;
    assert_eq!(status, 200);
    flaky.throttled.store(true, Ordering::SeqCst);
    let (status, headers, body) = common::send(
        &cached,
        common::request("GET", "/v1/admin/users", Some(key.expose()), ""),
    )
    .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "1");
    assert!(String::from_utf8_lossy(&body).contains("directory_throttled"));
    flaky.throttled.store(false, Ordering::SeqCst);
    let (status, _, _) = common::send(
        &engine,
        common::request("GET", "/v1/whoami", Some(key.expose()), ""),
    )
    .await;
    assert_eq!(status, 200);
}
