//! The Anthropic Messages API: `POST /v1/messages`, `POST /v1/messages/count_tokens`, and the
//! model list in Anthropic's shape.

pub mod messages;
pub mod types;

use super::{Ctx, json};
use crate::body::Body;
use crate::errors::ApiError;
use http::{Response, StatusCode};
use serde_json::json;

/// `POST /v1/messages/count_tokens`: an estimate (about four characters a token of the
/// system prompt, messages and tool definitions); Bedrock's CountTokens is not called.
pub fn count_tokens(
    ctx: &Ctx<'_>,
    request: types::MessagesRequest,
) -> Result<Response<Body>, ApiError> {
    if ctx.engine.model(&request.model).is_none() {
        return Err(ApiError::not_found(
            "model_not_found",
            format!("the model `{}` does not exist", request.model),
        )
        .with_param("model"));
    }
    let core = request.to_core(None)?;
    let chars = request.prompt_chars(&core);
    json(
        StatusCode::OK,
        &json!({"input_tokens": crate::usage::estimate_tokens(chars)}),
    )
}
