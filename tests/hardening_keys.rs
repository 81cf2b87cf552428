//! Key containment (issue 16, item 1): a leaked API key cannot mint keys, every key of a user
//! can be revoked at once, and a key never outlives the key that created it.

mod common;

use common::call;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pennyworth::auth::issue_key;
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use pennyworth::directory::now;
use serde_json::{Value, json};

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
const CLIENT: &str = "test-client-id";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join("tests/fixtures/jwt").join(name)).expect("fixture")
}

/// A token for test principal `name` (its directory id as `sub`).
fn token_for(dir: &common::TestDirectory, name: &str, groups: &[&str]) -> String {
    let claims = json!({
        "sub": dir.user_ids[name],
        "iss": ISSUER,
        "client_id": CLIENT,
        "token_use": "access",
        "username": name,
        "cognito:groups": groups,
        "iat": now(),
        "exp": now() + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(&fixture("test-rsa.pem")).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn engine_with_jwt() -> (pennyworth::Engine, common::TestDirectory) {
    let (url, _) = common::jwks::serve(fixture("jwks.json")).await;
    let dir = common::TestDirectory::new().await;
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let verifier = JwtVerifier::new(JwtConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        jwks_url: url,
    })
    .expect("verifier");
    (
        pennyworth::Engine::new(config, dir.directory.clone()).with_jwt(verifier),
        dir,
    )
}

#[tokio::test]
async fn an_api_key_cannot_mint_keys_but_a_sign_in_can() {
    let (engine, dir) = engine_with_jwt().await;
    let user_key = dir.key("user").to_string();

    // With the user's own API key: neither create nor rotate.
    let (status, body) = call(&engine, "POST", "/v1/keys", &user_key, json!({"name": "x"})).await;
    assert_eq!(status, 403, "{body}");
    let own_id = dir.key_ids["user"].clone();
    let path = format!("/v1/keys/{own_id}/rotate");
    let (status, body) = call(&engine, "POST", &path, &user_key, Value::Null).await;
    assert_eq!(status, 403, "{body}");
    // The key still works (rotation did not happen) and may still list its keys.
    let (status, _) = call(&engine, "GET", "/v1/keys", &user_key, Value::Null).await;
    assert_eq!(status, 200);

    // With an interactive sign-in (a Cognito token): yes.
    let token = token_for(&dir, "user", &["users"]);
    let (status, created) = call(&engine, "POST", "/v1/keys", &token, json!({"name": "t"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["user"], "user");
    // A token may not mint keys for someone else.
    let (status, _) = call(
        &engine,
        "POST",
        "/v1/keys",
        &token,
        json!({"name": "t", "user": "dev"}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_child_key_never_outlives_its_parent() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let parent_expiry = now() + 2 * 86_400;
    let (_, parent) = issue_key(
        dir.directory.as_ref(),
        "admin",
        "short-lived admin key",
        Some(parent_expiry),
    )
    .await
    .expect("issue");
    let parent = parent.expose().to_string();

    // No expiry asked: the parent's. A longer one asked: the parent's. A shorter one: kept.
    for (asked, bound) in [
        (None, Some(parent_expiry)),
        (Some(30), Some(parent_expiry)),
        (Some(1), None),
    ] {
        let mut body = json!({"name": "child", "user": "dev"});
        if let Some(d) = asked {
            body["expires_in_days"] = json!(d);
        }
        let (status, created) = call(&engine, "POST", "/v1/keys", &parent, body).await;
        assert_eq!(status, 201, "{created}");
        let at = created["expires_at"].as_i64().expect("an expiry");
        match bound {
            Some(b) => assert_eq!(at, b, "{asked:?}"),
            None => assert!(at < parent_expiry, "{asked:?}"),
        }
        // Rotating a key with the short-lived key bounds the new one as well.
        let id = created["id"].as_str().expect("id");
        let (status, rotated) = call(
            &engine,
            "POST",
            &format!("/v1/keys/{id}/rotate"),
            &parent,
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{rotated}");
        assert!(rotated["expires_at"].as_i64().expect("expiry") <= parent_expiry);
    }
    // A key without expiry creates keys without expiry.
    let (status, created) = call(
        &engine,
        "POST",
        "/v1/keys",
        dir.key("admin"),
        json!({"name": "forever", "user": "dev"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["expires_at"], Value::Null, "{created}");
}

#[tokio::test]
async fn revoke_every_key_of_a_user() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let admin = dir.key("admin").to_string();
    let mut keys = vec![dir.key("user").to_string()];
    for n in 0..2 {
        let (status, created) = call(
            &engine,
            "POST",
            "/v1/keys",
            &admin,
            json!({"name": format!("k{n}"), "user": "user"}),
        )
        .await;
        assert_eq!(status, 201);
        keys.push(created["key"].as_str().expect("key").to_string());
    }
    for k in &keys {
        assert_eq!(
            call(&engine, "GET", "/v1/whoami", k, Value::Null).await.0,
            200
        );
    }
    // Not someone else's.
    let (status, _) = call(
        &engine,
        "DELETE",
        "/v1/keys?user=dev",
        &keys[1],
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", dir.key("dev"), Value::Null)
            .await
            .0,
        200
    );
    // Their own, with any one of them: all die at once.
    let (status, body) = call(&engine, "DELETE", "/v1/keys", &keys[1], Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"].as_array().map(Vec::len), Some(3), "{body}");
    for k in &keys {
        assert_eq!(
            call(&engine, "GET", "/v1/whoami", k, Value::Null).await.0,
            401
        );
    }
    // An admin revokes another user's keys; an unknown user is a 404.
    let (status, body) = call(&engine, "DELETE", "/v1/keys?user=dev", &admin, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", dir.key("dev"), Value::Null)
            .await
            .0,
        401
    );
    let (status, _) = call(
        &engine,
        "DELETE",
        "/v1/keys?user=nobody",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
}

/// Item 3: a token's enabled state and groups come from the directory (through the identity
/// cache), not from the token alone until it expires.
#[tokio::test]
async fn token_identities_stay_fresh() {
    let (engine, dir) = engine_with_jwt().await;
    let admin_key = dir.key("admin").to_string();
    // The token claims `admins`, the directory says `users`: the directory wins.
    let claims_admin = token_for(&dir, "user", &["admins"]);
    let (status, me) = call(&engine, "GET", "/v1/whoami", &claims_admin, Value::Null).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["groups"], json!(["users"]));
    let (status, _) = call(
        &engine,
        "GET",
        "/v1/admin/users",
        &claims_admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);

    // An admin demoted through the API loses admin rights on the next request.
    let token = token_for(&dir, "dev", &["developers"]);
    let (status, _) = call(
        &engine,
        "PATCH",
        "/v1/admin/users/dev",
        &admin_key,
        json!({"groups": ["admins"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&engine, "GET", "/v1/admin/users", &token, Value::Null)
            .await
            .0,
        200
    );
    call(
        &engine,
        "PATCH",
        "/v1/admin/users/dev",
        &admin_key,
        json!({"groups": ["developers"]}),
    )
    .await;
    assert_eq!(
        call(&engine, "GET", "/v1/admin/users", &token, Value::Null)
            .await
            .0,
        403
    );

    // A disabled user's token stops working; a deleted user's too.
    call(
        &engine,
        "PATCH",
        "/v1/admin/users/dev",
        &admin_key,
        json!({"enabled": false}),
    )
    .await;
    let (status, body) = call(&engine, "GET", "/v1/whoami", &token, Value::Null).await;
    assert_eq!(status, 401, "{body}");
    let nogroup = token_for(&dir, "nogroup", &[]);
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &nogroup, Value::Null)
            .await
            .0,
        200
    );
    call(
        &engine,
        "DELETE",
        "/v1/admin/users/nogroup",
        &admin_key,
        Value::Null,
    )
    .await;
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &nogroup, Value::Null)
            .await
            .0,
        401
    );
}
