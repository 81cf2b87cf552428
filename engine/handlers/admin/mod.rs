//! Key and user management over REST, authorized by Cedar like every other route.
//!
//! Every action writes one audit line (target `pennyworth::audit`): who, what, target and
//! outcome, never a key or a password.

pub mod keys;
pub mod usage;
pub mod users;

use super::Ctx;
use crate::directory::{DirectoryError, KeyRecord, Timestamp, User};
use crate::errors::{ApiError, ErrorKind};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::UserExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorKind::InvalidRequestError,
                "user_exists",
                e.to_string(),
            )
            .with_param("username"),
            DirectoryError::NoSuchUser(_) => ApiError::not_found("user_not_found", e.to_string()),
            DirectoryError::NoSuchGroup(_) => {
                ApiError::bad_request("unknown_group", e.to_string()).with_param("groups")
            }
            DirectoryError::Invalid(m) => ApiError::bad_request("invalid_value", m),
            DirectoryError::TooManyKeys(_) => {
                ApiError::bad_request("key_limit_reached", e.to_string())
            }
            DirectoryError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorKind::InvalidRequestError,
                "key_conflict",
                e.to_string(),
            ),
            DirectoryError::Throttled => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::ServerError,
                "directory_throttled",
                "the user directory is busy; retry shortly",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            DirectoryError::Unavailable(detail) => {
                tracing::error!(error = %detail, "directory failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::ServerError,
                    "directory_unavailable",
                    "the user directory is unavailable; retry shortly",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
        }
    }
}

impl From<crate::auth::ProvisionError> for ApiError {
    fn from(e: crate::auth::ProvisionError) -> Self {
        use crate::auth::ProvisionError;
        match e {
            ProvisionError::Directory(d) => d.into(),
            ProvisionError::Invalid(m) => ApiError::bad_request("invalid_value", m),
            ProvisionError::AlreadyInitialized(_) | ProvisionError::Random(_) => {
                ApiError::internal(&e)
            }
        }
    }
}

/// Writes the audit line of a management action.
pub fn audit(ctx: &Ctx<'_>, action: &str, target: &str, outcome: Result<(), &ApiError>) {
    let actor = ctx.identity.map_or("-", |i| i.username.as_str());
    match outcome {
        Ok(()) => tracing::info!(
            target: "pennyworth::audit",
            request_id = ctx.request_id,
            trace_id = ctx.trace_id,
            actor,
            action,
            target,
            outcome = "ok",
            "management"
        ),
        Err(e) => tracing::info!(
            target: "pennyworth::audit",
            request_id = ctx.request_id,
            trace_id = ctx.trace_id,
            actor,
            action,
            target,
            outcome = "error",
            status = e.status.as_u16(),
            code = e.code,
            "management"
        ),
    }
}

/// Runs a management action and audits its outcome.
pub async fn audited<T>(
    ctx: &Ctx<'_>,
    action: &str,
    target: &str,
    f: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let result = f.await;
    audit(ctx, action, target, result.as_ref().map(|_| ()));
    result
}

/// A key as clients see it: metadata, never the key or its hash.
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    /// Always `api_key`.
    pub object: &'static str,
    /// Key id.
    pub id: &'a str,
    /// Label.
    pub name: &'a str,
    /// Owner.
    pub user: &'a str,
    /// Creation time (Unix seconds).
    pub created_at: Timestamp,
    /// Expiry (Unix seconds), if any.
    pub expires_at: Option<Timestamp>,
    /// Last four characters of the key.
    pub last4: &'a str,
}

impl<'a> From<&'a KeyRecord> for KeyView<'a> {
    fn from(k: &'a KeyRecord) -> Self {
        Self {
            object: "api_key",
            id: &k.id,
            name: &k.name,
            user: &k.owner,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last4: &k.last4,
        }
    }
}

/// A user as clients see it.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    /// Always `user`.
    pub object: &'static str,
    /// Stable id.
    pub id: &'a str,
    /// User name.
    pub username: &'a str,
    /// E-mail.
    pub email: Option<&'a str>,
    /// Groups.
    pub groups: &'a [String],
    /// Enabled.
    pub enabled: bool,
    /// Creation time (Unix seconds).
    pub created_at: Timestamp,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            object: "user",
            id: &u.id,
            username: &u.username,
            email: u.email.as_deref(),
            groups: &u.groups,
            enabled: u.enabled,
            created_at: u.created_at,
        }
    }
}

/// `{"object":"list","data":[...]}`.
#[derive(Debug, Serialize)]
pub struct List<T> {
    /// Always `list`.
    pub object: &'static str,
    /// Items.
    pub data: Vec<T>,
}

impl<T> List<T> {
    /// A list.
    pub fn new(data: Vec<T>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}
