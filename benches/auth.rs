//! Authentication cost per request with a warm identity cache, and directory calls per 1,000
//! requests in steady state. A plain timing harness (no criterion): `cargo bench --bench auth`.
//!
//! - API key: `auth::authenticate` with a warm cache (SHA-256 of the key, constant-time compare,
//!   expiry and enabled checks; no directory call).
//! - JWT: `JwtVerifier::verify` with the JWKS cached (RS256 signature check and claim checks).
//! - Directory calls: a counting directory behind the engine's cache, 1,000 requests each with
//!   10 distinct keys, once with the default TTL and once with the cache off.

use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pennyworth::auth::cache::IdentityCache;
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use pennyworth::auth::{authenticate, issue_key};
use pennyworth::config::routes::AuthMethod;
use pennyworth::directory::{Directory, NewUser};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[path = "../tests/common/jwks.rs"]
mod jwks;
#[path = "../tests/common/wrapped.rs"]
#[allow(dead_code, reason = "shared with the tests")]
mod wrapped;

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

fn per_op(total: Duration, n: u32) -> String {
    format!("{:.2} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = wrapped::Wrapped::in_memory();
    dir.create_user(NewUser {
        username: "bench".into(),
        email: None,
        groups: vec!["users".into()],
    })
    .await
    .expect("user");
    let mut keys = Vec::new();
    for i in 0..10 {
        let (_, k) = issue_key(&dir, "bench", &format!("k{i}"), None)
            .await
            .expect("key");
        keys.push(k.expose().to_string());
    }
    let methods = [AuthMethod::ApiKey, AuthMethod::Jwt];

    // API key, warm cache.
    let cache = IdentityCache::default();
    let headers = bearer(&keys[0]);
    authenticate(&methods, &headers, &dir, &cache, None)
        .await
        .expect("warm");
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        authenticate(&methods, &headers, &dir, &cache, None)
            .await
            .expect("auth");
    }
    let key_cost = t.elapsed();

    // JWT, JWKS cached.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let (url, _) = jwks::serve(std::fs::read(root.join("jwks.json")).expect("jwks")).await;
    let issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Bench";
    let verifier = JwtVerifier::new(JwtConfig {
        issuer: issuer.into(),
        client_id: "bench".into(),
        jwks_url: url,
    })
    .expect("verifier");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let now = pennyworth::directory::now();
    let claims = serde_json::json!({"sub": "s", "iss": issuer, "client_id": "bench", "token_use": "access",
        "username": "bench", "cognito:groups": ["users"], "exp": now + 3600});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&std::fs::read(root.join("test-rsa.pem")).expect("pem"))
            .expect("key"),
    )
    .expect("sign");
    let jwt_headers = bearer(&token);
    authenticate(&methods, &jwt_headers, &dir, &cache, Some(&verifier))
        .await
        .expect("warm jwt");
    // First sight of a token: fresh tokens each time (distinct `jti`).
    let f = 200;
    let fresh: Vec<HeaderMap> = (0..f)
        .map(|i| {
            let mut c = claims.clone();
            c["jti"] = serde_json::json!(i);
            bearer(
                &jsonwebtoken::encode(
                    &header,
                    &c,
                    &EncodingKey::from_rsa_pem(
                        &std::fs::read(root.join("test-rsa.pem")).expect("pem"),
                    )
                    .expect("key"),
                )
                .expect("sign"),
            )
        })
        .collect();
    let t = Instant::now();
    for h in &fresh {
        authenticate(&methods, h, &dir, &cache, Some(&verifier))
            .await
            .expect("jwt");
    }
    let first_cost = t.elapsed();
    let m = 200_000;
    let t = Instant::now();
    for _ in 0..m {
        authenticate(&methods, &jwt_headers, &dir, &cache, Some(&verifier))
            .await
            .expect("jwt");
    }
    let jwt_cost = t.elapsed();

    // Directory calls per 1,000 requests over 10 keys.
    let mut calls = Vec::new();
    for (label, cache) in [
        ("default TTL (60 s)", IdentityCache::default()),
        ("cache off", IdentityCache::new(Duration::ZERO, 0)),
    ] {
        let before = dir.finds.load(Ordering::Relaxed);
        for i in 0..1000 {
            authenticate(&methods, &bearer(&keys[i % keys.len()]), &dir, &cache, None)
                .await
                .expect("auth");
        }
        calls.push((label, dir.finds.load(Ordering::Relaxed) - before));
    }

    println!("| measurement | result | target |");
    println!("| --- | ---: | --- |");
    println!(
        "| API key authentication, warm cache | {} per request | < 10 µs |",
        per_op(key_cost, n)
    );
    println!(
        "| JWT (RS256) authentication, token seen before | {} per request | < 50 µs |",
        per_op(jwt_cost, m)
    );
    println!(
        "| JWT (RS256) first verification of a token (signature check) | {} per token | |",
        per_op(first_cost, f)
    );
    for (label, c) in calls {
        println!("| directory lookups per 1,000 requests (10 keys), {label} | {c} | |");
    }
    println!();
    println!(
        "A directory lookup is one `find_key`: for Cognito, `AdminGetUser` plus \
         `AdminListGroupsForUser` (2 API calls)."
    );
}
