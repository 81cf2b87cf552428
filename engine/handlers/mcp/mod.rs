//! `POST /v1/mcp`: the gateway as an MCP server (Streamable HTTP, stateless) and as a gateway
//! to upstream MCP servers. JSON-RPC is implemented here directly rather than with `rmcp`
//! (doc/mcp.md says why): each POST is answered on its own, in the handshake revisions
//! (2025-03-26 to 2025-11-25) and in the stateless 2026-07-28 revision.

mod builtin;
pub mod jsonrpc;
mod tools;
pub mod upstream;
mod wire;

use super::Ctx;
use crate::body::Body;
use crate::config::mcp::McpRuntime;
use crate::errors::ApiError;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use jsonrpc::{Era, Message, RpcError};
use serde_json::{Value, json};
use std::sync::Arc;
use upstream::{EnvLookup, Upstream};

/// What the MCP endpoint keeps between requests: its settings and the upstream servers
/// (connections, negotiated revisions, cached tool lists).
#[derive(Debug, Default)]
pub struct Gateway {
    public_url: Option<String>,
    allowed_origins: Vec<String>,
    servers: Vec<Arc<Upstream>>,
}

impl Gateway {
    /// Builds the upstreams of `config`; header secrets are read from `env` now, once.
    pub fn new(config: &McpRuntime, env: &EnvLookup) -> Self {
        Self {
            public_url: config.public_url.clone(),
            allowed_origins: config.allowed_origins.clone(),
            servers: upstream::build(&config.servers, env),
        }
    }

    /// Upstream servers in config order.
    pub fn servers(&self) -> &[Arc<Upstream>] {
        &self.servers
    }

    /// One upstream server.
    pub fn server(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.servers.iter().find(|s| s.name() == name)
    }

    /// What is wrong with the upstream setup (environment variables not set); start-up
    /// refuses to serve with any.
    pub fn problems(&self) -> Vec<String> {
        self.servers.iter().filter_map(|s| s.problem()).collect()
    }

    /// The public base URL: configured, else from the request's `Host` (and
    /// `X-Forwarded-Proto`; plain http only for loopback hosts).
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let host = jsonrpc::header(headers, "host").unwrap_or("localhost");
        let loopback = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|h| host == *h || host.starts_with(&format!("{h}:")));
        let scheme = match jsonrpc::header(headers, "x-forwarded-proto") {
            Some(p @ ("http" | "https")) => p,
            _ if loopback => "http",
            _ => "https",
        };
        format!("{scheme}://{host}")
    }

    /// The URL of the protected resource metadata of `/v1/mcp`.
    fn metadata_url(&self, headers: &HeaderMap) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/v1/mcp",
            self.base_url(headers)
        )
    }
}

/// Before authentication: a browser `Origin` that is neither allowed nor the gateway's own
/// host gets 403 (DNS rebinding protection); requests without `Origin` pass.
pub fn check_origin(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
    let own = |base: &str| base.to_ascii_lowercase() == origin;
    let host_origin = jsonrpc::header(headers, "host").is_some_and(|h| {
        let h = h.to_ascii_lowercase();
        origin == format!("http://{h}") || origin == format!("https://{h}")
    });
    if host_origin
        || gateway.allowed_origins.contains(&origin)
        || gateway.public_url.as_deref().is_some_and(own)
    {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "the origin `{origin}` may not use this MCP endpoint"
    )))
}

/// A 401 of the MCP endpoint names the protected resource metadata, so MCP clients find
/// the authorization server.
pub fn challenge(gateway: &Gateway, headers: &HeaderMap, mut e: ApiError) -> ApiError {
    if e.status != StatusCode::UNAUTHORIZED {
        return e;
    }
    let value = format!(
        "Bearer realm=\"pennyworth\", resource_metadata=\"{}\"",
        gateway.metadata_url(headers)
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        e.headers.retain(|(n, _)| n != header::WWW_AUTHENTICATE);
        e.headers.push((header::WWW_AUTHENTICATE, v));
    }
    e
}

/// `GET /.well-known/oauth-protected-resource[/v1/mcp]`: RFC 9728 metadata naming the
/// Cognito user pool as authorization server when tokens are accepted.
pub fn metadata(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let gateway = ctx.engine.mcp();
    let mut doc = json!({
        "resource": format!("{}/v1/mcp", gateway.base_url(ctx.headers)),
        "resource_name": "Pennyworth",
        "bearer_methods_supported": ["header"],
    });
    if let (Some(issuer), Value::Object(m)) = (ctx.engine.jwt_issuer(), &mut doc) {
        m.insert("authorization_servers".into(), json!([issuer]));
    }
    super::json(StatusCode::OK, &doc)
}

fn server_info() -> Value {
    json!({"name": "pennyworth", "title": "Pennyworth gateway", "version": super::meta::VERSION})
}

const INSTRUCTIONS: &str = "Tools of the Pennyworth gateway: `list_models`, `whoami`, `chat` and `embed` run on its models; `<server>__<tool>` tools are forwarded to upstream MCP servers. You see only the tools and models your policies permit.";

/// `initialize` (handshake revisions): the client's revision when the gateway speaks it, else
/// the newest handshake revision. No session is issued: every request stands alone.
fn initialize(call: &jsonrpc::Call) -> Value {
    let asked = call.params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| jsonrpc::LEGACY.contains(v))
        .unwrap_or(jsonrpc::LEGACY[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

/// `server/discover` (2026-07-28).
fn discover() -> Value {
    json!({
        "supportedVersions": jsonrpc::SUPPORTED,
        "capabilities": {"tools": {}},
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
        "ttlMs": 300_000,
        "cacheScope": "private",
    })
}

/// Answers one POST. Every failure of the client's message is a JSON-RPC error; nothing here
/// answers 500.
pub async fn handle(ctx: &Ctx<'_>, body: &Bytes) -> Result<Response<Body>, ApiError> {
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"mcp reached without an identity"))?;
    let call = match jsonrpc::parse(body) {
        Ok(Message::Request(c)) => c,
        Ok(Message::Notification | Message::Response) => return Ok(jsonrpc::accepted()),
        Err(e) => return Ok(jsonrpc::fail(&e.0, &e.1)),
    };
    let era = match jsonrpc::negotiate(ctx.headers, &call) {
        Ok(era) => era,
        Err(e) => return Ok(jsonrpc::fail(&call.id, &e)),
    };
    let id = &call.id;
    let result = match (call.method.as_str(), era) {
        ("initialize", Era::Legacy) => initialize(&call),
        ("ping", Era::Legacy) => json!({}),
        ("server/discover", _) => discover(),
        ("tools/list", _) => tools::list(ctx, identity, era).await,
        ("tools/call", _) => {
            let sse = jsonrpc::header(ctx.headers, "accept")
                .is_some_and(|a| a.contains("text/event-stream"));
            return Ok(tools::call(ctx, identity, &call, era, sse).await);
        }
        (m, _) => return Ok(jsonrpc::fail(id, &RpcError::method_not_found(m, era))),
    };
    Ok(jsonrpc::ok(id, jsonrpc::finish(era, result)))
}
