//! `echo`: a built-in model that answers with the text of the last user message.
//!
//! For trying the gateway and for tests with no upstream. It is deterministic: the same
//! request gives the same answer, token counts and chunking. Token counts are an estimate
//! (whitespace-separated words, plus 4 per message for role framing), not a tokenizer.

use super::{ChatEvent, ChatOutput, ChatStream, FinishReason, Provider, ProviderError, TokenUsage};
use crate::engine::ModelRuntime;
use crate::handlers::openai::types::{ChatRequest, Role};
use async_trait::async_trait;
use futures_util::StreamExt;

/// The echo provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// Prompt tokens of a request (estimate).
fn prompt_tokens(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| 4 + m.text().split_whitespace().count() as u64)
        .sum()
}

/// The reply split into word pieces (each keeps its leading whitespace), cut at the limit.
fn reply_pieces(request: &ChatRequest) -> (Vec<String>, FinishReason) {
    let text = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
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
        .output_limit()
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    if pieces.len() > limit {
        pieces.truncate(limit);
        (pieces, FinishReason::Length)
    } else {
        (pieces, FinishReason::Stop)
    }
}

#[async_trait]
impl Provider for Echo {
    async fn chat(
        &self,
        _model: &ModelRuntime,
        request: &ChatRequest,
    ) -> Result<ChatOutput, ProviderError> {
        let (pieces, finish) = reply_pieces(request);
        let completion = pieces.len() as u64;
        Ok(ChatOutput {
            content: Some(pieces.concat()),
            reasoning: None,
            tool_calls: Vec::new(),
            finish,
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
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        let (pieces, finish) = reply_pieces(request);
        let usage = TokenUsage {
            prompt: prompt_tokens(request),
            completion: pieces.len() as u64,
            ..TokenUsage::default()
        };
        let events = pieces
            .into_iter()
            .map(ChatEvent::Text)
            .chain([ChatEvent::Finish(finish), ChatEvent::Usage(usage)])
            .map(Ok);
        Ok(futures_util::stream::iter(events).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str, max: Option<u32>) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": "echo",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max,
        }))
        .unwrap()
    }

    #[test]
    fn pieces_concatenate_to_the_prompt() {
        let (p, f) = reply_pieces(&request("  hello   big\nworld ", None));
        assert_eq!(p.concat(), "  hello   big\nworld ");
        assert_eq!(p, vec!["  hello   ", "big\n", "world "]);
        assert_eq!(f, FinishReason::Stop);
    }

    #[test]
    fn limit_cuts_with_length() {
        let (p, f) = reply_pieces(&request("a b c d", Some(2)));
        assert_eq!(p.concat(), "a b ");
        assert_eq!(f, FinishReason::Length);
        let (p, _) = reply_pieces(&request("", None));
        assert!(p.is_empty());
    }
}
