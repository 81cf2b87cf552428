//! An engine whose Bedrock aliases point at a [`BedrockServer`], with explicit test
//! credentials and region: no environment is read and nothing leaves 127.0.0.1.
#![allow(dead_code, reason = "each test binary uses a different part")]

use super::bedrock_server::BedrockServer;
use crate::common;
use bytes::Bytes;
use pennyworth::providers::bedrock::BedrockSettings;
use pennyworth::providers::{ProviderSettings, Providers};
use pennyworth::{CompiledConfig, Engine};
use serde_json::Value;

/// Test access key id (appears in the SigV4 credential scope).
pub const ACCESS_KEY: &str = "AKIDPENNYWORTHTEST";

/// The aliases tests use; `{url}` is the test server.
pub const MODELS: &str = r#"
providers:
  bedrock:
    endpoint_url: {url}
    retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 5 }

models:
  echo:
    provider: echo
    groups: [standard]
  claude:
    provider: bedrock
    upstream: us.anthropic.claude-sonnet-4-5-20250929-v1:0
    region: us-east-1
    groups: [standard]
    pricing: { input: 3.00, output: 15.00, cache_read: 0.30, cache_write: 3.75 }
    limits: { max_output_tokens: 64000 }
    fallbacks: [nova, premium-only]
  nova:
    provider: bedrock
    upstream: us.amazon.nova-pro-v1:0
    region: us-west-2
    groups: [standard]
    limits: { max_output_tokens: 10000 }
  premium-only:
    provider: bedrock
    upstream: premium-model
    region: us-east-1
    groups: [premium]
  gpt-oss:
    provider: bedrock
    upstream: openai.gpt-oss-120b-1:0
    region: us-west-2
    groups: [standard]
  slow:
    provider: bedrock
    upstream: slow-model
    region: eu-west-1
    timeout_ms: 300
    retry: { max_attempts: 1 }
    groups: [standard]
    fallbacks: [nova]
  titan:
    provider: bedrock
    upstream: amazon.titan-embed-text-v2:0
    region: us-east-1
    kind: embedding
    groups: [standard]
    pricing: { input: 0.02 }
  cohere:
    provider: bedrock
    upstream: cohere.embed-english-v3
    region: us-east-1
    kind: embedding
    groups: [standard]
  cohere-v4:
    provider: bedrock
    upstream: us.cohere.embed-v4:0
    region: us-east-1
    kind: embedding
    groups: [standard]
  single:
    provider: bedrock
    upstream: single-model
    region: eu-west-1
    retry: { max_attempts: 1 }
    groups: [standard]
"#;

/// An engine over the test models, with the test principals.
pub struct Harness {
    /// The engine.
    pub engine: std::sync::Arc<Engine>,
    /// Users and keys.
    pub dir: common::TestDirectory,
    /// The Bedrock test server.
    pub server: BedrockServer,
    _config: tempfile::TempDir,
}

/// The explicit settings tests use.
pub fn settings() -> BedrockSettings {
    BedrockSettings {
        credentials: Some(aws_sdk_bedrockruntime::config::Credentials::new(
            ACCESS_KEY,
            "pennyworth-test-secret",
            None,
            None,
            "tests",
        )),
        default_region: Some("us-east-1".into()),
    }
}

impl Harness {
    /// Starts a test server and an engine pointed at it.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Like [`Harness::start`], with `extra` appended to the test `models.yaml`.
    pub async fn start_with(extra: &str) -> Self {
        Self::start_full(extra, None, None).await
    }

    /// Like [`Harness::start_with`], recording usage in `usage` and with `limits` as
    /// `limits.yaml`.
    pub async fn start_full(
        extra: &str,
        usage: Option<std::sync::Arc<dyn pennyworth::usage::store::UsageStore>>,
        limits: Option<&str>,
    ) -> Self {
        let server = BedrockServer::start().await;
        let config = common::copy_default_config();
        if let Some(limits) = limits {
            std::fs::write(config.path().join("limits.yaml"), limits).expect("write limits.yaml");
        }
        std::fs::write(
            config.path().join("models.yaml"),
            MODELS.replace("{url}", &server.url()) + extra,
        )
        .expect("write models.yaml");
        let compiled = CompiledConfig::load(config.path())
            .unwrap_or_else(|e| panic!("test config does not load:\n{e}"));
        let providers = Providers::build(
            &compiled,
            ProviderSettings {
                bedrock: settings(),
                ..ProviderSettings::default()
            },
        )
        .await
        .expect("build providers");
        let dir = common::TestDirectory::new().await;
        let mut engine = Engine::with_providers(compiled, dir.directory.clone(), providers);
        if let Some(usage) = usage {
            engine = engine.usage_store(usage);
        }
        let engine = std::sync::Arc::new(engine);
        Self {
            engine,
            dir,
            server,
            _config: config,
        }
    }

    /// POSTs a chat body as the `user` principal; returns status, headers and body.
    pub async fn chat(&self, body: Value) -> (http::StatusCode, http::HeaderMap, Bytes) {
        let req = common::request(
            "POST",
            "/v1/chat/completions",
            Some(self.dir.key("user")),
            Bytes::from(body.to_string()),
        );
        common::send(&self.engine, req).await
    }

    /// POSTs a body to `path` as the `user` principal; returns status, headers and JSON.
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, http::HeaderMap, Value) {
        let req = common::request(
            "POST",
            path,
            Some(self.dir.key("user")),
            Bytes::from(body.to_string()),
        );
        let (status, headers, bytes) = common::send(&self.engine, req).await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status.as_u16(), headers, v)
    }

    /// Like [`Harness::chat`], parsing a JSON body.
    pub async fn chat_json(&self, body: Value) -> (u16, http::HeaderMap, Value) {
        let (status, headers, bytes) = self.chat(body).await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {bytes:?}"));
        (status.as_u16(), headers, v)
    }
}

/// The `data:` payloads of an SSE body, JSON-parsed (`[DONE]` as a string).
pub fn sse_events(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("SSE is UTF-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data line: {e:?}"));
            if data == "[DONE]" {
                Value::String("[DONE]".into())
            } else {
                serde_json::from_str(data).expect("SSE data is JSON")
            }
        })
        .collect()
}
