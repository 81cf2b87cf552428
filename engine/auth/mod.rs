//! Authentication: turns request headers into an [`Identity`], or a 401.
//!
//! Default deny: a route accepts only the methods `routes.yaml` lists, and a missing or
//! unverifiable credential never falls through to anonymous access.

pub mod api_key;
pub mod cache;
pub mod jwt;

use crate::config::routes::AuthMethod;
use crate::directory::{Directory, DirectoryError, KeyRecord, NewUser, Timestamp, User, now};
use crate::errors::{ApiError, ErrorKind};
use cache::IdentityCache;
use http::{HeaderMap, StatusCode, header};
use std::sync::Arc;
use tracing::Instrument;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable user id (the Cedar principal id).
    pub user_id: String,
    /// User name.
    pub username: String,
    /// Groups.
    pub groups: Vec<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The API key used, if any.
    pub key_id: Option<String>,
    /// Expiry of the API key used, if it has one: keys it creates expire no later.
    pub key_expires_at: Option<Timestamp>,
}

/// Authentication failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential.
    #[error("missing credentials")]
    Missing,
    /// A credential that is not a well-formed key.
    #[error("malformed credential")]
    Malformed,
    /// Unknown key or wrong secret.
    #[error("invalid key")]
    Invalid,
    /// The key has expired.
    #[error("expired key")]
    Expired,
    /// The token has expired.
    #[error("expired token")]
    TokenExpired,
    /// The route accepts tokens but none can be verified here.
    #[error("token authentication is not configured")]
    JwtNotConfigured,
    /// The owner is disabled.
    #[error("disabled user")]
    Disabled,
    /// The directory could not answer.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::unauthorized(
                "missing_api_key",
                "you didn't provide an API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            ),
            AuthError::Malformed | AuthError::Invalid => {
                ApiError::unauthorized("invalid_api_key", "incorrect API key provided")
            }
            AuthError::Expired => {
                ApiError::unauthorized("expired_api_key", "the API key has expired")
            }
            AuthError::TokenExpired => {
                ApiError::unauthorized("expired_token", "the token has expired")
            }
            AuthError::JwtNotConfigured => ApiError::unauthorized(
                "invalid_token",
                "this gateway does not accept tokens; use an API key",
            ),
            AuthError::Disabled => {
                ApiError::unauthorized("user_disabled", "the user of this API key is disabled")
            }
            AuthError::Directory(d) => {
                tracing::error!(error = %d, "directory failure during authentication");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::ServerError,
                    "directory_unavailable",
                    "the user directory is unavailable; retry shortly",
                )
                .with_header(header::RETRY_AFTER, http::HeaderValue::from_static("1"))
            }
        }
    }
}

/// The credential of a request: `Authorization: Bearer <x>` or `x-api-key: <x>`.
fn credential(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = v.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        return if token.is_empty() {
            Err(AuthError::Malformed)
        } else {
            Ok(Some(token))
        };
    }
    if let Some(v) = headers.get("x-api-key") {
        let v = v.to_str().map_err(|_| AuthError::Malformed)?.trim();
        return if v.is_empty() {
            Err(AuthError::Malformed)
        } else {
            Ok(Some(v))
        };
    }
    Ok(None)
}

/// Authenticates a request with the methods a route accepts.
pub async fn authenticate(
    methods: &[AuthMethod],
    headers: &HeaderMap,
    directory: &dyn Directory,
    cache: &IdentityCache,
    jwt: Option<&jwt::JwtVerifier>,
) -> Result<Identity, AuthError> {
    let token = credential(headers)?.ok_or(AuthError::Missing)?;
    // A `pw-` credential is an API key, well-formed or not (a truncated one is shaped like a
    // JWT): it is never tried as a token, so the answer is `invalid_api_key`.
    if api_key::claims_to_be_key(token) && methods.contains(&AuthMethod::ApiKey) {
        let presented = api_key::parse(token).ok_or(AuthError::Malformed)?;
        return verify_key(&presented, directory, cache, now()).await;
    }
    for method in methods {
        match method {
            AuthMethod::ApiKey => {
                let Some(presented) = api_key::parse(token) else {
                    continue;
                };
                return verify_key(&presented, directory, cache, now()).await;
            }
            AuthMethod::Jwt => {
                if !jwt::looks_like_jwt(token) {
                    continue;
                }
                return match jwt {
                    Some(v) => fresh(v.verify(token).await?, directory, cache).await,
                    None => Err(AuthError::JwtNotConfigured),
                };
            }
        }
    }
    // The credential matched none of the route's methods.
    Err(AuthError::Malformed)
}

/// A verified token's identity with the user's current enabled state and groups from the
/// directory (through the same TTL cache as keys), so a disabled user or a demoted admin loses
/// access within the TTL, not when the token expires.
async fn fresh(
    mut identity: Identity,
    directory: &dyn Directory,
    cache: &IdentityCache,
) -> Result<Identity, AuthError> {
    let user = match cache.get_user(&identity.username) {
        Some(u) => u,
        None => {
            let since = std::time::Instant::now();
            let lookup = directory_span(directory, "get_user");
            let user = match directory
                .get_user(&identity.username)
                .instrument(lookup)
                .await
            {
                Ok(Some(u)) => Arc::new(u),
                Ok(None) | Err(DirectoryError::NoSuchUser(_)) | Err(DirectoryError::Invalid(_)) => {
                    return Err(AuthError::Invalid);
                }
                Err(e) => return Err(e.into()),
            };
            cache.put_user(user.clone(), since);
            user
        }
    };
    // In Cognito the token's `sub` is the user's id: a token of a deleted user does not pass
    // for a new user of the same name. (The embedded store issues no tokens.)
    if directory.kind() == "cognito" && user.id != identity.user_id {
        return Err(AuthError::Invalid);
    }
    if !user.enabled {
        return Err(AuthError::Disabled);
    }
    identity.user_id = user.id.clone();
    identity.groups = user.groups.clone();
    Ok(identity)
}

/// The span of a directory call the identity cache could not spare.
fn directory_span(directory: &dyn Directory, operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::TARGET,
        "directory",
        otel.kind = "client",
        pennyworth.directory = directory.kind(),
        pennyworth.operation = operation,
    )
}

async fn verify_key(
    presented: &api_key::PresentedKey<'_>,
    directory: &dyn Directory,
    cache: &IdentityCache,
    at: Timestamp,
) -> Result<Identity, AuthError> {
    let found = match cache.get(presented.id) {
        Some(found) => found,
        None => {
            // Anonymous traffic costs nothing upstream: a name no directory accepts is refused
            // without a call, and an id the directory just said it does not know is not asked
            // about again for a few seconds.
            if crate::directory::validate_name("user name", &presented.owner).is_err()
                || cache.known_unknown(presented.id)
            {
                return Err(AuthError::Invalid);
            }
            let since = std::time::Instant::now();
            let lookup = directory_span(directory, "find_key");
            let found = match directory
                .find_key(&presented.owner, presented.id)
                .instrument(lookup)
                .await
            {
                Ok(Some(found)) => Arc::new(found),
                // "No such user" and "not a valid name" are the caller's mistake: 401, not 503.
                Ok(None) | Err(DirectoryError::NoSuchUser(_)) | Err(DirectoryError::Invalid(_)) => {
                    cache.put_unknown(presented.id, since);
                    return Err(AuthError::Invalid);
                }
                Err(e) => return Err(e.into()),
            };
            cache.put(found.clone(), since);
            found
        }
    };
    if !api_key::matches(presented, &found.key.hash) {
        return Err(AuthError::Invalid);
    }
    if found.key.expires_at.is_some_and(|e| e <= at) {
        return Err(AuthError::Expired);
    }
    if !found.user.enabled {
        return Err(AuthError::Disabled);
    }
    Ok(Identity {
        user_id: found.user.id.clone(),
        username: found.user.username.clone(),
        groups: found.user.groups.clone(),
        method: AuthMethod::ApiKey,
        key_id: Some(found.key.id.clone()),
        key_expires_at: found.key.expires_at,
    })
}

/// Failures of [`issue_key`] and [`initialize`].
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The directory already has users.
    #[error("the store already has {0} user(s); refusing to initialize it again")]
    AlreadyInitialized(u64),
    /// Bad name.
    #[error("{0}")]
    Invalid(String),
    /// Random source failed.
    #[error(transparent)]
    Random(#[from] api_key::RandomError),
    /// Directory failure.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Creates a key for `owner` and stores its hash; returns the record and the key (shown once).
pub async fn issue_key(
    directory: &dyn Directory,
    owner: &str,
    name: &str,
    expires_at: Option<Timestamp>,
) -> Result<(KeyRecord, api_key::SecretKey), ProvisionError> {
    // A create that lost to a concurrent key change (Cognito) tries again with a new key,
    // never with the same one: a key record is stored by one write only, so a revocation of
    // it cannot be undone by a late retry (`directory::cognito_keys`).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let generated = api_key::generate(owner)?;
        let record = KeyRecord {
            id: generated.id,
            owner: owner.to_string(),
            name: name.to_string(),
            hash: generated.hash.to_vec(),
            last4: generated.last4,
            created_at: now(),
            expires_at,
        };
        match directory.insert_key(record.clone()).await {
            Ok(()) => return Ok((record, generated.secret)),
            Err(DirectoryError::Conflict(_)) if attempts < 3 => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates the first admin user (group `admins`) and its key in an empty directory.
pub async fn initialize(
    directory: &dyn Directory,
    admin: &str,
) -> Result<(User, KeyRecord, api_key::SecretKey), ProvisionError> {
    crate::directory::validate_name("user name", admin).map_err(ProvisionError::Invalid)?;
    let count = directory.user_count().await?;
    if count > 0 {
        return Err(ProvisionError::AlreadyInitialized(count));
    }
    let user = directory
        .create_user(NewUser {
            username: admin.to_string(),
            email: None,
            groups: vec!["admins".to_string()],
        })
        .await?;
    let (record, secret) = issue_key(directory, admin, "initial admin key", None).await?;
    Ok((user, record, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn credential_sources() {
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer  abc ")])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            credential(&headers(&[("x-api-key", "abc")])).unwrap(),
            Some("abc")
        );
        assert_eq!(credential(&headers(&[])).unwrap(), None);
        assert!(credential(&headers(&[("authorization", "Basic abc")])).is_err());
        assert!(credential(&headers(&[("authorization", "Bearer ")])).is_err());
    }
}
