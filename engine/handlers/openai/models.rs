//! `GET /v1/models` and `GET /v1/models/{id}`: only the aliases the caller may invoke.

use super::super::{Ctx, json};
use crate::body::Body;
use crate::engine::ModelRuntime;
use crate::errors::ApiError;
use http::{Response, StatusCode};
use serde::Serialize;

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn object<'a>(ctx: &Ctx<'_>, m: &'a ModelRuntime) -> ModelObject<'a> {
    ModelObject {
        id: &m.alias,
        object: "model",
        created: ctx.engine.loaded_at(),
        owned_by: &m.owned_by,
    }
}

/// True when the caller may invoke `m` with the action its kind uses.
fn permitted(ctx: &Ctx<'_>, m: &ModelRuntime) -> bool {
    ctx.identity
        .is_some_and(|id| ctx.engine.may_invoke(id, m, ctx.facts))
}

/// `GET /v1/models`.
pub fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let data = ctx
        .engine
        .models()
        .filter(|m| permitted(ctx, m))
        .map(|m| object(ctx, m))
        .collect();
    json(
        StatusCode::OK,
        &ModelList {
            object: "list",
            data,
        },
    )
}

/// `GET /v1/models/{id}`: 404 for unknown aliases and for aliases the caller may not invoke.
pub fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let id = ctx.param("id").unwrap_or_default();
    match ctx.engine.model(id) {
        Some(m) if permitted(ctx, m) => json(StatusCode::OK, &object(ctx, m)),
        _ => Err(ApiError::not_found(
            "model_not_found",
            format!("the model `{id}` does not exist or you do not have access to it"),
        )
        .with_param("model")),
    }
}
