//! `echo`: a built-in model that answers with the text of the last user message.
//!
//! For trying the gateway and for tests with no upstream. It is deterministic: the same
//! request gives the same answer, token counts and chunking. Token counts are an estimate
//! (whitespace-separated words, plus 4 per message for role framing), not a tokenizer.

use super::{Provider, ProviderError, TokenUsage};
use crate::engine::ModelRuntime;
use crate::inference::stream::Sequencer;
use crate::inference::{Block, EventStream, Request, Response, Role, StopReason};
use async_trait::async_trait;
use futures_util::StreamExt;

/// The echo provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// Prompt tokens of a request (estimate): each system block and message counts as one
/// message.
fn prompt_tokens(request: &Request) -> u64 {
    let words = |t: &str| 4 + t.split_whitespace().count() as u64;
    request.system.iter().map(|s| words(&s.text)).sum::<u64>()
        + request
            .messages
            .iter()
            .map(|m| words(&m.text()))
            .sum::<u64>()
}

/// The text the model answers with: the last user message that is not a tool result.
fn reply_text(request: &Request) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User && !m.has_tool_results())
        .map(|m| m.text())
        .unwrap_or_default()
}

/// End of the piece of `text` that starts at `pos`: a word with the whitespace after it (the
/// first piece also takes any leading whitespace). Concatenated, the pieces are the text.
fn piece_end(text: &str, pos: usize) -> Option<usize> {
    let rest = text.get(pos..).filter(|r| !r.is_empty())?;
    let mut chars = rest.char_indices().peekable();
    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    // Whitespace with no word after it is no piece (an all-blank prompt echoes nothing).
    chars.peek()?;
    while chars.next_if(|(_, c)| !c.is_whitespace()).is_some() {}
    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    Some(pos + chars.peek().map_or(rest.len(), |(i, _)| *i))
}

fn limit_of(request: &Request) -> usize {
    request
        .sampling
        .max_tokens
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX))
}

/// The reply cut at the limit: its length in bytes, its number of pieces and why it stops.
fn reply_cut(text: &str, limit: usize) -> (usize, u64, StopReason) {
    let (mut pos, mut n) = (0, 0usize);
    while let Some(end) = piece_end(text, pos) {
        if n == limit {
            return (pos, n as u64, StopReason::MaxTokens);
        }
        pos = end;
        n += 1;
    }
    (pos, n as u64, StopReason::EndTurn)
}

/// The reply split into word pieces (tests).
#[cfg(test)]
fn reply_pieces(request: &Request) -> (Vec<String>, StopReason) {
    let text = reply_text(request);
    let (len, _, stop) = reply_cut(&text, limit_of(request));
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < len {
        let Some(end) = piece_end(&text, pos) else {
            break;
        };
        pieces.push(text[pos..end].to_string());
        pos = end;
    }
    (pieces, stop)
}

/// Where a streamed echo is: the text (held once), how far it has been sent, and how many
/// pieces; each step makes the events of one piece, so a large prompt is never copied into
/// one event per word up front.
struct Streaming {
    text: String,
    pos: usize,
    sent: usize,
    limit: usize,
    prompt: u64,
    seq: Sequencer,
    done: bool,
}

impl Streaming {
    fn step(&mut self) -> Option<Vec<crate::inference::Event>> {
        if self.done {
            return None;
        }
        let mut events = Vec::with_capacity(2);
        match piece_end(&self.text, self.pos).filter(|_| self.sent < self.limit) {
            Some(end) => {
                self.seq
                    .text(self.text[self.pos..end].to_string(), &mut events);
                self.pos = end;
                self.sent += 1;
            }
            None => {
                let stop = if self.pos < self.text.len() {
                    StopReason::MaxTokens
                } else {
                    StopReason::EndTurn
                };
                self.seq.close(&mut events);
                events.push(crate::inference::Event::Stop(stop));
                events.push(crate::inference::Event::Usage(TokenUsage {
                    prompt: self.prompt,
                    completion: self.sent as u64,
                    ..TokenUsage::default()
                }));
                self.done = true;
            }
        }
        Some(events)
    }
}

#[async_trait]
impl Provider for Echo {
    async fn chat(
        &self,
        _model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let mut text = reply_text(request);
        let (len, completion, stop) = reply_cut(&text, limit_of(request));
        text.truncate(len);
        Ok(Response {
            content: vec![Block::text(text)],
            stop,
            usage: TokenUsage {
                prompt: prompt_tokens(request),
                completion,
                ..TokenUsage::default()
            },
        })
    }

    async fn chat_stream(
        &self,
        _model: &ModelRuntime,
        request: &Request,
    ) -> Result<EventStream, ProviderError> {
        let state = Streaming {
            text: reply_text(request),
            pos: 0,
            sent: 0,
            limit: limit_of(request),
            prompt: prompt_tokens(request),
            seq: Sequencer::default(),
            done: false,
        };
        let events = futures_util::stream::unfold(state, |mut state| async move {
            state.step().map(|events| (events, state))
        })
        .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
        Ok(events.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str, max: Option<u32>) -> Request {
        let mut r = Request::default();
        r.messages.push(crate::inference::Message {
            role: Role::User,
            content: vec![Block::text(text)],
        });
        r.sampling.max_tokens = max;
        r
    }

    #[test]
    fn pieces_concatenate_to_the_prompt() {
        let (p, f) = reply_pieces(&request("  hello   big\nworld ", None));
        assert_eq!(p.concat(), "  hello   big\nworld ");
        assert_eq!(p, vec!["  hello   ", "big\n", "world "]);
        assert_eq!(f, StopReason::EndTurn);
    }

    #[test]
    fn limit_cuts_with_length() {
        let (p, f) = reply_pieces(&request("a b c d", Some(2)));
        assert_eq!(p.concat(), "a b ");
        assert_eq!(f, StopReason::MaxTokens);
        let (p, _) = reply_pieces(&request("", None));
        assert!(p.is_empty());
        let (p, _) = reply_pieces(&request(" \n ", None));
        assert!(p.is_empty());
        let (p, f) = reply_pieces(&request("a b", Some(2)));
        assert_eq!((p.concat().as_str(), f), ("a b", StopReason::EndTurn));
    }
}
