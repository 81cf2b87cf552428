//! Calling a model with its timeout, then its `fallbacks` in order when it fails upstream.
//!
//! A fallback is tried only for failures another model may not have (throttling, timeouts,
//! access, unknown model, other upstream failures), never for a request the client must fix;
//! only fallbacks the caller may invoke and whose limits fit the request are tried; fallbacks
//! of fallbacks are not followed. A stream falls back only while it has not started: its
//! first event is awaited before the stream is handed on, so a failure that comes as the
//! first event (a throttle at the start of a ConverseStream) still falls back.

use super::super::Ctx;
use crate::engine::ModelRuntime;
use crate::inference::capabilities::admits;
use crate::inference::{EmbedRequest, Event, EventStream, Request, Response};
use crate::providers::{EmbeddingOutput, ProviderError};
use crate::telemetry::{ModelCall, Operation};
use futures_util::StreamExt;
use std::time::Duration;
use tracing::Instrument;

/// The alias and its usable fallbacks, in order.
fn candidates<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    output_limit: Option<u32>,
) -> Vec<&'e ModelRuntime> {
    let mut out = vec![model];
    for alias in &model.fallbacks {
        let Some(fb) = ctx.engine.model(alias) else {
            continue;
        };
        let permitted = ctx
            .identity
            .is_some_and(|id| ctx.engine.may_invoke(id, fb, ctx.facts));
        let fits = match (fb.max_output_tokens, output_limit) {
            (Some(max), Some(asked)) => asked <= max,
            _ => true,
        };
        if permitted && fits && fb.kind == model.kind {
            out.push(fb);
        } else {
            tracing::debug!(model = %model.alias, fallback = %alias, permitted, fits, "fallback skipped");
        }
    }
    out
}

/// The candidates that can serve `request`: the alias itself must (else the client gets its
/// 400), fallbacks that cannot are skipped.
fn servable<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    request: &Request,
) -> Result<Vec<&'e ModelRuntime>, ProviderError> {
    admits(model, request)?;
    Ok(candidates(ctx, model, request.sampling.max_tokens)
        .into_iter()
        .enumerate()
        .filter(|(i, m)| *i == 0 || admits(m, request).is_ok())
        .map(|(_, m)| m)
        .collect())
}

fn next_or_fail(
    error: ProviderError,
    tried: &ModelRuntime,
    remaining: bool,
) -> Result<(), ProviderError> {
    if remaining && error.allows_fallback() {
        tracing::warn!(model = %tried.alias, error = %error, "model failed; trying its next fallback");
        Ok(())
    } else {
        Err(error)
    }
}

/// A buffered answer from `model` or one of its fallbacks; returns the alias that answered.
pub async fn chat<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    request: &Request,
) -> Result<(&'e ModelRuntime, Response), ProviderError> {
    let list = servable(ctx, model, request)?;
    let mut last = ProviderError::Upstream;
    for (i, m) in list.iter().enumerate() {
        let call = ModelCall::start(m, Operation::Chat, i);
        let attempt = async {
            let provider = ctx.engine.providers().get(m.provider)?;
            match tokio::time::timeout(limit(ctx, m), provider.chat(m, request)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(model = %m.alias, timeout_ms = m.upstream_settings.timeout.as_millis() as u64, "model timed out");
                    Err(ProviderError::Timeout)
                }
            }
        };
        let result = attempt.instrument(call.span.clone()).await;
        call.finish(result.as_ref().map(|out| Some(out.usage)));
        match result {
            Ok(out) => return Ok((m, out)),
            Err(e) => {
                next_or_fail(e.clone(), m, i + 1 < list.len())?;
                last = e;
            }
        }
    }
    Err(last)
}

/// A streamed answer from `model` or one of its fallbacks; returns the alias that answered.
pub async fn chat_stream<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    request: &Request,
) -> Result<(&'e ModelRuntime, EventStream), ProviderError> {
    let list = servable(ctx, model, request)?;
    let mut last = ProviderError::Upstream;
    for (i, m) in list.iter().enumerate() {
        let timeout = m.upstream_settings.timeout;
        let call = ModelCall::start(m, Operation::ChatStream, i);
        let attempt = async {
            let provider = ctx.engine.providers().get(m.provider)?;
            let started = tokio::time::timeout(limit(ctx, m), async {
                let mut stream = provider.chat_stream(m, request).await?;
                match stream.next().await {
                    Some(Err(e)) => Err(e),
                    Some(Ok(first)) => Ok(futures_util::stream::once(async { Ok(first) })
                        .chain(stream)
                        .boxed()),
                    None => Ok(stream),
                }
            });
            match started.await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::Timeout),
            }
        };
        match attempt.instrument(call.span.clone()).await {
            Ok(stream) => {
                call.first_byte();
                let stream = idle_timeout(stream, timeout, m.alias.clone());
                let stream = match ctx.deadline {
                    Some(d) => cut_at(stream, d, m.alias.clone()),
                    None => stream,
                };
                return Ok((m, call.watch(stream)));
            }
            Err(e) => {
                call.finish(Err(&e));
                next_or_fail(e.clone(), m, i + 1 < list.len())?;
                last = e;
            }
        }
    }
    Err(last)
}

/// Embeddings from `model` or one of its fallbacks; returns the alias that answered.
pub async fn embed<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    request: &EmbedRequest,
) -> Result<(&'e ModelRuntime, EmbeddingOutput), ProviderError> {
    let list = candidates(ctx, model, None);
    let mut last = ProviderError::Upstream;
    for (i, m) in list.iter().enumerate() {
        let call = ModelCall::start(m, Operation::Embed, i);
        let attempt = async {
            let provider = ctx.engine.providers().get(m.provider)?;
            match tokio::time::timeout(limit(ctx, m), provider.embed(m, request)).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::Timeout),
            }
        };
        let result = attempt.instrument(call.span.clone()).await;
        call.finish(result.as_ref().map(|out| {
            Some(crate::inference::Usage {
                prompt: out.prompt_tokens,
                ..Default::default()
            })
        }));
        match result {
            Ok(out) => return Ok((m, out)),
            Err(e) => {
                next_or_fail(e.clone(), m, i + 1 < list.len())?;
                last = e;
            }
        }
    }
    Err(last)
}

/// The alias's timeout, shortened to the request's deadline when that comes first.
fn limit(ctx: &Ctx<'_>, m: &ModelRuntime) -> Duration {
    let t = m.upstream_settings.timeout;
    match ctx.deadline {
        Some(d) => t.min(d.saturating_duration_since(tokio::time::Instant::now())),
        None => t,
    }
}

/// `stream`, ended with [`Event::Cut`] when `deadline` passes before it is over.
pub fn cut_at(stream: EventStream, deadline: tokio::time::Instant, alias: String) -> EventStream {
    Guard {
        inner: stream,
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        idle: None,
        last: deadline,
        alias,
        over: false,
    }
    .boxed()
}

/// `stream`, ended with a timeout error when no event comes for `limit`.
pub fn idle_timeout(stream: EventStream, limit: Duration, alias: String) -> EventStream {
    let now = tokio::time::Instant::now();
    Guard {
        inner: stream,
        timer: Box::pin(tokio::time::sleep_until(now + limit)),
        idle: Some(limit),
        last: now,
        alias,
        over: false,
    }
    .boxed()
}

/// An event stream under a timer: with `idle`, one that restarts with each event (the timer
/// is only armed while the stream has nothing ready, not for each event); without, one fixed
/// deadline.
struct Guard {
    inner: EventStream,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    idle: Option<Duration>,
    /// When the last event came (idle timer).
    last: tokio::time::Instant,
    alias: String,
    over: bool,
}

impl futures_util::Stream for Guard {
    type Item = Result<Event, ProviderError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.over {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                if this.idle.is_some() {
                    this.last = tokio::time::Instant::now();
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                this.over = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(limit) = this.idle {
            let deadline = this.last + limit;
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.over = true;
        Poll::Ready(Some(match this.idle {
            Some(limit) => {
                tracing::warn!(model = %this.alias, timeout_ms = limit.as_millis() as u64, "stream stalled; ending it");
                Err(ProviderError::Timeout)
            }
            None => {
                tracing::warn!(model = %this.alias, "the invocation deadline is near; ending the stream with what it has");
                Ok(Event::Cut)
            }
        }))
    }
}
