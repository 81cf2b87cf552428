//! Bad configs: each case edits a copy of the default config and snapshots every problem
//! `Engine::load` (and `pennyworth check`) reports, with file and line.

mod common;

use pennyworth::CompiledConfig;
use std::path::Path;

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

fn errors_of(dir: &Path) -> String {
    match CompiledConfig::load(dir) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e
            .to_string()
            .replace(&dir.display().to_string(), "<config>"),
    }
}

#[test]
fn shipped_config_is_valid() {
    CompiledConfig::load(&common::repo_root()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unknown_field_in_models_names_line() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "models.yaml",
        "    pricing: { input: 0.80,",
        "    prise: { input: 0.80,",
    );
    let errors = errors_of(tmp.path());
    assert!(errors.starts_with("models.yaml:"), "{errors}");
    insta::assert_snapshot!(errors);
}

#[test]
fn unknown_provider() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "models.yaml",
        "provider: bedrock",
        "provider: openia",
    );
    insta::assert_snapshot!(errors_of(tmp.path()));
}

#[test]
fn bad_model_cross_references_all_reported() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "models.yaml",
        "fallbacks: [claude-haiku-4.5]",
        "fallbacks: [claude-haiku-9]",
    );
    edit(
        tmp.path(),
        "models.yaml",
        "    upstream: us.amazon.nova-lite-v1:0\n",
        "",
    );
    edit(
        tmp.path(),
        "models.yaml",
        "pricing: { input: 0.035,",
        "pricing: { input: -0.035,",
    );
    let errors = errors_of(tmp.path());
    assert_eq!(errors.lines().count(), 3, "{errors}");
    insta::assert_snapshot!(errors);
}

#[test]
fn route_errors_all_reported() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "routes.yaml",
        "    action: whoami",
        "    action: who_am_i",
    );
    edit(
        tmp.path(),
        "routes.yaml",
        "    handler: list_models",
        "    handler: list_modles",
    );
    let errors = errors_of(tmp.path());
    insta::assert_snapshot!(errors);
}

#[test]
fn route_semantics() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "routes.yaml",
        "    action: whoami",
        "    action: chat",
    );
    edit(
        tmp.path(),
        "routes.yaml",
        "    method: GET\n    path: /v1/version",
        "    method: get\n    path: /v1/version",
    );
    edit(
        tmp.path(),
        "routes.yaml",
        "    path: /v1/models/{id}",
        "    path: /v1/models",
    );
    let text = std::fs::read_to_string(tmp.path().join("routes.yaml")).expect("read");
    std::fs::write(
        tmp.path().join("routes.yaml"),
        text + "\n  - name: chat\n    method: GET\n    path: /v1/other\n    handler: chat_completions\n    action: chat\n",
    )
    .expect("write");
    insta::assert_snapshot!(errors_of(tmp.path()));
}

#[test]
fn policy_syntax_error_names_file_and_line() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "policies/models.cedar",
        "resource is Pennyworth::Model\n);",
        "resource is Pennyworth::Model\n)",
    );
    let errors = errors_of(tmp.path());
    assert!(errors.contains("policies/models.cedar:"), "{errors}");
    insta::assert_snapshot!(errors);
}

#[test]
fn policy_fails_strict_validation() {
    let tmp = common::copy_default_config();
    std::fs::write(
        tmp.path().join("policies/extra.cedar"),
        "// a typo in an entity type and an attribute that does not exist\n\
         permit (principal in Pennyworth::Grup::\"x\", action, resource);\n\
         permit (principal, action == Pennyworth::Action::\"chat\", resource)\n  when { resource.price < 10 };\n",
    )
    .expect("write");
    let errors = errors_of(tmp.path());
    assert!(errors.contains("policies/extra.cedar:2:"), "{errors}");
    assert!(errors.contains("policies/extra.cedar:4:"), "{errors}");
    insta::assert_snapshot!(errors);
}

#[test]
fn schema_error() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "policies/schema.cedarschema",
        "entity ModelGroup;",
        "entity ModelGroup",
    );
    let errors = errors_of(tmp.path());
    assert!(
        errors.starts_with("policies/schema.cedarschema:"),
        "{errors}"
    );
    insta::assert_snapshot!(errors);
}

#[test]
fn missing_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    insta::assert_snapshot!(errors_of(tmp.path()));
}

#[test]
fn check_command_prints_all_problems_and_fails() {
    let tmp = common::copy_default_config();
    edit(
        tmp.path(),
        "routes.yaml",
        "    action: whoami",
        "    action: who_am_i",
    );
    edit(
        tmp.path(),
        "models.yaml",
        "fallbacks: [claude-haiku-4.5]",
        "fallbacks: [nope]",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pennyworth"))
        .args(["check", "--config"])
        .arg(tmp.path())
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes.yaml:"), "{stderr}");
    assert!(stderr.contains("models.yaml:"), "{stderr}");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_pennyworth"))
        .args(["check", "--config"])
        .arg(common::repo_root())
        .output()
        .expect("run check");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn upstream_settings_are_validated_with_lines() {
    let tmp = common::copy_default_config();
    let path = tmp.path().join("models.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let text = text.replacen(
        "models:\n",
        "providers:\n  bedrock:\n    endpoint_url: localhost:9000\n    retry: { max_attempts: 0 }\n\nmodels:\n",
        1,
    );
    std::fs::write(&path, text).expect("write");
    edit(
        tmp.path(),
        "models.yaml",
        "    upstream: us.amazon.nova-lite-v1:0\n",
        "    upstream: us.amazon.nova-lite-v1:0\n    timeout_ms: 0\n    endpoint_url: ftp://vpce.example\n",
    );
    edit(
        tmp.path(),
        "models.yaml",
        "    upstream: us.amazon.nova-micro-v1:0\n    region: us-east-1\n",
        "    upstream: us.amazon.nova-micro-v1:0\n    region: US_EAST\n    retry: { initial_backoff_ms: 500, max_backoff_ms: 100 }\n",
    );
    edit(
        tmp.path(),
        "models.yaml",
        "    owned_by: pennyworth\n",
        "    owned_by: pennyworth\n    endpoint_url: http://127.0.0.1:1\n",
    );
    insta::assert_snapshot!(errors_of(tmp.path()));
}

#[test]
fn upstream_settings_accept_valid_values() {
    let tmp = common::copy_default_config();
    let path = tmp.path().join("models.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let text = text.replacen(
        "models:\n",
        "providers:\n  bedrock:\n    region: eu-west-1\n    endpoint_url: https://vpce-0a1b.bedrock-runtime.eu-west-1.vpce.amazonaws.com\n    timeout_ms: 120000\n    retry: { max_attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 2000 }\n\nmodels:\n",
        1,
    );
    std::fs::write(&path, text).expect("write");
    edit(
        tmp.path(),
        "models.yaml",
        "    upstream: us.amazon.nova-lite-v1:0\n",
        "    upstream: us.amazon.nova-lite-v1:0\n    timeout_ms: 5000\n    endpoint_url: http://127.0.0.1:9000\n    retry: { max_attempts: 1 }\n",
    );
    let config = CompiledConfig::load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let lite = config
        .models()
        .find(|m| m.alias == "nova-lite")
        .expect("nova-lite");
    let s = &lite.upstream_settings;
    assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(
        s.region.as_deref(),
        Some("us-east-1"),
        "the alias's region wins"
    );
    assert_eq!(s.timeout.as_millis(), 5000);
    assert_eq!(s.retry.max_attempts, 1);
    assert_eq!(
        s.retry.initial_backoff.as_millis(),
        100,
        "from providers.bedrock"
    );
    let pro = config
        .models()
        .find(|m| m.alias == "nova-pro")
        .expect("nova-pro");
    assert_eq!(
        pro.upstream_settings.endpoint_url.as_deref(),
        Some("https://vpce-0a1b.bedrock-runtime.eu-west-1.vpce.amazonaws.com")
    );
    assert_eq!(pro.upstream_settings.timeout.as_millis(), 120000);
    assert_eq!(pro.upstream_settings.retry.max_attempts, 5);
}

#[test]
fn openai_provider_settings_are_validated() {
    let tmp = common::copy_default_config();
    let path = tmp.path().join("models.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let text = format!(
        "{text}\n  gpt-missing-url:\n    provider: openai\n    groups: [standard]\n\n  gpt-bad:\n    provider: openai\n    base_url: api.openai.com/v1\n    api_key_env: 1BAD-NAME\n    region: us-east-1\n\n  gpt-ok:\n    provider: openai\n    upstream: gpt-4o-mini\n    base_url: https://api.openai.com/v1\n    api_key_env: OPENAI_API_KEY\n"
    );
    std::fs::write(&path, text).expect("write");
    edit(
        tmp.path(),
        "models.yaml",
        "    upstream: us.amazon.nova-lite-v1:0\n",
        "    upstream: us.amazon.nova-lite-v1:0\n    base_url: http://127.0.0.1:1/v1\n",
    );
    insta::assert_snapshot!(errors_of(tmp.path()));
}
