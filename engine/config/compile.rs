//! Compiling a config directory: every file parsed, every cross-reference checked, every
//! problem reported with file and line, into runtime types with no I/O left to do.

use crate::config::models::{ModelKind, ModelSpec, ModelsFile, ProviderKind};
use crate::config::routes::{RouteSpec, RoutesFile};
use crate::config::{
    self, ConfigError, ConfigErrors, ConfigSources, locate, parse_entry, parse_yaml,
};
use crate::policy::{ModelEntity, PolicyEngine};
use crate::router::{Route, Router};
use crate::usage::Price;
use http::Method;
use indexmap::IndexMap;
use std::path::Path;

/// A model alias, compiled.
#[derive(Debug, Clone)]
pub struct ModelRuntime {
    /// Alias clients use.
    pub alias: String,
    /// Provider.
    pub provider: ProviderKind,
    /// Upstream model id (the alias itself for `echo`).
    pub upstream: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// `owned_by` in model lists.
    pub owned_by: String,
    /// Price per million tokens.
    pub price: Price,
    /// Largest output limit a request may ask for.
    pub max_output_tokens: Option<u32>,
    /// Region, endpoint, timeout and retries.
    pub upstream_settings: crate::upstream::Upstream,
    /// Aliases to try, in order, when this one fails with an upstream error.
    pub fallbacks: Vec<String>,
    /// What the model can serve.
    pub capabilities: crate::inference::capabilities::Capabilities,
    /// Context window in tokens (prompts estimated longer are refused).
    pub context_tokens: Option<u32>,
    /// Cache points the gateway adds when a request brings none.
    pub cache: crate::config::models::CacheSpec,
    /// Anthropic beta flags forwarded when a client sends them.
    pub betas: Vec<String>,
}

impl ModelRuntime {
    /// The Cedar action that invokes a model of this kind.
    pub fn invoke_action(&self) -> &'static str {
        match self.kind {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embed",
        }
    }
}

/// Everything compiled from a config directory; no I/O left to do.
#[derive(Debug)]
pub struct CompiledConfig {
    pub(crate) router: Router,
    pub(crate) models: IndexMap<String, ModelRuntime>,
    /// Extra model names (`names` in models.yaml) → their alias.
    pub(crate) names: std::collections::HashMap<String, String>,
    pub(crate) policy: PolicyEngine,
    pub(crate) max_body_bytes: usize,
    pub(crate) image_fetch: crate::config::models::ImageFetchSpec,
    pub(crate) mcp: crate::config::mcp::McpRuntime,
    pub(crate) limits: std::sync::Arc<crate::usage::limits::Limits>,
}

fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 128
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl CompiledConfig {
    /// Model aliases in config order.
    pub fn models(&self) -> impl Iterator<Item = &ModelRuntime> {
        self.models.values()
    }

    /// One alias, by its name or one of its `names`.
    pub fn model(&self, name: &str) -> Option<&ModelRuntime> {
        self.models.get(name).or_else(|| {
            self.names
                .get(name)
                .and_then(|alias| self.models.get(alias))
        })
    }

    /// How `http(s)` image URLs are fetched (`image_fetch:` in `models.yaml`).
    pub fn image_fetch(&self) -> &crate::config::models::ImageFetchSpec {
        &self.image_fetch
    }

    /// The MCP endpoint's settings and upstream servers (`mcp:` in `routes.yaml`).
    pub fn mcp(&self) -> &crate::config::mcp::McpRuntime {
        &self.mcp
    }

    /// Reads and compiles a config directory, reporting every problem found.
    pub fn load(dir: &Path) -> Result<Self, ConfigErrors> {
        let sources = ConfigSources::read(dir)?;
        Self::compile(&sources)
    }

    /// Compiles config sources, reporting every problem found.
    pub fn compile(src: &ConfigSources) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let routes_file: Option<RoutesFile> =
            parse_yaml(&src.routes).map_err(|e| errors.push(e)).ok();
        let models_file: Option<ModelsFile> =
            parse_yaml(&src.models).map_err(|e| errors.push(e)).ok();

        // Models: each alias checked on its own, so every bad one is reported.
        let mut specs: IndexMap<String, ModelSpec> = IndexMap::new();
        if let Some(mf) = &models_file {
            for (alias, value) in &mf.models {
                let anchor = format!("{alias}:");
                match parse_entry::<ModelSpec>(
                    &src.models,
                    value.clone(),
                    &format!("models.{alias}"),
                    &[&anchor],
                ) {
                    Ok(spec) => {
                        specs.insert(alias.clone(), spec);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let mut models = IndexMap::new();
        let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        if let Some(mf) = &models_file {
            let mf_name = &src.models.name;
            let text = &src.models.text;
            let at = |alias: &str, key: Option<&str>| {
                let anchor = format!("{alias}:");
                match key {
                    Some(k) => locate(text, &[&anchor, k]),
                    None => locate(text, &[&anchor]),
                }
            };
            if mf.models.is_empty() {
                errors.push(ConfigError::new(mf_name, None, "no models are defined"));
            }
            let fetch = &mf.image_fetch;
            if fetch.max_bytes == 0 || fetch.max_bytes > 20_000_000 {
                errors.push(ConfigError::new(
                    mf_name,
                    locate(text, &["image_fetch:", "max_bytes:"]),
                    "`image_fetch.max_bytes` must be between 1 and 20000000",
                ));
            }
            if fetch.timeout_ms == 0 || fetch.timeout_ms > 60_000 {
                errors.push(ConfigError::new(
                    mf_name,
                    locate(text, &["image_fetch:", "timeout_ms:"]),
                    "`image_fetch.timeout_ms` must be between 1 and 60000",
                ));
            }
            let bedrock_defaults = mf.providers.bedrock.as_ref();
            for e in crate::upstream::check_defaults(mf_name, text, bedrock_defaults) {
                errors.push(e);
            }
            for (alias, spec) in &specs {
                if !valid_alias(alias) {
                    errors.push(ConfigError::new(
                        mf_name,
                        at(alias, None),
                        format!("model alias `{alias}` must be 1 to 128 characters of letters, digits, `-`, `_`, `.` or `:`"),
                    ));
                }
                let upstream = match (spec.provider, &spec.upstream) {
                    (ProviderKind::Echo | ProviderKind::Openai, None) => alias.clone(),
                    (ProviderKind::Echo, Some(u)) => u.clone(),
                    (_, Some(u)) if !u.trim().is_empty() => u.clone(),
                    (p, _) => {
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, None),
                            format!(
                                "model `{alias}`: provider `{}` needs an `upstream` model id",
                                p.as_str()
                            ),
                        ));
                        String::new()
                    }
                };
                if spec.provider == ProviderKind::Echo && spec.kind != ModelKind::Chat {
                    errors.push(ConfigError::new(
                        mf_name,
                        at(alias, Some("kind:")),
                        format!("model `{alias}`: provider `echo` only serves `chat` models"),
                    ));
                }
                for fb in &spec.fallbacks {
                    if fb == alias {
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, Some("fallbacks:")),
                            format!("model `{alias}` lists itself as a fallback"),
                        ));
                    } else if !mf.models.contains_key(fb) {
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, Some("fallbacks:")),
                            format!("model `{alias}`: fallback `{fb}` is not a model alias"),
                        ));
                    }
                }
                for g in &spec.groups {
                    if let Err(e) = crate::directory::validate_name("model group", g) {
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, Some("groups:")),
                            format!("model `{alias}`: {e}"),
                        ));
                    }
                }
                for (what, v) in [
                    ("input", Some(spec.pricing.input)),
                    ("output", Some(spec.pricing.output)),
                    ("cache_read", spec.pricing.cache_read),
                    ("cache_write", spec.pricing.cache_write),
                ] {
                    if v.is_some_and(|v| v.is_sign_negative()) {
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, Some(&format!("{what}:"))),
                            format!("model `{alias}`: price `{what}` must not be negative"),
                        ));
                    }
                }
                for n in &spec.names {
                    let taken = mf.models.contains_key(n)
                        || names.get(n).is_some_and(|other| other != alias);
                    if !valid_alias(n) || taken {
                        let why = if taken {
                            "is already an alias or another alias's name"
                        } else {
                            "is not a valid model name (letters, digits, `-`, `_`, `.`, `:`; at most 128)"
                        };
                        errors.push(ConfigError::new(
                            mf_name,
                            at(alias, Some("names:")),
                            format!("model `{alias}`: name `{n}` {why}"),
                        ));
                    } else {
                        names.insert(n.clone(), alias.clone());
                    }
                }
                let mut upstream_errors = Vec::new();
                let upstream_settings = crate::upstream::compile(
                    mf_name,
                    text,
                    alias,
                    spec,
                    bedrock_defaults,
                    &mut upstream_errors,
                );
                upstream_errors.into_iter().for_each(|e| errors.push(e));
                let capabilities = crate::inference::capabilities::Capabilities::compile(
                    spec.provider,
                    &upstream,
                    &spec.capabilities,
                );
                models.insert(
                    alias.clone(),
                    ModelRuntime {
                        alias: alias.clone(),
                        provider: spec.provider,
                        upstream,
                        kind: spec.kind,
                        owned_by: spec
                            .owned_by
                            .clone()
                            .unwrap_or_else(|| spec.provider.as_str().to_string()),
                        price: Price {
                            input: spec.pricing.input,
                            output: spec.pricing.output,
                            cache_read: spec.pricing.cache_read,
                            cache_write: spec.pricing.cache_write,
                        },
                        max_output_tokens: spec.limits.max_output_tokens,
                        capabilities,
                        context_tokens: spec.limits.context_tokens,
                        cache: spec.cache.clone(),
                        betas: spec.betas.clone(),
                        upstream_settings,
                        fallbacks: spec.fallbacks.clone(),
                    },
                );
            }
        }

        // Policies (with the model entities they are evaluated against).
        let entities: Vec<ModelEntity<'_>> = specs
            .iter()
            .map(|(alias, spec)| ModelEntity {
                alias,
                groups: &spec.groups,
                provider: spec.provider.as_str(),
                kind: spec.kind.as_str(),
            })
            .collect();
        let policy = PolicyEngine::compile(&src.schema, &src.policies, &entities)
            .map_err(|es| es.into_iter().for_each(|e| errors.push(e)))
            .ok();

        // Routes.
        let mut router = None;
        let mut max_body_bytes = config::routes::DEFAULT_MAX_BODY_BYTES;
        let mut mcp = crate::config::mcp::McpRuntime::default();
        if let Some(rf) = &routes_file {
            mcp = crate::config::mcp::compile(&src.routes, &rf.mcp, &mut errors);
            max_body_bytes = rf.settings.max_body_bytes;
            let rt_name = &src.routes.name;
            let text = &src.routes.text;
            // Routes are found by name; the n-th route of a name by its n-th occurrence.
            let line_of_nth = |name: &str, nth: usize, key: Option<&str>| {
                let anchor = format!("name: {name}");
                let start = text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| l.trim_start().trim_start_matches("- ").trim_end() == anchor)
                    .nth(nth)
                    .map(|(i, _)| i)?;
                let rest: String = text.lines().skip(start).collect::<Vec<_>>().join("\n");
                let offset = match key {
                    Some(k) => locate(&rest, &[k]).or(Some(1))?,
                    None => 1,
                };
                Some(start + offset)
            };
            let mut seen: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            if max_body_bytes == 0 {
                errors.push(ConfigError::new(
                    rt_name,
                    locate(text, &["max_body_bytes:"]),
                    "`max_body_bytes` must be at least 1",
                ));
            }
            let mut compiled = Vec::new();
            let mut lines = Vec::new();
            for (i, value) in rf.routes.iter().enumerate() {
                let name = value
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string();
                let nth = *seen
                    .entry(name.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(0);
                let anchor = format!("name: {name}");
                let label = if name.is_empty() {
                    format!("routes[{i}]")
                } else {
                    format!("route `{name}`")
                };
                let spec: RouteSpec =
                    match parse_entry(&src.routes, value.clone(), &label, &[&anchor]) {
                        Ok(s) => s,
                        Err(mut e) => {
                            if nth > 0 {
                                e.line = line_of_nth(&name, nth, None).or(e.line);
                            }
                            errors.push(e);
                            continue;
                        }
                    };
                let line = line_of_nth(&spec.name, nth, None);
                let mut err = |key: Option<&str>, msg: String| {
                    errors.push(ConfigError::new(
                        rt_name,
                        key.and_then(|k| line_of_nth(&spec.name, nth, Some(k)))
                            .or(line),
                        msg,
                    ));
                };
                if nth > 0 {
                    err(None, format!("route name `{}` is used twice", spec.name));
                }
                let method = match Method::from_bytes(spec.method.as_bytes()) {
                    Ok(m) if spec.method.bytes().all(|b| b.is_ascii_uppercase()) => m,
                    _ => {
                        err(
                            Some("method:"),
                            format!(
                                "route `{}`: `{}` is not an HTTP method (write it in capitals, e.g. `GET`)",
                                spec.name, spec.method
                            ),
                        );
                        continue;
                    }
                };
                if !spec.path.starts_with('/') {
                    err(
                        Some("path:"),
                        format!(
                            "route `{}`: path `{}` must start with `/`",
                            spec.name, spec.path
                        ),
                    );
                    continue;
                }
                let needed = spec.handler.required_resource();
                if spec.resource != needed {
                    err(
                        Some("resource:"),
                        format!(
                            "route `{}`: handler `{}` needs `resource: {}`",
                            spec.name,
                            spec.handler.as_str(),
                            needed.as_str()
                        ),
                    );
                }
                let action = match (&spec.action, spec.public) {
                    (Some(_), true) => {
                        err(
                            Some("action:"),
                            format!(
                                "route `{}` is public, so it cannot have an `action`",
                                spec.name
                            ),
                        );
                        None
                    }
                    (None, true) => None,
                    (None, false) => {
                        err(
                            None,
                            format!(
                                "route `{}` needs an `action` (or `public: true`)",
                                spec.name
                            ),
                        );
                        None
                    }
                    (Some(a), false) => match &policy {
                        Some(p) => match p.action(a) {
                            Some(uid) => {
                                let ty = p.types.of(spec.resource);
                                if let Err(e) = p.check_action_applies(uid, ty) {
                                    err(
                                        Some("action:"),
                                        format!(
                                            "route `{}`: action `{a}` does not fit the schema: {e}",
                                            spec.name
                                        ),
                                    );
                                }
                                Some((a.clone(), uid.clone()))
                            }
                            None => {
                                err(
                                    Some("action:"),
                                    format!(
                                        "route `{}`: action `{a}` is not declared in the Cedar schema",
                                        spec.name
                                    ),
                                );
                                None
                            }
                        },
                        None => None,
                    },
                };
                if !spec.public && spec.auth.is_empty() {
                    err(
                        Some("auth:"),
                        format!(
                            "route `{}` accepts no authentication method; list one or set `public: true`",
                            spec.name
                        ),
                    );
                }
                if spec.public && spec.handler.needs_caller() {
                    err(
                        Some("public:"),
                        format!(
                            "route `{}`: handler `{}` needs a caller and cannot be public",
                            spec.name,
                            spec.handler.as_str()
                        ),
                    );
                }
                if spec.handler == crate::config::routes::HandlerKind::Mcp
                    && let Some(p) = &policy
                    && let Err(e) = crate::config::mcp::check_policy(p)
                {
                    err(Some("handler:"), format!("route `{}`: {e}", spec.name));
                }
                lines.push(line);
                compiled.push((
                    spec.path.clone(),
                    Route {
                        name: spec.name.clone(),
                        method,
                        handler: spec.handler,
                        public: spec.public,
                        auth: spec.auth.clone(),
                        action,
                        resource: spec.resource,
                    },
                ));
            }
            match Router::build(compiled) {
                Ok(r) => router = Some(r),
                Err(es) => {
                    for (i, msg) in es {
                        errors.push(ConfigError::new(
                            rt_name,
                            lines.get(i).copied().flatten(),
                            msg,
                        ));
                    }
                }
            }
        }

        let limits = crate::usage::limits::Limits::compile(src.limits.as_ref(), &src.policies)
            .map_err(|es| es.into_iter().for_each(|e| errors.push(e)))
            .ok();

        errors.sort();
        match (router, policy, limits) {
            (Some(router), Some(policy), Some(limits)) if errors.is_empty() => Ok(Self {
                limits: std::sync::Arc::new(limits),
                router,
                models,
                names,
                policy,
                max_body_bytes,
                image_fetch: models_file
                    .as_ref()
                    .map(|m| m.image_fetch.clone())
                    .unwrap_or_default(),
                mcp,
            }),
            _ => {
                if errors.is_empty() {
                    errors.push(ConfigError::new(
                        &src.routes.name,
                        None,
                        "configuration is incomplete",
                    ));
                }
                Err(errors)
            }
        }
    }
}
