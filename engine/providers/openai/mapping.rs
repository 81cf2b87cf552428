//! OpenAI-shaped upstream answers → provider-neutral types. Unknown fields are ignored and
//! missing ones default, so an upstream that differs a little (Ollama, vLLM) still works.

use crate::inference::stream::Sequencer;
use crate::inference::{Block, Event, Response, StopReason};
use crate::providers::{EmbeddingOutput, ProviderError, TokenUsage};
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

/// `finish_reason` → stop reason.
pub fn finish(v: &Value) -> Option<StopReason> {
    v.as_str().map(finish_str)
}

/// `finish_reason` text → stop reason.
pub fn finish_str(s: &str) -> StopReason {
    match s {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
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

/// Tool call arguments as the upstream sent them: JSON when they parse, else kept as the
/// string they are (rendered back unchanged by the OpenAI dialect).
pub fn arguments(raw: &str) -> Value {
    serde_json::from_str::<Value>(raw)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// A buffered chat completion.
pub fn completion(v: &Value) -> Option<Response> {
    let choice = v["choices"].get(0)?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = text(&message["reasoning_content"]).or_else(|| text(&message["reasoning"])) {
        content.push(Block::Reasoning {
            text: r,
            signature: None,
        });
    }
    if let Some(t) = message["content"].as_str() {
        content.push(Block::text(t));
    }
    for c in message["tool_calls"].as_array().into_iter().flatten() {
        content.push(Block::ToolUse {
            id: c["id"].as_str().unwrap_or_default().to_string(),
            name: c["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            input: arguments(c["function"]["arguments"].as_str().unwrap_or("{}")),
        });
    }
    Some(Response {
        content,
        stop: finish(&choice["finish_reason"]).unwrap_or(StopReason::EndTurn),
        usage: usage(&v["usage"]).unwrap_or_default(),
    })
}

/// One streamed chunk → events (text, reasoning, tool call pieces, stop, usage).
pub fn chunk(v: &Value, seq: &mut Sequencer) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(choice) = v["choices"].get(0) {
        let delta = &choice["delta"];
        if let Some(t) = text(&delta["reasoning_content"]).or_else(|| text(&delta["reasoning"])) {
            seq.reasoning(t, &mut out);
        }
        if let Some(t) = text(&delta["content"]) {
            seq.text(t, &mut out);
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
                let name = call["function"]["name"].as_str().unwrap_or_default();
                seq.tool_start(index, id.to_string(), name.to_string(), &mut out);
            }
            if let Some(args) = text(&call["function"]["arguments"]) {
                seq.tool_input(index, args, &mut out);
            }
        }
        if let Some(f) = finish(&choice["finish_reason"]) {
            seq.close(&mut out);
            out.push(Event::Stop(f));
        }
    }
    if let Some(u) = usage(&v["usage"]) {
        out.push(Event::Usage(u));
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
        use crate::inference::{BlockStart, Delta};
        let mut seq = Sequencer::default();
        let events = chunk(
            &json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 1, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}
            ]}, "finish_reason": null}]}),
            &mut seq,
        );
        assert_eq!(
            events,
            vec![
                Event::BlockStart {
                    index: 0,
                    start: BlockStart::ToolUse {
                        id: "c1".into(),
                        name: "f".into()
                    }
                },
                Event::Delta {
                    index: 0,
                    delta: Delta::ToolInput("{\"a\"".into())
                }
            ]
        );
        let events = chunk(
            &json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
            &mut seq,
        );
        assert_eq!(
            events,
            vec![Event::Usage(TokenUsage {
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
