//! `POST /v1/chat/completions`: buffered JSON or server-sent events in OpenAI's chunk format.

use super::super::{Ctx, json};
use super::fallback;
use super::types::{ChatRequest, Usage};
use crate::body::{Body, BoxError};
use crate::engine::ModelRuntime;
use crate::errors::{ApiError, ErrorKind};
use crate::providers::{ChatEvent, FinishReason, ProviderError};
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// Seconds a throttled client is asked to wait when the upstream did not say.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        let message = e.to_string();
        match e {
            ProviderError::Unavailable(_) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                ErrorKind::ServerError,
                "provider_unavailable",
                message,
            ),
            ProviderError::InvalidRequest(m) => ApiError::bad_request("invalid_request", m),
            ProviderError::InvalidParam { param, message } => {
                ApiError::bad_request("invalid_value", message).with_param(param)
            }
            ProviderError::Throttled { retry_after } => {
                let secs = retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS);
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorKind::RateLimitError,
                    "rate_limit_exceeded",
                    message,
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
            }
            ProviderError::UpstreamValidation(_) => {
                ApiError::bad_request("upstream_validation_error", message)
            }
            ProviderError::AccessDenied => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::PermissionError,
                "upstream_access_denied",
                message,
            ),
            ProviderError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorKind::InvalidRequestError,
                "upstream_model_not_found",
                message,
            ),
            ProviderError::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::UpstreamError,
                "upstream_timeout",
                message,
            ),
            ProviderError::Upstream => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::UpstreamError,
                "upstream_error",
                message,
            ),
        }
    }
}

/// A completion or chunk id: `chatcmpl-` and 24 hex digits.
pub(super) fn completion_id() -> String {
    let mut b = [0u8; 12];
    // An id collision is harmless; fall back to zeros rather than fail the request.
    let _ = getrandom::fill(&mut b);
    format!("chatcmpl-{}", hex::encode(b))
}

pub(super) fn unix_now() -> i64 {
    crate::directory::now()
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    system_fingerprint: Option<&'static str>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [ToolCallOut<'a>],
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: Option<&'static str>,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
    /// Extension: why the answer was cut short.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// The warning of a stream the gateway ended at its time limit.
pub const CUT_WARNING: &str =
    "the answer was cut short: the gateway reached its time limit for this request";

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

pub(super) fn check_limits(model: &ModelRuntime, request: &ChatRequest) -> Result<(), ApiError> {
    if model.kind != crate::config::models::ModelKind::Chat {
        return Err(ApiError::bad_request(
            "wrong_model_kind",
            format!(
                "model `{}` is an embedding model; send it to /v1/embeddings",
                model.alias
            ),
        )
        .with_param("model"));
    }
    if let (Some(max), Some(asked)) = (model.max_output_tokens, request.output_limit())
        && asked > max
    {
        let param = if request.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(ApiError::bad_request(
            "invalid_value",
            format!(
                "`{param}` is {asked}, but model `{}` allows at most {max}",
                model.alias
            ),
        )
        .with_param(param));
    }
    Ok(())
}

/// Answers a chat completion.
pub async fn complete(ctx: &Ctx<'_>, request: ChatRequest) -> Result<Response<Body>, ApiError> {
    let model = ctx.engine.model(&request.model).ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!("the model `{}` does not exist", request.model),
        )
        .with_param("model")
    })?;
    check_limits(model, &request)?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"chat reached without an identity"))?;
    let id = completion_id();
    let created = unix_now();

    if !request.is_stream() {
        let (served, out) = fallback::chat(ctx, model, &request).await?;
        UsageRecord::complete(ctx.request_id, identity, served, false, out.usage)
            .emit(ctx.engine.ledger());
        let calls: Vec<ToolCallOut<'_>> = out
            .tool_calls
            .iter()
            .map(|c| ToolCallOut {
                index: None,
                id: Some(&c.id),
                kind: Some("function"),
                function: FunctionOut {
                    name: Some(&c.name),
                    arguments: &c.arguments,
                },
            })
            .collect();
        return json(
            StatusCode::OK,
            &Completion {
                id: &id,
                object: "chat.completion",
                created,
                model: &served.alias,
                choices: [Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content: out.content.as_deref(),
                        refusal: None,
                        reasoning_content: out.reasoning.as_deref(),
                        tool_calls: &calls,
                    },
                    logprobs: None,
                    finish_reason: out.finish.as_str(),
                }],
                usage: out.usage.into(),
                system_fingerprint: None,
            },
        );
    }

    let (served, events) = fallback::chat_stream(ctx, model, &request).await?;
    let model = served;
    let include_usage = request.include_usage();
    let sse = SseState {
        id,
        created,
        model: model.alias.clone(),
        include_usage,
        finish: None,
        done: false,
        meter: StreamMeter::new(
            Billing::new(ctx.request_id, identity, model, ctx.engine.ledger()),
            request.prompt_chars(),
        ),
    };
    let first = sse.chunk(
        Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        },
        None,
    );
    let body = futures_util::stream::once(async move { Ok::<Bytes, BoxError>(first) }).chain(
        events
            .map(Some)
            .chain(futures_util::stream::once(async { None }))
            .scan(sse, |state, event| {
                let out = if state.done {
                    None
                } else {
                    Some(state.on_event(event))
                };
                async move { out }
            })
            .filter_map(|b| async move { b.map(Ok::<Bytes, BoxError>) }),
    );
    let mut response = Response::new(Body::stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

struct SseState {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    finish: Option<FinishReason>,
    done: bool,
    /// Records the call at the end, or when the client leaves before it.
    meter: StreamMeter,
}

pub(super) fn sse_line(json: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(json.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(json);
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

impl SseState {
    fn chunk(&self, delta: Delta<'_>, finish: Option<&'static str>) -> Bytes {
        self.encode(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            None,
        )
    }

    fn encode(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Usage>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices,
            usage: if self.include_usage {
                Some(usage)
            } else {
                None
            },
            warning: None,
        };
        sse_line(&serde_json::to_vec(&chunk).unwrap_or_default())
    }

    /// Turns one provider event (or the end, `None`) into SSE bytes (possibly empty).
    fn on_event(&mut self, event: Option<Result<ChatEvent, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        match event {
            Some(Ok(ChatEvent::Text(t))) => Some(self.chunk(
                Delta {
                    content: Some(&t),
                    ..Delta::default()
                },
                None,
            )),
            Some(Ok(ChatEvent::Reasoning(t))) => Some(self.chunk(
                Delta {
                    reasoning_content: Some(&t),
                    ..Delta::default()
                },
                None,
            )),
            Some(Ok(ChatEvent::ToolCallStart { index, id, name })) => Some(self.chunk(
                Delta {
                    tool_calls: Some([ToolCallOut {
                        index: Some(index),
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(&name),
                            arguments: "",
                        },
                    }]),
                    ..Delta::default()
                },
                None,
            )),
            Some(Ok(ChatEvent::ToolCallArguments { index, arguments })) => Some(self.chunk(
                Delta {
                    tool_calls: Some([ToolCallOut {
                        index: Some(index),
                        id: None,
                        kind: None,
                        function: FunctionOut {
                            name: None,
                            arguments: &arguments,
                        },
                    }]),
                    ..Delta::default()
                },
                None,
            )),
            Some(Ok(ChatEvent::Finish(f))) => {
                self.finish = Some(f);
                Some(self.chunk(Delta::default(), Some(f.as_str())))
            }
            Some(Ok(ChatEvent::Usage(_))) => None,
            Some(Ok(ChatEvent::Cut)) => {
                self.finish = Some(FinishReason::Length);
                let chunk = Chunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    system_fingerprint: None,
                    choices: vec![ChunkChoice {
                        index: 0,
                        delta: Delta::default(),
                        logprobs: None,
                        finish_reason: Some(FinishReason::Length.as_str()),
                    }],
                    usage: self.include_usage.then_some(None),
                    warning: Some(CUT_WARNING),
                };
                Some(sse_line(&serde_json::to_vec(&chunk).unwrap_or_default()))
            }
            Some(Err(e)) => {
                // A failure mid-stream ends the stream with an OpenAI error event.
                self.done = true;
                self.meter.finish(true);
                let err = ApiError::from(e);
                Some(sse_line(&err.body_bytes()))
            }
            None => {
                self.done = true;
                self.meter.finish(false);
                let mut out = Vec::new();
                if self.finish.is_none() {
                    out.extend_from_slice(
                        &self.chunk(Delta::default(), Some(FinishReason::Stop.as_str())),
                    );
                }
                if self.include_usage {
                    out.extend_from_slice(
                        &self.encode(Vec::new(), Some(self.meter.usage().into())),
                    );
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                Some(Bytes::from(out))
            }
        }
    }
}
