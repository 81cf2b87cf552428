//! The first hour of a new user: errors that say what to do, help that lists only what
//! applies, a clean shutdown, plain logs when piped; and (mod `readme`) every shell command of
//! the README's quick start and CLI sections run as printed against a started `serve`.

mod common;
#[path = "first_hour/readme.rs"]
mod readme;
#[path = "first_hour/serve.rs"]
mod serve;

use common::call;
use serde_json::{Value, json};
use serve::{Serve, Stderr, http, signal};
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_malformed_pw_key_is_an_invalid_api_key() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let good = dir.key("user").to_string();
    // Truncated (shaped like a JWT: three dot-separated parts), a wrong secret length, junk.
    let truncated = good[..good.len() - 10].to_string();
    for bad in [
        truncated.as_str(),
        "pw-YWRtaW4.abc.def",
        "pw-nonsense",
        "pw-",
    ] {
        let (status, body) = call(&engine, "GET", "/v1/models", bad, Value::Null).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("token"), "{bad}: {message}");
    }
    // A token that is not a key still gets the token answer on a route that takes tokens.
    let (status, body) = call(
        &engine,
        "GET",
        "/v1/models",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        Value::Null,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
}

#[tokio::test]
async fn ids_in_paths_and_error_messages_are_decoded() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let admin = dir.key("admin").to_string();
    let (status, body) = call(
        &engine,
        "POST",
        "/v1/admin/users",
        &admin,
        json!({"username": "carol@example.com", "groups": ["users"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The CLI percent-encodes path segments; the gateway must see the name itself.
    let (status, body) = call(
        &engine,
        "GET",
        "/v1/admin/users/carol%40example.com",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "carol@example.com");
    let (status, body) = call(
        &engine,
        "GET",
        "/v1/admin/users/nobody%40example.com",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nobody@example.com") && !message.contains("%40"),
        "{message}"
    );
    let (status, body) = call(
        &engine,
        "GET",
        "/v1/admin/users/bad%FF",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_path", "{body}");
}

/// A copy of the default config with `edit` applied to `models.yaml`.
fn config_with_models(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = common::copy_default_config();
    let path = dir.path().join("models.yaml");
    let text = std::fs::read_to_string(&path).expect("read models.yaml");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).expect("write models.yaml");
    dir
}

#[test]
fn bedrock_without_credentials_says_which_credentials_are_missing() {
    // The default AWS chain with nothing to find: no variables, no files, no instance metadata;
    // the endpoint is a closed port on loopback in case anything were found.
    let config = config_with_models(|t| {
        t.replace(
            "  claude-haiku-4.5:\n    provider: bedrock\n",
            "  claude-haiku-4.5:\n    provider: bedrock\n    endpoint_url: http://127.0.0.1:9\n",
        )
    });
    let home = tempfile::tempdir().expect("home");
    let missing = home.path().join("none");
    let missing = missing.to_str().expect("utf-8 path");
    let data = tempfile::tempdir().expect("data");
    let home_path = home.path().to_str().expect("utf-8 path");
    let server = Serve::start_isolated(
        config.path(),
        data.path(),
        &[
            ("HOME", home_path),
            ("PENNYWORTH_LOG", "info"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", missing),
            ("AWS_SHARED_CREDENTIALS_FILE", missing),
        ],
    );
    let key = server
        .key
        .clone()
        .expect("first start prints the admin key");
    let body =
        json!({"model": "claude-haiku-4.5", "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {key}"))],
        Some(&body.to_string()),
    );
    let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "upstream_credentials_missing");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    for needed in ["AWS credentials", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"] {
        assert!(message.contains(needed), "{message}");
    }
    let lines = server.stop_and_collect_stderr();
    let about_bedrock: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("bedrock") || l.contains("Bedrock"))
        .collect();
    assert_eq!(about_bedrock.len(), 1, "one log line: {lines:#?}");
    let line = about_bedrock[0];
    assert!(
        line.contains("no AWS credentials") && line.contains("AWS_PROFILE"),
        "{line}"
    );
    // The cause in words, not the SDK's Debug tree of the error.
    assert!(
        !line.contains("ConnectorError") && !line.contains("DispatchFailure"),
        "{line}"
    );
}

#[test]
fn check_warns_about_model_groups_on_one_side_only() {
    let config = config_with_models(|t| {
        t.replacen(
            "    upstream: us.anthropic.claude-haiku-4-5-20251001-v1:0\n    region: us-east-1\n    groups: [standard]",
            "    upstream: us.anthropic.claude-haiku-4-5-20251001-v1:0\n    region: us-east-1\n    groups: [standrad]",
            1,
        )
    });
    let check = |extra: &[&str]| {
        Command::new(serve::BIN)
            .args(["check", "--config"])
            .arg(config.path())
            .args(extra)
            .output()
            .expect("run check")
    };
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warnings alone pass: {stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("`standrad`"))
        .unwrap_or_else(|| panic!("no warning about `standrad`: {stderr}"));
    assert!(
        warning.starts_with("warning: models.yaml:") && warning.contains("named by no policy"),
        "{warning}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning(s) above"));

    let strict = check(&["--deny-warnings"]);
    assert!(!strict.status.success());

    // A policy naming a group no model has.
    std::fs::write(
        config.path().join("policies/extra.cedar"),
        "@id(\"typo\")\npermit (principal, action, resource in Pennyworth::ModelGroup::\"premuim\");\n",
    )
    .expect("write policy");
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: policies/extra.cedar:2: policy `typo` names model group `premuim`, which no model in models.yaml has"
        ),
        "{stderr}"
    );
}

#[test]
fn help_of_local_commands_lists_only_their_own_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(serve::BIN)
            .args(args)
            .output()
            .expect("run --help");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let remote_flags = ["--api-url", "--api-key"];
    for (cmd, own) in [
        ("serve", &["--listen", "--data-dir", "--config"][..]),
        ("init", &["--admin", "--json", "--data-dir"][..]),
        ("check", &["--config", "--deny-warnings"][..]),
    ] {
        let text = help(&[cmd, "--help"]);
        for flag in own {
            assert!(text.contains(flag), "{cmd} --help lacks {flag}:\n{text}");
        }
        for flag in remote_flags {
            assert!(!text.contains(flag), "{cmd} --help shows {flag}:\n{text}");
        }
        if cmd != "init" {
            assert!(
                !text.contains("--json"),
                "{cmd} --help shows --json:\n{text}"
            );
        }
    }
    for cmd in [
        &["keys", "list"][..],
        &["users", "create"][..],
        &["whoami"][..],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = help(&args);
        for flag in ["--api-url", "--api-key", "--json"] {
            assert!(text.contains(flag), "{cmd:?} --help lacks {flag}:\n{text}");
        }
    }
}

/// Waits for the child to exit; its exit code (`None`: killed by a signal).
fn wait_exit(server: &mut Serve, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_drains_open_connections_and_a_second_one_stops_at_once() {
    let config = common::repo_root();
    let data = tempfile::tempdir().expect("data");
    let mut server = Serve::start(
        &config,
        data.path(),
        &[("PENNYWORTH_LOG", "info")],
        Stderr::Keep,
    );
    // A request whose body never finishes keeps its connection busy.
    let mut busy = std::net::TcpStream::connect(&server.addr).expect("connect");
    {
        use std::io::Write;
        write!(
            busy,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
        )
        .expect("write");
    }
    // Let the server accept it before the signal.
    assert_eq!(http(&server.addr, "GET", "/v1/health", &[], None).0, 200);
    signal(&server, "INT");
    let drained = server.wait_for_stderr("draining", Duration::from_secs(10));
    assert!(
        drained.contains("draining 1 open connection(s) for up to 30 s"),
        "{drained}"
    );
    let started = Instant::now();
    signal(&server, "INT");
    let code = wait_exit(&mut server, Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code, Some(130), "second Ctrl-C: exit 130, not a panic");
    drop(busy);
}

#[cfg(unix)]
#[test]
fn ctrl_c_with_a_dead_stderr_exits_cleanly() {
    // `pennyworth serve 2>&1 | tee log` and Ctrl-C: tee is gone before the shutdown lines.
    let config = common::repo_root();
    let data = tempfile::tempdir().expect("data");
    let mut server = Serve::start(
        &config,
        data.path(),
        &[("PENNYWORTH_LOG", "info")],
        Stderr::Close,
    );
    assert_eq!(http(&server.addr, "GET", "/v1/health", &[], None).0, 200);
    signal(&server, "INT");
    let code = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(code, Some(0), "no panic (101) on a closed stderr");
}

#[cfg(unix)]
#[test]
fn piped_logs_have_no_colours_and_one_request_id_format() {
    let config = common::repo_root();
    let data = tempfile::tempdir().expect("data");
    let server = Serve::start(
        &config,
        data.path(),
        &[("PENNYWORTH_LOG", "info")],
        Stderr::Keep,
    );
    let key = server.key.clone().expect("admin key");
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str())];
    // An access line, a usage line and an audit line, each with a request id.
    let chat = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        Some(&chat.to_string()),
    );
    assert_eq!(status, 200);
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/keys",
        &headers,
        Some(r#"{"name":"laptop"}"#),
    );
    assert_eq!(status, 201);
    let lines = server.stop_and_collect_stderr();
    let text = lines.join("\n");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a piped log:\n{text}"
    );
    let with_id: Vec<&String> = lines.iter().filter(|l| l.contains("request_id")).collect();
    for target in [
        "pennyworth::access",
        "pennyworth::usage",
        "pennyworth::audit",
    ] {
        assert!(
            with_id.iter().any(|l| l.contains(target)),
            "no {target} line with a request id:\n{text}"
        );
    }
    for line in &with_id {
        let value = line
            .split("request_id=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        assert!(
            value.starts_with("req_") && value[4..].chars().all(|c| c.is_ascii_hexdigit()),
            "request_id formatted differently: {line}"
        );
    }
}
