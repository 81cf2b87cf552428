//! OpenAI chat request → Bedrock Converse request. `doc/providers.md` describes the mapping;
//! the golden tests in `tests/bedrock_mapping.rs` show it on representative requests.

use crate::engine::ModelRuntime;
use crate::handlers::openai::types::{ChatRequest, Content, Role, Stop, ToolChoice};
use crate::providers::ProviderError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, ImageBlock, ImageFormat,
    ImageSource, InferenceConfiguration, JsonSchemaDefinition, Message, OutputConfig, OutputFormat,
    OutputFormatStructure, OutputFormatType, SpecificToolChoice, SystemContentBlock, Tool,
    ToolChoice as BedrockToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use base64::Engine as _;
use std::collections::HashMap;

/// The system instruction added for `response_format: {"type":"json_object"}`.
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with one valid JSON object and nothing else: no prose and no code fences.";

/// Thinking budget of each `reasoning_effort`, for models with a token budget (Claude).
pub fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" => Some(1024),
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(16384),
        _ => None,
    }
}

/// Output tokens left for the answer when a request sets no limit and thinking is on.
const ANSWER_TOKENS_AFTER_THINKING: u32 = 4096;

/// Everything a Converse or ConverseStream call takes besides the model id.
#[derive(Debug, Clone, Default)]
pub struct ConverseParts {
    /// System prompt blocks.
    pub system: Vec<SystemContentBlock>,
    /// Conversation, strictly alternating user and assistant.
    pub messages: Vec<Message>,
    /// Sampling and limits.
    pub inference: Option<InferenceConfiguration>,
    /// Tools.
    pub tool_config: Option<ToolConfiguration>,
    /// Model-specific fields (Claude `thinking`, gpt-oss `reasoning_effort`).
    pub additional_fields: Option<Document>,
    /// Structured output.
    pub output_config: Option<OutputConfig>,
}

fn invalid(param: String, message: String) -> ProviderError {
    ProviderError::InvalidParam { param, message }
}

/// `serde_json::Value` → Smithy document.
pub fn to_document(v: &serde_json::Value) -> Document {
    match v {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(Number::NegInt(i))
            } else {
                Document::Number(Number::Float(n.as_f64().unwrap_or_default()))
            }
        }
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        serde_json::Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Smithy document → `serde_json::Value`, object keys sorted.
pub fn from_document(d: &Document) -> serde_json::Value {
    match d {
        Document::Null => serde_json::Value::Null,
        Document::Bool(b) => serde_json::Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => serde_json::Value::from(*u),
        Document::Number(Number::NegInt(i)) => serde_json::Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Document::String(s) => serde_json::Value::String(s.clone()),
        Document::Array(a) => serde_json::Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => {
            // Documents are hash maps; sorted keys make the output deterministic.
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), from_document(&o[k])))
                    .collect(),
            )
        }
    }
}

/// A `data:` URL → image block; anything else is refused (with `image_fetch` on, the provider
/// has already replaced `http(s)` URLs by `data:` URLs of the fetched images).
fn image_block(url: &str, param: &str) -> Result<ImageBlock, ProviderError> {
    let Some(rest) = url.strip_prefix("data:") else {
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(invalid(
            param.to_string(),
            format!(
                "`{param}` is a `{scheme}:` URL; this gateway does not fetch images (`image_fetch` is off), send them inline as `data:image/<type>;base64,...` URLs"
            ),
        ));
    };
    let (meta, data) = rest.split_once(',').ok_or_else(|| {
        invalid(
            param.to_string(),
            format!("`{param}` is not a valid data URL"),
        )
    })?;
    let Some(media) = meta.strip_suffix(";base64") else {
        return Err(invalid(
            param.to_string(),
            format!("`{param}` must be a base64 data URL (`data:image/png;base64,...`)"),
        ));
    };
    let format = match media.to_ascii_lowercase().as_str() {
        "image/png" => ImageFormat::Png,
        "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::Webp,
        other => {
            return Err(invalid(
                param.to_string(),
                format!(
                    "`{param}` has media type `{other}`; supported are image/png, image/jpeg, image/gif and image/webp"
                ),
            ));
        }
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| {
            invalid(
                param.to_string(),
                format!("`{param}` does not hold valid base64 data"),
            )
        })?;
    ImageBlock::builder()
        .format(format)
        .source(ImageSource::Bytes(Blob::new(bytes)))
        .build()
        .map_err(|e| invalid(param.to_string(), e.to_string()))
}

/// Content of a user message → blocks (empty text is left out: Bedrock refuses blank text).
fn user_blocks(i: usize, content: &Content) -> Result<Vec<ContentBlock>, ProviderError> {
    match content {
        Content::Text(t) if t.is_empty() => Ok(Vec::new()),
        Content::Text(t) => Ok(vec![ContentBlock::Text(t.clone())]),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match (&p.text, &p.image_url) {
                    (Some(t), _) if p.kind == "text" && !t.is_empty() => {
                        out.push(ContentBlock::Text(t.clone()));
                    }
                    (_, Some(img)) if p.kind == "image_url" => {
                        let param = format!("messages[{i}].content[{j}].image_url.url");
                        out.push(ContentBlock::Image(image_block(&img.url, &param)?));
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
    }
}

fn text_only(i: usize, role: &str, content: Option<&Content>) -> Result<String, ProviderError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            if let Some(j) = parts.iter().position(|p| p.kind != "text") {
                return Err(invalid(
                    format!("messages[{i}].content[{j}]"),
                    format!("`messages[{i}].content[{j}]`: {role} messages take only text parts"),
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

/// Appends blocks to the conversation, merging with the previous message of the same role
/// (Converse wants user and assistant turns to alternate; OpenAI sends one tool message per
/// result).
fn push(turns: &mut Vec<Turn>, role: ConversationRole, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut()
        && last.0 == role
    {
        last.1.extend(blocks);
        return;
    }
    turns.push((role, blocks));
}

type Turn = (ConversationRole, Vec<ContentBlock>);

fn build_error(e: impl std::fmt::Display) -> ProviderError {
    tracing::error!(error = %e, "a Converse request part could not be built");
    ProviderError::InvalidRequest(format!("the request could not be mapped for Bedrock: {e}"))
}

/// Maps a chat request for `model` onto Converse.
pub fn to_converse(
    request: &ChatRequest,
    model: &ModelRuntime,
) -> Result<ConverseParts, ProviderError> {
    let mut parts = ConverseParts::default();
    let mut turns: Vec<Turn> = Vec::new();
    let mut used_tools: Vec<String> = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                let role = if m.role == Role::System {
                    "system"
                } else {
                    "developer"
                };
                let text = text_only(i, role, m.content.as_ref())?;
                if !text.is_empty() {
                    parts.system.push(SystemContentBlock::Text(text));
                }
            }
            Role::User => {
                let blocks = match &m.content {
                    Some(c) => user_blocks(i, c)?,
                    None => Vec::new(),
                };
                push(&mut turns, ConversationRole::User, blocks);
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                let text = text_only(i, "assistant", m.content.as_ref())?;
                if !text.is_empty() {
                    blocks.push(ContentBlock::Text(text));
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let args = call.function.arguments.trim();
                    let input: serde_json::Value = if args.is_empty() {
                        serde_json::json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            invalid(
                                format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                format!(
                                    "`messages[{i}].tool_calls[{j}].function.arguments` is not valid JSON"
                                ),
                            )
                        })?
                    };
                    used_tools.push(call.function.name.clone());
                    blocks.push(ContentBlock::ToolUse(
                        ToolUseBlock::builder()
                            .tool_use_id(&call.id)
                            .name(&call.function.name)
                            .input(to_document(&input))
                            .build()
                            .map_err(build_error)?,
                    ));
                }
                push(&mut turns, ConversationRole::Assistant, blocks);
            }
            Role::Tool => {
                let text = text_only(i, "tool", m.content.as_ref())?;
                let result = ToolResultBlock::builder()
                    .tool_use_id(m.tool_call_id.clone().unwrap_or_default())
                    .set_content(Some(if text.is_empty() {
                        Vec::new()
                    } else {
                        vec![ToolResultContentBlock::Text(text)]
                    }))
                    .build()
                    .map_err(build_error)?;
                push(
                    &mut turns,
                    ConversationRole::User,
                    vec![ContentBlock::ToolResult(result)],
                );
            }
        }
    }
    for (role, blocks) in turns {
        parts.messages.push(
            Message::builder()
                .role(role)
                .set_content(Some(blocks))
                .build()
                .map_err(build_error)?,
        );
    }
    if parts.messages.is_empty() {
        return Err(invalid(
            "messages".into(),
            "`messages` holds no user or assistant content for the model to answer".into(),
        ));
    }

    // Reasoning first: it decides the output limit and whether sampling parameters apply.
    let budget = match &request.thinking {
        Some(t) if t.kind == "enabled" => t.budget_tokens,
        Some(_) => None,
        None => request
            .reasoning_effort
            .as_deref()
            .and_then(thinking_budget),
    };
    let upstream = model.upstream.as_str();
    let claude = upstream.contains("anthropic.");
    let mut additional = serde_json::Map::new();
    let mut max_tokens = request.output_limit();
    let mut sampling = true;
    if let (Some(budget), true) = (budget, claude) {
        let limit = max_tokens
            .unwrap_or(budget.saturating_add(ANSWER_TOKENS_AFTER_THINKING))
            .min(model.max_output_tokens.unwrap_or(u32::MAX));
        if limit <= 1024 {
            let param = if request.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            return Err(invalid(
                param.into(),
                format!("`{param}` must be above 1024 when reasoning is enabled"),
            ));
        }
        max_tokens = Some(limit);
        additional.insert(
            "thinking".into(),
            serde_json::json!({"type": "enabled", "budget_tokens": budget.min(limit - 1)}),
        );
        // Claude refuses temperature and top_p changes while thinking.
        sampling = false;
    } else if let Some(effort) = &request.reasoning_effort
        && upstream.contains("openai.gpt-oss")
        && effort != "none"
    {
        let effort = if effort == "minimal" { "low" } else { effort };
        additional.insert("reasoning_effort".into(), serde_json::json!(effort));
    }
    if !additional.is_empty() {
        parts.additional_fields = Some(to_document(&serde_json::Value::Object(additional)));
    }

    let stop: Vec<String> = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    let temperature = request.temperature.filter(|_| sampling);
    let top_p = request.top_p.filter(|_| sampling);
    if max_tokens.is_some() || temperature.is_some() || top_p.is_some() || !stop.is_empty() {
        parts.inference = Some(
            InferenceConfiguration::builder()
                .set_max_tokens(max_tokens.map(|t| i32::try_from(t).unwrap_or(i32::MAX)))
                .set_temperature(temperature.map(|t| t as f32))
                .set_top_p(top_p.map(|t| t as f32))
                .set_stop_sequences((!stop.is_empty()).then_some(stop))
                .build(),
        );
    }

    parts.tool_config = tool_config(request, &used_tools)?;

    match request.response_format.as_ref() {
        Some(f) if f.kind == "json_object" => {
            parts
                .system
                .push(SystemContentBlock::Text(JSON_OBJECT_INSTRUCTION.into()));
        }
        Some(f) if f.kind == "json_schema" => {
            let js = f.json_schema.as_ref();
            let schema = js
                .and_then(|s| s.schema.as_ref())
                .map(serde_json::Value::to_string)
                .unwrap_or_default();
            let def = JsonSchemaDefinition::builder()
                .schema(schema)
                .set_name(js.and_then(|s| s.name.clone()))
                .set_description(js.and_then(|s| s.description.clone()))
                .build()
                .map_err(build_error)?;
            parts.output_config = Some(
                OutputConfig::builder()
                    .text_format(
                        OutputFormat::builder()
                            .r#type(OutputFormatType::JsonSchema)
                            .structure(OutputFormatStructure::JsonSchema(def))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build(),
            );
        }
        _ => {}
    }
    Ok(parts)
}

/// `tools` and `tool_choice` → tool configuration. Bedrock requires the definitions whenever
/// the conversation holds tool calls, so `tool_choice: none` leaves the tools out only when
/// it does not, and a tool called earlier but no longer defined gets a minimal definition.
fn tool_config(
    request: &ChatRequest,
    used: &[String],
) -> Result<Option<ToolConfiguration>, ProviderError> {
    let defined = request.tools.as_deref().unwrap_or_default();
    let none = matches!(&request.tool_choice, Some(ToolChoice::Mode(m)) if m == "none");
    if (defined.is_empty() || none) && used.is_empty() {
        return Ok(None);
    }
    let mut tools = Vec::with_capacity(defined.len());
    for t in defined {
        let schema = t
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        tools.push(Tool::ToolSpec(
            ToolSpecification::builder()
                .name(&t.function.name)
                .set_description(t.function.description.clone())
                .input_schema(ToolInputSchema::Json(to_document(&schema)))
                .build()
                .map_err(build_error)?,
        ));
    }
    let mut extra: Vec<&String> = used
        .iter()
        .filter(|n| !defined.iter().any(|t| &t.function.name == *n))
        .collect();
    extra.sort();
    extra.dedup();
    for name in extra {
        tools.push(Tool::ToolSpec(
            ToolSpecification::builder()
                .name(name)
                .input_schema(ToolInputSchema::Json(to_document(
                    &serde_json::json!({"type": "object", "properties": {}}),
                )))
                .build()
                .map_err(build_error)?,
        ));
    }
    let choice = match &request.tool_choice {
        Some(ToolChoice::Mode(m)) if m == "required" => {
            Some(BedrockToolChoice::Any(AnyToolChoice::builder().build()))
        }
        Some(ToolChoice::Mode(m)) if m == "auto" => {
            Some(BedrockToolChoice::Auto(AutoToolChoice::builder().build()))
        }
        Some(ToolChoice::Named(n)) => Some(BedrockToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(&n.function.name)
                .build()
                .map_err(build_error)?,
        )),
        _ => None,
    };
    ToolConfiguration::builder()
        .set_tools(Some(tools))
        .set_tool_choice(choice)
        .build()
        .map(Some)
        .map_err(build_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let v = serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}});
        assert_eq!(from_document(&to_document(&v)), v);
    }

    #[test]
    fn images() {
        let ok = image_block("data:image/png;base64,iVBORw0KGgo=", "p").unwrap();
        assert_eq!(ok.format, ImageFormat::Png);
        for bad in [
            "https://example.com/cat.png",
            "data:image/png,abc",
            "data:image/tiff;base64,AAAA",
            "data:image/png;base64,***",
            "data:nocomma",
        ] {
            assert!(image_block(bad, "p").is_err(), "{bad}");
        }
    }
}
