//! The fast path for buffered answers: an answer of the usual shape is read into typed structs
//! (no `Value` tree; fields the gateway does not use are skipped unread), with the same
//! result as [`super::mapping::completion`]. Anything else (a field of an unexpected type, an
//! array where an object belongs, duplicate keys, an answer that is not an object) is left to
//! the `Value` path.

use super::chunk::{Obj, TurnIn, UsageIn, text};
use crate::inference::{Block, Response, StopReason};
use serde::Deserialize;

#[derive(Deserialize)]
struct AnswerIn {
    #[serde(default)]
    choices: Option<Vec<Obj<ChoiceIn>>>,
    #[serde(default)]
    usage: Option<Obj<UsageIn>>,
}

#[derive(Deserialize)]
struct ChoiceIn {
    #[serde(default)]
    message: Option<Obj<TurnIn>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// The answer, `Some(None)` when it has no choice, or `None` when it is not of the usual shape
/// (the caller then reads it as a `Value`).
pub fn completion(data: &[u8]) -> Option<Option<Response>> {
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let answer: AnswerIn = serde_json::from_slice(data).ok()?;
    let Some(Obj(choice)) = answer.choices.and_then(|c| c.into_iter().next()) else {
        return Some(None);
    };
    let mut content = Vec::new();
    if let Some(Obj(message)) = choice.message {
        if let Some(r) = text(message.reasoning_content).or_else(|| text(message.reasoning)) {
            content.push(Block::Reasoning {
                text: r,
                signature: None,
            });
        }
        if let Some(t) = message.content {
            content.push(Block::text(t));
        }
        for Obj(call) in message.tool_calls.into_iter().flatten() {
            let (name, arguments) = match call.function {
                Some(Obj(f)) => (f.name, f.arguments),
                None => (None, None),
            };
            content.push(Block::ToolUse {
                id: call.id.unwrap_or_default(),
                name: name.unwrap_or_default(),
                input: super::mapping::arguments(arguments.as_deref().unwrap_or("{}")),
            });
        }
    }
    Some(Some(Response {
        content,
        stop: choice
            .finish_reason
            .as_deref()
            .map_or(StopReason::EndTurn, super::mapping::finish_str),
        usage: answer.usage.map(|u| u.0.tokens()).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fast path agrees with the `Value` path wherever it answers, and answers the usual
    /// shapes.
    #[test]
    fn agrees_with_the_value_path() {
        let usual = [
            json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi \"there\"\u{e9}"},
                "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 1, "audio_tokens": 0}}}),
            json!({"choices": [{"message": {"content": "", "reasoning_content": "", "reasoning": "r"}}]}),
            json!({"choices": [{"message": {"content": null, "reasoning_content": "rc", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "t2", "function": {"name": "g", "arguments": "not json"}},
                {"function": {"name": "h"}},
                {}
            ]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [{"message": null, "finish_reason": "length"}], "usage": null}),
            json!({"choices": [{"finish_reason": null}], "usage": {"prompt_tokens_details": null}}),
            json!({"choices": [], "usage": {"prompt_tokens": 1}}),
            json!({"choices": null}),
            json!({}),
            json!({"error": {"message": "x"}, "choices": [{"message": {"content": "a"}}]}),
        ];
        for v in &usual {
            let got = completion(&serde_json::to_vec(v).unwrap()).expect("usual shape");
            // Compared by their `Debug` form (the neutral types have no `PartialEq`).
            let want = super::super::mapping::completion(v);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{v}");
        }
        let unusual = [
            json!([[{"message": {"content": "x"}}]]),
            json!({"choices": [[{"content": "x"}]]}),
            json!({"choices": [{"message": ["x"]}]}),
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]}),
            json!({"choices": [{"message": {"content": "x"}, "finish_reason": 3}]}),
            json!({"choices": [{"message": {"tool_calls": [{"id": 1}]}}]}),
            json!({"choices": {"0": {"message": {"content": "x"}}}}),
            json!({"usage": {"prompt_tokens": 1.5}}),
            json!({"usage": [1, 2]}),
            json!({"choices": [{"message": {"content": "a"}}, {"message": 5}]}),
            json!("text"),
        ];
        for v in &unusual {
            assert!(completion(&serde_json::to_vec(v).unwrap()).is_none(), "{v}");
        }
        assert!(completion(b"{\"choices\":[],\"choices\":[]}").is_none());
        assert!(completion(b"not json").is_none());
    }
}
