//! JSON-RPC 2.0 as MCP uses it: one message per POST, the spec's error codes, and the
//! revision a request speaks (the handshake revisions, or the stateless 2026-07-28 one).

use crate::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC request.
pub const INVALID_REQUEST: i64 = -32600;
/// Unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad parameters (also: unknown tool).
pub const INVALID_PARAMS: i64 = -32602;
/// A failure of the gateway or of an upstream server.
pub const INTERNAL_ERROR: i64 = -32603;
/// HTTP headers disagree with the body (2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// Unsupported protocol revision (2026-07-28).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";
/// Handshake revisions the gateway answers `initialize` with, newest first.
pub const LEGACY: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// Every revision, newest first.
pub const SUPPORTED: &[&str] = &[MODERN, "2025-11-25", "2025-06-18", "2025-03-26"];
/// `_meta` key of a request's revision (2026-07-28).
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities (2026-07-28).
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The revision a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// A handshake revision (`initialize` first; results without `resultType`).
    Legacy,
    /// 2026-07-28: per-request `_meta`, `resultType`, caching hints.
    Modern,
}

/// A JSON-RPC error with the HTTP status it is answered with.
#[derive(Debug, Clone)]
pub struct RpcError {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON-RPC code.
    pub code: i64,
    /// Message (lowercase, no secrets).
    pub message: String,
    /// Extra data.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error answered with 200 (the HTTP exchange worked; the call did not).
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::OK,
            code,
            message: message.into(),
            data: None,
        }
    }

    /// With another HTTP status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// With data.
    pub fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `-32601`; 2026-07-28 answers it with 404.
    pub fn method_not_found(method: &str, era: Era) -> Self {
        let e = Self::new(
            METHOD_NOT_FOUND,
            format!("method `{method}` is not supported"),
        );
        match era {
            Era::Modern => e.status(StatusCode::NOT_FOUND),
            Era::Legacy => e,
        }
    }

    /// `-32020`, 400.
    pub fn header_mismatch(message: impl Into<String>) -> Self {
        Self::new(HEADER_MISMATCH, message).status(StatusCode::BAD_REQUEST)
    }

    /// `-32022`, 400, naming what the gateway supports.
    pub fn unsupported_version(requested: &str) -> Self {
        Self::new(UNSUPPORTED_VERSION, "unsupported protocol version")
            .status(StatusCode::BAD_REQUEST)
            .data(json!({"supported": SUPPORTED, "requested": requested}))
    }

    /// The error object.
    pub fn object(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let (Some(d), Value::Object(m)) = (&self.data, &mut e) {
            m.insert("data".into(), d.clone());
        }
        e
    }
}

/// A request (with an id).
#[derive(Debug, Clone)]
pub struct Call {
    /// Id (string or number).
    pub id: Value,
    /// Method.
    pub method: String,
    /// Params (an empty object when absent).
    pub params: Map<String, Value>,
}

/// What a POST carried.
#[derive(Debug)]
pub enum Message {
    /// A request.
    Request(Call),
    /// A notification (no answer but 202).
    Notification,
    /// A response to a request of ours (the gateway sends none, so it is only acknowledged).
    Response,
}

/// Parses one message; a failure is answered with its JSON-RPC error and the id if known.
pub fn parse(body: &[u8]) -> Result<Message, Box<(Value, RpcError)>> {
    let bad = |id: Value, code: i64, message: &str| {
        Box::new((
            id,
            RpcError::new(code, message).status(StatusCode::BAD_REQUEST),
        ))
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        bad(
            Value::Null,
            PARSE_ERROR,
            &format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut obj) = value else {
        let why = if value.is_array() {
            "batches are not supported; send one JSON-RPC message per request"
        } else {
            "the body must be a JSON-RPC message object"
        };
        return Err(bad(Value::Null, INVALID_REQUEST, why));
    };
    let id = obj.remove("id");
    let id_ok = matches!(&id, Some(Value::String(_)))
        || matches!(&id, Some(Value::Number(n)) if n.is_i64() || n.is_u64());
    let echo = if id_ok {
        id.clone().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(bad(echo, INVALID_REQUEST, "`jsonrpc` must be \"2.0\""));
    }
    let Some(method) = obj.get("method") else {
        if obj.contains_key("result") || obj.contains_key("error") {
            return Ok(Message::Response);
        }
        return Err(bad(echo, INVALID_REQUEST, "a request needs a `method`"));
    };
    let Some(method) = method.as_str().map(str::to_string) else {
        return Err(bad(echo, INVALID_REQUEST, "`method` must be a string"));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(Box::new((
                echo,
                RpcError::new(INVALID_PARAMS, "`params` must be an object"),
            )));
        }
    };
    match id {
        None => Ok(Message::Notification),
        Some(_) if !id_ok => Err(bad(
            Value::Null,
            INVALID_REQUEST,
            "`id` must be a string or an integer",
        )),
        Some(id) => Ok(Message::Request(Call { id, method, params })),
    }
}

/// A header as text, if present and readable.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes a `=?base64?...?=` header value (2026-07-28 value encoding).
fn decode_sentinel(v: &str) -> Option<String> {
    use base64::Engine as _;
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_string()),
    }
}

/// Decides the request's revision and checks its headers against the body: `_meta` with a
/// protocol version makes it 2026-07-28, whose `MCP-Protocol-Version`, `Mcp-Method` and (for
/// `tools/call`) `Mcp-Name` headers are required; on handshake revisions they are checked when
/// sent.
pub fn negotiate(headers: &HeaderMap, call: &Call) -> Result<Era, RpcError> {
    let meta = call.params.get("_meta").and_then(Value::as_object);
    let body_version = meta.and_then(|m| m.get(META_VERSION));
    let header_version = header(headers, "mcp-protocol-version");
    let era = match body_version {
        Some(v) => {
            let Some(v) = v.as_str() else {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("`_meta.{META_VERSION}` must be a string"),
                ));
            };
            match header_version {
                None => {
                    return Err(RpcError::header_mismatch(
                        "the MCP-Protocol-Version header is missing",
                    ));
                }
                Some(h) if h != v => {
                    return Err(RpcError::header_mismatch(format!(
                        "the MCP-Protocol-Version header `{h}` does not match `_meta` `{v}`"
                    )));
                }
                Some(_) => {}
            }
            if v != MODERN {
                return Err(RpcError::unsupported_version(v));
            }
            if !meta
                .and_then(|m| m.get(META_CAPABILITIES))
                .is_some_and(Value::is_object)
            {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("`_meta.{META_CAPABILITIES}` must be an object"),
                ));
            }
            Era::Modern
        }
        None => {
            if let Some(h) = header_version
                && call.method != "initialize"
            {
                if h == MODERN {
                    return Err(RpcError::header_mismatch(format!(
                        "the MCP-Protocol-Version header is `{MODERN}` but `_meta` has no `{META_VERSION}`"
                    )));
                }
                if !LEGACY.contains(&h) {
                    return Err(RpcError::unsupported_version(h));
                }
            }
            Era::Legacy
        }
    };
    match header(headers, "mcp-method") {
        Some(m) if m != call.method => {
            return Err(RpcError::header_mismatch(format!(
                "the Mcp-Method header `{m}` does not match the body's method `{}`",
                call.method
            )));
        }
        None if era == Era::Modern => {
            return Err(RpcError::header_mismatch(
                "the Mcp-Method header is missing",
            ));
        }
        _ => {}
    }
    if call.method == "tools/call" {
        let body_name = call.params.get("name").and_then(Value::as_str);
        match (headers.get("mcp-name"), body_name) {
            (Some(h), Some(b)) => {
                let decoded = h.to_str().ok().and_then(decode_sentinel);
                if decoded.as_deref() != Some(b) {
                    return Err(RpcError::header_mismatch(format!(
                        "the Mcp-Name header does not match the body's tool name `{b}`"
                    )));
                }
            }
            (None, Some(_)) if era == Era::Modern => {
                return Err(RpcError::header_mismatch("the Mcp-Name header is missing"));
            }
            _ => {}
        }
    }
    Ok(era)
}

/// Adds what 2026-07-28 requires of every result.
pub fn finish(era: Era, mut result: Value) -> Value {
    if let (Era::Modern, Value::Object(m)) = (era, &mut result)
        && !m.contains_key("resultType")
    {
        m.insert("resultType".into(), Value::String("complete".into()));
    }
    result
}

/// `{"jsonrpc":"2.0","id":..,"result":..}` bytes.
pub fn result_message(id: &Value, result: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap_or_default()
}

/// `{"jsonrpc":"2.0","id":..,"error":..}` bytes.
pub fn error_message(id: &Value, e: &RpcError) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "error": e.object()}))
        .unwrap_or_default()
}

fn json_response(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A result answered as one JSON object.
pub fn ok(id: &Value, result: Value) -> Response<Body> {
    json_response(StatusCode::OK, result_message(id, result))
}

/// An error answered as one JSON object with its status.
pub fn fail(id: &Value, e: &RpcError) -> Response<Body> {
    json_response(e.status, error_message(id, e))
}

/// 202 with no body (notifications and responses).
pub fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// One SSE event carrying a JSON-RPC message.
pub fn sse_event(message: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(message.len() + 24);
    v.extend_from_slice(b"event: message\ndata: ");
    v.extend_from_slice(message);
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_panic() {
        for body in [
            &b""[..],
            b"[]",
            b"1",
            b"{}",
            b"{\"jsonrpc\":\"2.0\"}",
            b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}",
            b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":3}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":[1]}",
        ] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        assert!(matches!(
            parse(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"),
            Ok(Message::Notification)
        ));
        assert!(matches!(
            parse(b"{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}"),
            Ok(Message::Response)
        ));
    }

    #[test]
    fn sentinel() {
        assert_eq!(decode_sentinel("plain").as_deref(), Some("plain"));
        assert_eq!(
            decode_sentinel("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
            Some("Hello, 世界")
        );
    }
}
