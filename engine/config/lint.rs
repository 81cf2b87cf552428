//! Warnings: a config that compiles but probably does not say what its author meant.
//!
//! Model groups tie `models.yaml` to the policies: an alias is in its `groups`, and a policy
//! grants `resource in Pennyworth::ModelGroup::"<group>"`. A misspelt group on either side
//! compiles (Cedar entities need not exist) and silently removes access, so `pennyworth check`
//! and `serve` warn about a model group no policy names and a policy group no model has.

use crate::config::models::ModelsFile;
use crate::config::{ConfigError, ConfigSources, locate, parse_yaml};
use cedar_policy::PolicySet;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// The Cedar entity type of model groups (namespace `Pennyworth`).
const MODEL_GROUP: &str = "ModelGroup";

/// Warnings about the config in `dir`; none when it cannot be read or parsed (the errors of
/// [`crate::CompiledConfig::load`] say why).
pub fn check_dir(dir: &Path) -> Vec<ConfigError> {
    ConfigSources::read(dir)
        .map(|src| warnings(&src))
        .unwrap_or_default()
}

/// Warnings about model groups named on one side only.
pub fn warnings(src: &ConfigSources) -> Vec<ConfigError> {
    let Ok(models) = parse_yaml::<ModelsFile>(&src.models) else {
        return Vec::new();
    };
    // Group → the aliases in it, in file order.
    let mut model_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (alias, spec) in &models.models {
        let groups = spec
            .get("groups")
            .and_then(|g| g.as_sequence())
            .map(|seq| seq.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        for g in groups {
            model_groups
                .entry(g.to_string())
                .or_default()
                .push(alias.clone());
        }
    }
    // Group → (policy file, policy id) of every policy that names it.
    let mut policy_groups: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (i, file) in src.policies.iter().enumerate() {
        let Ok(set) = PolicySet::from_str(&file.text) else {
            continue;
        };
        for policy in set.policies() {
            let id = policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_string);
            let mut named = Vec::new();
            if let Ok(json) = policy.to_json() {
                model_group_ids(&json, &mut named);
            }
            for g in named {
                policy_groups.entry(g).or_default().push((i, id.clone()));
            }
        }
    }

    let list = |names: &mut dyn Iterator<Item = &String>| {
        names
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for (group, aliases) in &model_groups {
        if policy_groups.contains_key(group) {
            continue;
        }
        let first = aliases.first().map(String::as_str).unwrap_or_default();
        let anchor = format!("{first}:");
        let line = locate(&src.models.text, &[&anchor, "groups:"]);
        let named = if policy_groups.is_empty() {
            "policies name no model group".to_string()
        } else {
            format!("policies name {}", list(&mut policy_groups.keys()))
        };
        out.push(ConfigError::new(
            &src.models.name,
            line,
            format!(
                "model group `{group}` (of {}) is named by no policy ({named}); only policies that grant every model reach it",
                list(&mut aliases.iter())
            ),
        ));
    }
    for (group, users) in &policy_groups {
        if model_groups.contains_key(group) {
            continue;
        }
        for (file, id) in users {
            let Some(f) = src.policies.get(*file) else {
                continue;
            };
            let quoted = format!("\"{group}\"");
            out.push(ConfigError::new(
                &f.name,
                locate(&f.text, &[MODEL_GROUP, &quoted]).or_else(|| locate(&f.text, &[&quoted])),
                format!(
                    "policy `{id}` names model group `{group}`, which no model in {} has ({}); it grants no model through it",
                    src.models.name,
                    if model_groups.is_empty() {
                        "no model has a group".to_string()
                    } else {
                        format!("groups: {}", list(&mut model_groups.keys()))
                    }
                ),
            ));
        }
    }
    out
}

/// Collects the ids of every `ModelGroup` entity a policy's JSON form mentions (scope
/// constraints and entity literals in conditions alike).
fn model_group_ids(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            let is_group = map
                .get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t == MODEL_GROUP || t.rsplit("::").next() == Some(MODEL_GROUP));
            if is_group
                && let Some(id) = map.get("id").and_then(|i| i.as_str())
                && !out.iter().any(|o| o == id)
            {
                out.push(id.to_string());
            }
            for child in map.values() {
                model_group_ids(child, out);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                model_group_ids(child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFile;

    fn sources(models: &str, policies: &[(&str, &str)]) -> ConfigSources {
        let file = |name: &str, text: &str| SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        };
        ConfigSources {
            dir: ".".into(),
            routes: file("routes.yaml", ""),
            models: file("models.yaml", models),
            schema: file("policies/schema.cedarschema", ""),
            policies: policies.iter().map(|(n, t)| file(n, t)).collect(),
            limits: None,
        }
    }

    const MODELS: &str = "models:\n  a:\n    provider: echo\n    groups: [standrad]\n  b:\n    provider: echo\n    groups: [premium]\n";
    const POLICY: &str = "@id(\"users\")\npermit (\n  principal,\n  action,\n  resource in Pennyworth::ModelGroup::\"standard\"\n);\n@id(\"premium\")\npermit (principal, action, resource) when { resource in Pennyworth::ModelGroup::\"premium\" };\n";

    #[test]
    fn a_group_on_one_side_only_is_a_warning_on_both() {
        let w = warnings(&sources(MODELS, &[("policies/m.cedar", POLICY)]));
        let text: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].starts_with("models.yaml:4: model group `standrad` (of `a`) is named by no policy (policies name `premium`, `standard`)"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("policies/m.cedar:5: policy `users` names model group `standard`, which no model in models.yaml has (groups: `premium`, `standrad`)"),
            "{text:#?}"
        );
    }

    #[test]
    fn matching_groups_are_quiet() {
        let models = MODELS.replace("standrad", "standard");
        assert!(warnings(&sources(&models, &[("policies/m.cedar", POLICY)])).is_empty());
    }
}
