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

/// The reply split into word pieces (each keeps its leading whitespace), cut at the limit.
fn reply_pieces(request: &Request) -> (Vec<String>, StopReason) {
    let text = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User && !m.has_tool_results())
        .map(|m| m.text())
        .unwrap_or_default();
    // Each piece is a word with the whitespace after it; concatenated they are the text.
    let mut starts: Vec<usize> = text
        .char_indices()
        .zip(std::iter::once(true).chain(text.chars().map(char::is_whitespace)))
        .filter(|((_, c), prev_ws)| !c.is_whitespace() && *prev_ws)
        .map(|((i, _), _)| i)
        .collect();
    if starts.first().is_some_and(|s| *s > 0) {
        starts[0] = 0;
    }
    let mut pieces: Vec<String> = starts
        .iter()
        .zip(
            starts
                .iter()
                .skip(1)
                .copied()
                .chain(std::iter::once(text.len())),
        )
        .map(|(a, b)| text[*a..b].to_string())
        .collect();
    let limit = request
        .sampling
        .max_tokens
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    if pieces.len() > limit {
        pieces.truncate(limit);
        (pieces, StopReason::MaxTokens)
    } else {
        (pieces, StopReason::EndTurn)
    }
}

#[async_trait]
impl Provider for Echo {
    async fn chat(
        &self,
        _model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let (pieces, stop) = reply_pieces(request);
        let completion = pieces.len() as u64;
        Ok(Response {
            content: vec![Block::text(pieces.concat())],
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
        let (pieces, stop) = reply_pieces(request);
        let usage = TokenUsage {
            prompt: prompt_tokens(request),
            completion: pieces.len() as u64,
            ..TokenUsage::default()
        };
        let mut events = Vec::with_capacity(pieces.len() + 4);
        let mut seq = Sequencer::default();
        for p in pieces {
            seq.text(p, &mut events);
        }
        seq.close(&mut events);
        events.push(crate::inference::Event::Stop(stop));
        events.push(crate::inference::Event::Usage(usage));
        Ok(futures_util::stream::iter(events.into_iter().map(Ok)).boxed())
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
    }
}
