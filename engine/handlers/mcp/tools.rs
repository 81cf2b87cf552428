//! `tools/list` and `tools/call`: built-in and upstream tools under one namespace, each a
//! Cedar `Tool` authorized with `call_tool` when listed and again when called; every call
//! writes an audit line and a usage line (tool, server, caller, key, latency, outcome; never
//! arguments or results).

use super::Ctx;
use super::builtin;
use super::jsonrpc::{self, Call, Era, INVALID_PARAMS, RpcError};
use super::upstream::{self, Upstream, UpstreamError};
use crate::auth::Identity;
use crate::body::{Body, BoxError};
use crate::config::mcp::{BUILTIN_SERVER, SEPARATOR};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, header};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;

/// `ttlMs` of a list without upstream servers.
const BUILTIN_TTL_MS: u64 = 300_000;
/// Longest wait for one upstream's tools in `tools/list` (a slow server is left out).
const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// When a call to an upstream must be answered: its timeout, or the request's deadline.
fn deadline(ctx: &Ctx<'_>, up: &Upstream) -> tokio::time::Instant {
    let own = tokio::time::Instant::now() + up.spec.timeout;
    match ctx.deadline {
        Some(d) => own.min(d),
        None => own,
    }
}

fn allowed(ctx: &Ctx<'_>, identity: &Identity, tool: &str, server: &str) -> bool {
    ctx.engine
        .authorize_tool(identity, tool, server, ctx.facts)
        .allowed
}

/// `tools/list`: the tools Cedar permits the caller, built-ins first, then each upstream in
/// config order. An upstream that cannot list its tools is left out (and logged).
pub async fn list(ctx: &Ctx<'_>, identity: &Identity, era: Era) -> Value {
    let mut tools: Vec<Value> = builtin::NAMES
        .iter()
        .filter(|n| allowed(ctx, identity, n, BUILTIN_SERVER))
        .filter_map(|n| builtin::definition(ctx, identity, n))
        .collect();
    let servers = ctx.engine.mcp().servers();
    let fetched = futures_util::future::join_all(servers.iter().map(|up| async move {
        let wait = tokio::time::Instant::now() + LIST_WAIT;
        let span = tracing::info_span!(target: crate::telemetry::TARGET, "mcp.tools_list", mcp.server = %up.name());
        tracing::Instrument::instrument(up.tools(deadline(ctx, up).min(wait)), span).await
    }))
    .await;
    let mut ttl = BUILTIN_TTL_MS;
    for (up, result) in servers.iter().zip(fetched) {
        ttl = ttl.min(u64::try_from(up.spec.ttl.as_millis()).unwrap_or(u64::MAX));
        let list = match result {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    request_id = ctx.request_id,
                    server = up.name(),
                    error = e.label(),
                    "upstream MCP server left out of tools/list"
                );
                continue;
            }
        };
        for t in list.iter() {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            let exposed = format!("{}{SEPARATOR}{name}", up.name());
            if !allowed(ctx, identity, &exposed, up.name()) {
                continue;
            }
            let mut t = t.clone();
            if let Value::Object(m) = &mut t {
                m.insert("name".into(), Value::String(exposed));
                if let Some(schema) = m.get_mut("inputSchema") {
                    super::wire::strip_param_headers(schema);
                }
            }
            tools.push(t);
        }
    }
    let mut result = json!({"tools": tools});
    if let (Era::Modern, Value::Object(m)) = (era, &mut result) {
        m.insert("ttlMs".into(), json!(ttl));
        // The list depends on the caller's permissions.
        m.insert("cacheScope".into(), json!("private"));
    }
    result
}

/// One call's usage line, written once: when the call ends, or when an abandoned stream is
/// dropped.
struct ToolRecord {
    request_id: String,
    trace_id: String,
    /// The call's span, open until the record is written.
    span: tracing::Span,
    user: String,
    key_id: Option<String>,
    tool: String,
    server: String,
    started: Instant,
    done: bool,
}

impl ToolRecord {
    fn new(ctx: &Ctx<'_>, identity: &Identity, tool: &str, server: &str) -> Self {
        Self {
            request_id: ctx.request_id.to_string(),
            trace_id: ctx.trace_id.to_string(),
            span: tracing::info_span!(
                target: crate::telemetry::TARGET,
                "mcp.tool",
                mcp.server = server,
                mcp.tool = tool,
                outcome = tracing::field::Empty,
            ),
            user: identity.username.clone(),
            key_id: identity.key_id.clone(),
            tool: tool.to_string(),
            server: server.to_string(),
            started: Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, outcome: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Entered once more: a span ends at its last exit, so a streamed call ends here.
        let _in = self.span.enter();
        self.span.record("outcome", outcome);
        tracing::info!(
            target: "pennyworth::usage",
            request_id = %self.request_id,
            trace_id = %self.trace_id,
            user = %self.user,
            key_id = self.key_id.as_deref().unwrap_or(""),
            tool = %self.tool,
            server = %self.server,
            micros,
            outcome,
            "tool call"
        );
    }
}

impl Drop for ToolRecord {
    fn drop(&mut self) {
        self.finish("abandoned");
    }
}

fn outcome_of(result: &Value) -> &'static str {
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        "tool_error"
    } else {
        "ok"
    }
}

/// `tools/call`. Unknown and denied tools get the same answer, so a caller cannot tell a
/// tool they may not use from one that does not exist.
pub async fn call(
    ctx: &Ctx<'_>,
    identity: &Identity,
    call: &Call,
    era: Era,
    accepts_sse: bool,
) -> Response<Body> {
    let id = &call.id;
    let Some(name) = call.params.get("name").and_then(Value::as_str) else {
        return jsonrpc::fail(
            id,
            &RpcError::new(INVALID_PARAMS, "`params.name` must be a string"),
        );
    };
    let args = match call.params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return jsonrpc::fail(
                id,
                &RpcError::new(INVALID_PARAMS, "`params.arguments` must be an object"),
            );
        }
    };
    let upstream = name.split_once(SEPARATOR).and_then(|(server, tool)| {
        ctx.engine
            .mcp()
            .server(server)
            .map(|up| (up.clone(), tool.to_string()))
    });
    let server = match &upstream {
        Some((up, _)) => up.name().to_string(),
        None => BUILTIN_SERVER.to_string(),
    };
    let known = upstream.is_some() || builtin::NAMES.contains(&name);
    let verdict = ctx
        .engine
        .authorize_tool(identity, name, &server, ctx.facts);
    tracing::info!(
        target: "pennyworth::audit",
        request_id = ctx.request_id,
        trace_id = ctx.trace_id,
        user = %identity.username,
        action = "call_tool",
        route = "mcp",
        resource = %name,
        server = %server,
        allowed = verdict.allowed && known,
        policies = ?verdict.reasons,
        errors = ?verdict.errors,
        "authorization"
    );
    let mut record = ToolRecord::new(ctx, identity, name, &server);
    if !known || !verdict.allowed {
        record.finish(if known { "denied" } else { "unknown_tool" });
        return jsonrpc::fail(
            id,
            &RpcError::new(
                INVALID_PARAMS,
                format!("tool `{name}` does not exist or you are not permitted to call it"),
            ),
        );
    }
    match upstream {
        None => match tracing::Instrument::instrument(
            builtin::call(ctx, identity, name, &args),
            record.span.clone(),
        )
        .await
        {
            Ok(result) => {
                record.finish(outcome_of(&result));
                jsonrpc::ok(id, jsonrpc::finish(era, result))
            }
            Err(e) => {
                record.finish("error");
                jsonrpc::fail(id, &e)
            }
        },
        Some((up, tool)) => forward(ctx, call, era, accepts_sse, up, tool, args, record).await,
    }
}

/// The client's view of the upstream's final message.
fn rewrite(m: &Value, server: &str, era: Era) -> Result<Value, RpcError> {
    if let Some(e) = m.get("error") {
        return Err(UpstreamError::Rpc(e.clone()).to_rpc(server));
    }
    let mut result = m.get("result").cloned().unwrap_or_else(|| json!({}));
    if era == Era::Legacy
        && let Value::Object(r) = &mut result
        && r.get("resultType").and_then(Value::as_str) == Some("complete")
    {
        r.remove("resultType");
    }
    Ok(jsonrpc::finish(era, result))
}

/// Notifications worth passing on to the client: those about this request.
fn forwardable(m: &Value) -> bool {
    matches!(
        m.get("method").and_then(Value::as_str),
        Some("notifications/progress" | "notifications/message")
    ) && m.get("id").is_none()
}

#[expect(clippy::too_many_arguments, reason = "one call's parts, passed once")]
async fn forward(
    ctx: &Ctx<'_>,
    call: &Call,
    era: Era,
    accepts_sse: bool,
    up: Arc<Upstream>,
    tool: String,
    args: Map<String, Value>,
    mut record: ToolRecord,
) -> Response<Body> {
    let id = call.id.clone();
    let server = up.name().to_string();
    let until = deadline(ctx, &up);
    let extra =
        tracing::Instrument::instrument(up.param_headers(&tool, &args, until), record.span.clone())
            .await;
    let mut params = Map::new();
    params.insert("name".into(), Value::String(tool));
    params.insert("arguments".into(), Value::Object(args));
    if let Some(token) = call
        .params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
    {
        params.insert("_meta".into(), json!({"progressToken": token}));
    }
    let sent = up.request("tools/call", params, &extra, until);
    let (uid, response) = match tracing::Instrument::instrument(sent, record.span.clone()).await {
        Ok(r) => r,
        Err(e) => {
            record.finish(e.label());
            return jsonrpc::fail(&id, &e.to_rpc(&server));
        }
    };
    let stream_it = accepts_sse && upstream::is_sse(&response);
    let mut messages = upstream::messages(response, until);
    if !stream_it {
        while let Some(m) = messages.next().await {
            match m {
                Ok(m) if upstream::is_response_to(&m, &uid) => {
                    return match rewrite(&m, &server, era) {
                        Ok(result) => {
                            record.finish(outcome_of(&result));
                            jsonrpc::ok(&id, result)
                        }
                        Err(e) => {
                            record.finish("upstream_error");
                            jsonrpc::fail(&id, &e)
                        }
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    record.finish(e.label());
                    return jsonrpc::fail(&id, &e.to_rpc(&server));
                }
            }
        }
        record.finish("bad_response");
        return jsonrpc::fail(
            &id,
            &UpstreamError::BadResponse(String::new()).to_rpc(&server),
        );
    }
    // An SSE answer scoped to this request: the upstream's progress, then the response.
    let body = futures_util::stream::unfold(
        (messages, record, false),
        move |(mut messages, mut record, done)| {
            let id = id.clone();
            let uid = uid.clone();
            let server = server.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let bytes = match messages.next().await {
                        Some(Ok(m)) if upstream::is_response_to(&m, &uid) => {
                            let bytes = match rewrite(&m, &server, era) {
                                Ok(result) => {
                                    record.finish(outcome_of(&result));
                                    jsonrpc::result_message(&id, result)
                                }
                                Err(e) => {
                                    record.finish("upstream_error");
                                    jsonrpc::error_message(&id, &e)
                                }
                            };
                            return Some((
                                Ok::<Bytes, BoxError>(jsonrpc::sse_event(&bytes)),
                                (messages, record, true),
                            ));
                        }
                        Some(Ok(m)) if forwardable(&m) => {
                            serde_json::to_vec(&m).unwrap_or_default()
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            record.finish(e.label());
                            jsonrpc::error_message(&id, &e.to_rpc(&server))
                        }
                        None => {
                            record.finish("bad_response");
                            let e = UpstreamError::BadResponse(String::new()).to_rpc(&server);
                            jsonrpc::error_message(&id, &e)
                        }
                    };
                    let last = record.done;
                    return Some((Ok(jsonrpc::sse_event(&bytes)), (messages, record, last)));
                }
            }
        },
    );
    let mut r = Response::new(Body::stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
