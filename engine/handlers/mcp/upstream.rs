//! The client side of the gateway: upstream MCP servers over Streamable HTTP, with the
//! gateway's credentials, each negotiated on its own (`server/discover` at 2026-07-28, else the
//! `initialize` handshake, whose session id is kept and renewed when the server forgets it),
//! and their tool lists cached per `ttl_ms` (or the server's shorter `ttlMs`).

use super::jsonrpc::{self, INTERNAL_ERROR, META_CAPABILITIES, META_VERSION, MODERN, RpcError};
use super::wire::header_safe;
pub use super::wire::{Messages, is_response_to, is_sse, messages};
use crate::config::mcp::{HeaderSource, McpServer, UpstreamProtocol};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Where header secrets are read (the process environment by default).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Most pages of an upstream `tools/list` followed.
const MAX_PAGES: usize = 20;

/// Why an upstream call failed.
#[derive(Debug, Clone)]
pub enum UpstreamError {
    /// A header's environment variable was not set at start.
    Credentials(String),
    /// No connection, or the connection broke.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// An HTTP error status without a JSON-RPC error.
    Status(u16),
    /// An answer that is not MCP.
    BadResponse(String),
    /// The server answered with a JSON-RPC error object.
    Rpc(Value),
}

impl UpstreamError {
    /// The MCP error the client sees; never the credentials, never the server's URL.
    pub fn to_rpc(&self, server: &str) -> RpcError {
        let (reason, message) = match self {
            UpstreamError::Credentials(_) => (
                "not_configured",
                format!(
                    "upstream MCP server `{server}` is not configured: a credential is missing"
                ),
            ),
            UpstreamError::Unreachable => (
                "unreachable",
                format!("upstream MCP server `{server}` is unreachable"),
            ),
            UpstreamError::Timeout => (
                "timeout",
                format!("upstream MCP server `{server}` did not answer in time"),
            ),
            UpstreamError::Status(s) => (
                "http_status",
                format!("upstream MCP server `{server}` answered with HTTP status {s}"),
            ),
            UpstreamError::BadResponse(_) => (
                "bad_response",
                format!("upstream MCP server `{server}` sent an answer that is not MCP"),
            ),
            UpstreamError::Rpc(e) => {
                let code = e
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(INTERNAL_ERROR);
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("error");
                let mut r = RpcError::new(code, format!("upstream MCP server `{server}`: {msg}"));
                if let Some(d) = e.get("data") {
                    r = r.data(d.clone());
                }
                return r;
            }
        };
        RpcError::new(INTERNAL_ERROR, message).data(json!({"server": server, "reason": reason}))
    }

    /// A short label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::Credentials(_) => "not_configured",
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Status(_) => "http_status",
            UpstreamError::BadResponse(_) => "bad_response",
            UpstreamError::Rpc(_) => "upstream_error",
        }
    }
}

/// The revision agreed with one upstream.
#[derive(Debug, Clone)]
struct Session {
    version: String,
    modern: bool,
    id: Option<String>,
}

struct CachedTools {
    until: Instant,
    tools: Result<Arc<Vec<Value>>, UpstreamError>,
}

/// How long a failed tool listing is remembered, so a server that is down does not slow
/// every `tools/list` (its calls are still tried).
const FAILURE_TTL: Duration = Duration::from_secs(30);

/// One upstream MCP server and what the gateway remembers of it.
pub struct Upstream {
    /// Its config.
    pub spec: McpServer,
    headers: Result<HeaderMap, UpstreamError>,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<Session>>,
    tools: std::sync::Mutex<Option<CachedTools>>,
    counter: AtomicU64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Resolves the headers (reading their variables once) and binds the HTTP client.
    pub fn new(spec: McpServer, http: reqwest::Client, env: &EnvLookup) -> Self {
        let mut headers = HeaderMap::new();
        let mut missing = None;
        for (name, source) in &spec.headers {
            let value = match source {
                HeaderSource::Literal(v) => Some(v.clone()),
                HeaderSource::Env { var, prefix } => match env(var) {
                    Some(v) => Some(format!("{prefix}{v}")),
                    None => {
                        missing = Some(var.clone());
                        None
                    }
                },
            };
            if let Some(v) = value {
                match HeaderValue::from_str(&v) {
                    Ok(mut hv) => {
                        hv.set_sensitive(true);
                        headers.insert(name.clone(), hv);
                    }
                    Err(_) => missing = Some(format!("{name} (not a valid header value)")),
                }
            }
        }
        Self {
            spec,
            headers: match missing {
                Some(var) => Err(UpstreamError::Credentials(var)),
                None => Ok(headers),
            },
            http,
            session: tokio::sync::Mutex::new(None),
            tools: std::sync::Mutex::new(None),
            counter: AtomicU64::new(0),
        }
    }

    /// The environment variable that was missing at start, if any.
    pub fn problem(&self) -> Option<String> {
        match &self.headers {
            Err(UpstreamError::Credentials(v)) => Some(format!(
                "mcp server `{}`: the environment variable `{v}` is not set",
                self.spec.name
            )),
            _ => None,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn next_id(&self) -> String {
        format!("pw-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    async fn post(
        &self,
        session: Option<&Session>,
        method: &str,
        id: Option<&str>,
        mut params: Map<String, Value>,
        extra: &[(http::HeaderName, HeaderValue)],
        deadline: Instant,
    ) -> Result<reqwest::Response, UpstreamError> {
        let base = self.headers.as_ref().map_err(Clone::clone)?;
        let mut req = self
            .http
            .post(self.spec.url.clone())
            .headers(base.clone())
            .headers(crate::telemetry::trace_headers())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(s) = session {
            req = req.header("mcp-protocol-version", &s.version);
            if let Some(sid) = &s.id {
                req = req.header("mcp-session-id", sid);
            }
            if s.modern {
                let meta = params
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = meta {
                    m.insert(META_VERSION.into(), Value::String(MODERN.into()));
                    m.insert(META_CAPABILITIES.into(), json!({}));
                    m.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        json!({"name": "pennyworth", "version": crate::handlers::meta::VERSION}),
                    );
                }
                req = req.header("mcp-method", method);
                for (name, value) in extra {
                    req = req.header(name, value);
                }
                if let Some(name) = params.get("name").and_then(Value::as_str) {
                    req = req.header("mcp-name", header_safe(name));
                }
            }
        }
        let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if let (Some(id), Value::Object(m)) = (id, &mut body) {
            m.insert("id".into(), Value::String(id.into()));
        }
        let send = req.json(&body).send();
        match tokio::time::timeout_at(deadline, send).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout),
            Ok(Err(_)) => Err(UpstreamError::Unreachable),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The agreed revision, negotiated on first use.
    async fn session(&self, deadline: Instant) -> Result<Session, UpstreamError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = match self.spec.protocol {
            UpstreamProtocol::Modern => self.discover(deadline).await?,
            UpstreamProtocol::Legacy(v) => self.initialize(v, deadline).await?,
            UpstreamProtocol::Auto => match self.discover(deadline).await {
                Ok(s) => s,
                Err(e @ (UpstreamError::Timeout | UpstreamError::Unreachable)) => return Err(e),
                Err(e @ UpstreamError::Credentials(_)) => return Err(e),
                Err(_) => self.initialize(jsonrpc::LEGACY[0], deadline).await?,
            },
        };
        tracing::info!(server = %self.spec.name, version = %s.version, "upstream MCP server negotiated");
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn discover(&self, deadline: Instant) -> Result<Session, UpstreamError> {
        let modern = Session {
            version: MODERN.into(),
            modern: true,
            id: None,
        };
        let id = self.next_id();
        let r = self
            .post(
                Some(&modern),
                "server/discover",
                Some(&id),
                Map::new(),
                &[],
                deadline,
            )
            .await?;
        let result = final_result(r, &id, deadline).await?;
        let speaks = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(MODERN)));
        if speaks {
            Ok(modern)
        } else {
            Err(UpstreamError::BadResponse("no modern revision".into()))
        }
    }

    async fn initialize(&self, version: &str, deadline: Instant) -> Result<Session, UpstreamError> {
        let id = self.next_id();
        let params = json!({
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "pennyworth", "version": crate::handlers::meta::VERSION},
        });
        let params = params.as_object().cloned().unwrap_or_default();
        let r = self
            .post(None, "initialize", Some(&id), params, &[], deadline)
            .await?;
        let sid = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let result = final_result(r, &id, deadline).await?;
        let agreed = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .filter(|v| jsonrpc::LEGACY.contains(v) || *v == "2024-11-05")
            .ok_or_else(|| UpstreamError::BadResponse("unusable protocolVersion".into()))?;
        let s = Session {
            version: agreed.to_string(),
            modern: false,
            id: sid,
        };
        // The server may answer 202 or nothing useful; only a broken connection matters.
        let _ = self
            .post(
                Some(&s),
                "notifications/initialized",
                None,
                Map::new(),
                &[],
                deadline,
            )
            .await?;
        Ok(s)
    }

    /// Sends a request; renews a session the server no longer knows (404) once. Returns the
    /// id used and the answer, whose messages [`messages`] reads.
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
        extra: &[(http::HeaderName, HeaderValue)],
        deadline: Instant,
    ) -> Result<(String, reqwest::Response), UpstreamError> {
        for attempt in 0..2 {
            let s = self.session(deadline).await?;
            let id = self.next_id();
            let r = self
                .post(Some(&s), method, Some(&id), params.clone(), extra, deadline)
                .await?;
            if r.status() == http::StatusCode::NOT_FOUND && s.id.is_some() && attempt == 0 {
                tracing::info!(server = %self.spec.name, "upstream MCP session expired; negotiating again");
                *self.session.lock().await = None;
                continue;
            }
            return Ok((id, r));
        }
        Err(UpstreamError::Status(404))
    }

    /// The `Mcp-Param-*` headers a call of `tool` needs (2026-07-28 `x-mcp-header`), from the
    /// tool list (fetched when not cached; without it, none).
    pub async fn param_headers(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        deadline: Instant,
    ) -> Vec<(http::HeaderName, HeaderValue)> {
        let Ok(tools) = self.tools(deadline).await else {
            return Vec::new();
        };
        tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(tool))
            .and_then(|t| t.get("inputSchema"))
            .map(|schema| super::wire::param_headers(schema, args))
            .unwrap_or_default()
    }

    /// The server's tools, from the cache while fresh.
    pub async fn tools(&self, deadline: Instant) -> Result<Arc<Vec<Value>>, UpstreamError> {
        if let Ok(guard) = self.tools.lock()
            && let Some(c) = guard.as_ref()
            && Instant::now() < c.until
        {
            return c.tools.clone();
        }
        let fetched = self.fetch_tools(deadline).await;
        let ttl = match &fetched {
            Ok((_, ttl)) => *ttl,
            Err(_) => FAILURE_TTL.min(self.spec.ttl),
        };
        let tools = fetched.map(|(t, _)| Arc::new(t));
        if let Ok(mut guard) = self.tools.lock() {
            *guard = Some(CachedTools {
                until: Instant::now() + ttl,
                tools: tools.clone(),
            });
        }
        tools
    }

    async fn fetch_tools(
        &self,
        deadline: Instant,
    ) -> Result<(Vec<Value>, Duration), UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut ttl = self.spec.ttl;
        for _ in 0..MAX_PAGES {
            let mut params = Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".into(), Value::String(c.clone()));
            }
            let (id, r) = self.request("tools/list", params, &[], deadline).await?;
            let result = final_result(r, &id, deadline).await?;
            if let Some(list) = result.get("tools").and_then(Value::as_array) {
                tools.extend(
                    list.iter()
                        .filter(|t| t.get("name").is_some_and(Value::is_string))
                        .cloned(),
                );
            }
            // A server's own positive `ttlMs` shortens the configured reuse; 0 ("do not
            // cache") does not turn the gateway's cache off, which `ttl_ms: 0` does.
            if let Some(ms) = result
                .get("ttlMs")
                .and_then(Value::as_u64)
                .filter(|ms| *ms > 0)
            {
                ttl = ttl.min(Duration::from_millis(ms));
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok((tools, ttl))
    }
}

/// Reads an answer to its response and returns the result, or the error.
async fn final_result(
    r: reqwest::Response,
    id: &str,
    deadline: Instant,
) -> Result<Value, UpstreamError> {
    let mut stream = messages(r, deadline);
    while let Some(m) = stream.next().await {
        let m = m?;
        if is_response_to(&m, id) {
            if let Some(e) = m.get("error") {
                return Err(UpstreamError::Rpc(e.clone()));
            }
            return Ok(m.get("result").cloned().unwrap_or(Value::Null));
        }
    }
    Err(UpstreamError::BadResponse(
        "the answer ended without a response".into(),
    ))
}

/// Builds the upstreams of a config with one shared HTTP client.
pub fn build(servers: &[McpServer], env: &EnvLookup) -> Vec<Arc<Upstream>> {
    // No client (and no TLS set-up on a cold start) when there is nothing to call.
    if servers.is_empty() {
        return Vec::new();
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    servers
        .iter()
        .map(|s| Arc::new(Upstream::new(s.clone(), http.clone(), env)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_missing_are_reported() {
        let spec = McpServer {
            name: "docs".into(),
            url: reqwest::Url::parse("http://127.0.0.1:1/mcp").expect("url"),
            headers: vec![(
                http::HeaderName::from_static("authorization"),
                HeaderSource::Env {
                    var: "PW_NOT_SET".into(),
                    prefix: "Bearer ".into(),
                },
            )],
            timeout: Duration::from_secs(1),
            ttl: Duration::from_secs(1),
            protocol: UpstreamProtocol::Auto,
        };
        let env: EnvLookup = Arc::new(|_| None);
        let up = Upstream::new(spec.clone(), reqwest::Client::new(), &env);
        assert!(up.problem().is_some_and(|p| p.contains("PW_NOT_SET")));
        let env: EnvLookup = Arc::new(|_| Some("s3cret".into()));
        let up = Upstream::new(spec, reqwest::Client::new(), &env);
        assert!(up.problem().is_none());
        assert!(!format!("{up:?}").contains("s3cret"));
    }
}
