//! The OpenAI Responses API: `POST /v1/responses` (stateless: nothing is stored, the client
//! sends the whole conversation) and `POST /v1/responses/compact` (the history summarized by
//! the model), answered through the neutral inference core. See `doc/providers.md`.

pub mod render;
pub mod seal;
pub mod stream;
pub mod to_core;
pub mod types;

use super::{Ctx, json};
use crate::body::{Body, BoxError};
use crate::errors::ApiError;
use crate::handlers::anthropic::messages::PING_INTERVAL;
use crate::handlers::openai::fallback;
use crate::inference::{Block, Message, Role};
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use render::Envelope;
use serde_json::{Value, json};
use types::{Extras, ResponsesRequest};

/// The header that lists tool types left out of the model request.
pub const OMITTED_TOOLS_HEADER: &str = "x-pennyworth-omitted-tools";
/// The header that counts reasoning items dropped because their content did not open.
pub const DROPPED_REASONING_HEADER: &str = "x-pennyworth-dropped-reasoning";

fn model_of<'e>(
    ctx: &Ctx<'e>,
    request: &ResponsesRequest,
) -> Result<&'e crate::engine::ModelRuntime, ApiError> {
    let model = ctx.engine.known_model(&request.model)?;
    crate::handlers::openai::chat::check_kind_and_limit(
        model,
        request.max_output_tokens,
        "max_output_tokens",
    )?;
    Ok(model)
}

fn add_headers(response: &mut Response<Body>, extras: &Extras) {
    let h = response.headers_mut();
    if !extras.omitted_tools.is_empty()
        && let Ok(v) = HeaderValue::from_str(&extras.omitted_tools.join(", "))
    {
        h.insert(HeaderName::from_static(OMITTED_TOOLS_HEADER), v);
    }
    if extras.dropped_reasoning > 0 {
        h.insert(
            HeaderName::from_static(DROPPED_REASONING_HEADER),
            HeaderValue::from(extras.dropped_reasoning),
        );
    }
}

/// Answers a Responses request.
pub async fn create(ctx: &Ctx<'_>, request: ResponsesRequest) -> Result<Response<Body>, ApiError> {
    let model = model_of(ctx, &request)?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"responses reached without an identity"))?;
    let (core, extras) = request.to_core()?;
    let envelope = Envelope::new(&request);

    if !request.is_stream() {
        let (served, out) = fallback::chat(ctx, model, &core).await?;
        UsageRecord::complete(ctx.ids(), identity, served, false, out.usage)
            .emit(ctx.engine.ledger());
        let (output, reasoning_chars) = render::output_items(&out.content, &extras);
        let (status, incomplete) = render::status_of(Some(out.stop));
        let body = envelope.object(
            status,
            output,
            render::usage_json(&out.usage, reasoning_chars),
            incomplete,
            Value::Null,
        );
        let mut response = json(StatusCode::OK, &body)?;
        add_headers(&mut response, &extras);
        return Ok(response);
    }

    let (served, events) = fallback::chat_stream(ctx, model, &core).await?;
    let prompt_chars = ResponsesRequest::prompt_chars(&core);
    let meter = StreamMeter::new(
        Billing::new(ctx.ids(), identity, served, ctx.engine.ledger()),
        prompt_chars,
    );
    let mut state = stream::StreamState::new(envelope, extras.clone(), meter);
    let start = state.start();
    let body = futures_util::stream::once(async move { Ok::<Bytes, BoxError>(start) }).chain(
        futures_util::stream::unfold(Some((events, state)), |st| async move {
            let (mut events, mut state) = st?;
            loop {
                match tokio::time::timeout(PING_INTERVAL, events.next()).await {
                    Err(_) => {
                        // An SSE comment: clients ignore it, proxies see traffic.
                        let ping = Bytes::from_static(b": keep-alive\n\n");
                        return Some((Ok::<Bytes, BoxError>(ping), Some((events, state))));
                    }
                    Ok(item) => {
                        let last = item.is_none();
                        let bytes = state.on_event(item);
                        if state.ended || last {
                            return bytes.map(|b| (Ok(b), None));
                        }
                        if let Some(b) = bytes {
                            return Some((Ok(b), Some((events, state))));
                        }
                    }
                }
            }
        }),
    );
    let mut response = Response::new(Body::stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_headers(&mut response, &extras);
    Ok(response)
}

/// What the model is asked to write when a conversation is compacted.
const COMPACT_PROMPT: &str = "Summarize the conversation so far for a handoff to another assistant that will continue the task without seeing it: the goal, what was done and found (files, commands, results), decisions taken, and what remains. Write only the summary.";

/// The prefix of the summary message that replaces the compacted history.
pub const SUMMARY_PREFIX: &str = "Summary of the earlier conversation (compacted):\n";

/// `POST /v1/responses/compact`: the model summarizes the history; the answer's `output`
/// is the history's user messages followed by one user message holding the summary, which
/// the client sends instead of the history from then on.
pub async fn compact(
    ctx: &Ctx<'_>,
    mut request: ResponsesRequest,
) -> Result<Response<Body>, ApiError> {
    request.stream = Some(false);
    let model = model_of(ctx, &request)?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"compact reached without an identity"))?;
    let (mut core, _) = request.to_core()?;
    core.tools.clear();
    core.tool_choice = None;
    core.output = crate::inference::OutputFormat::Text;
    core.messages.push(Message {
        role: Role::User,
        content: vec![Block::text(COMPACT_PROMPT)],
    });
    let (served, out) = fallback::chat(ctx, model, &core).await?;
    UsageRecord::complete(ctx.ids(), identity, served, false, out.usage).emit(ctx.engine.ledger());
    let summary = out.text().unwrap_or_default();
    let mut output: Vec<Value> = match &request.input {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| {
                i.get("role").and_then(Value::as_str) == Some("user")
                    && i.get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "message")
            })
            .cloned()
            .collect(),
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})],
        _ => Vec::new(),
    };
    output.push(json!({"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": format!("{SUMMARY_PREFIX}{summary}")}]}));
    json(
        StatusCode::OK,
        &json!({
            "id": render::new_id("resp"),
            "object": "response.compaction",
            "created_at": render::now(),
            "output": output,
            "usage": render::usage_json(&out.usage, 0),
        }),
    )
}
