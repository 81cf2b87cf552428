//! `POST /v1/chat/completions`: buffered JSON or server-sent events in OpenAI's chunk format.

use super::super::stream::{Renderer, SseBuf, render, sse_response};
use super::super::{Ctx, json};
use super::fallback;
use super::types::{ChatRequest, ThinkingBlock, Usage};
use crate::body::Body;
use crate::engine::ModelRuntime;
use crate::errors::{ApiError, ErrorKind};
use crate::inference::{Block, BlockStart, Delta as CoreDelta, Event, StopReason, input_text};
use crate::providers::ProviderError;
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// Why a chat ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model asked for tools.
    ToolCalls,
    /// Filtered.
    ContentFilter,
}

impl FinishReason {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

impl From<StopReason> for FinishReason {
    fn from(s: StopReason) -> Self {
        match s {
            StopReason::EndTurn | StopReason::StopSequence => FinishReason::Stop,
            StopReason::MaxTokens => FinishReason::Length,
            StopReason::ToolUse => FinishReason::ToolCalls,
            StopReason::ContentFilter => FinishReason::ContentFilter,
        }
    }
}

/// The error a stream that ends before the model's stop event ends with.
pub fn unfinished_stream() -> ProviderError {
    tracing::warn!("the model's stream ended before its stop event");
    ProviderError::Upstream
}

/// The header the OpenAI and Anthropic SDKs obey over their own retry rules: the gateway has
/// already retried upstream failures, so SDK retries would only multiply the calls.
static SHOULD_RETRY: http::HeaderName = http::HeaderName::from_static("x-should-retry");

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
                .with_header(SHOULD_RETRY.clone(), HeaderValue::from_static("false"))
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
            )
            .with_header(SHOULD_RETRY.clone(), HeaderValue::from_static("false")),
            ProviderError::Upstream => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::UpstreamError,
                "upstream_error",
                message,
            )
            .with_header(SHOULD_RETRY.clone(), HeaderValue::from_static("false")),
            ProviderError::NoCredentials => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::ServerError,
                "upstream_credentials_missing",
                message,
            ),
        }
    }
}

/// A completion or chunk id: `chatcmpl-` and 24 hex digits.
pub(super) fn completion_id() -> String {
    format!("chatcmpl-{}", super::ids::id_hex())
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
    /// Extension: signed reasoning to send back on the next turn.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    thinking_blocks: &'a [ThinkingBlock],
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
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<[ThinkingBlock; 1]>,
}

pub(super) fn check_limits(model: &ModelRuntime, request: &ChatRequest) -> Result<(), ApiError> {
    let param = if request.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    check_kind_and_limit(model, request.output_limit(), param)
}

/// Refuses embedding models and output limits above the alias's `max_output_tokens`.
pub fn check_kind_and_limit(
    model: &ModelRuntime,
    asked: Option<u32>,
    param: &str,
) -> Result<(), ApiError> {
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
    if let (Some(max), Some(asked)) = (model.max_output_tokens, asked)
        && asked > max
    {
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
    let model = ctx.engine.known_model(&request.model)?;
    check_limits(model, &request)?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"chat reached without an identity"))?;
    let id = completion_id();
    let created = unix_now();

    let core = request.to_core()?;
    if !request.is_stream() {
        let (served, out) = fallback::chat(ctx, model, &core).await?;
        UsageRecord::complete(ctx.ids(), identity, served, false, out.usage)
            .emit(ctx.engine.ledger());
        let mut calls: Vec<(&str, &str, String)> = Vec::new();
        let mut thinking = Vec::new();
        for b in &out.content {
            match b {
                Block::ToolUse { id, name, input } => calls.push((id, name, input_text(input))),
                Block::Reasoning {
                    signature: Some(sig),
                    text,
                } => thinking.push(ThinkingBlock::Thinking {
                    thinking: text.clone(),
                    signature: Some(sig.clone()),
                }),
                Block::RedactedReasoning { data } => {
                    thinking.push(ThinkingBlock::RedactedThinking { data: data.clone() });
                }
                _ => {}
            }
        }
        let calls: Vec<ToolCallOut<'_>> = calls
            .iter()
            .map(|(id, name, arguments)| ToolCallOut {
                index: None,
                id: Some(id),
                kind: Some("function"),
                function: FunctionOut {
                    name: Some(name),
                    arguments,
                },
            })
            .collect();
        let content = out.text();
        let reasoning = out.reasoning();
        let finish = if out.stop == StopReason::ToolUse && calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::from(out.stop)
        };
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
                        content: content.as_deref(),
                        refusal: None,
                        reasoning_content: reasoning.as_deref(),
                        tool_calls: &calls,
                        thinking_blocks: &thinking,
                    },
                    logprobs: None,
                    finish_reason: finish.as_str(),
                }],
                usage: out.usage.into(),
            },
        );
    }

    let (served, events) = fallback::chat_stream(ctx, model, &core).await?;
    let model = served;
    let mut sse = SseState::new(
        &id,
        created,
        &model.alias,
        request.include_usage(),
        StreamMeter::new(
            Billing::new(ctx.ids(), identity, model, ctx.engine.ledger()),
            request.prompt_chars(),
        ),
    );
    sse.chunk(
        Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        },
        None,
    );
    let first = sse.out.take();
    Ok(sse_response(first, render(events, sse)))
}

/// The state of one streamed chat answer.
struct SseState {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`,
    /// how every chunk of the stream begins (rendered once).
    head: Box<[u8]>,
    include_usage: bool,
    finish: Option<FinishReason>,
    done: bool,
    /// Block index of each tool call, in order (the position is OpenAI's tool call index).
    tools: Vec<u32>,
    /// Records the call at the end, or when the client leaves before it.
    meter: StreamMeter,
    /// The chunks being written.
    out: SseBuf,
}

/// `data: ` and a chunk object cut before the value of its `choices`: the beginning every
/// chunk of a stream shares.
pub(super) fn chunk_head(value: &impl Serialize) -> Box<[u8]> {
    let mut head = b"data: ".to_vec();
    // The object ends with `"choices":[]}` (its last field when there is no usage).
    let _ = serde_json::to_writer(&mut head, value);
    head.truncate(head.len().saturating_sub(3));
    head.into_boxed_slice()
}

impl Renderer for SseState {
    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        SseState::on_event(self, event)
    }

    fn ended(&self) -> bool {
        self.done
    }
}

impl SseState {
    fn new(id: &str, created: i64, model: &str, include_usage: bool, meter: StreamMeter) -> Self {
        let head = chunk_head(&Chunk {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: Vec::new(),
            usage: None,
            warning: None,
        });
        Self {
            head,
            include_usage,
            finish: None,
            done: false,
            tools: Vec::new(),
            meter,
            out: SseBuf::new(),
        }
    }

    /// Writes a chunk of one choice with `delta`.
    fn chunk(&mut self, delta: Delta<'_>, finish: Option<&'static str>) {
        self.write(
            &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            None,
            None,
        );
    }

    /// Writes a chunk: the shared head, then `choices`, `usage` (when the client asked for
    /// it) and `warning`, as [`Chunk`] serializes them.
    fn write(
        &mut self,
        choices: &[ChunkChoice<'_>],
        usage: Option<Usage>,
        warning: Option<&'static str>,
    ) {
        self.out.put(&self.head);
        self.out.json(choices);
        if self.include_usage {
            self.out.put(b",\"usage\":");
            self.out.json(&usage);
        }
        if let Some(w) = warning {
            self.out.put(b",\"warning\":");
            self.out.json(w);
        }
        self.out.put(b"}\n\n");
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tools
            .iter()
            .position(|b| *b == block)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn thinking(&mut self, block: ThinkingBlock) {
        self.chunk(
            Delta {
                thinking_blocks: Some([block]),
                ..Delta::default()
            },
            None,
        );
    }

    /// Turns one provider event (or the end, `None`) into SSE bytes (possibly none).
    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        self.write_event(event);
        self.out.take()
    }

    fn write_event(&mut self, event: Option<Result<Event, ProviderError>>) {
        match event {
            Some(Ok(Event::Delta { index, delta })) => match delta {
                CoreDelta::Text(t) => self.chunk(
                    Delta {
                        content: Some(&t),
                        ..Delta::default()
                    },
                    None,
                ),
                CoreDelta::Reasoning(t) => self.chunk(
                    Delta {
                        reasoning_content: Some(&t),
                        ..Delta::default()
                    },
                    None,
                ),
                CoreDelta::Signature(sig) => self.thinking(ThinkingBlock::Thinking {
                    thinking: String::new(),
                    signature: Some(sig),
                }),
                CoreDelta::ToolInput(arguments) => {
                    let Some(index) = self.tool_index(index) else {
                        return;
                    };
                    self.chunk(
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
                    );
                }
            },
            Some(Ok(Event::BlockStart { index, start })) => match start {
                BlockStart::ToolUse { id, name } => {
                    let tool = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.push(index);
                    self.chunk(
                        Delta {
                            tool_calls: Some([ToolCallOut {
                                index: Some(tool),
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
                    );
                }
                BlockStart::RedactedReasoning { data } => {
                    self.thinking(ThinkingBlock::RedactedThinking { data });
                }
                BlockStart::Text | BlockStart::Reasoning => {}
            },
            Some(Ok(Event::BlockStop { .. } | Event::Usage(_))) => {}
            Some(Ok(Event::Stop(stop))) => {
                let f = if stop == StopReason::ToolUse && self.tools.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::from(stop)
                };
                self.finish = Some(f);
                self.chunk(Delta::default(), Some(f.as_str()));
            }
            Some(Ok(Event::Cut)) => {
                self.finish = Some(FinishReason::Length);
                self.write(
                    &[ChunkChoice {
                        index: 0,
                        delta: Delta::default(),
                        logprobs: None,
                        finish_reason: Some(FinishReason::Length.as_str()),
                    }],
                    None,
                    Some(CUT_WARNING),
                );
            }
            Some(Err(e)) => {
                // A failure mid-stream ends the stream with an OpenAI error event.
                self.done = true;
                self.meter.finish(true);
                self.out.data_bytes(&ApiError::from(e).body_bytes());
            }
            None if self.finish.is_none() => {
                // The model's stream ended without its stop event: the answer may be cut.
                self.done = true;
                self.meter.finish(true);
                self.out
                    .data_bytes(&ApiError::from(unfinished_stream()).body_bytes());
            }
            None => {
                self.done = true;
                self.meter.finish(false);
                if self.include_usage {
                    let usage = self.meter.usage().into();
                    self.write(&[], Some(usage), None);
                }
                self.out.put(b"data: [DONE]\n\n");
            }
        }
    }
}
