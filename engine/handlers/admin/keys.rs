//! `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}`, `DELETE /v1/keys` (every key of a
//! user), `POST /v1/keys/{id}/rotate`.
//!
//! A key minted with an API key (create or rotate by an admin's key) never outlives that key:
//! its expiry is at most the creating key's.

use super::{KeyView, List, audited};
use crate::auth::{api_key, issue_key};
use crate::body::Body;
use crate::directory::{KeyRecord, Timestamp, now};
use crate::errors::ApiError;
use crate::handlers::{Ctx, json};
use crate::resource::Target;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Longest key lifetime a request may ask for.
pub const MAX_EXPIRY_DAYS: u32 = 3650;

/// `POST /v1/keys` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label.
    pub name: String,
    /// Owner (default: the caller).
    #[serde(default)]
    pub user: Option<String>,
    /// Lifetime in days (default: no expiry).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A key with its secret: the one response that carries it.
#[derive(Serialize)]
struct IssuedKey<'a> {
    #[serde(flatten)]
    meta: KeyView<'a>,
    key: &'a str,
}

fn issued(
    status: StatusCode,
    record: &KeyRecord,
    key: &api_key::SecretKey,
) -> Result<Response<Body>, ApiError> {
    json(
        status,
        &IssuedKey {
            meta: record.into(),
            key: key.expose(),
        },
    )
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "`name` must be 1 to 64 printable characters",
        )
        .with_param("name"));
    }
    Ok(())
}

fn expiry(days: Option<u32>) -> Result<Option<Timestamp>, ApiError> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => Ok(Some(now() + i64::from(d) * 86_400)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_value",
            format!("`expires_in_days` must be between 1 and {MAX_EXPIRY_DAYS}"),
        )
        .with_param("expires_in_days")),
    }
}

/// The expiry of a key minted by the caller: the requested one, but never later than the
/// caller's own key (a key cannot outlive the key that created it).
fn bounded_by_caller(ctx: &Ctx<'_>, requested: Option<Timestamp>) -> Option<Timestamp> {
    let parent = ctx.identity.and_then(|i| i.key_expires_at);
    match (requested, parent) {
        (Some(r), Some(p)) => Some(r.min(p)),
        (None, p) => p,
        (r, None) => r,
    }
}

fn account<'a>(ctx: &'a Ctx<'_>) -> Result<(&'a str, bool), ApiError> {
    match ctx.target {
        Target::Account { username, user } => Ok((username, user.is_some())),
        _ => Err(ApiError::internal(&"key route without an account target")),
    }
}

fn user_not_found(username: &str) -> ApiError {
    ApiError::not_found(
        "user_not_found",
        format!("user `{username}` does not exist"),
    )
    .with_param("user")
}

/// `POST /v1/keys`: 201 with the key, shown this once.
pub async fn create(
    ctx: &Ctx<'_>,
    body: crate::handlers::admin::keys::CreateKey,
) -> Result<Response<Body>, ApiError> {
    let (username, exists) = account(ctx)?;
    audited(ctx, "keys:create", username, async {
        validate_name(&body.name)?;
        let expires_at = bounded_by_caller(ctx, expiry(body.expires_in_days)?);
        if !exists {
            return Err(user_not_found(username));
        }
        let (record, key) = issue_key(
            ctx.engine.directory().as_ref(),
            username,
            body.name.trim(),
            expires_at,
        )
        .await?;
        // The id may have been looked up (and remembered as unknown) before it existed.
        ctx.engine.identities().forget_key(&record.id);
        issued(StatusCode::CREATED, &record, &key)
    })
    .await
}

/// `GET /v1/keys[?user=NAME|?all=true]`: metadata only.
pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (username, exists) = account(ctx)?;
    let all = ctx
        .query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "all" && (v == "true" || v == "1"))
        })
        .unwrap_or(false);
    let directory = ctx.engine.directory();
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"key list without an identity"))?;
    let target = if all { "*" } else { username };
    audited(ctx, "keys:list", target, async {
        let mut keys = Vec::new();
        // Every key the caller may list: all of them for admins. A caller who may not list the
        // keys of an arbitrary account gets their own without a scan of the whole directory
        // (on Cognito a scan is many paged calls).
        let scan = all
            && ctx.engine.may_on_account(
                identity,
                "keys:list",
                "",
                crate::resource::NOBODY,
                ctx.facts,
            );
        if all && !scan {
            keys = directory.list_keys(&identity.username).await?;
        } else if all {
            for user in directory.list_users().await? {
                let allowed = ctx.engine.may_on_account(
                    identity,
                    "keys:list",
                    &user.username,
                    &user.id,
                    ctx.facts,
                );
                if allowed {
                    keys.extend(directory.list_keys(&user.username).await?);
                }
            }
        } else {
            if !exists {
                return Err(user_not_found(username));
            }
            keys = directory.list_keys(username).await?;
        }
        json(
            StatusCode::OK,
            &List::new(keys.iter().map(KeyView::from).collect()),
        )
    })
    .await
}

fn key_target<'a>(ctx: &'a Ctx<'_>) -> Result<(&'a str, &'a str, Option<&'a KeyRecord>), ApiError> {
    match ctx.target {
        Target::Key {
            id, owner, record, ..
        } => Ok((id, owner, record.as_ref())),
        _ => Err(ApiError::internal(&"key route without a key target")),
    }
}

fn key_not_found(id: &str) -> ApiError {
    ApiError::not_found("key_not_found", format!("no API key with id `{id}`")).with_param("id")
}

#[derive(Serialize)]
struct Deleted<'a> {
    object: &'static str,
    id: &'a str,
    deleted: bool,
}

/// `DELETE /v1/keys/{id}`: the key stops working at once (locally) or within the identity
/// cache TTL (Cognito).
pub async fn revoke(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (id, owner, record) = key_target(ctx)?;
    audited(ctx, "keys:revoke", id, async {
        if record.is_none() || !ctx.engine.directory().delete_key(owner, id).await? {
            return Err(key_not_found(id));
        }
        ctx.engine.identities().forget_key(id);
        json(
            StatusCode::OK,
            &Deleted {
                object: "api_key",
                id,
                deleted: true,
            },
        )
    })
    .await
}

#[derive(Serialize)]
struct RevokedAll<'a> {
    object: &'static str,
    user: &'a str,
    revoked: Vec<String>,
}

/// `DELETE /v1/keys[?user=NAME]`: revokes every key of a user (default: the caller), e.g. to
/// contain a leaked key together with whatever it may have touched.
pub async fn revoke_all(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (username, exists) = account(ctx)?;
    audited(ctx, "keys:revoke_all", username, async {
        if !exists {
            return Err(user_not_found(username));
        }
        let directory = ctx.engine.directory();
        let mut revoked = Vec::new();
        for key in directory.list_keys(username).await? {
            if directory.delete_key(username, &key.id).await? {
                revoked.push(key.id);
            }
        }
        ctx.engine.identities().forget_owner(username);
        json(
            StatusCode::OK,
            &RevokedAll {
                object: "api_key.revoked",
                user: username,
                revoked,
            },
        )
    })
    .await
}

/// `POST /v1/keys/{id}/rotate`: a new key with the same name and expiry; the old one dies.
pub async fn rotate(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (id, owner, record) = key_target(ctx)?;
    audited(ctx, "keys:rotate", id, async {
        let old = record.ok_or_else(|| key_not_found(id))?;
        let generated = api_key::generate(owner).map_err(|e| ApiError::internal(&e))?;
        let new = KeyRecord {
            id: generated.id,
            owner: owner.to_string(),
            name: old.name.clone(),
            hash: generated.hash.to_vec(),
            last4: generated.last4,
            created_at: now(),
            expires_at: bounded_by_caller(ctx, old.expires_at),
        };
        if !ctx
            .engine
            .directory()
            .replace_key(owner, id, new.clone())
            .await?
        {
            return Err(key_not_found(id));
        }
        ctx.engine.identities().forget_key(id);
        ctx.engine.identities().forget_key(&new.id);
        issued(StatusCode::OK, &new, &generated.secret)
    })
    .await
}
