//! The same directory behaviour suite against the embedded store and against Cognito (moto's
//! server on 127.0.0.1), then the engine on Cognito: keys, revocation and real moto JWTs.

mod common;

use common::call;
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use pennyworth::directory::Directory;
use pennyworth::directory::local::LocalDirectory;
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn local_directory_behaviour() {
    let d = LocalDirectory::in_memory().expect("store");
    common::behaviour::suite(&d).await;
}

#[tokio::test]
async fn local_directory_on_disk_survives_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let d = LocalDirectory::open(tmp.path()).expect("open");
        common::behaviour::suite(&d).await;
        d.create_user(pennyworth::directory::NewUser {
            username: "kept".into(),
            email: None,
            groups: vec!["users".into()],
        })
        .await
        .expect("create");
    }
    let d = LocalDirectory::open(tmp.path()).expect("reopen");
    assert!(d.get_user("kept").await.expect("get").is_some());
    assert!(d.get_user("alice").await.expect("get").is_none());
}

#[tokio::test]
async fn cognito_directory_behaviour() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let d = pool.directory().await;
    common::behaviour::suite(&d).await;
}

#[tokio::test]
async fn engine_on_cognito_keys_and_moto_jwts() {
    let Some(pool) = common::moto::pool().await else {
        return;
    };
    let directory = Arc::new(pool.directory().await);
    let (_, _, admin_key) = pennyworth::auth::initialize(directory.as_ref(), "root")
        .await
        .expect("init");
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let verifier = JwtVerifier::new(JwtConfig::cognito(
        common::moto::REGION,
        &pool.pool_id,
        &pool.client_id,
        Some(&pool.endpoint),
    ))
    .expect("verifier");
    let engine = pennyworth::Engine::new(config, directory.clone()).with_jwt(verifier);
    let admin = admin_key.expose().to_string();

    // The admin creates a user with a password and a key for them, over REST.
    let (status, body) = call(
        &engine,
        "POST",
        "/v1/admin/users",
        &admin,
        json!({"username": "dana", "email": "dana@example.com", "groups": ["users"], "password": "Dana-pass-1!"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, created) = call(
        &engine,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "dana", "user": "dana"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let dana_key = created["key"].as_str().expect("key").to_string();
    let (status, me) = call(&engine, "GET", "/v1/whoami", &dana_key, Value::Null).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "dana");
    assert_eq!(me["groups"], json!(["users"]));

    // The key is stored only as a hash in the custom attributes.
    let raw = pool
        .client
        .admin_get_user()
        .user_pool_id(&pool.pool_id)
        .username("dana")
        .send()
        .await
        .expect("get user");
    let attribute: String = raw
        .user_attributes()
        .iter()
        .filter(|a| a.name().starts_with("custom:pw_key"))
        .filter_map(|a| a.value())
        .collect();
    assert!(
        attribute.contains(
            created["id"]
                .as_str()
                .expect("id")
                .split_once('.')
                .expect("kid")
                .1
        )
    );
    let secret = dana_key.rsplit('.').next().expect("secret");
    assert!(
        !attribute.contains(secret),
        "the attribute holds no secret: {attribute}"
    );

    // A real moto-issued JWT for dana, verified against moto's JWKS.
    let auth = pool
        .client
        .initiate_auth()
        .client_id(&pool.client_id)
        .auth_flow(aws_sdk_cognitoidentityprovider::types::AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", "dana")
        .auth_parameters("PASSWORD", "Dana-pass-1!")
        .send()
        .await
        .expect("initiate auth");
    let result = auth.authentication_result().expect("tokens");
    for token in [
        result.access_token().expect("access"),
        result.id_token().expect("id"),
    ] {
        let (status, me) = call(&engine, "GET", "/v1/whoami", token, Value::Null).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["user"], "dana");
        assert_eq!(me["auth"], "jwt");
    }
    // A JWT caller manages their own keys too.
    let access = result.access_token().expect("access");
    let (status, listed) = call(&engine, "GET", "/v1/keys", access, Value::Null).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"].as_array().expect("data").len(), 1);

    // Revoke: the key stops working at once in this process.
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        call(
            &engine,
            "DELETE",
            &format!("/v1/keys/{id}"),
            &dana_key,
            Value::Null
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &dana_key, Value::Null)
            .await
            .0,
        401
    );

    // A tampered moto token is refused.
    let mut t = access.to_string();
    let last = t.pop().expect("char");
    t.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        call(&engine, "GET", "/v1/whoami", &t, Value::Null).await.0,
        401
    );
}
