//! The spans of the request path's stages, as `Engine::handle` opens and closes them.

use super::{Parent, RequestTrace, TARGET};
use crate::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tracing::Span;

/// Opens the root span of `request`: under the Lambda invocation's trace (an extension the
/// front end sets), else the caller's headers'.
pub fn start(request: &Request<Bytes>, request_id: &str) -> RequestTrace {
    let parent = request
        .extensions()
        .get::<Parent>()
        .copied()
        .or_else(|| Parent::from_headers(request.headers()));
    super::request(
        request.method().as_str(),
        request.uri().path(),
        request_id,
        parent,
    )
}

/// Puts the trace id on the answer and records it on the root span, which a streamed answer
/// keeps open until its last chunk.
pub fn finish(trace: &RequestTrace, response: &mut Response<Body>, user: Option<&str>) {
    if let Ok(v) = HeaderValue::from_str(&trace.trace_id) {
        response.headers_mut().insert(super::TRACE_ID_HEADER, v);
    }
    super::record_response(&trace.span, response.status().as_u16(), user);
    if trace.span.is_disabled() || !matches!(response.body(), Body::Stream(_)) {
        return;
    }
    if let Body::Stream(s) = std::mem::replace(response.body_mut(), Body::empty()) {
        // A span ends at its last exit: it is entered at each chunk.
        let span = trace.span.clone();
        *response.body_mut() = Body::stream(futures_util::StreamExt::map(s, move |c| {
            let _in = span.enter();
            c
        }));
    }
}

/// The `authenticate` stage.
pub fn authenticate_span() -> Span {
    tracing::info_span!(
        target: TARGET,
        "authenticate",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The `authorize` stage (the Cedar decision) of `action`.
pub fn authorize_span(action: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "authorize",
        cedar.action = action,
        cedar.allowed = tracing::field::Empty,
        cedar.policies = tracing::field::Empty,
    )
}

/// Records the decision and the ids of the policies that made it.
pub fn record_verdict(span: &Span, allowed: bool, policies: &[String]) {
    if !span.is_disabled() {
        span.record("cedar.allowed", allowed);
        span.record("cedar.policies", policies.join(",").as_str());
    }
}

/// The handler stage.
pub fn handler_span(kind: crate::config::routes::HandlerKind) -> Span {
    tracing::info_span!(target: TARGET, "handler", pennyworth.handler = ?kind)
}

/// `body`, then a wait of at most `bound` for the traces of ended requests to be sent by the
/// exporter thread (X-Ray): the Lambda front end's answer ends after it, since Lambda may
/// freeze the instance once the answer has ended. The client has every byte before the wait.
/// `body` unchanged without an exporter thread.
pub fn flush_after(body: Body, bound: std::time::Duration) -> Body {
    use futures_util::StreamExt;
    if !super::layer::background() {
        return body;
    }
    let flush = futures_util::stream::once(super::flush(bound))
        .filter_map(|()| std::future::ready(None::<Result<Bytes, crate::body::BoxError>>));
    match body {
        Body::Full(None) => Body::stream(flush),
        Body::Full(Some(b)) => {
            Body::stream(futures_util::stream::once(std::future::ready(Ok(b))).chain(flush))
        }
        Body::Stream(s) => Body::stream(s.chain(flush)),
    }
}
