//! The `mcp:` section of `routes.yaml`: the MCP endpoint's settings and the upstream MCP
//! servers the gateway federates, checked with file:line errors and compiled once.

use crate::config::{ConfigError, ConfigErrors, SourceFile, locate, parse_entry};
use serde::Deserialize;
use std::time::Duration;

/// The Cedar tool server of the built-in tools; no upstream server may take this name.
pub const BUILTIN_SERVER: &str = "builtin";
/// What separates an upstream server's name from its tool's name in `tools/list`.
pub const SEPARATOR: &str = "__";
/// Default time an upstream call may take.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Default time an upstream's tool list is reused.
pub const DEFAULT_TTL_MS: u64 = 300_000;

/// `mcp:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSpec {
    /// The gateway's public base URL (e.g. `https://ai.example.com`), used in the OAuth
    /// protected resource metadata and the 401 challenge; default: from the `Host` header.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Browser origins allowed to call `/v1/mcp` (`scheme://host[:port]`). Requests without
    /// `Origin` are always allowed; an `Origin` that is neither listed nor the gateway's own
    /// host gets 403.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Upstream MCP servers, each checked on its own.
    #[serde(default)]
    pub servers: Vec<serde_norway::Value>,
}

/// One upstream MCP server as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Name: its tools appear as `<name>__<tool>`, its Cedar entity is `ToolServer::"<name>"`.
    pub name: String,
    /// Streamable HTTP endpoint.
    pub url: String,
    /// Headers sent on every request to it (credentials of the gateway, not of the caller).
    #[serde(default)]
    pub headers: Vec<HeaderSpec>,
    /// Longest time one request to it may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How long its tool list is reused (shortened by the server's own `ttlMs`).
    #[serde(default = "default_ttl")]
    pub ttl_ms: u64,
    /// `auto` (default: `server/discover`, else the `initialize` handshake) or a revision.
    #[serde(default)]
    pub protocol: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_ttl() -> u64 {
    DEFAULT_TTL_MS
}

/// One header of an upstream server: a literal `value`, or the value of the environment
/// variable `env` (read once at start), optionally after `prefix` (e.g. `"Bearer "`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    /// Header name.
    pub name: String,
    /// A literal, non-secret value.
    #[serde(default)]
    pub value: Option<String>,
    /// The environment variable holding a secret value.
    #[serde(default)]
    pub env: Option<String>,
    /// Text put before the variable's value.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// Where a header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// Written in the config.
    Literal(String),
    /// `prefix` + the variable's value.
    Env {
        /// Variable name.
        var: String,
        /// Text before the value.
        prefix: String,
    },
}

/// The protocol revision spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// `server/discover` at the newest revision, else the `initialize` handshake.
    Auto,
    /// Always the stateless revision.
    Modern,
    /// Always the handshake at this revision.
    Legacy(&'static str),
}

/// An upstream MCP server, compiled.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// Name.
    pub name: String,
    /// Endpoint.
    pub url: reqwest::Url,
    /// Headers (names checked).
    pub headers: Vec<(http::HeaderName, HeaderSource)>,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Tool list reuse.
    pub ttl: Duration,
    /// Revision policy.
    pub protocol: UpstreamProtocol,
}

/// `mcp:` compiled.
#[derive(Debug, Clone, Default)]
pub struct McpRuntime {
    /// Public base URL without a trailing `/`.
    pub public_url: Option<String>,
    /// Allowed origins, lowercased.
    pub allowed_origins: Vec<String>,
    /// Upstream servers in config order.
    pub servers: Vec<McpServer>,
}

fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.contains(SEPARATOR)
        && !name.ends_with('_')
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a base URL: `http(s)://host[:port][/path]` with no query or fragment.
fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` must not carry credentials; use `headers` with `env`"
        ));
    }
    Ok(url)
}

const REVISIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];

/// Compiles `mcp:`; every problem goes to `errors` with its line.
pub fn compile(file: &SourceFile, spec: &McpSpec, errors: &mut ConfigErrors) -> McpRuntime {
    let text = &file.text;
    let mut err = |line: Option<usize>, msg: String| {
        errors.push(ConfigError::new(&file.name, line, msg));
    };
    let public_url = match &spec.public_url {
        None => None,
        Some(u) => match check_url(u) {
            Ok(_) => Some(u.trim_end_matches('/').to_string()),
            Err(e) => {
                err(
                    locate(text, &["mcp:", "public_url:"]),
                    format!("mcp.public_url: {e}"),
                );
                None
            }
        },
    };
    let mut allowed_origins = Vec::new();
    for o in &spec.allowed_origins {
        match check_url(o) {
            Ok(u) if u.path() == "/" && !o.ends_with('/') => {
                allowed_origins.push(o.to_ascii_lowercase());
            }
            Ok(_) => err(
                locate(text, &["mcp:", "allowed_origins:"]),
                format!("mcp.allowed_origins: `{o}` must be `scheme://host[:port]` with no path"),
            ),
            Err(e) => err(
                locate(text, &["mcp:", "allowed_origins:"]),
                format!("mcp.allowed_origins: {e}"),
            ),
        }
    }
    let mut servers: Vec<McpServer> = Vec::new();
    for (i, value) in spec.servers.iter().enumerate() {
        let name = value
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        let anchor = format!("name: {name}");
        let label = if name.is_empty() {
            format!("mcp.servers[{i}]")
        } else {
            format!("mcp server `{name}`")
        };
        let s: ServerSpec = match parse_entry(file, value.clone(), &label, &["mcp:", &anchor]) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let at = |key: Option<&str>| match key {
            Some(k) => locate(text, &["mcp:", "servers:", &anchor, k]),
            None => locate(text, &["mcp:", "servers:", &anchor]),
        };
        let mut err = |key: Option<&str>, msg: String| {
            errors.push(ConfigError::new(&file.name, at(key), msg));
        };
        let mut ok = true;
        if !valid_server_name(&s.name) {
            err(
                None,
                format!(
                    "mcp server `{}`: the name must be 1 to 64 characters of lowercase letters, digits, `-` or `_`, without `{SEPARATOR}` and not ending in `_`",
                    s.name
                ),
            );
            ok = false;
        } else if s.name == BUILTIN_SERVER {
            err(
                None,
                format!(
                    "mcp server `{BUILTIN_SERVER}`: the name is reserved for the built-in tools"
                ),
            );
            ok = false;
        } else if servers.iter().any(|x| x.name == s.name) {
            err(None, format!("mcp server name `{}` is used twice", s.name));
            ok = false;
        }
        let url = match check_url(&s.url) {
            Ok(u) => Some(u),
            Err(e) => {
                err(Some("url:"), format!("mcp server `{}`: {e}", s.name));
                None
            }
        };
        if s.timeout_ms == 0 || s.timeout_ms > 900_000 {
            err(
                Some("timeout_ms:"),
                format!(
                    "mcp server `{}`: `timeout_ms` must be between 1 and 900000",
                    s.name
                ),
            );
            ok = false;
        }
        if s.ttl_ms > 86_400_000 {
            err(
                Some("ttl_ms:"),
                format!(
                    "mcp server `{}`: `ttl_ms` must be at most 86400000 (a day)",
                    s.name
                ),
            );
            ok = false;
        }
        let protocol = match s.protocol.as_deref() {
            None | Some("auto") => UpstreamProtocol::Auto,
            Some("2026-07-28") => UpstreamProtocol::Modern,
            Some(p) => match REVISIONS.iter().find(|r| **r == p) {
                Some(r) => UpstreamProtocol::Legacy(r),
                None => {
                    err(
                        Some("protocol:"),
                        format!(
                            "mcp server `{}`: protocol `{p}` is not `auto`, `2026-07-28`, `2025-11-25`, `2025-06-18` or `2025-03-26`",
                            s.name
                        ),
                    );
                    ok = false;
                    UpstreamProtocol::Auto
                }
            },
        };
        let mut headers = Vec::new();
        for h in &s.headers {
            let hname = match http::HeaderName::from_bytes(h.name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    err(
                        Some("headers:"),
                        format!("mcp server `{}`: `{}` is not a header name", s.name, h.name),
                    );
                    ok = false;
                    continue;
                }
            };
            let reserved = [
                "host",
                "content-type",
                "content-length",
                "accept",
                "mcp-protocol-version",
                "mcp-method",
                "mcp-name",
                "mcp-session-id",
                "connection",
                "transfer-encoding",
            ];
            if reserved.contains(&hname.as_str()) {
                err(
                    Some("headers:"),
                    format!(
                        "mcp server `{}`: header `{}` is set by the gateway",
                        s.name, h.name
                    ),
                );
                ok = false;
                continue;
            }
            if headers.iter().any(|(n, _)| *n == hname) {
                err(
                    Some("headers:"),
                    format!(
                        "mcp server `{}`: header `{}` is given twice",
                        s.name, h.name
                    ),
                );
                ok = false;
                continue;
            }
            let source = match (&h.value, &h.env) {
                (Some(v), None) if h.prefix.is_none() => {
                    if http::HeaderValue::from_str(v).is_err() {
                        err(
                            Some("headers:"),
                            format!(
                                "mcp server `{}`: the value of header `{}` is not a valid header value",
                                s.name, h.name
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    HeaderSource::Literal(v.clone())
                }
                (None, Some(var)) if valid_env_name(var) => HeaderSource::Env {
                    var: var.clone(),
                    prefix: h.prefix.clone().unwrap_or_default(),
                },
                (None, Some(var)) => {
                    err(
                        Some("headers:"),
                        format!(
                            "mcp server `{}`: `{var}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                            s.name
                        ),
                    );
                    ok = false;
                    continue;
                }
                _ => {
                    err(
                        Some("headers:"),
                        format!(
                            "mcp server `{}`: header `{}` needs exactly one of `value` or `env` (`prefix` only with `env`)",
                            s.name, h.name
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            headers.push((hname, source));
        }
        if let (true, Some(url)) = (ok, url) {
            servers.push(McpServer {
                name: s.name.clone(),
                url,
                headers,
                timeout: Duration::from_millis(s.timeout_ms),
                ttl: Duration::from_millis(s.ttl_ms),
                protocol,
            });
        }
    }
    McpRuntime {
        public_url,
        allowed_origins,
        servers,
    }
}

/// The Cedar action every `tools/call` is authorized with.
pub const CALL_TOOL: &str = "call_tool";

/// Checks that the schema declares what the MCP endpoint authorizes with: the action
/// `call_tool` on `Tool` resources.
pub fn check_policy(policy: &crate::policy::PolicyEngine) -> Result<(), String> {
    let action = policy.action(CALL_TOOL).ok_or_else(|| {
        format!("handler `mcp` needs the action `{CALL_TOOL}` in the Cedar schema")
    })?;
    policy
        .check_action_applies(action, &policy.types.tool)
        .map_err(|e| format!("action `{CALL_TOOL}` must apply to `Tool` resources: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(valid_server_name("docs"));
        assert!(valid_server_name("my-docs_2"));
        assert!(!valid_server_name("a__b"));
        assert!(!valid_server_name("Docs"));
        assert!(!valid_server_name("docs_"));
        assert!(!valid_server_name(""));
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9000/mcp").is_ok());
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("https://u:p@x/").is_err());
        assert!(check_url("https://x/?a=b").is_err());
    }
}
