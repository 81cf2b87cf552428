//! Shared test setup: an embedded directory with one user per role and their keys, and an
//! engine over a config directory.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod behaviour;
pub mod jwks;
pub mod logs;
pub mod moto;
pub mod server;
pub mod wrapped;

use bytes::Bytes;
use pennyworth::auth::issue_key;
use pennyworth::directory::local::LocalDirectory;
use pennyworth::directory::{Directory, NewUser, now};
use pennyworth::{CompiledConfig, Engine};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repository root, which holds the default config.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Test principals: (name, groups).
pub const PRINCIPALS: &[(&str, &[&str])] = &[
    ("admin", &["admins"]),
    ("dev", &["developers"]),
    ("user", &["users"]),
    ("nogroup", &[]),
    ("expired", &["users"]),
    ("disabled", &["users"]),
];

/// A directory with the test principals and a key for each.
pub struct TestDirectory {
    /// The store.
    pub directory: Arc<LocalDirectory>,
    /// Key of each principal by name.
    pub keys: HashMap<String, String>,
    /// Key id of each principal by name.
    pub key_ids: HashMap<String, String>,
    /// User id of each principal by name.
    pub user_ids: HashMap<String, String>,
}

impl TestDirectory {
    pub async fn new() -> Self {
        let directory = Arc::new(LocalDirectory::in_memory().expect("open store"));
        let mut keys = HashMap::new();
        let mut key_ids = HashMap::new();
        let mut user_ids = HashMap::new();
        for (name, groups) in PRINCIPALS {
            let user = directory
                .create_user(NewUser {
                    username: name.to_string(),
                    email: None,
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                })
                .await
                .expect("create user");
            user_ids.insert(name.to_string(), user.id);
            let expires = (*name == "expired").then(|| now() - 10);
            let (record, key) = issue_key(directory.as_ref(), name, "test", expires)
                .await
                .expect("issue key");
            keys.insert(name.to_string(), key.expose().to_string());
            key_ids.insert(name.to_string(), record.id);
        }
        directory.set_enabled("disabled", false).expect("disable");
        Self {
            directory,
            keys,
            key_ids,
            user_ids,
        }
    }

    pub fn key(&self, name: &str) -> &str {
        self.keys
            .get(name)
            .unwrap_or_else(|| panic!("no test principal `{name}`"))
    }
}

/// An engine over `config_dir` with the test principals.
pub async fn engine(config_dir: &Path) -> (Engine, TestDirectory) {
    let dir = TestDirectory::new().await;
    let config =
        CompiledConfig::load(config_dir).unwrap_or_else(|e| panic!("config does not load:\n{e}"));
    (Engine::new(config, dir.directory.clone()), dir)
}

/// Copies the default config into a fresh temp dir (to edit in a test).
pub fn copy_default_config() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = repo_root();
    for f in ["routes.yaml", "models.yaml"] {
        std::fs::copy(root.join(f), tmp.path().join(f)).expect("copy config file");
    }
    std::fs::create_dir(tmp.path().join("policies")).expect("mkdir policies");
    for e in std::fs::read_dir(root.join("policies")).expect("read policies") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), tmp.path().join("policies").join(e.file_name()))
            .expect("copy policy");
    }
    tmp
}

/// Builds a request.
pub fn request(
    method: &str,
    path: &str,
    key: Option<&str>,
    body: impl Into<Bytes>,
) -> http::Request<Bytes> {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(body.into()).expect("request")
}

/// Sends a request and returns status and body bytes.
pub async fn send(
    engine: &Engine,
    req: http::Request<Bytes>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let resp = engine.handle(req).await;
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.expect("body"),
    )
}

/// A chat body for `model` with one user message.
pub fn chat_body(model: &str, text: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
            .to_string(),
    )
}

/// Sends a request with a Bearer credential and a JSON body (`Null`: none); returns the
/// status and the JSON answer (`Null` when empty or not JSON).
pub async fn call(
    engine: &Engine,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, _, bytes) = send(engine, request(method, path, Some(token), body)).await;
    (
        status.as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
