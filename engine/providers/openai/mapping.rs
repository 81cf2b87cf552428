//! OpenAI-shaped upstream answers → provider-neutral types. Unknown fields are ignored and
//! missing ones default, so an upstream that differs a little (Ollama, vLLM) still works.

use crate::providers::{
    ChatEvent, ChatOutput, EmbeddingOutput, FinishReason, ProviderError, TokenUsage, ToolCall,
};
use http::StatusCode;
use serde_json::Value;

/// An upstream error status → a provider error.
pub fn from_status(status: StatusCode, retry_after: Option<u64>, message: String) -> ProviderError {
    match status.as_u16() {
        429 => ProviderError::Throttled { retry_after },
        400 | 413 | 422 => ProviderError::UpstreamValidation(message),
        401 | 403 => ProviderError::AccessDenied,
        404 => ProviderError::NotFound,
        408 | 504 => ProviderError::Timeout,
        _ => ProviderError::Upstream,
    }
}

/// `finish_reason` text → finish reason.
pub fn finish(v: &Value) -> Option<FinishReason> {
    Some(match v.as_str()? {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    })
}

/// OpenAI `usage` → token usage.
pub fn usage(u: &Value) -> Option<TokenUsage> {
    if !u.is_object() {
        return None;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Some(TokenUsage {
        prompt: n(&u["prompt_tokens"]),
        completion: n(&u["completion_tokens"]),
        cache_read: n(&u["prompt_tokens_details"]["cached_tokens"]),
        cache_write: n(&u["prompt_tokens_details"]["cache_write_tokens"]),
    })
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A buffered chat completion.
pub fn completion(v: &Value) -> Option<ChatOutput> {
    let choice = v["choices"].get(0)?;
    let message = &choice["message"];
    let tool_calls: Vec<ToolCall> = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_string(),
                    name: c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    arguments: c["function"]["arguments"]
                        .as_str()
                        .unwrap_or("{}")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ChatOutput {
        content: message["content"].as_str().map(str::to_string),
        reasoning: text(&message["reasoning_content"]).or_else(|| text(&message["reasoning"])),
        tool_calls,
        finish: finish(&choice["finish_reason"]).unwrap_or(FinishReason::Stop),
        usage: usage(&v["usage"]).unwrap_or_default(),
    })
}

/// One streamed chunk → events (text, reasoning, tool call pieces, finish, usage).
pub fn chunk(v: &Value) -> Vec<ChatEvent> {
    let mut out = Vec::new();
    if let Some(choice) = v["choices"].get(0) {
        let delta = &choice["delta"];
        if let Some(t) = text(&delta["reasoning_content"]).or_else(|| text(&delta["reasoning"])) {
            out.push(ChatEvent::Reasoning(t));
        }
        if let Some(t) = text(&delta["content"]) {
            out.push(ChatEvent::Text(t));
        }
        for (k, call) in delta["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = call["index"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(k as u32);
            if let Some(id) = call["id"].as_str() {
                out.push(ChatEvent::ToolCallStart {
                    index,
                    id: id.to_string(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            if let Some(args) = text(&call["function"]["arguments"]) {
                out.push(ChatEvent::ToolCallArguments {
                    index,
                    arguments: args,
                });
            }
        }
        if let Some(f) = finish(&choice["finish_reason"]) {
            out.push(ChatEvent::Finish(f));
        }
    }
    if let Some(u) = usage(&v["usage"]) {
        out.push(ChatEvent::Usage(u));
    }
    out
}

/// An embeddings list with `expected` vectors (float encoding).
pub fn embeddings(v: &Value, expected: usize) -> Option<EmbeddingOutput> {
    let mut items: Vec<(u64, Vec<f32>)> = v["data"]
        .as_array()?
        .iter()
        .map(|d| {
            let vector = d["embedding"]
                .as_array()?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()?;
            Some((d["index"].as_u64().unwrap_or(0), vector))
        })
        .collect::<Option<_>>()?;
    if items.len() != expected {
        return None;
    }
    items.sort_by_key(|i| i.0);
    Some(EmbeddingOutput {
        vectors: items.into_iter().map(|i| i.1).collect(),
        prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_map_to_events() {
        let events = chunk(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}
        ]}, "finish_reason": null}]}));
        assert_eq!(
            events,
            vec![
                ChatEvent::ToolCallStart {
                    index: 1,
                    id: "c1".into(),
                    name: "f".into()
                },
                ChatEvent::ToolCallArguments {
                    index: 1,
                    arguments: "{\"a\"".into()
                }
            ]
        );
        let events =
            chunk(&json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}));
        assert_eq!(
            events,
            vec![ChatEvent::Usage(TokenUsage {
                prompt: 3,
                completion: 2,
                ..TokenUsage::default()
            })]
        );
    }

    #[test]
    fn statuses() {
        assert!(matches!(
            from_status(StatusCode::TOO_MANY_REQUESTS, Some(7), String::new()),
            ProviderError::Throttled {
                retry_after: Some(7)
            }
        ));
        assert!(matches!(
            from_status(StatusCode::UNAUTHORIZED, None, String::new()),
            ProviderError::AccessDenied
        ));
        assert!(matches!(
            from_status(StatusCode::BAD_GATEWAY, None, String::new()),
            ProviderError::Upstream
        ));
    }
}
