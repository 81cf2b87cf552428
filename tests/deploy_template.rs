//! The deployment template agrees with the shipped config and code: every Bedrock model in
//! models.yaml is one the function's role may invoke, the role holds exactly the Cognito actions
//! the code calls, the config layer holds a config the gateway loads where the bootstrap looks
//! for it, and the alarm topic, access logs and stage are set up as doc/deployment.md says.
//! (cfn-lint, `sam validate --lint` and checkov check the template itself, in `.ci/run`.)

use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(name)).expect("read");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn default_list(template: &Value, parameter: &str) -> BTreeSet<String> {
    template["Parameters"][parameter]["Default"]
        .as_str()
        .unwrap_or_else(|| panic!("no default for {parameter}"))
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn the_role_may_invoke_every_shipped_bedrock_model() {
    let template = yaml("template.yaml");
    let models = yaml("models.yaml");
    let foundation = default_list(&template, "BedrockFoundationModels");
    let profiles = default_list(&template, "BedrockInferenceProfiles");
    let mut missing = Vec::new();
    let Some(aliases) = models["models"].as_mapping() else {
        panic!("models.yaml has no models")
    };
    for (alias, m) in aliases {
        let alias = alias.as_str().unwrap_or_default();
        if m["provider"].as_str() != Some("bedrock") {
            continue;
        }
        let upstream = m["upstream"]
            .as_str()
            .expect("bedrock alias has an upstream");
        let base = ["us.", "eu.", "apac.", "global."]
            .iter()
            .find_map(|p| upstream.strip_prefix(p));
        if let Some(base) = base {
            if !profiles.contains(upstream) {
                missing.push(format!("{alias:?}: inference profile {upstream}"));
            }
            if !foundation.contains(base) {
                missing.push(format!("{alias:?}: foundation model {base}"));
            }
        } else if !foundation.contains(upstream) {
            missing.push(format!("{alias:?}: foundation model {upstream}"));
        }
    }
    assert!(
        missing.is_empty(),
        "template.yaml's Bedrock parameters miss: {missing:#?}"
    );
}

/// A resource's properties.
fn props<'a>(template: &'a Value, resource: &str) -> &'a Value {
    &template["Resources"][resource]["Properties"]
}

/// The value under a CloudFormation short-form tag (`!Ref X` → `X`), or the value itself.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    match untag(v) {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Every `Action` of the named inline policy of a role.
fn policy_actions(template: &Value, role: &str, policy: &str) -> BTreeSet<String> {
    let policies = props(template, role)["Policies"]
        .as_sequence()
        .expect("policies");
    let p = policies
        .iter()
        .find(|p| p["PolicyName"].as_str() == Some(policy))
        .unwrap_or_else(|| panic!("{role} has no policy {policy}"));
    p["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements")
        .iter()
        .flat_map(|st| strings(&st["Action"]))
        .collect()
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `admin_list_groups_for_user` → `AdminListGroupsForUser`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn the_role_holds_exactly_the_cognito_actions_the_code_calls() {
    // Cognito IdP operations that need IAM permission, as the SDK's fluent builders name them
    // (`initiate_auth` is the CLI's sign-in, which Cognito authorizes without IAM).
    let signed = [
        "admin_",
        "list_users",
        "list_groups",
        "get_group",
        "create_group",
        "delete_group",
        "describe_user_pool",
        "update_user_pool",
    ];
    let mut files = Vec::new();
    rust_files(&root().join("engine"), &mut files);
    let mut called = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for (i, _) in text.match_indices("()") {
            let head = &text[..i];
            let name_start = head
                .rfind(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map_or(0, |p| p + 1);
            if name_start == 0 || &head[name_start - 1..name_start] != "." {
                continue;
            }
            let name = &head[name_start..];
            if signed.iter().any(|p| name.starts_with(p)) {
                called.insert(format!("cognito-idp:{}", pascal(name)));
            }
        }
    }
    assert!(
        called.contains("cognito-idp:AdminCreateUser") && called.len() > 5,
        "the scan found no Cognito calls: {called:?}"
    );
    let granted = policy_actions(&yaml("template.yaml"), "FunctionRole", "cognito");
    assert_eq!(
        granted, called,
        "template.yaml's FunctionRole cognito actions differ from the SDK calls in engine/"
    );
}

#[test]
fn the_function_writes_its_logs_and_queries_none() {
    let template = yaml("template.yaml");
    assert_eq!(
        policy_actions(&template, "FunctionRole", "logs"),
        BTreeSet::from(["logs:CreateLogStream".into(), "logs:PutLogEvents".into()])
    );
    // No statement of any of its policies lets it query logs or read groups, which it never
    // does (other policies may be added for other stores).
    let all: BTreeSet<String> = props(&template, "FunctionRole")["Policies"]
        .as_sequence()
        .expect("policies")
        .iter()
        .filter_map(|p| p["PolicyName"].as_str())
        .flat_map(|name| policy_actions(&template, "FunctionRole", name))
        .collect();
    for unused in [
        "logs:StartQuery",
        "logs:GetQueryResults",
        "logs:StopQuery",
        "cognito-idp:GetGroup",
        "cognito-idp:ListGroups",
    ] {
        assert!(!all.contains(unused), "the function role grants {unused}");
    }
    assert!(
        !all.iter().any(|a| a.ends_with(":*") || a == "*"),
        "{all:?}"
    );
}

#[test]
fn api_has_one_stage_and_json_access_logs_without_secrets() {
    let template = yaml("template.yaml");
    let api = props(&template, "Api");
    // Without OpenApiVersion SAM also deploys a public stage named "Stage".
    assert_eq!(api["OpenApiVersion"].as_str(), Some("3.0.1"));
    assert_eq!(
        api["DefinitionBody"]["openapi"].as_str(),
        api["OpenApiVersion"].as_str()
    );
    let log = &api["AccessLogSetting"];
    assert_eq!(
        untag(&log["DestinationArn"]).as_str(),
        Some("ApiAccessLogGroup.Arn")
    );
    let format = log["Format"].as_str().expect("format");
    let line: serde_json::Value = serde_json::from_str(format).expect("the format is JSON");
    let fields = line.as_object().expect("an object");
    for f in [
        "requestId",
        "status",
        "responseLatency",
        "integrationLatency",
        "ip",
    ] {
        assert!(fields.contains_key(f), "access log misses {f}");
    }
    for (k, v) in fields {
        let v = v
            .as_str()
            .expect("string values (missing ones log as \"-\")");
        assert!(v.starts_with("$context."), "{k}: {v}");
        let lower = v.to_ascii_lowercase();
        for secret in [
            "header",
            "querystring",
            "authorizer",
            "body",
            "apikey",
            "authorization",
        ] {
            assert!(!lower.contains(secret), "{k} logs {v}");
        }
    }
    let group = props(&template, "ApiAccessLogGroup");
    assert_eq!(group["RetentionInDays"].as_u64(), Some(14));
    // API Gateway needs the account's CloudWatch role before a stage may log (the API refers
    // to it, which orders them); retained, since other APIs share it.
    let description = serde_json::to_string(&api["Description"]).expect("json");
    assert!(
        description.contains("${ApiGatewayAccount}"),
        "the API is not ordered after the account's logging role: {description}"
    );
    for r in ["ApiGatewayAccount", "ApiGatewayLogsRole"] {
        assert_eq!(
            template["Resources"][r]["DeletionPolicy"].as_str(),
            Some("Retain"),
            "{r}"
        );
    }
}

#[test]
fn alarm_topic_is_one_cloudwatch_can_publish_to() {
    let template = yaml("template.yaml");
    let topic = props(&template, "AlarmTopic");
    // The AWS managed key (alias/aws/sns) cannot be used by CloudWatch: alarms never arrive.
    let key = serde_json::to_string(&topic["KmsMasterKeyId"]).expect("json");
    assert!(!key.contains("alias/aws/sns"), "{key}");
    assert!(
        key.contains("AlarmTopicKey"),
        "encryption uses the stack's key: {key}"
    );
    let policy = &props(&template, "AlarmTopicKey")["KeyPolicy"]["Statement"];
    let cloudwatch = policy
        .as_sequence()
        .expect("statements")
        .iter()
        .find(|st| st["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
        .expect("a statement for CloudWatch");
    assert_eq!(cloudwatch["Effect"].as_str(), Some("Allow"));
    assert_eq!(
        strings(&cloudwatch["Action"]),
        BTreeSet::from(["kms:Decrypt".into(), "kms:GenerateDataKey*".into()])
    );
    assert_eq!(
        props(&template, "AlarmTopicKey")["EnableKeyRotation"].as_bool(),
        Some(true)
    );
}

/// Builds the config layer as `sam build` does (`make build-ConfigLayer` with ARTIFACTS_DIR)
/// and returns the artifacts directory.
fn build_layer() -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tmp");
    let make = std::process::Command::new("make")
        .arg("--makefile")
        .arg(root().join("deploy/config-layer/Makefile"))
        .arg("build-ConfigLayer")
        .env("ARTIFACTS_DIR", out.path())
        // SAM runs make in a scratch copy of the layer's folder, not the repository root.
        .current_dir(out.path())
        .output()
        .expect("run make");
    assert!(
        make.status.success(),
        "make: {}",
        String::from_utf8_lossy(&make.stderr)
    );
    out
}

#[test]
fn the_config_layer_is_a_config_the_gateway_loads() {
    let template = yaml("template.yaml");
    assert_eq!(
        props(&template, "ConfigLayer")["ContentUri"].as_str(),
        Some("deploy/config-layer"),
        "a folder of its own: SAM copies ContentUri to a scratch folder before make"
    );
    let layer = build_layer();
    let dir = layer.path().join("pennyworth");
    if let Err(errors) = pennyworth::CompiledConfig::load(&dir) {
        panic!("the layer's config does not load: {:?}", errors.0);
    }
    // The same files as the repository's config, byte for byte.
    for f in ["routes.yaml", "models.yaml"] {
        assert_eq!(
            std::fs::read(dir.join(f)).expect("layer file"),
            std::fs::read(root().join(f)).expect("repo file"),
            "{f}"
        );
    }
    let listing = |d: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_dir(d)
            .expect("policies")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cedar") || n.ends_with(".cedarschema"))
            .collect()
    };
    assert_eq!(
        listing(&dir.join("policies")),
        listing(&root().join("policies"))
    );
}

#[test]
fn the_function_reads_the_config_layer() {
    let template = yaml("template.yaml");
    let vars = &template["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        vars["PENNYWORTH_CONFIG_DIR"].as_str(),
        Some("/opt/pennyworth")
    );
    // Every environment variable the template sets is one the gateway documents.
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    for (k, _) in vars.as_mapping().expect("variables") {
        let k = k.as_str().expect("name");
        assert!(
            readme.contains(&format!("`{k}`")),
            "{k} is not in README.md"
        );
    }
}

#[test]
fn without_the_variable_the_bootstrap_reads_the_layer_path() {
    // Lambda extracts layers under /opt, and the layer's Makefile writes `pennyworth/`.
    let layer = std::path::Path::new("/opt/pennyworth");
    if layer.exists() {
        eprintln!("SKIPPED: /opt/pennyworth exists on this machine");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tmp.path())
        .env("PENNYWORTH_DATA_DIR", tmp.path().join("data"))
        .env("PENNYWORTH_METRICS", "off")
        // As Lambda sets it: the function's own package, which holds only `bootstrap`.
        .env("LAMBDA_TASK_ROOT", tmp.path())
        .current_dir(tmp.path())
        .output()
        .expect("run bootstrap");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("configuration in `/opt/pennyworth` is invalid"),
        "the bootstrap did not look in /opt/pennyworth: {text}"
    );
}
