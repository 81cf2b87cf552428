//! Tracing: one trace per request, a span per stage of the request path and per upstream call
//! (doc/observability.md).
//!
//! Spans are `tracing` spans of target [`TARGET`]. The binaries install the gateway's layer
//! ([`layer`]) when an exporter is configured ([`export`]): it keeps each sampled request's
//! spans as OpenTelemetry span data and hands the whole trace to the exporter when the request
//! ends: OTLP/HTTP anywhere, one X-Ray segment document to the Lambda X-Ray daemon. Without it,
//! or for a request not sampled, no layer takes these spans, so they are disabled at their
//! call sites and cost a load and a branch each.
//!
//! Every request has a trace id all the same: the caller's (W3C `traceparent`, or X-Ray's
//! `X-Amzn-Trace-Id` / the Lambda invocation's trace header), the exporter's, or a fresh random
//! one. It is in the access, audit and usage lines and in the [`TRACE_ID_HEADER`] response
//! header, so a log line or a client's report leads to its trace.
//!
//! Attributes carry names, ids, statuses and counts only: never prompt text, keys or tokens.

pub mod export;
pub mod layer;
mod model;
mod stages;

pub use layer::flush;
pub use model::{ModelCall, Operation};
pub use stages::{
    authenticate_span, authorize_span, finish, flush_after, handler_span, record_verdict, start,
};

use http::HeaderMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;

/// Target of every span of the gateway (what the export layer takes).
pub const TARGET: &str = "pennyworth::trace";

/// The response header that carries the request's trace id (32 lowercase hex digits, W3C form).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

static ON: AtomicBool = AtomicBool::new(false);
static XRAY: AtomicBool = AtomicBool::new(false);

/// True when an exporter is installed.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

fn mark_installed(xray: bool) {
    XRAY.store(xray, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

/// The caller's trace: the span the request's spans hang under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The caller's span (X-Ray: the Lambda function's segment).
    pub span_id: [u8; 8],
    /// The caller sampled the trace.
    pub sampled: bool,
}

fn hex_into(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    hex::decode_to_slice(text, out).ok()
}

impl Parent {
    /// W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex flags>` (fields a later version adds
    /// are ignored; version `ff` and all-zero ids are invalid).
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let mut v = [0u8; 1];
        hex_into(version, &mut v)?;
        if v[0] == 0xff || (v[0] == 0 && parts.next().is_some()) {
            return None;
        }
        let mut p = Parent {
            trace_id: [0; 16],
            span_id: [0; 8],
            sampled: false,
        };
        hex_into(trace, &mut p.trace_id)?;
        hex_into(span, &mut p.span_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        p.sampled = f[0] & 1 == 1;
        p.valid().then_some(p)
    }

    /// X-Ray: `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`, fields in any order
    /// (a header without `Parent` names no span to continue).
    pub fn from_xray(value: &str) -> Option<Self> {
        let mut p = Parent {
            trace_id: [0; 16],
            span_id: [0; 8],
            sampled: false,
        };
        let (mut root, mut parent) = (false, false);
        for field in value.split(';') {
            let Some((key, val)) = field.trim().split_once('=') else {
                continue;
            };
            match key {
                "Root" => {
                    let (epoch, random) = val.strip_prefix("1-")?.split_once('-')?;
                    hex_into(epoch, &mut p.trace_id[..4])?;
                    hex_into(random, &mut p.trace_id[4..])?;
                    root = true;
                }
                "Parent" => {
                    hex_into(val, &mut p.span_id)?;
                    parent = true;
                }
                "Sampled" => p.sampled = val == "1",
                _ => {}
            }
        }
        (root && parent && p.valid()).then_some(p)
    }

    /// From the request headers: `traceparent`, else `X-Amzn-Trace-Id`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        text("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| text("x-amzn-trace-id").and_then(Self::from_xray))
    }

    fn valid(&self) -> bool {
        self.trace_id != [0; 16] && self.span_id != [0; 8]
    }
}

/// A fresh trace id for a request nobody traces ([`crate::ids::unique`]: unique, random-looking,
/// no system call per request).
fn fresh_trace_id() -> String {
    let (a, b) = crate::ids::unique();
    format!("{a:016x}{:016x}", b | 1)
}

/// The root span of one request and its trace id.
#[derive(Debug)]
pub struct RequestTrace {
    /// The `request` span (disabled when tracing is off).
    pub span: Span,
    /// 32 lowercase hex digits.
    pub trace_id: String,
}

/// Opens the root span of a request under `parent` (the caller's trace, if any).
pub fn request(method: &str, path: &str, request_id: &str, parent: Option<Parent>) -> RequestTrace {
    // On Lambda the function's segment is Lambda's own: the gateway's spans are subsegments of
    // it (an X-Ray `server` span would make a second segment, a second node on the map).
    let kind = if XRAY.load(Ordering::Relaxed) {
        "internal"
    } else {
        "server"
    };
    let make = || {
        tracing::info_span!(
            target: TARGET,
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = kind,
            otel.status_code = tracing::field::Empty,
            request_id,
            http.request.method = method,
            url.path = path,
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            enduser.id = tracing::field::Empty,
        )
    };
    let root = if enabled() {
        layer::decide(parent, "request", kind == "server")
    } else {
        None
    };
    let (span, trace_id) = match root {
        // Unsampled: the layer takes none of its spans, which are disabled where they open.
        Some(r) => (layer::open_root(r, make), hex::encode(r.trace_id)),
        None => (
            make(),
            parent.map_or_else(fresh_trace_id, |p| hex::encode(p.trace_id)),
        ),
    };
    RequestTrace { span, trace_id }
}

/// Names the root span (the current span) after the matched route.
pub fn record_route(method: &str, route: &str) {
    if !enabled() {
        return;
    }
    let span = Span::current();
    if !span.is_disabled() {
        span.record("http.route", route);
        span.record("otel.name", format!("{method} {route}").as_str());
    }
}

/// Records the answer on the root span.
fn record_response(span: &Span, status: u16, user: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    if let Some(u) = user {
        span.record("enduser.id", u);
    }
}

/// Adds the W3C `traceparent` of the current span to an outgoing request,
/// so an upstream that traces continues the trace. Nothing when tracing is off.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    if let Some((trace, span)) = layer::current() {
        let value = format!("00-{}-{}-01", hex::encode(trace), hex::encode(span));
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.insert("traceparent", v);
        }
    }
}

/// [`inject`] into a fresh header map (for request builders that take one).
pub fn trace_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    inject(&mut h);
    h
}

/// An integer attribute (the OpenTelemetry layer records unsigned integers as text).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Marks `span` failed with a short error kind (never a message that could quote input).
pub fn record_error(span: &Span, kind: &'static str) {
    if !span.is_disabled() {
        span.record("otel.status_code", "error");
        span.record("error.type", kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let p = Parent::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
        assert_eq!(hex::encode(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p.span_id), "00f067aa0ba902b7");
        assert!(p.sampled);
        let p = Parent::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .unwrap();
        assert!(!p.sampled);
        // A later version may add fields.
        assert!(
            Parent::from_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(Parent::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn xray_header() {
        let p = Parent::from_xray(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(hex::encode(p.trace_id), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(hex::encode(p.span_id), "53995c3f42cd8ad8");
        assert!(p.sampled);
        let p = Parent::from_xray(
            "Sampled=0; Parent=53995c3f42cd8ad8; Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a:1",
        )
        .unwrap();
        assert!(!p.sampled);
        assert_eq!(
            Parent::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
            None
        );
        assert_eq!(
            Parent::from_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"),
            None
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                .parse()
                .unwrap(),
        );
        assert!(Parent::from_headers(&h).is_some());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            hex::encode(Parent::from_headers(&h).unwrap().trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn untraced_requests_get_distinct_ids() {
        let a = fresh_trace_id();
        let b = fresh_trace_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let r = request("GET", "/", "req_1", None);
        assert_eq!(r.trace_id.len(), 32);
        let p = Parent::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let r = request("GET", "/", "req_2", p);
        assert_eq!(r.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
