//! Raw configuration: serde types that mirror `routes.yaml`, `models.yaml` and `policies/`,
//! loading with file:line diagnostics, and the cross-reference checks that need all three.
//!
//! These types are never used on the request path; [`crate::engine::Engine::load`] compiles
//! them into runtime types once.

pub mod compile;
mod diag;
pub mod lint;
pub mod mcp;
pub mod models;
pub mod routes;

pub use diag::{ConfigError, ConfigErrors, line_of_offset, locate};

use std::path::{Path, PathBuf};

/// The file name of the routes table inside a config directory.
pub const ROUTES_FILE: &str = "routes.yaml";
/// The file name of the model aliases inside a config directory.
pub const MODELS_FILE: &str = "models.yaml";
/// The policy directory inside a config directory.
pub const POLICIES_DIR: &str = "policies";
/// The Cedar schema file inside the policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// A config file read into memory, kept with its display name for diagnostics.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Name shown in diagnostics, relative to the config directory (e.g. `policies/base.cedar`).
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// Reads `rel` under `dir`.
    pub fn read(dir: &Path, rel: &str) -> Result<Self, ConfigError> {
        let path = dir.join(rel);
        std::fs::read_to_string(&path)
            .map(|text| SourceFile {
                name: rel.to_string(),
                text,
            })
            .map_err(|e| {
                ConfigError::new(rel, None, format!("cannot read `{}`: {e}", path.display()))
            })
    }
}

/// All config sources of a directory, read but not yet interpreted.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    /// The directory they came from.
    pub dir: PathBuf,
    /// `routes.yaml`.
    pub routes: SourceFile,
    /// `models.yaml`.
    pub models: SourceFile,
    /// `policies/schema.cedarschema`.
    pub schema: SourceFile,
    /// `policies/*.cedar`, sorted by name.
    pub policies: Vec<SourceFile>,
    /// `limits.yaml`, if there is one (budgets and rate limits).
    pub limits: Option<SourceFile>,
}

impl ConfigSources {
    /// Reads every config file of `dir`; reports every file that cannot be read.
    pub fn read(dir: &Path) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let routes = SourceFile::read(dir, ROUTES_FILE)
            .map_err(|e| errors.push(e))
            .ok();
        let models = SourceFile::read(dir, MODELS_FILE)
            .map_err(|e| errors.push(e))
            .ok();
        let schema_rel = format!("{POLICIES_DIR}/{SCHEMA_FILE}");
        let schema = SourceFile::read(dir, &schema_rel)
            .map_err(|e| errors.push(e))
            .ok();
        let mut policies = Vec::new();
        match std::fs::read_dir(dir.join(POLICIES_DIR)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".cedar"))
                    .collect();
                names.sort();
                if names.is_empty() {
                    errors.push(ConfigError::new(
                        POLICIES_DIR,
                        None,
                        "no `.cedar` policy files: every request would be denied",
                    ));
                }
                for name in names {
                    match SourceFile::read(dir, &format!("{POLICIES_DIR}/{name}")) {
                        Ok(f) => policies.push(f),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(ConfigError::new(
                POLICIES_DIR,
                None,
                format!(
                    "cannot read directory `{}`: {e}",
                    dir.join(POLICIES_DIR).display()
                ),
            )),
        }
        let limits_file = crate::usage::limits::LIMITS_FILE;
        let limits = if dir.join(limits_file).exists() {
            SourceFile::read(dir, limits_file)
                .map_err(|e| errors.push(e))
                .ok()
        } else {
            None
        };
        match (routes, models, schema) {
            (Some(routes), Some(models), Some(schema)) if errors.is_empty() => Ok(Self {
                dir: dir.to_path_buf(),
                routes,
                models,
                schema,
                policies,
                limits,
            }),
            _ => Err(errors),
        }
    }
}

/// Parses YAML straight into `T` (keeping line numbers in errors).
pub fn parse_yaml<T: serde::de::DeserializeOwned>(file: &SourceFile) -> Result<T, ConfigError> {
    serde_norway::from_str(&file.text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let mut message = e.to_string();
        // serde_norway appends " at line L column C"; the line is already in the prefix.
        if let Some(pos) = message.rfind(" at line ") {
            message.truncate(pos);
        }
        ConfigError::new(&file.name, line, message)
    })
}

/// Deserializes one entry of a loosely parsed list or map into `T`, so a bad entry does not
/// hide the next one. `label` names the entry (`models.claude`); `anchor` locates its line.
pub fn parse_entry<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    value: serde_norway::Value,
    label: &str,
    anchor: &[&str],
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.into_inner().to_string();
        if let Some(pos) = message.rfind(" at line ") {
            message.truncate(pos);
        }
        let key = path.split(['.', '[']).next().unwrap_or_default();
        let line = if key.is_empty() {
            None
        } else {
            let needle = format!("{key}:");
            let mut needles = anchor.to_vec();
            needles.push(&needle);
            locate(&file.text, &needles)
        }
        .or_else(|| locate(&file.text, anchor));
        let label = if path == "." || path.is_empty() {
            label.to_string()
        } else {
            format!("{label}.{path}")
        };
        ConfigError::new(&file.name, line, format!("{label}: {message}"))
    })
}
