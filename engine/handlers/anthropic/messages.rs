//! `POST /v1/messages`: Anthropic Messages answers, buffered or as server-sent events in
//! Anthropic's event sequence, with `ping` keep-alives while the model is silent.

use super::super::stream::{Renderer, SseBuf, render, sse_response};
use super::super::{Ctx, json};
use super::types::MessagesRequest;
use crate::body::Body;
use crate::errors::{ApiError, Dialect};
use crate::handlers::openai::fallback;
use crate::inference::{Block, BlockStart, Delta, Event, StopReason, Usage};
use crate::providers::ProviderError;
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest silence on a stream before a `ping` event (API Gateway drops idle streams).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// A message id: `msg_` and 24 hex digits.
fn message_id() -> String {
    let mut b = [0u8; 12];
    // An id collision is harmless; fall back to zeros rather than fail the request.
    let _ = getrandom::fill(&mut b);
    format!("msg_{}", hex::encode(b))
}

/// Anthropic's name of a stop reason.
pub fn stop_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::EndTurn => "end_turn",
        StopReason::StopSequence => "stop_sequence",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
    }
}

/// Anthropic's `usage` object.
#[derive(Serialize)]
struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl From<&Usage> for OutUsage {
    fn from(u: &Usage) -> Self {
        Self {
            input_tokens: u.uncached_input(),
            output_tokens: u.completion,
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
        }
    }
}

/// `{}`.
#[derive(Serialize)]
struct EmptyObject {}

/// A tool call's input: the model's, or `{}` when a streamed call starts.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolInput<'a> {
    Value(&'a Value),
    Empty(EmptyObject),
}

/// A content block of an answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
}

fn out_block(b: &Block) -> Option<OutBlock<'_>> {
    Some(match b {
        Block::Text { text, .. } => OutBlock::Text { text },
        Block::Reasoning { text, signature } => OutBlock::Thinking {
            thinking: text,
            signature: signature.as_deref().unwrap_or_default(),
        },
        Block::RedactedReasoning { data } => OutBlock::RedactedThinking { data },
        Block::ToolUse { id, name, input } => OutBlock::ToolUse {
            id,
            name,
            input: ToolInput::Value(input),
        },
        _ => return None,
    })
}

/// A buffered answer.
#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

/// The `delta` of a `content_block_delta` event.
#[derive(Serialize)]
#[serde(tag = "type")]
enum OutDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

/// The `delta` of a `message_delta` event.
#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

/// A streamed event after `message_start` (its `type` is also the SSE event name).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    ContentBlockStart {
        index: u32,
        content_block: OutBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: OutDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutUsage,
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<&'static str>,
    },
    MessageStop,
}

impl StreamEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

/// Answers a Messages request.
pub async fn create(ctx: &Ctx<'_>, request: MessagesRequest) -> Result<Response<Body>, ApiError> {
    let model = ctx.engine.known_model(&request.model)?;
    crate::handlers::openai::chat::check_kind_and_limit(model, request.max_tokens, "max_tokens")?;
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"messages reached without an identity"))?;
    let session = ctx
        .header("x-claude-code-session-id")
        .map(|s| s.chars().take(128).collect::<String>());
    let mut core = request.to_core(session)?;
    core.betas = ctx
        .header("anthropic-beta")
        .map(|h| {
            h.split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let id = message_id();

    if !request.is_stream() {
        let (served, out) = fallback::chat(ctx, model, &core).await?;
        let mut record = UsageRecord::complete(ctx.ids(), identity, served, false, out.usage);
        record.session = core.metadata.session_id.as_deref();
        record.emit(ctx.engine.ledger());
        let content: Vec<OutBlock<'_>> = out
            .content
            .iter()
            .filter(|b| !matches!(b, Block::Text { text, .. } if text.is_empty()))
            .filter_map(out_block)
            .collect();
        return json(
            StatusCode::OK,
            &OutMessage {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &request.model,
                content,
                stop_reason: stop_reason(out.stop),
                stop_sequence: None,
                usage: OutUsage::from(&out.usage),
            },
        );
    }

    let (served, events) = fallback::chat_stream(ctx, model, &core).await?;
    let prompt_chars = request.prompt_chars(&core);
    let state = StreamState {
        open: Vec::new(),
        next: 0,
        stop: None,
        usage: None,
        ended: false,
        out: SseBuf::new(),
        meter: StreamMeter::new(
            Billing {
                session: core.metadata.session_id.clone(),
                ..Billing::new(ctx.ids(), identity, served, ctx.engine.ledger())
            },
            prompt_chars,
        ),
    };
    let start = sse(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": request.model,
            "content": [], "stop_reason": Value::Null, "stop_sequence": Value::Null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}),
    );
    let ping = sse("ping", &json!({"type": "ping"}));
    Ok(sse_response(
        Some(start),
        keep_alive(render(events, state), PING_INTERVAL, ping),
    ))
}

pin_project_lite::pin_project! {
    /// A stream with `ping` sent whenever the inner stream has been silent for `every`.
    pub struct KeepAlive<S> {
        #[pin]
        inner: S,
        #[pin]
        sleep: tokio::time::Sleep,
        every: Duration,
        ping: Bytes,
        last: tokio::time::Instant,
        done: bool,
    }
}

/// `inner`, with `ping` sent whenever it has been silent for `every`. The timer is only
/// armed while `inner` has nothing ready, not for each item.
pub fn keep_alive<S>(inner: S, every: Duration, ping: Bytes) -> KeepAlive<S>
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    let now = tokio::time::Instant::now();
    KeepAlive {
        inner,
        sleep: tokio::time::sleep_until(now + every),
        every,
        ping,
        last: now,
        done: false,
    }
}

impl<S: futures_util::Stream<Item = Bytes>> futures_util::Stream for KeepAlive<S> {
    type Item = Bytes;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        use std::task::Poll;
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(b)) => {
                *this.last = tokio::time::Instant::now();
                Poll::Ready(Some(b))
            }
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = *this.last + *this.every;
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.poll(cx) {
                    Poll::Ready(()) => {
                        *this.last = tokio::time::Instant::now();
                        Poll::Ready(Some(this.ping.clone()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// One SSE event.
pub fn sse(event: &str, data: &Value) -> Bytes {
    let mut out = SseBuf::new();
    out.event(event, data);
    out.take().unwrap_or_default()
}

struct StreamState {
    /// Open blocks: (neutral index, Anthropic index).
    open: Vec<(u32, u32)>,
    next: u32,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    ended: bool,
    meter: StreamMeter,
    /// The events being written.
    out: SseBuf,
}

impl Renderer for StreamState {
    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        StreamState::on_event(self, event)
    }

    fn ended(&self) -> bool {
        self.ended
    }
}

impl StreamState {
    fn index(&self, neutral: u32) -> Option<u32> {
        self.open
            .iter()
            .find(|(n, _)| *n == neutral)
            .map(|(_, a)| *a)
    }

    fn emit(&mut self, event: &StreamEvent<'_>) {
        self.out.event(event.name(), event);
    }

    fn close_all(&mut self) {
        for (_, index) in std::mem::take(&mut self.open) {
            self.emit(&StreamEvent::ContentBlockStop { index });
        }
    }

    /// The end of the message: open blocks stopped, `message_delta` and `message_stop`.
    fn finish(&mut self, cut: bool) {
        self.close_all();
        let stop = if cut {
            StopReason::MaxTokens
        } else {
            self.stop.unwrap_or(StopReason::EndTurn)
        };
        let usage = self.usage.unwrap_or_else(|| self.meter.usage());
        self.emit(&StreamEvent::MessageDelta {
            delta: StopDelta {
                stop_reason: stop_reason(stop),
                stop_sequence: None,
            },
            usage: OutUsage::from(&usage),
            warning: cut.then_some(crate::handlers::openai::chat::CUT_WARNING),
        });
        self.emit(&StreamEvent::MessageStop);
        self.ended = true;
        self.meter.finish(cut);
    }

    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        self.write_event(event);
        self.out.take()
    }

    fn write_event(&mut self, event: Option<Result<Event, ProviderError>>) {
        match event {
            Some(Ok(Event::BlockStart { index, start })) => {
                let a = self.next;
                self.next += 1;
                self.open.push((index, a));
                let content_block = match &start {
                    BlockStart::Text => OutBlock::Text { text: "" },
                    BlockStart::Reasoning => OutBlock::Thinking {
                        thinking: "",
                        signature: "",
                    },
                    BlockStart::RedactedReasoning { data } => OutBlock::RedactedThinking { data },
                    BlockStart::ToolUse { id, name } => OutBlock::ToolUse {
                        id,
                        name,
                        input: ToolInput::Empty(EmptyObject {}),
                    },
                };
                self.emit(&StreamEvent::ContentBlockStart {
                    index: a,
                    content_block,
                });
            }
            Some(Ok(Event::Delta { index, delta })) => {
                let Some(index) = self.index(index) else {
                    return;
                };
                let delta = match &delta {
                    Delta::Text(text) => OutDelta::Text { text },
                    Delta::Reasoning(thinking) => OutDelta::Thinking { thinking },
                    Delta::Signature(signature) => OutDelta::Signature { signature },
                    Delta::ToolInput(partial_json) => OutDelta::InputJson { partial_json },
                };
                self.emit(&StreamEvent::ContentBlockDelta { index, delta });
            }
            Some(Ok(Event::BlockStop { index })) => {
                let Some(pos) = self.open.iter().position(|(n, _)| *n == index) else {
                    return;
                };
                let (_, index) = self.open.remove(pos);
                self.emit(&StreamEvent::ContentBlockStop { index });
            }
            Some(Ok(Event::Stop(s))) => self.stop = Some(s),
            Some(Ok(Event::Usage(u))) => self.usage = Some(u),
            Some(Ok(Event::Cut)) => self.finish(true),
            Some(Err(e)) => {
                self.ended = true;
                self.meter.finish(true);
                self.out.put(&error_event(&ApiError::from(e)));
            }
            None if self.stop.is_none() => {
                self.ended = true;
                self.meter.finish(true);
                self.out.put(&error_event(&ApiError::from(
                    crate::handlers::openai::chat::unfinished_stream(),
                )));
            }
            None => self.finish(false),
        }
    }
}

/// An `error` event in Anthropic's shape.
pub fn error_event(e: &ApiError) -> Bytes {
    let body: Value = serde_json::from_slice(&e.body_bytes_in(Dialect::Anthropic))
        .unwrap_or_else(|_| json!({"type": "error"}));
    sse("error", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn pings_fill_silences_and_stop_with_the_stream() {
        let inner = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(40)).await;
            Bytes::from_static(b"late")
        })
        .chain(futures_util::stream::once(async {
            Bytes::from_static(b"next")
        }));
        let out: Vec<Bytes> = keep_alive(inner, PING_INTERVAL, Bytes::from_static(b"ping"))
            .collect()
            .await;
        assert_eq!(out, ["ping", "ping", "late", "next"]);
    }
}
