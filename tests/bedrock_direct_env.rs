//! The Bedrock provider built from the environment as `serve` builds it (no fixed
//! credentials): the service's own settings the AWS SDK honours, `AWS_BEARER_TOKEN_BEDROCK`
//! (a Bedrock API key, sent as a bearer token instead of a SigV4 signature) and
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. One test in its own binary: it sets process
//! environment variables.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;

use bedrock_server::BedrockServer;
use pennyworth::providers::bedrock::BedrockSettings;
use pennyworth::providers::{ProviderSettings, Providers};
use pennyworth::{CompiledConfig, Engine};

#[tokio::test]
async fn the_service_settings_of_the_environment_are_honoured() {
    let server = BedrockServer::start().await;
    let missing = tempfile::tempdir().unwrap();
    // SAFETY: the only test of this binary, on a current-thread runtime, before anything
    // reads the environment.
    unsafe {
        std::env::set_var("AWS_BEARER_TOKEN_BEDROCK", "test-bedrock-api-key");
        std::env::set_var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url());
        std::env::set_var("AWS_CONFIG_FILE", missing.path().join("config"));
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            missing.path().join("credentials"),
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_PROFILE");
    }
    let config = common::copy_default_config();
    std::fs::write(
        config.path().join("models.yaml"),
        "models:\n  claude:\n    provider: bedrock\n    upstream: us.anthropic.claude-sonnet-4-5-20250929-v1:0\n    region: us-east-1\n    groups: [standard]\n",
    )
    .unwrap();
    let compiled = CompiledConfig::load(config.path()).unwrap();
    let providers = Providers::build(
        &compiled,
        ProviderSettings {
            bedrock: BedrockSettings {
                credentials: None,
                default_region: Some("us-east-1".into()),
            },
            ..ProviderSettings::default()
        },
    )
    .await
    .unwrap();
    let dir = common::TestDirectory::new().await;
    let engine = Engine::with_providers(compiled, dir.directory.clone(), providers);
    let (status, body) = common::call(
        &engine,
        "POST",
        "/v1/chat/completions",
        dir.key("user"),
        serde_json::json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from Bedrock"
    );
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].authorization(), "Bearer test-bedrock-api-key");
    assert!(!recorded[0].headers.contains_key("x-amz-date"));
}
