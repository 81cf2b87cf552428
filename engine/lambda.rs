//! The Lambda front end: API Gateway REST (v1) and HTTP API (v2) events, as `lambda_http`
//! decodes them, turned into engine requests. No logic of its own.

use crate::body::Body;
use crate::engine::{ClientAddr, Deadline, Engine};
use bytes::Bytes;
use http::{Request, Response, Uri};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn source_ip(request: &lambda_http::Request) -> Option<IpAddr> {
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.clone()?,
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.clone()?,
        #[allow(
            unreachable_patterns,
            reason = "other event kinds exist when their features are on"
        )]
        _ => return None,
    };
    ip.parse().ok()
}

/// The request path without the API Gateway stage. REST API events carry it without the
/// stage already; HTTP API events with a named stage carry `/<stage>/...` in `rawPath`.
fn route_path(request: &lambda_http::Request) -> String {
    let raw = request.raw_http_path();
    let raw = if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    };
    if let Some(RequestContext::ApiGatewayV2(c)) = request.request_context_ref()
        && let Some(stage) = c.stage.as_deref()
        && stage != "$default"
        && let Some(rest) = raw.strip_prefix('/').and_then(|r| r.strip_prefix(stage))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return if rest.is_empty() {
            "/".to_string()
        } else {
            rest.to_string()
        };
    }
    raw.to_string()
}

/// Converts a `lambda_http` request into the engine's request: the path as the client sent
/// it (without the API Gateway stage), headers, body, and the client address.
pub fn to_engine_request(request: lambda_http::Request) -> Request<Bytes> {
    let path = route_path(&request);
    let peer = source_ip(&request);
    let (parts, body) = request.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let uri = path_and_query
        .parse::<Uri>()
        .unwrap_or_else(|_| parts.uri.clone());
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        #[allow(unreachable_patterns, reason = "the body enum is non-exhaustive")]
        _ => Bytes::new(),
    };
    let mut out = Request::new(bytes);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = parts.headers;
    if let Some(ip) = peer {
        out.extensions_mut()
            .insert(ClientAddr(SocketAddr::new(ip, 0)));
    }
    out
}

/// Time kept back from the invocation's deadline to end a stream cleanly and flush it.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(2500);

/// The invocation's deadline as an instant, less [`DEADLINE_MARGIN`].
fn deadline(request: &lambda_http::Request) -> Option<Deadline> {
    let ctx = request.lambda_context_ref()?;
    if ctx.deadline == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis();
    let left = Duration::from_millis(
        u64::try_from(u128::from(ctx.deadline).saturating_sub(now_ms)).unwrap_or(0),
    );
    Some(Deadline(
        tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN),
    ))
}

/// Longest the end of an answer waits for the usage records of its call to be written.
pub const LEDGER_FLUSH_BOUND: Duration = Duration::from_secs(2);

/// Answers one Lambda HTTP event.
///
/// The answer ends only once the usage records of the call are written (at most
/// [`LEDGER_FLUSH_BOUND`]): Lambda freezes the instance when the invocation's response ends,
/// and a write still in flight then would wait for the next invocation, or be lost with the
/// instance. The client has every byte of the answer before this wait begins.
pub async fn handle(engine: &Engine, request: lambda_http::Request) -> Response<Body> {
    let deadline = deadline(&request);
    // The invocation's X-Ray header (`_X_AMZN_TRACE_ID`): its `Parent` is the function's
    // segment, which the gateway's spans hang under.
    let trace = request
        .lambda_context_ref()
        .and_then(|c| c.xray_trace_id.as_deref())
        .and_then(crate::telemetry::Parent::from_xray);
    let mut request = to_engine_request(request);
    if let Some(d) = deadline {
        request.extensions_mut().insert(d);
    }
    if let Some(p) = trace {
        request.extensions_mut().insert(p);
    }
    let response = engine.handle(request).await;
    let response = match engine.ledger().store() {
        Some(store) => {
            let store = store.clone();
            response.map(|body| body.then_flush(store, LEDGER_FLUSH_BOUND))
        }
        None => response,
    };
    // The request's X-Ray segment leaves from the exporter thread before the answer ends.
    response.map(|body| crate::telemetry::flush_after(body, TRACE_FLUSH_BOUND))
}

/// Longest the end of an answer waits for its trace to be sent (normally microseconds).
const TRACE_FLUSH_BOUND: std::time::Duration = std::time::Duration::from_millis(50);
