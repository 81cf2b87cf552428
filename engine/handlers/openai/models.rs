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
    /// Extension: context window in tokens (LiteLLM's and aider's name), when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window: Option<u32>,
    /// Extension: the largest output a request may ask for, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    /// Extension: what the model serves (`chat` or `embedding`, and its capabilities).
    capabilities: Capabilities,
}

#[derive(Serialize)]
struct Capabilities {
    kind: &'static str,
    tools: bool,
    vision: bool,
    documents: bool,
    reasoning: bool,
    structured_output: bool,
    prompt_caching: bool,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn object<'a>(ctx: &Ctx<'_>, m: &'a ModelRuntime) -> ModelObject<'a> {
    let c = &m.capabilities;
    ModelObject {
        id: &m.alias,
        object: "model",
        created: ctx.engine.loaded_at(),
        owned_by: &m.owned_by,
        context_window: m.context_tokens,
        max_output_tokens: m.max_output_tokens,
        capabilities: Capabilities {
            kind: m.kind.as_str(),
            tools: c.tools,
            vision: c.vision,
            documents: c.documents,
            reasoning: c.reasoning != crate::config::models::ReasoningStyle::None,
            structured_output: c.structured_output,
            prompt_caching: c.prompt_caching,
        },
    }
}

/// True when the caller may invoke `m` with the action its kind uses.
fn permitted(ctx: &Ctx<'_>, m: &ModelRuntime) -> bool {
    ctx.identity
        .is_some_and(|id| ctx.engine.may_invoke(id, m, ctx.facts))
}

/// Unix seconds → RFC 3339 UTC (`2026-11-26T13:34:54Z`).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = crate::usage::period::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The list in Anthropic's shape, for clients that send `anthropic-version` (Claude Code's
/// model discovery).
fn anthropic_list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let created = rfc3339(ctx.engine.loaded_at());
    let data: Vec<serde_json::Value> = ctx
        .engine
        .models()
        .filter(|m| m.kind == crate::config::models::ModelKind::Chat && permitted(ctx, m))
        .map(|m| {
            serde_json::json!({"type": "model", "id": m.alias, "display_name": m.alias,
                "created_at": created})
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    json(
        StatusCode::OK,
        &serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
    )
}

/// `GET /v1/models` (Anthropic's shape when the request carries `anthropic-version`).
pub fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    if ctx.header("anthropic-version").is_some() {
        return anthropic_list(ctx);
    }
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
        _ => Err(ApiError::model_not_found(id)),
    }
}
