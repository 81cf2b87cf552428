//! OpenAI chat request → the neutral inference request.

use super::types::{ChatRequest, Content, Role, Stop, ThinkingBlock, ToolChoice};
use crate::errors::ApiError;
use crate::inference::{
    self as inf, Block, ImageSource, Message, OutputFormat, Reasoning, Request, Sampling,
    SystemBlock, ToolDef,
};

fn bad(param: String, message: String) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_param(param)
}

/// Text and image parts of a message, in order; empty texts are kept (providers drop them).
fn content_blocks(i: usize, content: &Content) -> Vec<Block> {
    match content {
        Content::Text(t) => vec![Block::text(t.clone())],
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match (p.kind.as_str(), &p.text, &p.image_url) {
                ("text", Some(t), _) => Some(Block::text(t.clone())),
                ("image_url", _, Some(img)) => Some(Block::Image {
                    source: ImageSource::Url(img.url.clone()),
                    param: format!("messages[{i}].content[{j}].image_url.url"),
                }),
                _ => None,
            })
            .collect(),
    }
}

/// The text of a message that takes only text parts (system, developer, assistant, tool).
fn text_only(i: usize, role: &str, content: Option<&Content>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            if let Some(j) = parts.iter().position(|p| p.kind != "text") {
                let param = format!("messages[{i}].content[{j}]");
                return Err(bad(
                    param.clone(),
                    format!("`{param}`: {role} messages take only text parts"),
                ));
            }
            Ok(parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

impl ChatRequest {
    /// The request in the neutral vocabulary. Messages map one to one (a tool message is a
    /// user message holding its result); system and developer messages become system blocks.
    pub fn to_core(&self) -> Result<Request, ApiError> {
        let mut out = Request {
            stream: self.is_stream(),
            raw_openai: self.raw.as_ref().map(|r| inf::RawBody(r.0.clone())),
            ..Request::default()
        };
        for (i, m) in self.messages.iter().enumerate() {
            match m.role {
                Role::System | Role::Developer => {
                    let role = if m.role == Role::System {
                        "system"
                    } else {
                        "developer"
                    };
                    out.system.push(SystemBlock {
                        text: text_only(i, role, m.content.as_ref())?,
                        cache: None,
                    });
                }
                Role::User => out.messages.push(Message {
                    role: inf::Role::User,
                    content: m
                        .content
                        .as_ref()
                        .map(|c| content_blocks(i, c))
                        .unwrap_or_default(),
                }),
                Role::Assistant => {
                    let mut content = Vec::new();
                    for b in m.thinking_blocks.iter().flatten() {
                        content.push(match b {
                            ThinkingBlock::Thinking {
                                thinking,
                                signature,
                            } => Block::Reasoning {
                                text: thinking.clone(),
                                signature: signature.clone(),
                            },
                            ThinkingBlock::RedactedThinking { data } => {
                                Block::RedactedReasoning { data: data.clone() }
                            }
                        });
                    }
                    let text = text_only(i, "assistant", m.content.as_ref())?;
                    content.push(Block::text(text));
                    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                        let args = call.function.arguments.trim();
                        let input = if args.is_empty() {
                            serde_json::json!({})
                        } else {
                            serde_json::from_str(args).map_err(|_| {
                                let param =
                                    format!("messages[{i}].tool_calls[{j}].function.arguments");
                                bad(param.clone(), format!("`{param}` is not valid JSON"))
                            })?
                        };
                        content.push(Block::ToolUse {
                            id: call.id.clone(),
                            name: call.function.name.clone(),
                            input,
                        });
                    }
                    out.messages.push(Message {
                        role: inf::Role::Assistant,
                        content,
                    });
                }
                Role::Tool => {
                    let text = text_only(i, "tool", m.content.as_ref())?;
                    out.messages.push(Message {
                        role: inf::Role::User,
                        content: vec![Block::ToolResult {
                            id: m.tool_call_id.clone().unwrap_or_default(),
                            content: vec![Block::text(text)],
                            is_error: false,
                        }],
                    });
                }
            }
        }
        out.tools = self
            .tools
            .iter()
            .flatten()
            .map(|t| ToolDef {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                schema: t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                strict: t.function.strict.unwrap_or(false),
                cache: None,
            })
            .collect();
        out.tool_choice = match &self.tool_choice {
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "required" => Some(inf::ToolChoice::Any),
                "auto" => Some(inf::ToolChoice::Auto),
                "none" => Some(inf::ToolChoice::None),
                _ => None,
            },
            Some(ToolChoice::Named(n)) => Some(inf::ToolChoice::Tool(n.function.name.clone())),
            None => None,
        };
        out.parallel_tool_calls = self.parallel_tool_calls;
        out.output = match &self.response_format {
            Some(f) if f.kind == "json_object" => OutputFormat::JsonObject,
            Some(f) if f.kind == "json_schema" => {
                let js = f.json_schema.as_ref();
                OutputFormat::JsonSchema {
                    name: js.and_then(|s| s.name.clone()),
                    description: js.and_then(|s| s.description.clone()),
                    schema: js
                        .and_then(|s| s.schema.clone())
                        .unwrap_or(serde_json::Value::Null),
                }
            }
            _ => OutputFormat::Text,
        };
        out.reasoning = match &self.thinking {
            Some(t) if t.kind == "enabled" => Some(Reasoning {
                budget: t.budget_tokens,
                param: "thinking.budget_tokens",
                ..Reasoning::default()
            }),
            Some(_) => None,
            None => self.reasoning_effort.as_ref().map(|e| Reasoning {
                effort: Some(e.clone()),
                param: "reasoning_effort",
                ..Reasoning::default()
            }),
        };
        out.sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            stop: match &self.stop {
                None => Vec::new(),
                Some(Stop::One(s)) => vec![s.clone()],
                Some(Stop::Many(v)) => v.clone(),
            },
            max_tokens: self.output_limit(),
            max_tokens_param: if self.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            },
        };
        out.metadata.end_user = self.user.clone();
        Ok(out)
    }
}
