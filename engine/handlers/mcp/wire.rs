//! The wire format of upstream answers: JSON or SSE framing of JSON-RPC messages, header-safe
//! values, and the `x-mcp-header` parameters (2026-07-28) mirrored into `Mcp-Param-*` headers.

use super::upstream::UpstreamError;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use tokio::time::Instant;

/// A stream of JSON-RPC messages from one upstream answer.
pub type Messages = BoxStream<'static, Result<Value, UpstreamError>>;

/// Header-safe text: as is when plain ASCII, else the `=?base64?...?=` form.
pub(super) fn header_safe(v: &str) -> String {
    use base64::Engine as _;
    let plain = !v.is_empty()
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !(v.starts_with("=?base64?") && v.ends_with("?="));
    if plain {
        v.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        )
    }
}

/// True when the answer is an SSE stream.
pub fn is_sse(r: &reqwest::Response) -> bool {
    r.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The JSON-RPC messages of an answer: one for JSON, every `data:` event for SSE. Fails with
/// the HTTP status when it is an error without a JSON-RPC body.
pub fn messages(r: reqwest::Response, deadline: Instant) -> Messages {
    let status = r.status();
    let sse = is_sse(&r);
    struct State {
        r: reqwest::Response,
        buf: Vec<u8>,
        pending: VecDeque<Result<Value, UpstreamError>>,
        done: bool,
        sse: bool,
        status: http::StatusCode,
    }
    let state = State {
        r,
        buf: Vec::new(),
        pending: VecDeque::new(),
        done: false,
        sse,
        status,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(m) = st.pending.pop_front() {
                return Some((m, st));
            }
            if st.done {
                return None;
            }
            match tokio::time::timeout_at(deadline, st.r.chunk()).await {
                Err(_) => {
                    st.done = true;
                    st.pending.push_back(Err(UpstreamError::Timeout));
                }
                Ok(Err(e)) => {
                    st.done = true;
                    st.pending.push_back(Err(if e.is_timeout() {
                        UpstreamError::Timeout
                    } else {
                        UpstreamError::Unreachable
                    }));
                }
                Ok(Ok(Some(chunk))) => {
                    st.buf.extend_from_slice(&chunk);
                    if st.sse {
                        drain_events(&mut st.buf, &mut st.pending, false);
                    }
                }
                Ok(Ok(None)) => {
                    st.done = true;
                    if st.sse {
                        drain_events(&mut st.buf, &mut st.pending, true);
                    } else if st.buf.iter().all(u8::is_ascii_whitespace) {
                        if !st.status.is_success() {
                            st.pending
                                .push_back(Err(UpstreamError::Status(st.status.as_u16())));
                        }
                    } else {
                        match serde_json::from_slice::<Value>(&st.buf) {
                            Ok(v) if v.get("jsonrpc").is_some() => st.pending.push_back(Ok(v)),
                            _ if !st.status.is_success() => st
                                .pending
                                .push_back(Err(UpstreamError::Status(st.status.as_u16()))),
                            _ => st.pending.push_back(Err(UpstreamError::BadResponse(
                                "not a JSON-RPC message".into(),
                            ))),
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

/// Moves every complete SSE event's JSON out of `buf`. Events are split on bytes, so a
/// character split across chunks is decoded only once it is whole; carriage returns only
/// end lines in SSE (JSON escapes them), so they are dropped.
fn drain_events(buf: &mut Vec<u8>, out: &mut VecDeque<Result<Value, UpstreamError>>, at_end: bool) {
    buf.retain(|b| *b != b'\r');
    let mut start = 0;
    loop {
        let end = match buf[start..].windows(2).position(|w| w == b"\n\n") {
            Some(i) => start + i,
            None if at_end && start < buf.len() => buf.len(),
            None => break,
        };
        let event = String::from_utf8_lossy(&buf[start..end]);
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            out.push_back(
                serde_json::from_str::<Value>(&data.join("\n"))
                    .map_err(|_| UpstreamError::BadResponse("an SSE event is not JSON".into())),
            );
        }
        start = (end + 2).min(buf.len());
    }
    buf.drain(..start);
}

/// True when `m` is the response to `id`.
pub fn is_response_to(m: &Value, id: &str) -> bool {
    m.get("id").and_then(Value::as_str) == Some(id)
        && (m.get("result").is_some() || m.get("error").is_some())
}

/// The `Mcp-Param-{name}` headers a 2026-07-28 client sends for a call of a tool whose input
/// schema marks parameters with `x-mcp-header` (reachable through `properties` only; strings,
/// integers and booleans only).
pub fn param_headers(schema: &Value, args: &Map<String, Value>) -> Vec<(HeaderName, HeaderValue)> {
    fn walk(schema: &Value, value: Option<&Value>, out: &mut Vec<(HeaderName, HeaderValue)>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, sub) in props {
            let v = value.and_then(|v| v.get(key));
            if let Some(h) = sub.get("x-mcp-header").and_then(Value::as_str) {
                let text = match v {
                    Some(Value::String(s)) => Some(header_safe(s)),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    _ => None,
                };
                let name = HeaderName::from_bytes(format!("mcp-param-{h}").as_bytes());
                if let (Some(text), Ok(name)) = (text, name)
                    && let Ok(value) = HeaderValue::from_str(&text)
                {
                    out.push((name, value));
                }
            }
            walk(sub, v, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, Some(&Value::Object(args.clone())), &mut out);
    out
}

/// Removes `x-mcp-header` annotations from a schema the gateway lists: the gateway mirrors
/// them to the upstream itself, so its own clients need not (and it need not check them).
pub fn strip_param_headers(schema: &mut Value) {
    match schema {
        Value::Object(m) => {
            m.remove("x-mcp-header");
            m.values_mut().for_each(strip_param_headers);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_param_headers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut buf = b"event: message\ndata: {\"a\":1}\n\ndata: {\"b\"".to_vec();
        let mut out = VecDeque::new();
        drain_events(&mut buf, &mut out, false);
        assert_eq!(out.len(), 1);
        buf.extend_from_slice(b":2}\r\n\r\n");
        drain_events(&mut buf, &mut out, false);
        assert_eq!(out.len(), 2);
        assert!(buf.is_empty());
    }

    #[test]
    fn sse_character_split_across_chunks() {
        let text = "data: {\"t\":\"é\"}\n\n".as_bytes();
        let cut = text.iter().position(|b| *b >= 0x80).expect("multibyte") + 1;
        let mut buf = text[..cut].to_vec();
        let mut out = VecDeque::new();
        drain_events(&mut buf, &mut out, false);
        assert!(out.is_empty());
        buf.extend_from_slice(&text[cut..]);
        drain_events(&mut buf, &mut out, true);
        assert_eq!(
            out.pop_front().and_then(Result::ok),
            Some(json!({"t": "é"}))
        );
    }

    #[test]
    fn header_values() {
        assert_eq!(header_safe("docs__search"), "docs__search");
        assert_eq!(header_safe("é"), "=?base64?w6k=?=");
    }

    #[test]
    fn x_mcp_header_parameters() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry"}}},
            "query": {"type": "string"}}});
        let args = json!({"region": "us-west1", "opts": {"dry": true}, "query": "q"});
        let h = param_headers(&schema, args.as_object().expect("object"));
        let h: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().expect("ascii").to_string()))
            .collect();
        assert!(
            h.contains(&("mcp-param-region".into(), "us-west1".into())),
            "{h:?}"
        );
        assert!(
            h.contains(&("mcp-param-dry".into(), "true".into())),
            "{h:?}"
        );
        assert_eq!(h.len(), 2);
        let mut s = schema.clone();
        strip_param_headers(&mut s);
        assert!(!s.to_string().contains("x-mcp-header"));
    }
}
