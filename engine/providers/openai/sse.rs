//! Reading an upstream server-sent event stream: each `data:` line is mapped as soon as it is
//! complete; `[DONE]` ends the stream; an `{"error":..}` event or a broken body ends it with
//! an error.

use super::mapping;
use crate::inference::stream::Sequencer;
use crate::inference::{Event, EventStream};
use crate::providers::ProviderError;
use bytes::BytesMut;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;

/// Longest line accepted from an upstream (a larger one is a broken upstream).
const MAX_LINE: usize = 8 * 1024 * 1024;

struct State {
    body: Incoming,
    buf: BytesMut,
    pending: VecDeque<Result<Event, ProviderError>>,
    seq: Sequencer,
    done: bool,
    alias: String,
}

impl State {
    /// Takes every complete line out of the buffer and maps its event.
    fn drain_lines(&mut self) {
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line = self.buf.split_to(pos + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(data) = line.strip_prefix(b"data:") else {
                continue; // comments, `event:`, `id:`, blank separators
            };
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if data == b"[DONE]" {
                self.done = true;
                return;
            }
            if let Some(events) = super::chunk::events(data, &mut self.seq) {
                self.pending.extend(events.into_iter().map(Ok));
                continue;
            }
            match serde_json::from_slice::<serde_json::Value>(data) {
                Ok(v) if v.get("error").is_some() => {
                    let message = v["error"]["message"]
                        .as_str()
                        .unwrap_or("upstream error")
                        .to_string();
                    tracing::warn!(model = %self.alias, error = %message, "upstream stream ended with an error");
                    let code = v["error"]["code"].as_str().unwrap_or_default();
                    let err = if code.contains("rate_limit") {
                        ProviderError::Throttled { retry_after: None }
                    } else {
                        ProviderError::Upstream
                    };
                    self.pending.push_back(Err(err));
                    self.done = true;
                    return;
                }
                Ok(v) => self
                    .pending
                    .extend(mapping::chunk(&v, &mut self.seq).into_iter().map(Ok)),
                Err(_) => {
                    tracing::warn!(model = %self.alias, "the upstream sent an event that is not JSON");
                    self.pending.push_back(Err(ProviderError::Upstream));
                    self.done = true;
                    return;
                }
            }
        }
    }
}

/// The chat events of an upstream SSE body. Dropping the stream drops the body and with it
/// the upstream connection.
pub fn events(body: Incoming, alias: String) -> EventStream {
    let state = State {
        body,
        buf: BytesMut::new(),
        pending: VecDeque::new(),
        seq: Sequencer::default(),
        done: false,
        alias,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((e, s));
            }
            if s.done {
                return None;
            }
            match s.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        s.buf.extend_from_slice(&data);
                        if s.buf.len() > MAX_LINE {
                            s.done = true;
                            s.pending.push_back(Err(ProviderError::Upstream));
                            continue;
                        }
                        s.drain_lines();
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(model = %s.alias, error = %e, "the upstream stream broke");
                    s.done = true;
                    s.pending.push_back(Err(ProviderError::Upstream));
                }
                None => {
                    // Ended without `[DONE]`: what arrived stands; a missing stop is an
                    // error the handler reports.
                    s.buf.extend_from_slice(b"\n");
                    s.drain_lines();
                    s.done = true;
                }
            }
        }
    })
    .boxed()
}
