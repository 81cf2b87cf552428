//! Health, version and whoami.

use super::{Ctx, json};
use crate::body::Body;
use crate::errors::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// Package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("PENNYWORTH_GIT_SHA");

fn static_json(body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /v1/health`.
pub fn health() -> Response<Body> {
    static_json(r#"{"status":"ok"}"#)
}

/// `GET /v1/version`.
pub fn version() -> Response<Body> {
    #[derive(Serialize)]
    struct V {
        version: &'static str,
        commit: &'static str,
    }
    json(
        StatusCode::OK,
        &V {
            version: VERSION,
            commit: COMMIT,
        },
    )
    .unwrap_or_else(ApiError::into_response)
}

/// `GET /v1/whoami`.
pub fn whoami(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    #[derive(Serialize)]
    struct W<'a> {
        user: &'a str,
        groups: &'a [String],
        auth: &'static str,
        key_id: Option<&'a str>,
    }
    let id = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"whoami reached without an identity"))?;
    json(
        StatusCode::OK,
        &W {
            user: &id.username,
            groups: &id.groups,
            auth: id.method.as_str(),
            key_id: id.key_id.as_deref(),
        },
    )
}
