//! MCP requests replayed through the engine: `tests/fixtures/mcp_cases/*.yaml` → insta
//! snapshots of status, the headers that matter and the body, with upstream servers that are
//! down (nothing listens) and slow (accepts, never answers). Also: a policy edit takes effect
//! on the next start, and bad `mcp:` config is reported with file and line.

mod common;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    description: String,
    request: FixtureRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureRequest {
    #[serde(default = "post")]
    method: String,
    #[serde(default = "mcp_path")]
    path: String,
    #[serde(default, rename = "as")]
    principal: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    raw_body: Option<String>,
}

fn post() -> String {
    "POST".into()
}

fn mcp_path() -> String {
    "/v1/mcp".into()
}

const HEADERS: &[&str] = &[
    "content-type",
    "allow",
    "www-authenticate",
    "cache-control",
    "mcp-session-id",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

fn config_with(servers: &str) -> tempfile::TempDir {
    let tmp = common::copy_default_config();
    let path = tmp.path().join("routes.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("  servers: []\n"));
    std::fs::write(&path, text.replace("  servers: []\n", servers)).expect("write");
    tmp
}

async fn engine_for(dir: &std::path::Path) -> (pennyworth::Engine, common::TestDirectory) {
    let (engine, d) = common::engine(dir).await;
    (engine.mcp_env(Arc::new(|_| None)), d)
}

fn stabilize(text: &str, dir: &common::TestDirectory) -> String {
    let mut out = text.to_string();
    for (name, _) in common::PRINCIPALS {
        out = out
            .replace(&dir.key_ids[*name], &format!("[key-id:{name}]"))
            .replace(&dir.user_ids[*name], &format!("[user-id:{name}]"));
    }
    out
}

#[tokio::test]
async fn mcp_fixtures() {
    let (slow_port, _slow) = silent_server().await;
    let down_port = free_port();
    let config = config_with(&format!(
        "  servers:\n    - name: down\n      url: http://127.0.0.1:{down_port}/mcp\n      timeout_ms: 2000\n    - name: slow\n      url: http://127.0.0.1:{slow_port}/mcp\n      timeout_ms: 300\n"
    ));
    let root = common::repo_root().join("tests/fixtures/mcp_cases");
    let mut paths: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "expected at least 30 MCP fixtures");
    let (engine, dir) = engine_for(config.path()).await;
    for path in paths {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let fixture: Fixture =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &fixture.request;
        let mut b = http::Request::builder()
            .method(r.method.as_str())
            .uri(r.path.as_str())
            .header("content-type", "application/json");
        if let Some(p) = &r.principal {
            b = b.header("authorization", format!("Bearer {}", dir.key(p)));
        }
        for (k, v) in &r.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = match (&r.body, &r.raw_body) {
            (Some(v), None) => Bytes::from(v.to_string()),
            (None, Some(s)) => Bytes::from(s.clone()),
            (None, None) => Bytes::new(),
            _ => panic!("{name}: give body or raw_body"),
        };
        let (status, headers, body) = common::send(&engine, b.body(body).expect("request")).await;
        assert_ne!(status.as_u16(), 500, "{name}: a 500");
        let body = stabilize(&String::from_utf8_lossy(&body), &dir);
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"))
        };
        if r.path == "/v1/mcp" && status.is_success() && !body.is_null() {
            assert_eq!(body["jsonrpc"], "2.0", "{name}: a JSON-RPC message");
        }
        let shown: BTreeMap<&str, String> = HEADERS
            .iter()
            .filter_map(|h| {
                headers
                    .get(*h)
                    .map(|v| (*h, v.to_str().unwrap_or("<binary>").to_string()))
            })
            .collect();
        let snapshot = json!({"status": status.as_u16(), "headers": shown, "body": body});
        insta::with_settings!({
            description => fixture.description.clone(),
            snapshot_path => "fixtures/mcp_cases/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_yaml_snapshot!(name, snapshot);
        });
    }
}

fn rpc(method: &str, params: Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
}

async fn tool_names(engine: &pennyworth::Engine, key: &str) -> Vec<String> {
    let (_, _, body) = common::send(
        engine,
        common::request("POST", "/v1/mcp", Some(key), rpc("tools/list", json!({}))),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).expect("json");
    v["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn policy_edit_applies_after_restart() {
    let config = common::copy_default_config();
    let (engine, dir) = engine_for(config.path()).await;
    assert!(
        tool_names(&engine, dir.key("user"))
            .await
            .contains(&"chat".to_string())
    );

    std::fs::write(
        config.path().join("policies/no_chat_tool.cedar"),
        "@id(\"users-no-chat-tool\")\nforbid (\n  principal in Pennyworth::Group::\"users\",\n  action == Pennyworth::Action::\"call_tool\",\n  resource == Pennyworth::Tool::\"chat\"\n);\n",
    )
    .expect("write policy");
    let config2 = pennyworth::CompiledConfig::load(config.path()).expect("config loads");
    let engine = pennyworth::Engine::new(config2, dir.directory.clone());
    let names = tool_names(&engine, dir.key("user")).await;
    assert!(!names.contains(&"chat".to_string()), "{names:?}");
    assert!(names.contains(&"whoami".to_string()), "{names:?}");
    let (status, _, body) = common::send(
        &engine,
        common::request(
            "POST",
            "/v1/mcp",
            Some(dir.key("user")),
            rpc(
                "tools/call",
                json!({"name": "chat", "arguments": {"model": "echo", "prompt": "x"}}),
            ),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], -32602, "{v}");
    // Developers keep it.
    assert!(
        tool_names(&engine, dir.key("dev"))
            .await
            .contains(&"chat".to_string())
    );
}

#[test]
fn bad_mcp_config_names_lines() {
    let tmp = config_with(
        "  public_url: ftp://x\n  servers:\n    - name: Bad__Name\n      url: http://127.0.0.1:1/mcp\n    - name: ok\n      url: not a url\n      timeout_ms: 0\n      protocol: 1999-01-01\n      headers:\n        - name: X-Key\n          env: 1BAD\n        - name: Accept\n          value: x\n    - name: builtin\n      url: http://127.0.0.1:1/mcp\n    - name: extra\n      url: http://127.0.0.1:1/mcp\n      colour: red\n",
    );
    let errors = match pennyworth::CompiledConfig::load(tmp.path()) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e.to_string(),
    };
    insta::with_settings!({
        snapshot_path => "fixtures/mcp_cases/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("config_errors", errors);
    });
}

#[tokio::test]
async fn protected_resource_names_the_user_pool_and_public_url() {
    let config = config_with("  public_url: https://ai.example.com/\n  servers: []\n");
    let (engine, _dir) = engine_for(config.path()).await;
    let jwt = pennyworth::auth::jwt::JwtVerifier::new(pennyworth::auth::jwt::JwtConfig::cognito(
        "eu-west-1",
        "eu-west-1_AbCdEf",
        "client123",
        None,
    ))
    .expect("verifier");
    let engine = engine.with_jwt(jwt);
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/v1/mcp",
    ] {
        let (status, _, body) = common::send(&engine, common::request("GET", path, None, "")).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["resource"], "https://ai.example.com/v1/mcp", "{v}");
        assert_eq!(
            v["authorization_servers"],
            json!(["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf"]),
            "{v}"
        );
    }
    // The challenge and the Origin check use the configured URL too.
    let (status, headers, _) = common::send(
        &engine,
        http::Request::builder()
            .method("POST")
            .uri("/v1/mcp")
            .header("origin", "https://ai.example.com")
            .body(rpc("tools/list", json!({})))
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("resource_metadata=\"https://ai.example.com/.well-known/oauth-protected-resource/v1/mcp\"")
    );
}

#[tokio::test]
async fn a_silent_upstream_slows_one_listing_not_every_one() {
    let (slow_port, _slow) = silent_server().await;
    let config = config_with(&format!(
        "  servers:\n    - name: slow\n      url: http://127.0.0.1:{slow_port}/mcp\n      timeout_ms: 400\n"
    ));
    let (engine, dir) = engine_for(config.path()).await;
    let started = std::time::Instant::now();
    let first = tool_names(&engine, dir.key("admin")).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(350));
    assert!(first.contains(&"chat".to_string()) && !first.iter().any(|n| n.starts_with("slow__")));
    let started = std::time::Instant::now();
    let second = tool_names(&engine, dir.key("admin")).await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(300),
        "the failed listing was tried again: {:?}",
        started.elapsed()
    );
    assert_eq!(first, second);
}

#[test]
fn serve_refuses_to_start_without_an_upstream_credential() {
    let config = config_with(
        "  servers:\n    - name: docs\n      url: http://127.0.0.1:9/mcp\n      headers:\n        - name: Authorization\n          env: PW_TEST_SURELY_UNSET_TOKEN\n          prefix: \"Bearer \"\n",
    );
    let data = tempfile::tempdir().expect("data dir");
    let out = std::process::Command::new(common::server::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config.path())
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("PW_TEST_SURELY_UNSET_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "mcp server `docs`: the environment variable `PW_TEST_SURELY_UNSET_TOKEN` is not set"
        ),
        "{stderr}"
    );
}
