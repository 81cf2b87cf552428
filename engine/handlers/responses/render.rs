//! Responses output: the response object, its output items, and the streamed event sequence
//! driven by neutral events.

use super::seal;
use super::types::{Extras, ResponsesRequest, SealedReasoning, metadata_echo};
use crate::inference::{Block, StopReason, Usage, input_text};
use serde_json::{Value, json};

/// A random id with `prefix` (`resp`, `msg`, `fc`, `ctc`, `rs`).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    // An id collision is harmless; fall back to zeros rather than fail the request.
    let _ = getrandom::fill(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The sealed `encrypted_content` of a reasoning block.
pub fn seal_reasoning(r: &SealedReasoning) -> String {
    seal::seal(&serde_json::to_vec(r).unwrap_or_default())
}

/// A `reasoning` output item.
pub fn reasoning_item(id: &str, text: &str, sealed: &SealedReasoning, summary: bool) -> Value {
    let summary: Vec<Value> = if summary && !text.is_empty() {
        vec![json!({"type": "summary_text", "text": text})]
    } else {
        Vec::new()
    };
    json!({
        "id": id, "type": "reasoning", "summary": summary,
        "encrypted_content": seal_reasoning(sealed), "status": "completed",
    })
}

/// An `output_text` part.
pub fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `message` output item.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content: Vec<Value> = if status == "in_progress" {
        Vec::new()
    } else {
        vec![text_part(text)]
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// The `input` of a custom tool's call from the model's arguments.
pub fn custom_input(arguments: &Value) -> String {
    match arguments.get(super::types::CUSTOM_ARG) {
        Some(Value::String(s)) => s.clone(),
        _ => input_text(arguments),
    }
}

/// A `function_call` or `custom_tool_call` item.
pub fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    input: &Value,
    extras: &Extras,
    status: &str,
) -> Value {
    if extras.custom_tools.iter().any(|c| c == name) {
        let text = if status == "in_progress" {
            String::new()
        } else {
            custom_input(input)
        };
        json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id,
            "name": name, "input": text})
    } else {
        let args = if status == "in_progress" {
            String::new()
        } else {
            input_text(input)
        };
        json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": args})
    }
}

/// The output items of a buffered answer.
pub fn output_items(content: &[Block], extras: &Extras) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut text: Option<String> = None;
    let mut reasoning_chars = 0;
    let flush = |text: &mut Option<String>, out: &mut Vec<Value>| {
        if let Some(t) = text.take() {
            out.push(message_item(&new_id("msg"), &t, "completed"));
        }
    };
    for b in content {
        match b {
            Block::Text { text: t, .. } if !t.is_empty() => {
                text.get_or_insert_with(String::new).push_str(t);
            }
            Block::Reasoning { text: t, signature } => {
                flush(&mut text, &mut out);
                reasoning_chars += t.chars().count();
                let sealed = SealedReasoning {
                    t: Some(t.clone()),
                    s: signature.clone(),
                    r: None,
                };
                out.push(reasoning_item(&new_id("rs"), t, &sealed, extras.summary));
            }
            Block::RedactedReasoning { data } => {
                flush(&mut text, &mut out);
                let sealed = SealedReasoning {
                    t: None,
                    s: None,
                    r: Some(data.clone()),
                };
                out.push(reasoning_item(&new_id("rs"), "", &sealed, false));
            }
            Block::ToolUse { id, name, input } => {
                flush(&mut text, &mut out);
                let prefix = if extras.custom_tools.contains(name) {
                    "ctc"
                } else {
                    "fc"
                };
                out.push(call_item(
                    &new_id(prefix),
                    id,
                    name,
                    input,
                    extras,
                    "completed",
                ));
            }
            _ => {}
        }
    }
    flush(&mut text, &mut out);
    (out, reasoning_chars)
}

/// The `usage` object; reasoning tokens are estimated from the reasoning text.
pub fn usage_json(u: &Usage, reasoning_chars: usize) -> Value {
    let reasoning = crate::usage::estimate_tokens(reasoning_chars).min(u.completion);
    json!({
        "input_tokens": u.prompt,
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "output_tokens": u.completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": u.prompt + u.completion,
    })
}

/// Status and `incomplete_details` of an answer that ended for `stop` (`None`: cut short).
pub fn status_of(stop: Option<StopReason>) -> (&'static str, Value) {
    match stop {
        Some(StopReason::MaxTokens) | None => {
            ("incomplete", json!({"reason": "max_output_tokens"}))
        }
        Some(StopReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        Some(_) => ("completed", Value::Null),
    }
}

/// The response object.
pub struct Envelope {
    /// `resp_...`.
    pub id: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// What the request said, echoed.
    pub echo: Value,
}

impl Envelope {
    /// The parts of the request a response echoes.
    pub fn new(request: &ResponsesRequest) -> Self {
        let text = request.text.as_ref();
        let format = match text.and_then(|t| t.format.as_ref()) {
            Some(f) if f.kind == "json_schema" => json!({
                "type": "json_schema", "name": f.name.clone().unwrap_or_else(|| "output".into()),
                "schema": f.schema.clone().unwrap_or(json!({})),
                "strict": f.strict.unwrap_or(false),
                "description": f.description,
            }),
            Some(f) if f.kind == "json_object" => json!({"type": "json_object"}),
            _ => json!({"type": "text"}),
        };
        let mut text_echo = json!({"format": format});
        if let Some(v) = text.and_then(|t| t.verbosity.as_ref()) {
            text_echo["verbosity"] = json!(v);
        }
        let echo = json!({
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": request.model,
            "parallel_tool_calls": request.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": Value::Null,
            "reasoning": {
                "effort": request.reasoning.as_ref().and_then(|r| r.effort.clone()),
                "summary": request.summary(),
            },
            "store": false,
            "temperature": request.temperature.unwrap_or(1.0),
            "text": text_echo,
            "tool_choice": request.tool_choice.clone().unwrap_or(json!("auto")),
            "tools": request.tools.clone().unwrap_or_default(),
            "top_p": request.top_p.unwrap_or(1.0),
            "truncation": "disabled",
            "user": request.user,
            "metadata": metadata_echo(&request.metadata),
        });
        Self {
            id: new_id("resp"),
            created_at: now(),
            echo,
        }
    }

    /// The response object in `status` with `output` and `usage`.
    pub fn object(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Value,
        incomplete: Value,
        error: Value,
    ) -> Value {
        let mut v = json!({
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "error": error, "incomplete_details": incomplete,
            "output": output, "usage": usage,
        });
        if let (Some(obj), Some(echo)) = (v.as_object_mut(), self.echo.as_object()) {
            for (k, val) in echo {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }
}
