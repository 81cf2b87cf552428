//! The Anthropic Messages API: `POST /v1/messages`, `POST /v1/messages/count_tokens`, and the
//! model list in Anthropic's shape.

pub mod messages;
pub mod types;

use super::{Ctx, json};
use crate::body::Body;
use crate::errors::ApiError;
use http::{Response, StatusCode};
use serde_json::json;

/// `POST /v1/messages/count_tokens`: the provider's count where it has one (Bedrock's
/// CountTokens for Claude), else an estimate (about four characters a token of the system
/// prompt, messages and tool definitions), marked with `x-pennyworth-estimate: true`.
pub async fn count_tokens(
    ctx: &Ctx<'_>,
    request: types::MessagesRequest,
) -> Result<Response<Body>, ApiError> {
    let model = ctx.engine.known_model(&request.model)?;
    let core = request.to_core(None)?;
    let provider = ctx.engine.providers().get(model.provider)?;
    let call =
        crate::telemetry::ModelCall::start(model, crate::telemetry::Operation::CountTokens, 0);
    let counted = tokio::time::timeout(
        model.upstream_settings.timeout,
        tracing::Instrument::instrument(provider.count_tokens(model, &core), call.span.clone()),
    )
    .await
    .unwrap_or(Err(crate::providers::ProviderError::Timeout));
    call.finish(counted.as_ref().map(|_| None));
    let (tokens, estimated) = match counted {
        Ok(Some(n)) => (n, false),
        Ok(None) => (
            crate::usage::estimate_tokens(request.prompt_chars(&core)),
            true,
        ),
        Err(e) => return Err(e.into()),
    };
    let mut response = json(StatusCode::OK, &json!({"input_tokens": tokens}))?;
    if estimated {
        response.headers_mut().insert(
            "x-pennyworth-estimate",
            http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}
