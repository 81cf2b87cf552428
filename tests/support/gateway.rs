//! `pennyworth serve` in front of the Bedrock test server, for the tests that drive real
//! clients (Claude Code, Codex, the Responses SDKs): the server runs with static test
//! credentials and no profile or instance metadata to look at (nothing leaves 127.0.0.1), and a
//! member of the `users` group gets a key of their own.
#![allow(dead_code, reason = "each test binary uses a different part")]

use super::bedrock_server::BedrockServer;
use crate::common;
use serde_json::{Value, json};

/// The running gateway. Fields drop in order: the Bedrock server before its runtime.
pub struct Gateway {
    /// The Bedrock test server the aliases point at.
    pub bedrock: BedrockServer,
    /// The runtime the Bedrock server runs on.
    pub runtime: tokio::runtime::Runtime,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The key of the `users` member.
    pub user_key: String,
    _server: common::server::Server,
    _config: tempfile::TempDir,
    _data: tempfile::TempDir,
}

const AWS_ENV: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "AKIDPENNYWORTHCLIENT"),
    ("AWS_SECRET_ACCESS_KEY", "pennyworth-client-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/pennyworth-test"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/pennyworth-test",
    ),
];

impl Gateway {
    /// Starts the Bedrock test server (its streamed answers call `tool` with `input` after
    /// signed thinking), `serve` with the repository's routes and policies and `models`
    /// (`{url}` is the Bedrock server) as models.yaml, and creates `user` in `users` with a
    /// key named `key_name`.
    pub fn start(models: &str, tool: &str, input: Value, user: &str, key_name: &str) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let bedrock = runtime.block_on(BedrockServer::start());
        bedrock.prefer_tool(tool, input);
        let config = common::copy_default_config();
        std::fs::write(
            config.path().join("models.yaml"),
            models.replace("{url}", &bedrock.url()),
        )
        .expect("write models.yaml");
        let data = tempfile::tempdir().expect("temp dir");
        let (server, addr, printed) =
            common::server::start_in(config.path(), data.path(), &AWS_ENV);
        let admin_key = common::server::admin_key_file(data.path())
            .unwrap_or_else(|| panic!("serve wrote no admin key file: {printed:?}"));
        let url = format!("http://{addr}");
        let user_key = runtime.block_on(async {
            let http = reqwest::Client::new();
            let created = http
                .post(format!("{url}/v1/admin/users"))
                .bearer_auth(&admin_key)
                .json(&json!({"username": user, "groups": ["users"]}))
                .send()
                .await
                .expect("create user");
            assert_eq!(created.status(), 201);
            let key: Value = http
                .post(format!("{url}/v1/keys"))
                .bearer_auth(&admin_key)
                .json(&json!({"name": key_name, "user": user}))
                .send()
                .await
                .expect("create key")
                .json()
                .await
                .expect("key json");
            key["key"].as_str().expect("key").to_string()
        });
        Self {
            bedrock,
            runtime,
            url,
            user_key,
            _server: server,
            _config: config,
            _data: data,
        }
    }

    /// True when a tool result holding `marker` reached Bedrock (the client ran the tool and
    /// sent its output back).
    pub fn tool_result_sent(&self, marker: &str) -> bool {
        self.bedrock.recorded().iter().any(|r| {
            r.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| m["content"].as_array().into_iter().flatten())
                .any(|b| b["toolResult"]["content"].to_string().contains(marker))
        })
    }

    /// True when an assistant turn went back to Bedrock starting with the signed reasoning
    /// the test server handed out.
    pub fn signed_reasoning_sent(&self) -> bool {
        self.bedrock.recorded().iter().any(|r| {
            r.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| {
                    m["role"] == "assistant"
                        && m["content"][0]["reasoningContent"]["reasoningText"]["signature"]
                            == "test-signature"
                })
        })
    }
}

/// Runs a client CLI with no standard input and the machine's `PATH` only (plus `env`), in
/// `home` as its home and working directory, for at most three minutes; returns whether it
/// succeeded, its stdout and its stderr.
pub fn run_cli(
    mut cmd: std::process::Command,
    home: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    cmd.current_dir(home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the client");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("poll the client").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("client output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Gateway {
    /// What every agent CLI test proves. With `model`, `run` (the client, given a model name)
    /// runs the tool the test server asks for (`echo pennyworth-ok`), sends its output back
    /// with the signed reasoning first in the assistant turn, and prints an answer quoting
    /// it; with `denied`, a model the user may not use, it fails without reaching Bedrock.
    pub fn check_agent(
        &self,
        client: &str,
        model: &str,
        denied: &str,
        run: impl Fn(&str) -> (bool, String, String),
    ) {
        let (ok, stdout, stderr) = run(model);
        assert!(ok, "{client} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            self.tool_result_sent("pennyworth-ok"),
            "no tool result reached Bedrock\nstdout:\n{stdout}"
        );
        assert!(self.signed_reasoning_sent());
        assert!(
            stdout.contains("pennyworth-ok"),
            "the final answer does not quote the command's output:\n{stdout}"
        );
        eprintln!("{client} answered: {}", stdout.trim());

        self.bedrock.clear();
        let (ok, stdout, _) = run(denied);
        assert!(!ok, "a denied model answered:\n{stdout}");
        eprintln!("{client} with a denied model: {}", stdout.trim());
        let upstream = self.bedrock.recorded();
        assert!(
            upstream.iter().all(|r| r.model() != "premium-model"),
            "the denied model reached Bedrock"
        );
    }
}
