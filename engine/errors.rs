//! One error type at the edge: every failure a client can see becomes an [`ApiError`] with a
//! status and an OpenAI-style body `{"error":{"message","type","code","param"}}`.
//!
//! Stages keep their own small error enums; they convert into `ApiError` here, so the status
//! mapping lives in one place. Internal detail goes to logs, never into a client message.

use crate::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The OpenAI error `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or names something that does not exist.
    InvalidRequestError,
    /// No credentials, or credentials that do not verify.
    AuthenticationError,
    /// Authenticated, but the policy does not permit the action.
    PermissionError,
    /// Too many requests.
    RateLimitError,
    /// A failure of the gateway itself.
    ServerError,
    /// A failure of the upstream model provider.
    UpstreamError,
}

/// The API dialect an error is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error":{"message","type","code","param"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI error type.
    pub kind: ErrorKind,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message; never contains secrets or policy text.
    pub message: String,
    /// The request parameter at fault, if any.
    pub param: Option<String>,
    /// Extra headers (`Allow`, `WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: ErrorKind,
    code: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    /// A new error with no param and no extra headers.
    pub fn new(
        status: StatusCode,
        kind: ErrorKind,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            headers: Vec::new(),
        }
    }

    /// Sets the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 for a malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequestError,
            code,
            message,
        )
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::AuthenticationError,
            code,
            message,
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pennyworth\""),
        )
    }

    /// 403 naming the denied action, never the policy.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorKind::PermissionError,
            "permission_denied",
            message,
        )
    }

    /// 404 for something that does not exist (or that the caller may not see).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorKind::InvalidRequestError,
            code,
            message,
        )
    }

    /// 404 for a model alias that does not exist or that the caller may not use: the same
    /// answer for both, so an alias hidden from someone cannot be told from a made-up one.
    pub fn model_not_found(name: &str) -> Self {
        Self::not_found(
            "model_not_found",
            format!("the model `{name}` does not exist or you do not have access to it"),
        )
        .with_param("model")
    }

    /// 500 for a failure of the gateway itself; the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::ServerError,
            "internal_error",
            "the gateway failed to process the request; see its log for details",
        )
    }

    /// The JSON body of this error.
    pub fn body_bytes(&self) -> bytes::Bytes {
        let envelope = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: self.param.as_deref(),
            },
        };
        // Serializing plain strings and enums into a Vec cannot fail.
        serde_json::to_vec(&envelope)
            .map(bytes::Bytes::from)
            .unwrap_or_default()
    }

    /// Anthropic's error type for this error.
    fn anthropic_type(&self) -> &'static str {
        match (self.kind, self.status.as_u16()) {
            (ErrorKind::RateLimitError, _) | (_, 429) => "rate_limit_error",
            (ErrorKind::AuthenticationError, _) | (_, 401) => "authentication_error",
            (ErrorKind::PermissionError, _) | (_, 403) => "permission_error",
            (_, 404) => "not_found_error",
            (_, 413) => "request_too_large",
            (_, 503) => "overloaded_error",
            (_, 504) => "timeout_error",
            (_, 400..=499) => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The JSON body of this error in `dialect`'s shape.
    pub fn body_bytes_in(&self, dialect: Dialect) -> bytes::Bytes {
        match dialect {
            Dialect::OpenAi => self.body_bytes(),
            Dialect::Anthropic => {
                let v = serde_json::json!({
                    "type": "error",
                    "error": {"type": self.anthropic_type(), "message": self.message},
                });
                bytes::Bytes::from(v.to_string())
            }
        }
    }

    /// The complete HTTP response in OpenAI's shape.
    pub fn into_response(self) -> Response<Body> {
        self.into_response_in(Dialect::OpenAi)
    }

    /// The complete HTTP response in `dialect`'s shape.
    pub fn into_response_in(self, dialect: Dialect) -> Response<Body> {
        let body = self.body_bytes_in(dialect);
        let mut response = Response::new(Body::full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::bad_request("invalid_type", "bad `x`").with_param("x");
        let v: serde_json::Value = serde_json::from_slice(&e.body_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"bad `x`","type":"invalid_request_error","code":"invalid_type","param":"x"}})
        );
    }

    #[test]
    fn unauthorized_has_challenge() {
        let r = ApiError::unauthorized("missing_api_key", "no key").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
