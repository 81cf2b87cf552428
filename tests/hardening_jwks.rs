//! JWKS fetching (issue 16, item 4): one fetch at a time shared by everyone waiting, backoff
//! after a failure, and 503 (never 401) while no key set can be had.

mod common;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
const CLIENT: &str = "test-client-id";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join("tests/fixtures/jwt").join(name)).expect("fixture")
}

/// A JWKS endpoint on 127.0.0.1 that answers after 200 ms, or 500 while `failing`.
async fn slow_jwks(failing: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let body = fixture("jwks.json");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            let fail = failing.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (status, body) = if fail {
                    ("500 Internal Server Error", b"{}".to_vec())
                } else {
                    ("200 OK", body)
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (format!("http://{addr}/jwks.json"), hits)
}

fn token(dir: &common::TestDirectory, n: u64) -> String {
    let now = pennyworth::directory::now();
    let claims = json!({
        "sub": dir.user_ids["dev"], "iss": ISSUER, "client_id": CLIENT, "token_use": "access",
        "username": "dev", "iat": now, "exp": now + 3600 + i64::try_from(n).unwrap_or(0),
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(&fixture("test-rsa.pem")).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn setup(
    failing: Arc<AtomicBool>,
) -> (
    Arc<pennyworth::Engine>,
    common::TestDirectory,
    Arc<AtomicUsize>,
) {
    let (url, hits) = slow_jwks(failing).await;
    let dir = common::TestDirectory::new().await;
    let config = pennyworth::CompiledConfig::load(&common::repo_root()).expect("config");
    let verifier = JwtVerifier::new(JwtConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        jwks_url: url,
    })
    .expect("verifier");
    let engine = pennyworth::Engine::new(config, dir.directory.clone()).with_jwt(verifier);
    (Arc::new(engine), dir, hits)
}

async fn whoami(engine: &pennyworth::Engine, token: &str) -> u16 {
    common::call(engine, "GET", "/v1/whoami", token, serde_json::Value::Null)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_under_concurrency_fetches_once_and_admits_everyone() {
    let (engine, dir, hits) = setup(Arc::new(AtomicBool::new(false))).await;
    let tokens: Vec<String> = (0..40).map(|n| token(&dir, n)).collect();
    let mut tasks = Vec::new();
    for t in tokens {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move { whoami(&engine, &t).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_503_with_backoff_then_recovers() {
    let failing = Arc::new(AtomicBool::new(true));
    let (engine, dir, hits) = setup(failing.clone()).await;
    // Signing is slow in a debug build: sign first, then send within the backoff.
    let tokens: Vec<String> = (0..10).map(|n| token(&dir, n)).collect();
    // The fetch fails: 503, and again 503 (not 401) without hammering the endpoint.
    for t in &tokens {
        assert_eq!(whoami(&engine, t).await, 503);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "backing off");
    // The endpoint recovers; after the backoff the next token is verified.
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(whoami(&engine, &token(&dir, 20)).await, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A failed token earlier is fine now too, without another fetch.
    assert_eq!(whoami(&engine, &tokens[0]).await, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
