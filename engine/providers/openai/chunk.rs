//! The fast path for streamed chunks: a chunk of the usual shape is read into typed structs
//! (no `Value` tree; fields the gateway does not use are skipped unread), with the same
//! result as [`super::mapping::chunk`]. Anything else (an `error` member, a field of an
//! unexpected type, an array where an object belongs, duplicate keys) is left to the `Value`
//! path.

use crate::inference::Event;
use crate::inference::stream::Sequencer;
use crate::providers::TokenUsage;
use serde::de::{IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};

/// A JSON object read into `T`. A derived struct also accepts an array (its fields in order),
/// where the `Value` path sees no field at all: such input is refused, so the caller falls
/// back to the `Value` path.
pub(super) struct Obj<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData)).map(Obj)
    }
}

#[derive(Deserialize)]
struct ChunkIn {
    #[serde(default)]
    choices: Option<Vec<Obj<ChoiceIn>>>,
    #[serde(default)]
    usage: Option<Obj<UsageIn>>,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

#[derive(Deserialize)]
struct ChoiceIn {
    #[serde(default)]
    delta: Option<Obj<TurnIn>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// A chunk's `delta`, or a buffered answer's `message`: the same fields.
#[derive(Deserialize)]
pub(super) struct TurnIn {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) reasoning_content: Option<String>,
    #[serde(default)]
    pub(super) reasoning: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<Obj<CallIn>>>,
}

/// A tool call (of a chunk's delta, or of a buffered answer's message).
#[derive(Deserialize)]
pub(super) struct CallIn {
    #[serde(default)]
    pub(super) index: Option<u64>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<Obj<FunctionIn>>,
}

/// A tool call's function.
#[derive(Deserialize)]
pub(super) struct FunctionIn {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

/// `usage`.
#[derive(Deserialize)]
pub(super) struct UsageIn {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Obj<DetailsIn>>,
}

impl UsageIn {
    /// The counts, missing ones zero.
    pub(super) fn tokens(self) -> TokenUsage {
        let details = self.prompt_tokens_details.map(|d| d.0);
        TokenUsage {
            prompt: self.prompt_tokens.unwrap_or(0),
            completion: self.completion_tokens.unwrap_or(0),
            cache_read: details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_write: details
                .as_ref()
                .and_then(|d| d.cache_write_tokens)
                .unwrap_or(0),
        }
    }
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

pub(super) fn text(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The events of one chunk, or `None` when the chunk is not of the usual shape (the caller
/// then reads it as a `Value`); `seq` is only touched when `Some` is returned.
pub fn events(data: &[u8], seq: &mut Sequencer) -> Option<Vec<Event>> {
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Valid JSON that is not an object has no choices and no usage: no events.
        serde_json::from_slice::<IgnoredAny>(data).ok()?;
        return Some(Vec::new());
    }
    let chunk: ChunkIn = serde_json::from_slice(data).ok()?;
    if chunk.error {
        return None;
    }
    let mut out = Vec::new();
    if let Some(Obj(choice)) = chunk.choices.and_then(|c| c.into_iter().next()) {
        if let Some(Obj(delta)) = choice.delta {
            if let Some(t) = text(delta.reasoning_content).or_else(|| text(delta.reasoning)) {
                seq.reasoning(t, &mut out);
            }
            if let Some(t) = text(delta.content) {
                seq.text(t, &mut out);
            }
            for (k, Obj(call)) in delta.tool_calls.into_iter().flatten().enumerate() {
                let index = call
                    .index
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(k as u32);
                let (name, arguments) = match call.function {
                    Some(Obj(f)) => (f.name, f.arguments),
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
    if let Some(Obj(u)) = chunk.usage {
        out.push(Event::Usage(u.tokens()));
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

    /// An array where an object belongs reads as no member in the `Value` path; the fast
    /// path never reads it as the object's fields in order.
    #[test]
    fn arrays_are_not_objects() {
        let mut fast = Sequencer::default();
        let mut slow = Sequencer::default();
        for c in [
            json!([[{"delta": {"content": "x"}}]]),
            json!({"choices": [[{"content": "x"}]]}),
            json!({"choices": [{"delta": ["x"]}]}),
            json!({"usage": [3, 2]}),
            json!({"choices": [{"delta": {"tool_calls": [[0, "id", ["f", "{}"]]]}}]}),
            json!("text"),
            json!(7),
        ] {
            let bytes = serde_json::to_vec(&c).unwrap();
            let slow_events = super::super::mapping::chunk(&c, &mut slow);
            if let Some(got) = events(&bytes, &mut fast) {
                assert_eq!(got, slow_events, "{c}");
            }
        }
    }
}
