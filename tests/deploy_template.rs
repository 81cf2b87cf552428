//! The deployment template agrees with the shipped config: every Bedrock model in models.yaml
//! is one the function's role may invoke, and the function reads its config where the layer
//! puts it. (cfn-lint checks the template itself, in `.ci/run`.)

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

#[test]
fn the_function_reads_the_config_layer() {
    let template = yaml("template.yaml");
    let vars = &template["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        vars["PENNYWORTH_CONFIG_DIR"].as_str(),
        Some("/opt/pennyworth")
    );
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    assert!(makefile.contains("$(ARTIFACTS_DIR)/pennyworth/policies"));
    for f in [
        "routes.yaml",
        "models.yaml",
        "policies/*.cedar",
        "policies/*.cedarschema",
    ] {
        assert!(makefile.contains(f), "the layer misses {f}");
    }
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
