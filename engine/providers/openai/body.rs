//! Neutral request → OpenAI chat completions body, for OpenAI-compatible upstreams.

use crate::inference::{
    Block, DocumentFormat, ImageSource, OutputFormat, Request, Role, ToolChoice, input_text,
};
use base64::Engine as _;
use serde_json::{Map, Value, json};

fn media_type(format: DocumentFormat) -> &'static str {
    match format {
        DocumentFormat::Pdf => "application/pdf",
        DocumentFormat::Csv => "text/csv",
        DocumentFormat::Docx => {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        }
        DocumentFormat::Doc => "application/msword",
        DocumentFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        DocumentFormat::Xls => "application/vnd.ms-excel",
        DocumentFormat::Html => "text/html",
        DocumentFormat::Txt => "text/plain",
        DocumentFormat::Md => "text/markdown",
    }
}

/// A user content part, or `None` for blocks that are not user content.
fn part(b: &Block) -> Option<Value> {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    Some(match b {
        Block::Text { text, .. } => json!({"type": "text", "text": text}),
        Block::Image { source, .. } => {
            let url = match source {
                ImageSource::Url(u) => u.clone(),
                ImageSource::Bytes { media_type, data } => {
                    format!("data:{media_type};base64,{}", b64(data))
                }
            };
            json!({"type": "image_url", "image_url": {"url": url}})
        }
        Block::Document { format, name, data } => json!({"type": "file", "file": {
            "filename": name,
            "file_data": format!("data:{};base64,{}", media_type(*format), b64(data)),
        }}),
        _ => return None,
    })
}

/// Content as a string when it is one text part (what every upstream accepts), else parts.
fn content(parts: Vec<Value>) -> Value {
    match parts.as_slice() {
        [one] if one["type"] == "text" => one["text"].clone(),
        _ => Value::Array(parts),
    }
}

fn messages(request: &Request) -> Vec<Value> {
    let mut out = Vec::with_capacity(request.messages.len() + request.system.len());
    for s in &request.system {
        out.push(json!({"role": "system", "content": s.text}));
    }
    for m in &request.messages {
        match m.role {
            Role::User => {
                let mut parts = Vec::new();
                for b in &m.content {
                    if let Block::ToolResult { id, content: c, .. } = b {
                        let text: Vec<&str> = c
                            .iter()
                            .filter_map(|b| match b {
                                Block::Text { text, .. } => Some(text.as_str()),
                                _ => None,
                            })
                            .collect();
                        out.push(
                            json!({"role": "tool", "tool_call_id": id, "content": text.join("\n")}),
                        );
                    } else if let Some(p) = part(b) {
                        parts.push(p);
                    }
                }
                if !parts.is_empty() || !m.has_tool_results() {
                    out.push(json!({"role": "user", "content": content(parts)}));
                }
            }
            Role::Assistant => {
                let text: String = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolUse { id, name, input } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": input_text(input)},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
        }
    }
    out
}

/// The chat completions body of a neutral request (no `model`, no `stream`).
pub fn render(request: &Request) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("messages".into(), Value::Array(messages(request)));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            map.insert(k.into(), v);
        }
    };
    let s = &request.sampling;
    put("max_tokens", s.max_tokens.map(Value::from));
    put("temperature", s.temperature.map(Value::from));
    put("top_p", s.top_p.map(Value::from));
    put(
        "stop",
        (!s.stop.is_empty()).then(|| match s.stop.as_slice() {
            [one] => Value::String(one.clone()),
            many => json!(many),
        }),
    );
    put("user", request.metadata.end_user.clone().map(Value::String));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.schema});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                if t.strict {
                    f["strict"] = json!(true);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        put("tools", Some(Value::Array(tools)));
        put(
            "tool_choice",
            request.tool_choice.as_ref().map(|c| match c {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::Any => json!("required"),
                ToolChoice::None => json!("none"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            }),
        );
        put(
            "parallel_tool_calls",
            request.parallel_tool_calls.map(Value::from),
        );
    }
    put(
        "response_format",
        match &request.output {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(json!({"type": "json_object"})),
            OutputFormat::JsonSchema {
                name,
                description,
                schema,
            } => {
                let mut js = json!({"name": name.clone().unwrap_or_else(|| "response".into()), "schema": schema});
                if let Some(d) = description {
                    js["description"] = json!(d);
                }
                Some(json!({"type": "json_schema", "json_schema": js}))
            }
        },
    );
    put(
        "reasoning_effort",
        request
            .reasoning
            .as_ref()
            .and_then(|r| r.effort.clone())
            .map(Value::String),
    );
    map
}
