//! The fast path for streamed chunks: a chunk of the usual shape is read into typed structs
//! (no `Value` tree; fields the gateway does not use are skipped unread), with the same
//! result as [`super::mapping::chunk`]. Anything else (an `error` member, a field of an
//! unexpected type, duplicate keys) is left to the `Value` path.

use crate::inference::Event;
use crate::inference::stream::Sequencer;
use crate::providers::TokenUsage;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
struct ChunkIn {
    #[serde(default)]
    choices: Option<Vec<ChoiceIn>>,
    #[serde(default)]
    usage: Option<UsageIn>,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

#[derive(Deserialize)]
struct ChoiceIn {
    #[serde(default)]
    delta: Option<DeltaIn>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaIn {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CallIn>>,
}

#[derive(Deserialize)]
struct CallIn {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionIn>,
}

#[derive(Deserialize)]
struct FunctionIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<DetailsIn>,
}

#[derive(Deserialize)]
struct DetailsIn {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

/// True when the member is there, whatever its value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d)?;
    Ok(true)
}

fn text(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The events of one chunk, or `None` when the chunk is not of the usual shape (the caller
/// then reads it as a `Value`); `seq` is only touched when `Some` is returned.
pub fn events(data: &[u8], seq: &mut Sequencer) -> Option<Vec<Event>> {
    let chunk: ChunkIn = serde_json::from_slice(data).ok()?;
    if chunk.error {
        return None;
    }
    let mut out = Vec::new();
    if let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) {
        if let Some(delta) = choice.delta {
            if let Some(t) = text(delta.reasoning_content).or_else(|| text(delta.reasoning)) {
                seq.reasoning(t, &mut out);
            }
            if let Some(t) = text(delta.content) {
                seq.text(t, &mut out);
            }
            for (k, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                let index = call
                    .index
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(k as u32);
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                if let Some(id) = call.id {
                    seq.tool_start(index, id, name.unwrap_or_default(), &mut out);
                }
                if let Some(args) = text(arguments) {
                    seq.tool_input(index, args, &mut out);
                }
            }
        }
        if let Some(f) = choice.finish_reason.as_deref() {
            seq.close(&mut out);
            out.push(Event::Stop(super::mapping::finish_str(f)));
        }
    }
    if let Some(u) = chunk.usage {
        let details = u.prompt_tokens_details;
        out.push(Event::Usage(TokenUsage {
            prompt: u.prompt_tokens.unwrap_or(0),
            completion: u.completion_tokens.unwrap_or(0),
            cache_read: details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_write: details
                .as_ref()
                .and_then(|d| d.cache_write_tokens)
                .unwrap_or(0),
        }));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fast path agrees with the `Value` path wherever it answers.
    #[test]
    fn agrees_with_the_value_path() {
        let chunks = [
            json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {"content": "he\"llo\u{e9}"}}]}),
            json!({"choices": [{"delta": {"reasoning_content": "", "reasoning": "hm"}}]}),
            json!({"choices": [{"delta": {"reasoning_content": "hmm", "content": "a"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [
                {"index": 1, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}},
                {"id": "c2", "function": {"arguments": "{}"}},
                {"index": 1, "function": {"arguments": ":1}"}},
                {"index": 9, "function": {"arguments": "{}"}}
            ]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [{"delta": null, "finish_reason": "length"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}}),
            json!({"choices": null, "usage": null}),
            json!({"usage": {"prompt_tokens": 3, "prompt_tokens_details": null}}),
            json!([]),
        ];
        let mut fast = Sequencer::default();
        let mut slow = Sequencer::default();
        for c in &chunks {
            let bytes = serde_json::to_vec(c).unwrap();
            let got = events(&bytes, &mut fast).expect("usual shape");
            assert_eq!(got, super::super::mapping::chunk(c, &mut slow), "{c}");
        }
    }

    #[test]
    fn unusual_chunks_are_left_to_the_value_path() {
        let mut seq = Sequencer::default();
        for c in [
            json!({"error": null}),
            json!({"error": {"message": "x"}}),
            json!({"choices": [{"delta": {"content": 5}}]}),
            json!({"choices": [1]}),
            json!({"usage": {"prompt_tokens": 1.5}}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]}),
        ] {
            assert!(
                events(&serde_json::to_vec(&c).unwrap(), &mut seq).is_none(),
                "{c}"
            );
        }
        assert!(events(b"{\"choices\":[],\"choices\":[]}", &mut seq).is_none());
        assert!(events(b"not json", &mut seq).is_none());
    }
}
