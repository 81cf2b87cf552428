//! `/v1/mcp` with a Cognito access token: the same tools and policies as with an API key,
//! the caller's groups from the directory (not from the token's `cognito:groups`), and the
//! user pool named in the metadata.

mod common;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pennyworth::Engine;
use pennyworth::auth::jwt::{JwtConfig, JwtVerifier};
use serde_json::{Value, json};

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
const CLIENT: &str = "test-client-id";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join("tests/fixtures/jwt").join(name)).expect("fixture")
}

fn token(user: &str, groups: &[&str]) -> String {
    let now = pennyworth::directory::now();
    let claims = json!({
        "sub": "5f1c1c1e-0000-4000-8000-0000000000aa",
        "iss": ISSUER,
        "client_id": CLIENT,
        "token_use": "access",
        "username": user,
        "cognito:groups": groups,
        "iat": now,
        "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(&fixture("test-rsa.pem")).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn call(engine: &Engine, token: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (status, _, body) = common::send(
        engine,
        common::request("POST", "/v1/mcp", Some(token), body),
    )
    .await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn mcp_with_a_cognito_token() {
    let (url, _) = common::jwks::serve(fixture("jwks.json")).await;
    let dir = common::TestDirectory::new().await;
    // The users behind the tokens: their groups come from the directory.
    use pennyworth::directory::Directory as _;
    for (name, groups) in [
        ("tokenuser", vec!["users".to_string()]),
        ("nogroups", vec![]),
    ] {
        dir.directory
            .create_user(pennyworth::directory::NewUser {
                username: name.into(),
                email: None,
                groups,
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
    let engine = Engine::new(config, dir.directory.clone()).with_jwt(verifier);

    let who = call(
        &engine,
        &token("tokenuser", &["users"]),
        "tools/call",
        json!({"name": "whoami"}),
    )
    .await;
    assert_eq!(
        who["result"]["structuredContent"]["user"], "tokenuser",
        "{who}"
    );
    assert_eq!(who["result"]["structuredContent"]["auth"], "jwt", "{who}");

    let chat = call(
        &engine,
        &token("tokenuser", &["users"]),
        "tools/call",
        json!({"name": "chat", "arguments": {"model": "echo", "prompt": "by token"}}),
    )
    .await;
    assert_eq!(chat["result"]["content"][0]["text"], "by token", "{chat}");

    // A user without groups gets no tools, whatever groups the token claims.
    let list = call(
        &engine,
        &token("nogroups", &["admins"]),
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(list["result"]["tools"], json!([]), "{list}");

    let (_, _, body) = common::send(
        &engine,
        common::request("GET", "/.well-known/oauth-protected-resource", None, ""),
    )
    .await;
    let meta: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(meta["authorization_servers"], json!([ISSUER]), "{meta}");
}
