//! `POST|GET /v1/admin/users`, `GET|PATCH|DELETE /v1/admin/users/{username}`,
//! `POST /v1/admin/users/{username}/password`.

use super::{List, UserView, audited};
use crate::body::Body;
use crate::directory::{
    NewUser, Password, User, UserUpdate, validate_groups, validate_name, validate_password,
};
use crate::errors::ApiError;
use crate::handlers::{Ctx, json};
use crate::resource::Target;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// `POST /v1/admin/users` body.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// User name.
    pub username: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Initial password.
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// `PATCH /v1/admin/users/{username}` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Replace the groups.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `POST /v1/admin/users/{username}/password` body.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The new password.
    pub password: String,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetPassword(<redacted>)")
    }
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_param(param)
}

fn target<'a>(ctx: &'a Ctx<'_>) -> Result<(&'a str, Option<&'a User>), ApiError> {
    match ctx.target {
        Target::Account { username, user } => Ok((username, user.as_ref())),
        _ => Err(ApiError::internal(&"user route without an account target")),
    }
}

fn not_found(username: &str) -> ApiError {
    ApiError::not_found(
        "user_not_found",
        format!("user `{username}` does not exist"),
    )
    .with_param("username")
}

fn existing<'a>(ctx: &'a Ctx<'_>) -> Result<(&'a str, &'a User), ApiError> {
    let (username, user) = target(ctx)?;
    user.map(|u| (username, u))
        .ok_or_else(|| not_found(username))
}

/// `POST /v1/admin/users`: 201 with the user.
pub async fn create(ctx: &Ctx<'_>, body: CreateUser) -> Result<Response<Body>, ApiError> {
    let name = body.username.clone();
    audited(ctx, "users:create", &name, async {
        validate_name("user name", &body.username).map_err(|m| bad("username", m))?;
        if let Some(email) = &body.email
            && (!email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace))
        {
            return Err(bad("email", format!("`{email}` is not an e-mail address")));
        }
        validate_groups(&body.groups)?;
        let password = body.password.map(Password);
        if let Some(p) = &password {
            validate_password(p).map_err(|m| bad("password", m))?;
        }
        let directory = ctx.engine.directory();
        let user = directory
            .create_user(NewUser {
                username: body.username.clone(),
                email: body.email.clone(),
                groups: body.groups.clone(),
            })
            .await?;
        if let Some(p) = &password {
            directory.set_password(&user.username, p).await?;
        }
        json(StatusCode::CREATED, &UserView::from(&user))
    })
    .await
}

/// `GET /v1/admin/users`.
pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    audited(ctx, "users:list", "*", async {
        let users = ctx.engine.directory().list_users().await?;
        json(
            StatusCode::OK,
            &List::new(users.iter().map(UserView::from).collect()),
        )
    })
    .await
}

/// `GET /v1/admin/users/{username}`.
pub fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (_, user) = existing(ctx)?;
    json(StatusCode::OK, &UserView::from(user))
}

/// `PATCH /v1/admin/users/{username}`: `groups` and `enabled`.
pub async fn update(ctx: &Ctx<'_>, body: UpdateUser) -> Result<Response<Body>, ApiError> {
    let (username, _) = target(ctx)?;
    audited(ctx, "users:update", username, async {
        let (username, _) = existing(ctx)?;
        if body.groups.is_none() && body.enabled.is_none() {
            return Err(ApiError::bad_request(
                "invalid_request_body",
                "nothing to update: give `groups` and/or `enabled`",
            ));
        }
        if body.enabled == Some(false) && ctx.identity.is_some_and(|i| i.username == username) {
            return Err(bad(
                "enabled",
                "you cannot disable your own account".to_string(),
            ));
        }
        let user = ctx
            .engine
            .directory()
            .update_user(
                username,
                UserUpdate {
                    groups: body.groups,
                    enabled: body.enabled,
                },
            )
            .await?;
        ctx.engine.identities().forget_owner(username);
        json(StatusCode::OK, &UserView::from(&user))
    })
    .await
}

#[derive(Serialize)]
struct Deleted<'a> {
    object: &'static str,
    username: &'a str,
    deleted: bool,
}

/// `DELETE /v1/admin/users/{username}`: the user and their keys.
pub async fn delete(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let (username, _) = target(ctx)?;
    audited(ctx, "users:delete", username, async {
        let (username, _) = existing(ctx)?;
        if ctx.identity.is_some_and(|i| i.username == username) {
            return Err(bad(
                "username",
                "you cannot delete your own account".to_string(),
            ));
        }
        if !ctx.engine.directory().delete_user(username).await? {
            return Err(not_found(username));
        }
        ctx.engine.identities().forget_owner(username);
        json(
            StatusCode::OK,
            &Deleted {
                object: "user",
                username,
                deleted: true,
            },
        )
    })
    .await
}

#[derive(Serialize)]
struct PasswordSet<'a> {
    object: &'static str,
    username: &'a str,
    password_set: bool,
}

/// `POST /v1/admin/users/{username}/password`.
pub async fn set_password(ctx: &Ctx<'_>, body: SetPassword) -> Result<Response<Body>, ApiError> {
    let (username, _) = target(ctx)?;
    audited(ctx, "users:set_password", username, async {
        let (username, _) = existing(ctx)?;
        let password = Password(body.password);
        validate_password(&password).map_err(|m| bad("password", m))?;
        ctx.engine
            .directory()
            .set_password(username, &password)
            .await?;
        json(
            StatusCode::OK,
            &PasswordSet {
                object: "user",
                username,
                password_set: true,
            },
        )
    })
    .await
}
