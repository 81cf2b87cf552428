//! How an alias reaches its upstream, compiled from `models.yaml`: region, endpoint, timeout
//! and retries, with the alias's own settings over `providers.<provider>` defaults.

use crate::config::models::{ModelSpec, ProviderKind, RetrySpec, UpstreamSettings};
use crate::config::{ConfigError, locate};
use std::time::Duration;

/// The gateway's outgoing HTTP(S) client (OpenAI-compatible upstreams, the OTLP exporter).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// Builds an [`HttpClient`]: http and https (system roots, ring), HTTP/1.1, idle connections
/// kept 60 s, and TCP_NODELAY (a request head and body written separately must not wait for
/// the peer's delayed ACK, nor a streamed body's chunks).
pub fn http_client() -> Result<HttpClient, String> {
    http_client_with(None)
}

/// [`http_client`] with a limit on how long a TCP connection may take to open (Bedrock's).
pub fn http_client_with(connect_timeout: Option<Duration>) -> Result<HttpClient, String> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot load the system's TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https),
    )
}

/// Default for `timeout_ms`: ten minutes, long enough for a large buffered answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default attempts (the first included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default backoff before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Default longest backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Retries of throttled and transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// The compiled upstream settings of one alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// AWS region (`None`: the process's region).
    pub region: Option<String>,
    /// Endpoint URL (`None`: the provider's public endpoint).
    pub endpoint_url: Option<String>,
    /// Longest wait for a buffered answer, a stream's start, or a stream's next event.
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Base URL of an OpenAI-compatible API.
    pub base_url: Option<String>,
    /// Environment variable holding its API key.
    pub api_key_env: Option<String>,
    /// OpenAI chat bodies are forwarded as the client sent them (OpenAI-compatible only).
    pub passthrough: bool,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            base_url: None,
            api_key_env: None,
            passthrough: false,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.as_bytes()[0].is_ascii_digit()
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_endpoint(url: &str) -> bool {
    match url.parse::<http::Uri>() {
        Ok(u) => {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
        }
        Err(_) => false,
    }
}

/// Where a setting was written, for error lines.
enum Origin<'a> {
    Alias(&'a str),
    Provider(&'a str),
}

impl Origin<'_> {
    fn line(&self, text: &str, key: &str) -> Option<usize> {
        match self {
            Origin::Alias(alias) => {
                let anchor = format!("{alias}:");
                locate(text, &[&anchor, key]).or_else(|| locate(text, &[&anchor]))
            }
            Origin::Provider(p) => {
                let anchor = format!("{p}:");
                locate(text, &["providers:", &anchor, key])
                    .or_else(|| locate(text, &["providers:"]))
            }
        }
    }

    fn label(&self) -> String {
        match self {
            Origin::Alias(a) => format!("model `{a}`"),
            Origin::Provider(p) => format!("providers.{p}"),
        }
    }
}

fn check_settings(
    file: &str,
    text: &str,
    origin: &Origin<'_>,
    s: &UpstreamSettings,
    errors: &mut Vec<ConfigError>,
) {
    let mut err = |key: &str, msg: String| {
        errors.push(ConfigError::new(
            file,
            origin.line(text, key),
            format!("{}: {msg}", origin.label()),
        ));
    };
    if let Some(r) = &s.region
        && !valid_region(r)
    {
        err(
            "region:",
            format!("`{r}` is not an AWS region name (e.g. `us-east-1`)"),
        );
    }
    if let Some(u) = &s.endpoint_url
        && !valid_endpoint(u)
    {
        err(
            "endpoint_url:",
            format!("`endpoint_url` `{u}` must be an http or https URL with a host and no query"),
        );
    }
    if let Some(t) = s.timeout_ms
        && !(1..=3_600_000).contains(&t)
    {
        err(
            "timeout_ms:",
            format!("`timeout_ms` must be between 1 and 3600000, got {t}"),
        );
    }
    if let Some(r) = &s.retry {
        check_retry(r, &mut err);
    }
}

fn check_retry(r: &RetrySpec, err: &mut impl FnMut(&str, String)) {
    if let Some(n) = r.max_attempts
        && !(1..=10).contains(&n)
    {
        err(
            "max_attempts:",
            format!("`retry.max_attempts` must be between 1 and 10, got {n}"),
        );
    }
    if let Some(b) = r.initial_backoff_ms
        && !(1..=60_000).contains(&b)
    {
        err(
            "initial_backoff_ms:",
            format!("`retry.initial_backoff_ms` must be between 1 and 60000, got {b}"),
        );
    }
    if let Some(m) = r.max_backoff_ms {
        let initial = r
            .initial_backoff_ms
            .unwrap_or(DEFAULT_INITIAL_BACKOFF.as_millis() as u64);
        if !(1..=300_000).contains(&m) || m < initial {
            err(
                "max_backoff_ms:",
                format!(
                    "`retry.max_backoff_ms` must be between `initial_backoff_ms` ({initial}) and 300000, got {m}"
                ),
            );
        }
    }
}

/// Checks the `providers:` defaults once.
pub fn check_defaults(
    file: &str,
    text: &str,
    bedrock: Option<&UpstreamSettings>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(b) = bedrock {
        check_settings(file, text, &Origin::Provider("bedrock"), b, &mut errors);
    }
    errors
}

/// Compiles an alias's upstream settings over its provider's defaults, pushing every problem.
pub fn compile(
    file: &str,
    text: &str,
    alias: &str,
    spec: &ModelSpec,
    bedrock_defaults: Option<&UpstreamSettings>,
    errors: &mut Vec<ConfigError>,
) -> Upstream {
    let own = UpstreamSettings {
        region: spec.region.clone(),
        endpoint_url: spec.endpoint_url.clone(),
        timeout_ms: spec.timeout_ms,
        retry: spec.retry.clone(),
    };
    let origin = Origin::Alias(alias);
    check_settings(file, text, &origin, &own, errors);
    let not_for = |key: &str, why: &str, errors: &mut Vec<ConfigError>| {
        errors.push(ConfigError::new(
            file,
            origin.line(text, &format!("{key}:")),
            format!("model `{alias}`: {why}, so `{key}` does not apply"),
        ));
    };
    let bedrock_only = [
        ("region", own.region.is_some()),
        ("endpoint_url", own.endpoint_url.is_some()),
    ];
    let openai_only = [
        ("base_url", spec.base_url.is_some()),
        ("api_key_env", spec.api_key_env.is_some()),
        ("passthrough", spec.passthrough),
    ];
    match spec.provider {
        ProviderKind::Echo => {
            for (key, set) in bedrock_only.iter().chain(&openai_only) {
                if *set {
                    not_for(key, "provider `echo` has no upstream", errors);
                }
            }
        }
        ProviderKind::Bedrock => {
            for (key, set) in &openai_only {
                if *set {
                    not_for(
                        key,
                        "provider `bedrock` is not an OpenAI-compatible API",
                        errors,
                    );
                }
            }
        }
        ProviderKind::Openai => {
            for (key, set) in &bedrock_only {
                if *set {
                    not_for(
                        key,
                        "provider `openai` is not AWS Bedrock (use `base_url`)",
                        errors,
                    );
                }
            }
            match &spec.base_url {
                None => errors.push(ConfigError::new(
                    file,
                    origin.line(text, "provider:"),
                    format!("model `{alias}`: provider `openai` needs a `base_url`"),
                )),
                Some(u) if !valid_endpoint(u) => errors.push(ConfigError::new(
                    file,
                    origin.line(text, "base_url:"),
                    format!(
                        "model `{alias}`: `base_url` `{u}` must be an http or https URL with a host and no query"
                    ),
                )),
                Some(_) => {}
            }
            if let Some(v) = &spec.api_key_env
                && !valid_env_name(v)
            {
                errors.push(ConfigError::new(
                    file,
                    origin.line(text, "api_key_env:"),
                    format!(
                        "model `{alias}`: `api_key_env` `{v}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"
                    ),
                ));
            }
        }
    }
    let defaults = match spec.provider {
        ProviderKind::Bedrock => bedrock_defaults.cloned().unwrap_or_default(),
        ProviderKind::Echo | ProviderKind::Openai => UpstreamSettings::default(),
    };
    let retry_own = own.retry.clone().unwrap_or_default();
    let retry_def = defaults.retry.clone().unwrap_or_default();
    let base = RetryPolicy::default();
    let initial = retry_own
        .initial_backoff_ms
        .or(retry_def.initial_backoff_ms)
        .map_or(base.initial_backoff, Duration::from_millis);
    let max = retry_own
        .max_backoff_ms
        .or(retry_def.max_backoff_ms)
        .map_or(base.max_backoff.max(initial), Duration::from_millis);
    Upstream {
        base_url: spec
            .base_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
        api_key_env: spec.api_key_env.clone(),
        passthrough: spec.passthrough,
        region: own.region.or(defaults.region),
        endpoint_url: own.endpoint_url.or(defaults.endpoint_url),
        timeout: own
            .timeout_ms
            .or(defaults.timeout_ms)
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        retry: RetryPolicy {
            max_attempts: retry_own
                .max_attempts
                .or(retry_def.max_attempts)
                .unwrap_or(base.max_attempts),
            initial_backoff: initial,
            max_backoff: max.max(initial),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(valid_endpoint("http://127.0.0.1:9000"));
        assert!(valid_endpoint(
            "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"
        ));
        assert!(!valid_endpoint("ftp://x"));
        assert!(!valid_endpoint("127.0.0.1:9000"));
        assert!(!valid_endpoint("http://x/?a=1"));
        assert!(valid_region("eu-central-1"));
        assert!(!valid_region("EU"));
    }
}
