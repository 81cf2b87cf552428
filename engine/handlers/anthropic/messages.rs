//! `POST /v1/messages`: Anthropic Messages answers, buffered or as server-sent events in
//! Anthropic's event sequence, with `ping` keep-alives while the model is silent.

use super::super::stream::{Renderer, render, sse_response};
use super::super::{Ctx, json};
use super::types::MessagesRequest;
use crate::body::Body;
use crate::errors::{ApiError, Dialect};
use crate::handlers::openai::fallback;
use crate::inference::{Block, BlockStart, Delta, Event, StopReason, Usage};
use crate::providers::ProviderError;
use crate::usage::{Billing, StreamMeter, UsageRecord};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
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
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.uncached_input(),
        "output_tokens": u.completion,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
    })
}

fn block_json(b: &Block) -> Option<Value> {
    Some(match b {
        Block::Text { text, .. } => json!({"type": "text", "text": text}),
        Block::Reasoning { text, signature } => json!({
            "type": "thinking", "thinking": text, "signature": signature.clone().unwrap_or_default(),
        }),
        Block::RedactedReasoning { data } => json!({"type": "redacted_thinking", "data": data}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        _ => return None,
    })
}

/// Answers a Messages request.
pub async fn create(ctx: &Ctx<'_>, request: MessagesRequest) -> Result<Response<Body>, ApiError> {
    let model = ctx.engine.model(&request.model).ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!("the model `{}` does not exist", request.model),
        )
        .with_param("model")
    })?;
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
        let content: Vec<Value> = out
            .content
            .iter()
            .filter(|b| !matches!(b, Block::Text { text, .. } if text.is_empty()))
            .filter_map(block_json)
            .collect();
        return json(
            StatusCode::OK,
            &json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": request.model,
                "content": content,
                "stop_reason": stop_reason(out.stop),
                "stop_sequence": Value::Null,
                "usage": usage_json(&out.usage),
            }),
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

/// `inner`, with `ping` sent whenever it has been silent for `every`.
pub fn keep_alive<S>(
    inner: S,
    every: Duration,
    ping: Bytes,
) -> impl futures_util::Stream<Item = Bytes>
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    futures_util::stream::unfold(Some(Box::pin(inner)), move |state| {
        let ping = ping.clone();
        async move {
            let mut inner = state?;
            match tokio::time::timeout(every, inner.next()).await {
                Err(_) => Some((ping, Some(inner))),
                Ok(Some(b)) => Some((b, Some(inner))),
                Ok(None) => None,
            }
        }
    })
}

/// One SSE event.
pub fn sse(event: &str, data: &Value) -> Bytes {
    let json = serde_json::to_vec(data).unwrap_or_default();
    let mut v = Vec::with_capacity(json.len() + event.len() + 16);
    v.extend_from_slice(b"event: ");
    v.extend_from_slice(event.as_bytes());
    v.extend_from_slice(b"\ndata: ");
    v.extend_from_slice(&json);
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

struct StreamState {
    /// Open blocks: (neutral index, Anthropic index).
    open: Vec<(u32, u32)>,
    next: u32,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    ended: bool,
    meter: StreamMeter,
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

    fn delta(&self, index: u32, delta: Value) -> Bytes {
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        for (_, index) in std::mem::take(&mut self.open) {
            out.extend_from_slice(&sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// The end of the message: open blocks stopped, `message_delta` and `message_stop`.
    fn finish(&mut self, out: &mut Vec<u8>, cut: bool) {
        self.close_all(out);
        let stop = if cut {
            StopReason::MaxTokens
        } else {
            self.stop.unwrap_or(StopReason::EndTurn)
        };
        let usage = self.usage.unwrap_or_else(|| self.meter.usage());
        let mut delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(stop), "stop_sequence": Value::Null},
            "usage": usage_json(&usage)});
        if cut {
            delta["warning"] = json!(crate::handlers::openai::chat::CUT_WARNING);
        }
        out.extend_from_slice(&sse("message_delta", &delta));
        out.extend_from_slice(&sse("message_stop", &json!({"type": "message_stop"})));
        self.ended = true;
        self.meter.finish(cut);
    }

    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        match event {
            Some(Ok(Event::BlockStart { index, start })) => {
                let a = self.next;
                self.next += 1;
                self.open.push((index, a));
                let block = match start {
                    BlockStart::Text => json!({"type": "text", "text": ""}),
                    BlockStart::Reasoning => {
                        json!({"type": "thinking", "thinking": "", "signature": ""})
                    }
                    BlockStart::RedactedReasoning { data } => {
                        json!({"type": "redacted_thinking", "data": data})
                    }
                    BlockStart::ToolUse { id, name } => {
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}})
                    }
                };
                Some(sse(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": a, "content_block": block}),
                ))
            }
            Some(Ok(Event::Delta { index, delta })) => {
                let a = self.index(index)?;
                Some(self.delta(
                    a,
                    match delta {
                        Delta::Text(t) => json!({"type": "text_delta", "text": t}),
                        Delta::Reasoning(t) => json!({"type": "thinking_delta", "thinking": t}),
                        Delta::Signature(s) => json!({"type": "signature_delta", "signature": s}),
                        Delta::ToolInput(j) => {
                            json!({"type": "input_json_delta", "partial_json": j})
                        }
                    },
                ))
            }
            Some(Ok(Event::BlockStop { index })) => {
                let pos = self.open.iter().position(|(n, _)| *n == index)?;
                let (_, a) = self.open.remove(pos);
                Some(sse(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": a}),
                ))
            }
            Some(Ok(Event::Stop(s))) => {
                self.stop = Some(s);
                None
            }
            Some(Ok(Event::Usage(u))) => {
                self.usage = Some(u);
                None
            }
            Some(Ok(Event::Cut)) => {
                let mut out = Vec::new();
                self.finish(&mut out, true);
                Some(Bytes::from(out))
            }
            Some(Err(e)) => {
                self.ended = true;
                self.meter.finish(true);
                Some(error_event(&ApiError::from(e)))
            }
            None if self.stop.is_none() => {
                self.ended = true;
                self.meter.finish(true);
                Some(error_event(&ApiError::from(
                    crate::handlers::openai::chat::unfinished_stream(),
                )))
            }
            None => {
                let mut out = Vec::new();
                self.finish(&mut out, false);
                Some(Bytes::from(out))
            }
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
