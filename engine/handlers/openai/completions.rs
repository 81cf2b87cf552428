//! `POST /v1/completions` (legacy): the prompt becomes one user message of a chat request, and
//! the answer comes back as `text_completion` objects, buffered or streamed.

use super::super::stream::{Renderer, SseBuf, render, sse_response};
use super::super::{Ctx, json};
use super::chat::{FinishReason, check_limits, chunk_head, unfinished_stream, unix_now};
use super::fallback;
use super::types::{ChatRequest, Content, Message, Role, Stop, StreamOptions, Usage, parse_object};
use crate::body::Body;
use crate::errors::ApiError;
use crate::inference::{Delta, Event};
use crate::providers::ProviderError;
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model alias.
    pub model: String,
    /// The prompt: a string, or an array of exactly one string.
    #[serde(default)]
    pub prompt: Option<Prompt>,
    /// Stream as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Output limit (the model's default when absent).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Number of choices (1).
    #[serde(default)]
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
    /// Text after the completion (not supported).
    #[serde(default)]
    pub suffix: Option<String>,
    /// Echo the prompt back (not supported).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Server-side candidates (only 1).
    #[serde(default)]
    pub best_of: Option<u32>,
    /// Log probabilities (not supported).
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
}

/// `prompt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    One(String),
    /// Several prompts (only one is accepted).
    Many(Vec<String>),
}

fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::bad_request("unsupported_parameter", format!("`{param}` {why}")).with_param(param)
}

impl CompletionRequest {
    /// Parses a body and turns it into the chat request that answers it.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let r: CompletionRequest = parse_object(body)?;
        let prompt = match r.prompt {
            None => {
                return Err(ApiError::bad_request(
                    "missing_required_parameter",
                    "missing required parameter: `prompt`",
                )
                .with_param("prompt"));
            }
            Some(Prompt::One(p)) => p,
            Some(Prompt::Many(mut v)) if v.len() == 1 => v.remove(0),
            Some(Prompt::Many(v)) => {
                return Err(ApiError::bad_request(
                    "invalid_value",
                    format!(
                        "`prompt` must be one string (this gateway answers one prompt per request), got {} prompts",
                        v.len()
                    ),
                )
                .with_param("prompt"));
            }
        };
        if r.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(unsupported("suffix", "is not supported"));
        }
        if r.echo == Some(true) {
            return Err(unsupported("echo", "is not supported"));
        }
        if r.best_of.is_some_and(|b| b > 1) {
            return Err(unsupported("best_of", "must be 1"));
        }
        if r.logprobs.as_ref().is_some_and(|l| !l.is_null()) {
            return Err(unsupported("logprobs", "is not supported"));
        }
        let chat = ChatRequest {
            model: r.model,
            messages: vec![Message {
                role: Role::User,
                content: Some(Content::Text(prompt)),
                name: None,
                tool_calls: None,
                tool_call_id: None,
                thinking_blocks: None,
            }],
            stream: r.stream,
            stream_options: r.stream_options,
            max_tokens: r.max_tokens,
            max_completion_tokens: None,
            temperature: r.temperature,
            top_p: r.top_p,
            n: r.n,
            stop: r.stop,
            user: r.user,
            tools: None,
            tool_choice: None,
            functions: None,
            function_call: None,
            logprobs: None,
            parallel_tool_calls: None,
            response_format: None,
            reasoning_effort: None,
            thinking: None,
            raw: None,
        };
        chat.validate()?;
        Ok(chat)
    }
}

fn completion_id() -> String {
    format!("cmpl-{}", super::ids::id_hex())
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<TextChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// Answers a legacy completion.
pub async fn complete(ctx: &Ctx<'_>, request: ChatRequest) -> Result<Response<Body>, ApiError> {
    let model = ctx.engine.known_model(&request.model)?;
    check_limits(model, &request)?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"completion reached without an identity"))?;
    let id = completion_id();
    let created = unix_now();
    let core = request.to_core()?;
    if !request.is_stream() {
        let (served, out) = fallback::chat(ctx, model, &core).await?;
        UsageRecord::complete(ctx.ids(), identity, served, false, out.usage)
            .emit(ctx.engine.ledger());
        return json(
            StatusCode::OK,
            &TextCompletion {
                id: &id,
                object: "text_completion",
                created,
                model: &served.alias,
                choices: vec![TextChoice {
                    text: out.text().as_deref().unwrap_or(""),
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(FinishReason::from(out.stop).as_str()),
                }],
                usage: Some(out.usage.into()),
                warning: None,
            },
        );
    }
    let (served, events) = fallback::chat_stream(ctx, model, &core).await?;
    let head = chunk_head(&TextCompletion {
        id: &id,
        object: "text_completion",
        created,
        model: &served.alias,
        choices: Vec::new(),
        usage: None,
        warning: None,
    });
    let state = TextStream {
        head,
        include_usage: request.include_usage(),
        finished: false,
        done: false,
        meter: StreamMeter::new(
            Billing::new(ctx.ids(), identity, served, ctx.engine.ledger()),
            request.prompt_chars(),
        ),
        out: SseBuf::new(),
    };
    Ok(sse_response(None, render(events, state)))
}

struct TextStream {
    /// How every chunk begins, up to the value of `choices` (rendered once).
    head: Box<[u8]>,
    include_usage: bool,
    finished: bool,
    /// Nothing more to send.
    done: bool,
    /// Records the call at the end, or when the client leaves before it.
    meter: StreamMeter,
    /// The chunks being written.
    out: SseBuf,
}

impl Renderer for TextStream {
    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        self.done = matches!(event, None | Some(Err(_)));
        TextStream::on_event(self, event)
    }

    fn ended(&self) -> bool {
        self.done
    }
}

impl TextStream {
    fn chunk(&mut self, text: &str, finish: Option<FinishReason>, usage: Option<Usage>) {
        self.chunk_with(text, finish, usage, None);
    }

    /// Writes a chunk as [`TextCompletion`] serializes it: the shared head, `choices` (none
    /// for the usage chunk), `usage` and `warning` when set.
    fn chunk_with(
        &mut self,
        text: &str,
        finish: Option<FinishReason>,
        usage: Option<Usage>,
        warning: Option<&'static str>,
    ) {
        self.out.put(&self.head);
        if usage.is_some() {
            self.out.put(b"[]");
        } else {
            self.out.json(&[TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: finish.map(FinishReason::as_str),
            }]);
        }
        if let Some(u) = &usage {
            self.out.put(b",\"usage\":");
            self.out.json(u);
        }
        if let Some(w) = warning {
            self.out.put(b",\"warning\":");
            self.out.json(w);
        }
        self.out.put(b"}\n\n");
    }

    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        match event {
            Some(Ok(Event::Delta {
                delta: Delta::Text(t),
                ..
            })) => self.chunk(&t, None, None),
            Some(Ok(Event::Stop(f))) => {
                self.finished = true;
                self.chunk("", Some(FinishReason::from(f)), None);
            }
            Some(Ok(Event::Cut)) => {
                self.finished = true;
                self.chunk_with(
                    "",
                    Some(FinishReason::Length),
                    None,
                    Some(super::chat::CUT_WARNING),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.meter.finish(true);
                self.out.data_bytes(&ApiError::from(e).body_bytes());
            }
            None if !self.finished => {
                self.meter.finish(true);
                self.out
                    .data_bytes(&ApiError::from(unfinished_stream()).body_bytes());
            }
            None => {
                self.meter.finish(false);
                if self.include_usage {
                    let usage = self.meter.usage().into();
                    self.chunk("", None, Some(usage));
                }
                self.out.put(b"data: [DONE]\n\n");
            }
        }
        self.out.take()
    }
}
