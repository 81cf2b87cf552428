//! After a deploy, as the deployment guide runs it: `scripts/deploy/smoke-test` against
//! `pennyworth serve` (the smoke-test key checked and used; a model the user may not use; a model
//! the account may not use yet, from a Bedrock stand-in answering AccessDeniedException), and
//! the first admin created with `pennyworth init` in a user pool shaped like the template's
//! (moto), then key rotation and revocation.

use serde_norway::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;

use common::server::BIN;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(name)).expect("read");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs the smoke test against `url` with these variables.
fn smoke(url: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(root().join("scripts/deploy/smoke-test"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PENNYWORTH_API_URL", url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run smoke-test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `pennyworth` CLI against a gateway.
fn cli(url: &str, key: &str, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("PENNYWORTH_API_URL", url)
        .env("PENNYWORTH_API_KEY", key)
        .env("PENNYWORTH_CONFIG_HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cli")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The smoke-test user of the guide (group `users`) and its key, made with the admin's key.
fn smoke_user(url: &str, admin: &str, home: &Path, env: &[(&str, &str)]) -> String {
    json_of(&cli(
        url,
        admin,
        home,
        &[
            "users",
            "create",
            "deploy-smoke",
            "--group",
            "users",
            "--json",
        ],
        env,
    ));
    json_of(&cli(
        url,
        admin,
        home,
        &[
            "keys",
            "create",
            "--name",
            "smoke-test",
            "--user",
            "deploy-smoke",
            "--json",
        ],
        env,
    ))["key"]
        .as_str()
        .expect("key")
        .to_string()
}

/// The smoke-test user's keys (ids).
fn smoke_keys(url: &str, admin: &str, home: &Path, env: &[(&str, &str)]) -> Vec<String> {
    json_of(&cli(
        url,
        admin,
        home,
        &["keys", "list", "--user", "deploy-smoke", "--json"],
        env,
    ))["data"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn smoke_test_checks_and_uses_its_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, addr, _) = common::server::start(&tmp.path().join("data"), &[]);
    let admin = common::server::admin_key_file(&tmp.path().join("data")).expect("admin key");
    let url = format!("http://{addr}");
    let home = tmp.path().join("home");
    let key = smoke_user(&url, &admin, &home, &[]);
    let before = smoke_keys(&url, &admin, &home, &[]);
    assert_eq!(before.len(), 1);

    // Health only, with a warning, when no key is configured.
    let (ok, text) = smoke(&format!("{url}/v1"), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("SMOKE_TEST_API_KEY is not set"), "{text}");

    // The whole run with a model the user may use (the built-in echo model: no AWS).
    let (ok, text) = smoke(
        &url,
        &[("SMOKE_TEST_API_KEY", &key), ("SMOKE_TEST_MODEL", "echo")],
    );
    assert!(ok, "{text}");
    for line in [
        "ok: GET /v1/health 200",
        "ok: GET /v1/whoami: deploy-smoke",
        "ok: GET /v1/models lists",
        "ok: POST /v1/chat/completions with echo",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert_eq!(
        smoke_keys(&url, &admin, &home, &[]),
        before,
        "the run mints no key (a user's API key may not)"
    );

    // A model the user may not use: reported with what to do.
    let (ok, text) = smoke(
        &url,
        &[
            ("SMOKE_TEST_API_KEY", &key),
            ("SMOKE_TEST_MODEL", "claude-opus-4.1"),
        ],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("may not use `claude-opus-4.1`"), "{text}");
    assert_eq!(smoke_keys(&url, &admin, &home, &[]), before);

    // Another commit than the one expected fails the run.
    let (ok, text) = smoke(
        &url,
        &[(
            "EXPECTED_COMMIT",
            "0000000000000000000000000000000000000000",
        )],
    );
    assert!(!ok && text.contains("expected 0000000"), "{text}");

    // A key that is not valid: one clear error, nothing created.
    let (ok, text) = smoke(&url, &[("SMOKE_TEST_API_KEY", "pw-not-a-key")]);
    assert!(
        !ok && text.contains("GET /v1/whoami answered 401"),
        "{text}"
    );
}

/// `pennyworth serve` with `config` on the embedded store in `data`; returns the server, its
/// URL and the first admin's key.
fn serve_with(
    config: &Path,
    data: &Path,
    env: &[(&str, &str)],
) -> (common::server::Server, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("PENNYWORTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let server = common::server::Server(child);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "serve exited"
        );
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("pennyworth listening on ") {
            let key = common::server::admin_key_file(data).unwrap_or_default();
            return (server, addr.to_string(), key);
        }
    }
}

#[test]
fn smoke_test_reports_a_model_the_account_may_not_use_yet() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bedrock = rt.block_on(bedrock_server::BedrockServer::start());
    // What Bedrock answers before the Anthropic use-case form is in, or while a Marketplace
    // subscription is missing.
    bedrock.script(
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        [bedrock_server::Reply::error(
            403,
            "AccessDeniedException",
            "Model use case details have not been submitted for this account.",
        )],
    );
    // The shipped config, its Bedrock aliases pointed at the stand-in.
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("config");
    std::fs::create_dir_all(config.join("policies")).expect("mkdir");
    std::fs::copy(root().join("routes.yaml"), config.join("routes.yaml")).expect("routes");
    for entry in std::fs::read_dir(root().join("policies")).expect("policies") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            config
                .join("policies")
                .join(path.file_name().expect("name")),
        )
        .expect("policy");
    }
    let mut models = yaml("models.yaml");
    models["providers"] = serde_norway::from_str(&format!(
        "bedrock: {{ endpoint_url: {}, retry: {{ max_attempts: 1 }} }}",
        bedrock.url()
    ))
    .expect("providers");
    std::fs::write(
        config.join("models.yaml"),
        serde_norway::to_string(&models).expect("yaml"),
    )
    .expect("models");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDPENNYWORTHTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/pennyworth-test"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/pennyworth-test",
        ),
    ];
    let (_server, url, admin) = serve_with(&config, &tmp.path().join("data"), &env);
    let home = tmp.path().join("home");
    let key = smoke_user(&url, &admin, &home, &[]);

    let (ok, text) = smoke(
        &url,
        &[
            ("SMOKE_TEST_API_KEY", &key),
            ("SMOKE_TEST_MODEL", "claude-haiku-4.5"),
        ],
    );
    assert!(!ok, "a model the account may not use fails the run: {text}");
    for needle in [
        "ok: GET /v1/models lists",
        "answered 403 upstream_access_denied",
        "use-case form",
        "aws-marketplace:Subscribe",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    assert_eq!(
        smoke_keys(&url, &admin, &home, &[]).len(),
        1,
        "the run mints no key (a user's API key may not)"
    );
    let calls = bedrock.recorded();
    assert_eq!(calls.len(), 1, "one model call");
    assert!(
        calls[0].model().contains("claude-haiku-4-5"),
        "{}",
        calls[0].model()
    );
}

#[test]
fn first_admin_with_init_in_a_pool_shaped_like_the_template() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(endpoint) = common::moto::endpoint() else {
        return;
    };
    let template = yaml("template.yaml");
    let pool_id = rt.block_on(template_pool(&endpoint, &template));
    let env: Vec<(&str, &str)> = vec![
        // What the guide exports, plus moto's endpoint and dummy credentials.
        ("PENNYWORTH_USER_POOL_ID", &pool_id),
        ("AWS_REGION", common::moto::REGION),
        ("PENNYWORTH_COGNITO_ENDPOINT", &endpoint),
        ("AWS_ACCESS_KEY_ID", common::moto::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", common::moto::SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("PENNYWORTH_IDENTITY_CACHE_TTL", "0"),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let init = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["init", "--json", "--admin", "alice", "--data-dir"])
            .arg(tmp.path().join("unused"));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output().expect("init")
    };
    let first = json_of(&init());
    assert_eq!(first["user"], "alice");
    let admin = first["key"].as_str().expect("key").to_string();
    let client = common::moto::client(&endpoint);
    let groups = rt
        .block_on(
            client
                .admin_list_groups_for_user()
                .user_pool_id(&pool_id)
                .username("alice")
                .send(),
        )
        .expect("groups");
    let names: Vec<_> = groups
        .groups()
        .iter()
        .filter_map(|g| g.group_name())
        .collect();
    assert_eq!(names, ["admins"]);
    // A pool with users is never initialized again.
    let again = init();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to initialize"));

    // The gateway on that pool: the smoke-test user and a full smoke run, then the guide's key
    // rotation and revocation.
    let (_server, addr, _) = common::server::start(&tmp.path().join("unused"), &env);
    let url = format!("http://{addr}");
    let home = tmp.path().join("home");
    let key = smoke_user(&url, &admin, &home, &env);
    let (ok, text) = smoke(
        &url,
        &[("SMOKE_TEST_API_KEY", &key), ("SMOKE_TEST_MODEL", "echo")],
    );
    assert!(ok, "{text}");
    let ids = smoke_keys(&url, &admin, &home, &env);
    assert_eq!(ids.len(), 1, "the run mints no key: {ids:?}");

    let rotated = json_of(&cli(
        &url,
        &admin,
        &home,
        &["keys", "rotate", &ids[0], "--json"],
        &env,
    ));
    let new_key = rotated["key"].as_str().expect("new key");
    let whoami = |k: &str| cli(&url, k, &home, &["whoami", "--json"], &env);
    assert!(!whoami(&key).status.success(), "the old key stops working");
    assert_eq!(json_of(&whoami(new_key))["user"], "deploy-smoke");
    let new_id = rotated["id"].as_str().expect("id");
    json_of(&cli(
        &url,
        &admin,
        &home,
        &["keys", "revoke", new_id, "--json"],
        &env,
    ));
    assert!(!whoami(new_key).status.success(), "revoked");
}

/// A user pool with the template's custom attribute and groups.
async fn template_pool(endpoint: &str, template: &Value) -> String {
    use aws_sdk_cognitoidentityprovider::types::{
        AttributeDataType, SchemaAttributeType, StringAttributeConstraintsType,
    };
    let client = common::moto::client(endpoint);
    let props = &template["Resources"]["UserPool"]["Properties"];
    let mut create = client
        .create_user_pool()
        .pool_name(format!("deploy-guide-{}", std::process::id()));
    for attr in props["Schema"].as_sequence().expect("schema") {
        let c = &attr["StringAttributeConstraints"];
        create = create.schema(
            SchemaAttributeType::builder()
                .name(attr["Name"].as_str().expect("name"))
                .attribute_data_type(AttributeDataType::String)
                .mutable(attr["Mutable"].as_bool().unwrap_or(false))
                .string_attribute_constraints(
                    StringAttributeConstraintsType::builder()
                        .min_length(c["MinLength"].as_str().expect("min"))
                        .max_length(c["MaxLength"].as_str().expect("max"))
                        .build(),
                )
                .build(),
        );
    }
    let pool = create.send().await.expect("create pool");
    let pool_id = pool
        .user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_string();
    let resources = template["Resources"].as_mapping().expect("resources");
    let mut groups = 0;
    for (_, r) in resources {
        if r["Type"].as_str() == Some("AWS::Cognito::UserPoolGroup") {
            let p = &r["Properties"];
            client
                .create_group()
                .user_pool_id(&pool_id)
                .group_name(p["GroupName"].as_str().expect("group"))
                .precedence(p["Precedence"].as_i64().expect("precedence") as i32)
                .send()
                .await
                .expect("create group");
            groups += 1;
        }
    }
    assert_eq!(groups, 3, "admins, developers, users");
    pool_id
}
