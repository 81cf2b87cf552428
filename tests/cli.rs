//! The `pennyworth` CLI end to end against `pennyworth serve`: users, keys, rotation and
//! revocation on the embedded store; `login` with Cognito (moto), cached tokens and refresh.

mod common;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::server::BIN;

fn serve(data: &Path, env: &[(&str, &str)]) -> (common::server::Server, String) {
    let (server, addr, _) = common::server::start(data, env);
    (server, format!("http://{addr}"))
}

/// Runs the CLI with a clean environment for its own variables.
fn cli(
    url: &str,
    key: Option<&str>,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("PENNYWORTH_API_URL", url)
        .env("PENNYWORTH_CONFIG_HOME", home)
        .env_remove("PENNYWORTH_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("PENNYWORTH_API_KEY", k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn cli");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("cli output")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "CLI failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn fails_with(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn manage_users_and_keys_against_serve() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = Command::new(BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("init");
    let admin = ok_json(&init)["key"].as_str().expect("key").to_string();
    let (_server, url) = serve(&data, &[]);
    let home = tmp.path().join("home");
    let run = |key: Option<&str>, args: &[&str]| cli(&url, key, &home, args, None, &[]);

    // Create a user and a key for them.
    let created = ok_json(&run(
        Some(&admin),
        &["users", "create", "carol", "--group", "users", "--json"],
    ));
    assert_eq!(created["groups"], serde_json::json!(["users"]));
    let key = ok_json(&run(
        Some(&admin),
        &[
            "keys", "create", "--name", "laptop", "--user", "carol", "--json",
        ],
    ));
    let carol = key["key"].as_str().expect("key").to_string();
    let id = key["id"].as_str().expect("id").to_string();

    // Use it.
    let me = ok_json(&run(Some(&carol), &["whoami", "--json"]));
    assert_eq!(me["user"], "carol");
    let table = run(Some(&carol), &["keys", "list"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("ID") && text.contains(&id) && !text.contains(&carol),
        "{text}"
    );

    // A user's own API key cannot mint keys (create or rotate): an admin rotates.
    fails_with(
        &run(Some(&carol), &["keys", "rotate", &id, "--json"]),
        1,
        "HTTP 403",
    );
    // Rotate: the old key dies, the new one works.
    let rotated = ok_json(&run(Some(&admin), &["keys", "rotate", &id, "--json"]));
    let carol2 = rotated["key"].as_str().expect("key").to_string();
    fails_with(&run(Some(&carol), &["whoami"]), 1, "invalid_api_key");
    assert_eq!(
        ok_json(&run(Some(&carol2), &["whoami", "--json"]))["user"],
        "carol"
    );

    // Revoke it.
    let id2 = rotated["id"].as_str().expect("id").to_string();
    assert!(
        run(Some(&carol2), &["keys", "revoke", &id2])
            .status
            .success()
    );
    fails_with(&run(Some(&carol2), &["whoami"]), 1, "HTTP 401");

    // Revoke every key of a user at once: two keys, one command with either of them.
    let mut spare = Vec::new();
    for name in ["a", "b"] {
        let k = ok_json(&run(
            Some(&admin),
            &[
                "keys", "create", "--name", name, "--user", "carol", "--json",
            ],
        ));
        spare.push(k["key"].as_str().expect("key").to_string());
    }
    let all = ok_json(&run(Some(&spare[0]), &["keys", "revoke-all", "--json"]));
    assert_eq!(all["revoked"].as_array().map(Vec::len), Some(2), "{all}");
    for k in &spare {
        fails_with(&run(Some(k), &["whoami"]), 1, "HTTP 401");
    }
    let none = run(Some(&admin), &["keys", "revoke-all", "--user", "carol"]);
    assert!(
        String::from_utf8_lossy(&none.stdout).contains("revoked 0 key(s) of carol"),
        "{none:?}"
    );

    // Users management and its errors.
    let shown = ok_json(&run(
        Some(&admin),
        &["users", "update", "carol", "--disable", "--json"],
    ));
    assert_eq!(shown["enabled"], false);
    fails_with(
        &run(Some(&admin), &["users", "show", "ghost"]),
        1,
        "user_not_found",
    );
    fails_with(&run(Some(&carol2), &["users", "list"]), 1, "HTTP 401");
    let listed = ok_json(&run(Some(&admin), &["users", "list", "--json"]));
    assert_eq!(listed["data"].as_array().expect("data").len(), 2);
    assert!(
        run(Some(&admin), &["users", "delete", "carol"])
            .status
            .success()
    );

    // No credentials, unreachable gateway.
    fails_with(&run(None, &["whoami"]), 2, "no credentials");
    fails_with(
        &cli(
            "http://127.0.0.1:9",
            Some(&admin),
            &home,
            &["whoami"],
            None,
            &[],
        ),
        3,
        "cannot reach",
    );
}

#[test]
fn login_with_cognito_caches_and_refreshes_tokens() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(pool) = rt.block_on(common::moto::pool()) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let env: Vec<(&str, &str)> = vec![
        ("PENNYWORTH_USER_POOL_ID", &pool.pool_id),
        ("PENNYWORTH_USER_POOL_CLIENT_ID", &pool.client_id),
        ("PENNYWORTH_COGNITO_ENDPOINT", &pool.endpoint),
        ("AWS_REGION", common::moto::REGION),
        ("AWS_ACCESS_KEY_ID", common::moto::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", common::moto::SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    // The first admin is created in the pool by `init`.
    let mut init = Command::new(BIN);
    init.args(["init", "--json", "--admin", "root", "--data-dir"])
        .arg(tmp.path().join("unused"));
    for (k, v) in &env {
        init.env(k, v);
    }
    let admin = ok_json(&init.output().expect("init"))["key"]
        .as_str()
        .expect("key")
        .to_string();
    let (_server, url) = serve(&tmp.path().join("unused"), &env);
    let home = tmp.path().join("home");

    let out = cli(
        &url,
        Some(&admin),
        &home,
        &[
            "users",
            "create",
            "erin",
            "--group",
            "developers",
            "--password-stdin",
        ],
        Some("Erin-pass-1!\n"),
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wrong password: one clear line.
    fails_with(
        &cli(
            &url,
            None,
            &home,
            &["login", "--username", "erin"],
            Some("nope\n"),
            &env,
        ),
        1,
        "login failed",
    );
    // Right password: tokens cached with 0600.
    let out = cli(
        &url,
        None,
        &home,
        &["login", "--username", "erin"],
        Some("Erin-pass-1!\n"),
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds = home.join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds)
            .expect("credentials")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let me = ok_json(&cli(&url, None, &home, &["whoami", "--json"], None, &env));
    assert_eq!(me["user"], "erin");
    assert_eq!(me["auth"], "jwt");
    assert_eq!(me["groups"], serde_json::json!(["developers"]));

    // An expired access token is refreshed with the refresh token.
    let mut session: Value =
        serde_json::from_slice(&std::fs::read(&creds).expect("read")).expect("json");
    let old = session["access_token"].clone();
    session["expires_at"] = Value::from(0);
    std::fs::write(&creds, session.to_string()).expect("write");
    let me = ok_json(&cli(&url, None, &home, &["whoami", "--json"], None, &env));
    assert_eq!(me["user"], "erin");
    let session: Value =
        serde_json::from_slice(&std::fs::read(&creds).expect("read")).expect("json");
    assert!(session["expires_at"].as_i64().expect("exp") > 0);
    assert_ne!(session["access_token"], old);

    // The token manages its owner's keys.
    let key = ok_json(&cli(
        &url,
        None,
        &home,
        &["keys", "create", "--name", "from-login", "--json"],
        None,
        &env,
    ));
    assert_eq!(key["user"], "erin");

    assert!(
        cli(&url, None, &home, &["logout"], None, &env)
            .status
            .success()
    );
    fails_with(
        &cli(&url, None, &home, &["whoami"], None, &env),
        2,
        "no credentials",
    );
}
