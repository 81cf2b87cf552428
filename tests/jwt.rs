//! Cognito-style JWTs through the engine: a local JWKS endpoint, tokens signed with a test RSA
//! key, and every way a token can be wrong answered with 401.

mod common;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pennyworth::Engine;
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
const CLIENT: &str = "test-client-id";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join("tests/fixtures/jwt").join(name)).expect("fixture")
}

fn now() -> i64 {
    pennyworth::directory::now()
}

fn access_claims() -> Value {
    json!({
        "sub": "5f1c1c1e-0000-4000-8000-000000000001",
        "iss": ISSUER,
        "client_id": CLIENT,
        "token_use": "access",
        "username": "alice",
        "cognito:groups": ["developers"],
        "iat": now(),
        "exp": now() + 3600,
    })
}

fn sign(claims: &Value, kid: &str, pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(&fixture(pem)).expect("key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

async fn setup(jwks: &str) -> (Engine, Arc<AtomicUsize>, common::TestDirectory) {
    let (url, hits) = common::jwks::serve(fixture(jwks)).await;
    let dir = common::TestDirectory::new().await;
    // The user behind the tokens: enabled state and groups come from the directory.
    use pennyworth::directory::Directory as _;
    for (name, group) in [("alice", "developers"), ("bob", "users")] {
        dir.directory
            .create_user(pennyworth::directory::NewUser {
                username: name.into(),
                email: None,
                groups: vec![group.into()],
            })
            .await
            .expect("user");
    }
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let verifier = JwtVerifier::new(JwtConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        jwks_url: url,
    })
    .expect("verifier");
    (
        Engine::new(config, dir.directory.clone()).with_jwt(verifier),
        hits,
        dir,
    )
}

async fn whoami(engine: &Engine, token: &str) -> (u16, Value) {
    let (status, _, body) = common::send(
        engine,
        common::request("GET", "/v1/whoami", Some(token), ""),
    )
    .await;
    (
        status.as_u16(),
        serde_json::from_slice(&body).expect("json"),
    )
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_access_and_id_tokens() {
    let (engine, hits, _dir) = setup("jwks.json").await;
    let (status, me) = whoami(
        &engine,
        &sign(&access_claims(), "test-key-1", "test-rsa.pem"),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"user": "alice", "groups": ["developers"], "auth": "jwt", "key_id": null})
    );

    let id = json!({
        "sub": "5f1c1c1e-0000-4000-8000-000000000002", "iss": ISSUER, "aud": CLIENT,
        "token_use": "id", "cognito:username": "bob", "cognito:groups": ["users"],
        "exp": now() + 600,
    });
    let (status, me) = whoami(&engine, &sign(&id, "test-key-1", "test-rsa.pem")).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "bob");

    // Policies apply to token callers as to key callers: developers may list every model.
    let token = sign(&access_claims(), "test-key-1", "test-rsa.pem");
    let (_, _, body) = common::send(
        &engine,
        common::request("GET", "/v1/models", Some(&token), ""),
    )
    .await;
    let models: Value = serde_json::from_slice(&body).expect("json");
    assert!(models["data"].as_array().expect("data").len() > 5);
    // The JWKS was fetched once for all of this.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_bad_token_is_401() {
    let (engine, _, _dir) = setup("jwks.json").await;
    let good = access_claims();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let valid = sign(&good, "test-key-1", "test-rsa.pem");
    let parts: Vec<&str> = valid.split('.').collect();

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-key-1"})),
        parts[1]
    );
    // HS256 keyed with the public key (the classic algorithm confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("test-key-1".into());
    let public = fixture("jwks.json");
    let hs256 =
        jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&public)).expect("hs256");
    // A payload changed after signing.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with("cognito:groups", json!(["admins"]))),
        parts[2]
    );
    // Signed by a key that is not the one its kid names.
    let wrong_key = sign(&good, "test-key-1", "other-rsa.pem");

    let cases: Vec<(&str, String)> = vec![
        ("alg none", none),
        ("hs256 with the public key", hs256),
        ("tampered payload", tampered),
        ("wrong signing key", wrong_key),
        (
            "wrong issuer",
            sign(
                &with(
                    "iss",
                    json!("https://cognito-idp.us-east-1.amazonaws.com/other"),
                ),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "wrong client",
            sign(
                &with("client_id", json!("someone-else")),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "id token for another client",
            sign(
                &json!({"sub": "x", "iss": ISSUER, "aud": "someone-else", "token_use": "id", "exp": now() + 600}),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "refresh token_use",
            sign(
                &with("token_use", json!("refresh")),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "expired",
            sign(
                &with("exp", json!(now() - 600)),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "not yet valid",
            sign(
                &with("nbf", json!(now() + 600)),
                "test-key-1",
                "test-rsa.pem",
            ),
        ),
        (
            "no kid",
            jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &good,
                &EncodingKey::from_rsa_pem(&fixture("test-rsa.pem")).expect("key"),
            )
            .expect("sign"),
        ),
        ("garbage", "aaa.bbb.ccc".to_string()),
    ];
    for (what, token) in cases {
        let (status, body) = whoami(&engine, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}");
    }
    // Expired tokens say so.
    let (_, body) = whoami(
        &engine,
        &sign(
            &with("exp", json!(now() - 600)),
            "test-key-1",
            "test-rsa.pem",
        ),
    )
    .await;
    assert_eq!(body["error"]["code"], "expired_token");
    // Within the leeway is still fine.
    let (status, _) = whoami(
        &engine,
        &sign(&with("exp", json!(now() - 5)), "test-key-1", "test-rsa.pem"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_a_minute() {
    let (engine, hits, _dir) = setup("jwks-rotated.json").await;
    // First token: fetch. A key that appears in the JWKS is found.
    let rotated = sign(&access_claims(), "rotated-key-2", "other-rsa.pem");
    assert_eq!(whoami(&engine, &rotated).await.0, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Unknown kids do not cause more fetches within the interval.
    for i in 0..5 {
        let t = sign(&access_claims(), &format!("unknown-{i}"), "test-rsa.pem");
        assert_eq!(whoami(&engine, &t).await.0, 401);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_verifier_tokens_are_refused_and_keys_still_work() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let token = sign(&access_claims(), "test-key-1", "test-rsa.pem");
    let (status, body) = whoami(&engine, &token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(whoami(&engine, dir.key("admin")).await.0, 200);
}
