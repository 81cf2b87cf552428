//! Neutral request → Bedrock Converse request. `doc/providers.md` describes the mapping; the
//! golden tests in `tests/bedrock_mapping.rs` show it on representative requests.

use super::wire::{
    Blob, BytesSource, CachePoint, ContentBlock, ConverseBody, DocumentBlock, Empty, ImageBlock,
    InferenceConfig, JsonSchema, JsonSchemaDefinition, Message, NamedTool, OutputConfig,
    OutputFormat, OutputStructure, ReasoningBlock, ReasoningText, Role, SystemBlock, Tool,
    ToolChoice as BedrockToolChoice, ToolConfig, ToolResultBlock, ToolResultContent, ToolSpec,
    ToolUseBlock,
};
use crate::config::models::ReasoningStyle;
use crate::engine::ModelRuntime;
use crate::inference::{self as inf, Block, CacheTtl, ImageSource as Source, OutputFormat as Out};
use crate::providers::ProviderError;
use base64::Engine as _;

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

fn invalid(param: String, message: String) -> ProviderError {
    ProviderError::InvalidParam { param, message }
}

/// `v` with every object's keys sorted, as the answers' tool arguments have always come out
/// (the SDK's documents were hash maps, read back in sorted order).
pub fn sorted_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted_keys).collect())
        }
        serde_json::Value::Object(o) => {
            let mut entries: Vec<(String, serde_json::Value)> = o.into_iter().collect();
            entries.sort_by(|x, y| x.0.cmp(&y.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted_keys(v)))
                    .collect(),
            )
        }
        other => other,
    }
}

/// A supported image media type → its Bedrock format.
fn image_format(media: &str, param: &str) -> Result<&'static str, ProviderError> {
    Ok(match media.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(invalid(
                param.to_string(),
                format!(
                    "`{param}` has media type `{other}`; supported are image/png, image/jpeg, image/gif and image/webp"
                ),
            ));
        }
    })
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
    let format = image_format(media, param)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| {
            invalid(
                param.to_string(),
                format!("`{param}` does not hold valid base64 data"),
            )
        })?;
    Ok(ImageBlock {
        format,
        source: BytesSource { bytes: Blob(bytes) },
    })
}

fn cache_point(ttl: CacheTtl) -> CachePoint {
    CachePoint {
        kind: "default",
        ttl: match ttl {
            CacheTtl::Default => None,
            CacheTtl::OneHour => Some("1h"),
        },
    }
}

fn image(source: &Source, param: &str) -> Result<ImageBlock, ProviderError> {
    match source {
        Source::Url(url) => image_block(url, param),
        Source::Bytes { media_type, data } => Ok(ImageBlock {
            format: image_format(media_type, param)?,
            source: BytesSource {
                bytes: Blob(data.to_vec()),
            },
        }),
    }
}

fn document(format: inf::DocumentFormat, name: &str, data: &[u8]) -> DocumentBlock {
    use inf::DocumentFormat as F;
    let format = match format {
        F::Pdf => "pdf",
        F::Csv => "csv",
        F::Docx => "docx",
        F::Doc => "doc",
        F::Xlsx => "xlsx",
        F::Xls => "xls",
        F::Html => "html",
        F::Txt => "txt",
        F::Md => "md",
    };
    DocumentBlock {
        format,
        name: document_name(name),
        source: BytesSource {
            bytes: Blob(data.to_vec()),
        },
    }
}

/// Bedrock accepts document names of letters, digits, single spaces, hyphens, parentheses
/// and square brackets only.
fn document_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else {
            ' '
        };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    let out = out.trim_end().to_string();
    if out.is_empty() {
        "document".to_string()
    } else {
        out
    }
}

/// Tool result content: text, images, documents; an empty result becomes one text block
/// (Bedrock refuses empty tool results).
fn tool_result_content(content: &[Block]) -> Result<Vec<ToolResultContent>, ProviderError> {
    let mut out = Vec::with_capacity(content.len().max(1));
    for b in content {
        match b {
            Block::Text { text, .. } if !text.is_empty() => {
                out.push(ToolResultContent::Text(text.clone()));
            }
            Block::Image { source, param } => {
                out.push(ToolResultContent::Image(image(source, param)?));
            }
            Block::Document { format, name, data } => {
                out.push(ToolResultContent::Document(document(*format, name, data)));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(ToolResultContent::Text(EMPTY_TOOL_RESULT.into()));
    }
    Ok(out)
}

/// The text sent for a tool result with no content.
pub const EMPTY_TOOL_RESULT: &str = "(no output)";

/// How the request's reasoning settings reach the model.
struct Thinking {
    /// Claude's `thinking` with this budget.
    budget: Option<u32>,
    /// Reasoning blocks of earlier turns go back to the model.
    keep_history: bool,
}

/// Blocks of one message → Converse blocks.
fn blocks(
    content: &[Block],
    thinking: &Thinking,
    no_tools: bool,
) -> Result<Vec<ContentBlock>, ProviderError> {
    let mut out = Vec::with_capacity(content.len());
    for b in content {
        match b {
            Block::Text { text, cache } => {
                if !text.is_empty() {
                    out.push(ContentBlock::Text(text.clone()));
                }
                if let Some(ttl) = cache {
                    out.push(ContentBlock::CachePoint(cache_point(*ttl)));
                }
            }
            Block::Image { source, param } => out.push(ContentBlock::Image(image(source, param)?)),
            Block::Document { format, name, data } => {
                out.push(ContentBlock::Document(document(*format, name, data)));
            }
            Block::ToolUse { id, name, input } if no_tools => out.push(ContentBlock::Text(
                format!("[called tool `{name}` (id {id}) with {input}]"),
            )),
            Block::ToolUse { id, name, input } => out.push(ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            })),
            Block::ToolResult {
                id,
                content,
                is_error,
            } if no_tools => {
                let text: Vec<String> = content
                    .iter()
                    .filter_map(|c| match c {
                        Block::Text { text, .. } => Some(text.clone()),
                        _ => None,
                    })
                    .collect();
                let what = if *is_error { "error" } else { "result" };
                out.push(ContentBlock::Text(format!(
                    "[tool {what} for id {id}: {}]",
                    text.join("\n")
                )));
            }
            Block::ToolResult {
                id,
                content,
                is_error,
            } => out.push(ContentBlock::ToolResult(ToolResultBlock {
                tool_use_id: id.clone(),
                content: tool_result_content(content)?,
                status: is_error.then_some("error"),
            })),
            Block::Reasoning { text, signature } if thinking.keep_history => {
                out.push(ContentBlock::ReasoningContent(
                    ReasoningBlock::ReasoningText(ReasoningText {
                        text: text.clone(),
                        signature: signature.clone(),
                    }),
                ));
            }
            Block::RedactedReasoning { data } if thinking.keep_history => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|_| {
                        ProviderError::InvalidRequest(
                            "a redacted reasoning block does not hold valid base64 data".into(),
                        )
                    })?;
                out.push(ContentBlock::ReasoningContent(
                    ReasoningBlock::RedactedContent(Blob(bytes)),
                ));
            }
            Block::Reasoning { .. } | Block::RedactedReasoning { .. } => {}
        }
    }
    Ok(out)
}

/// Appends blocks to the conversation, merging with the previous message of the same role
/// (Converse wants user and assistant turns to alternate).
fn push(turns: &mut Vec<Turn>, role: Role, blocks: Vec<ContentBlock>) {
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

type Turn = (Role, Vec<ContentBlock>);

/// The thinking budget the request asks for on a budget-style model (Claude), if any.
fn requested_budget(request: &inf::Request) -> Option<u32> {
    let r = request.reasoning.as_ref()?;
    if let Some(b) = r.budget {
        return Some(b);
    }
    match r.effort.as_deref() {
        Some(e) => thinking_budget(e),
        // Adaptive thinking without an effort: the medium budget.
        None if r.adaptive => thinking_budget("medium"),
        None => None,
    }
}

/// True when every assistant turn that calls tools starts with signed (or redacted)
/// reasoning, as Claude requires while thinking is on.
fn reasoning_history_complete(request: &inf::Request) -> bool {
    request
        .messages
        .iter()
        .filter(|m| m.role == inf::Role::Assistant)
        .filter(|m| m.content.iter().any(|b| matches!(b, Block::ToolUse { .. })))
        .all(|m| {
            matches!(
                m.content.first(),
                Some(Block::Reasoning {
                    signature: Some(_),
                    ..
                }) | Some(Block::RedactedReasoning { .. })
            )
        })
}

/// Maps a neutral request for `model` onto Converse.
pub fn to_converse(
    request: &inf::Request,
    model: &ModelRuntime,
) -> Result<ConverseBody, ProviderError> {
    let mut parts = ConverseBody::default();
    let style = model.capabilities.reasoning;

    // Reasoning first: it decides the output limit, whether sampling parameters apply and
    // whether earlier reasoning goes back to the model.
    let mut budget = requested_budget(request).filter(|_| style == ReasoningStyle::Budget);
    if budget.is_some() && !reasoning_history_complete(request) {
        tracing::info!(model = %model.alias, "thinking turned off for this request: an earlier tool call came without its signed reasoning");
        budget = None;
    }
    let thinking = Thinking {
        budget,
        keep_history: budget.is_some(),
    };
    let no_tools = matches!(request.tool_choice, Some(inf::ToolChoice::None));

    for s in &request.system {
        if !s.text.is_empty() {
            parts.system.push(SystemBlock::Text(s.text.clone()));
        }
        if let Some(ttl) = s.cache {
            parts.system.push(SystemBlock::CachePoint(cache_point(ttl)));
        }
    }
    let mut turns: Vec<Turn> = Vec::new();
    for m in &request.messages {
        let role = match m.role {
            inf::Role::User => Role::User,
            inf::Role::Assistant => Role::Assistant,
        };
        push(&mut turns, role, blocks(&m.content, &thinking, no_tools)?);
    }
    parts.messages = turns
        .into_iter()
        .map(|(role, content)| Message { role, content })
        .collect();
    if parts.messages.is_empty() {
        return Err(invalid(
            "messages".into(),
            "`messages` holds no user or assistant content for the model to answer".into(),
        ));
    }

    let s = &request.sampling;
    let mut additional = serde_json::Map::new();
    let mut max_tokens = s.max_tokens;
    let mut sampling = true;
    if let Some(budget) = thinking.budget {
        let limit = max_tokens
            .unwrap_or(budget.saturating_add(ANSWER_TOKENS_AFTER_THINKING))
            .min(model.max_output_tokens.unwrap_or(u32::MAX));
        if limit <= 1024 {
            let param = s.max_tokens_param;
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
    } else if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_ref())
        && style == ReasoningStyle::Effort
        && effort != "none"
    {
        let effort = match effort.as_str() {
            "minimal" => "low",
            "max" => "high",
            e => e,
        };
        additional.insert("reasoning_effort".into(), serde_json::json!(effort));
    }
    // `top_k` is Claude's (the budget-style reasoners on Bedrock); others take none.
    if let Some(k) = s.top_k
        && style == ReasoningStyle::Budget
        && sampling
    {
        additional.insert("top_k".into(), serde_json::json!(k));
    }
    let betas: Vec<&String> = request
        .betas
        .iter()
        .filter(|b| model.betas.contains(b))
        .collect();
    if !betas.is_empty() {
        additional.insert("anthropic_beta".into(), serde_json::json!(betas));
    }
    if !additional.is_empty() {
        parts.additional_model_request_fields = Some(serde_json::Value::Object(additional));
    }

    let temperature = s.temperature.filter(|_| sampling);
    let top_p = s.top_p.filter(|_| sampling);
    if max_tokens.is_some() || temperature.is_some() || top_p.is_some() || !s.stop.is_empty() {
        parts.inference_config = Some(InferenceConfig {
            max_tokens: max_tokens.map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
            // The API takes `f32`s; the SDK wrote their `f64` values.
            temperature: temperature.map(|t| f64::from(t as f32)),
            top_p: top_p.map(|t| f64::from(t as f32)),
            stop_sequences: (!s.stop.is_empty()).then(|| s.stop.clone()),
        });
    }

    parts.tool_config = tool_config(request, no_tools);

    match &request.output {
        Out::JsonObject => {
            parts
                .system
                .push(SystemBlock::Text(JSON_OBJECT_INSTRUCTION.into()));
        }
        Out::JsonSchema { schema, .. } if !model.capabilities.structured_output => {
            parts.system.push(SystemBlock::Text(format!(
                "{JSON_OBJECT_INSTRUCTION} The object must be valid against this JSON schema: {schema}"
            )));
        }
        Out::JsonSchema {
            name,
            description,
            schema,
        } => {
            parts.output_config = Some(OutputConfig {
                text_format: OutputFormat {
                    kind: "json_schema",
                    structure: OutputStructure {
                        json_schema: JsonSchemaDefinition {
                            schema: if schema.is_null() {
                                String::new()
                            } else {
                                schema.to_string()
                            },
                            name: name.clone(),
                            description: description.clone(),
                        },
                    },
                },
            });
        }
        Out::Text => {}
    }
    cache_points(&mut parts, model);
    Ok(parts)
}

/// Bedrock's limit of cache points in one request.
const MAX_CACHE_POINTS: usize = 4;

/// Cache points as the model allows: none for models without prompt caching; the alias's
/// `cache` settings after the system prompt and the tools when the request put none there;
/// at most [`MAX_CACHE_POINTS`], the earliest ones in messages dropped first.
fn cache_points(parts: &mut ConverseBody, model: &ModelRuntime) {
    let is_point = |b: &ContentBlock| matches!(b, ContentBlock::CachePoint(_));
    if !model.capabilities.prompt_caching {
        parts
            .system
            .retain(|b| !matches!(b, SystemBlock::CachePoint(_)));
        for m in &mut parts.messages {
            m.content.retain(|b| !is_point(b));
        }
        if let Some(tc) = parts.tool_config.as_mut() {
            tc.tools.retain(|t| !matches!(t, Tool::CachePoint(_)));
        }
        return;
    }
    let system_cached = parts
        .system
        .iter()
        .any(|b| matches!(b, SystemBlock::CachePoint(_)));
    if model.cache.system && !system_cached && !parts.system.is_empty() {
        parts
            .system
            .push(SystemBlock::CachePoint(cache_point(CacheTtl::Default)));
    }
    if let Some(tc) = parts.tool_config.as_mut()
        && model.cache.tools
        && !tc.tools.iter().any(|t| matches!(t, Tool::CachePoint(_)))
    {
        tc.tools
            .push(Tool::CachePoint(cache_point(CacheTtl::Default)));
    }
    let fixed = parts
        .system
        .iter()
        .filter(|b| matches!(b, SystemBlock::CachePoint(_)))
        .count()
        + parts.tool_config.as_ref().map_or(0, |tc| {
            tc.tools
                .iter()
                .filter(|t| matches!(t, Tool::CachePoint(_)))
                .count()
        });
    let in_messages: usize = parts
        .messages
        .iter()
        .map(|m| m.content.iter().filter(|b| is_point(b)).count())
        .sum();
    let mut excess = (fixed + in_messages).saturating_sub(MAX_CACHE_POINTS);
    if excess > 0 {
        tracing::info!(model = %model.alias, dropped = excess, "more cache points than Bedrock allows; dropping the earliest");
    }
    for m in &mut parts.messages {
        m.content.retain(|b| {
            if excess > 0 && is_point(b) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// `tools` and `tool_choice` → tool configuration. Bedrock requires the definitions whenever
/// the conversation holds tool calls, so a tool called earlier but no longer defined gets a
/// minimal definition. With `tool_choice: none` the tools are left out and the tool history
/// is sent as text, so the model cannot call a tool.
fn tool_config(request: &inf::Request, no_tools: bool) -> Option<ToolConfig> {
    let mut used: Vec<&str> = Vec::new();
    for m in &request.messages {
        for b in &m.content {
            if let Block::ToolUse { name, .. } = b {
                used.push(name);
            }
        }
    }
    let defined = &request.tools;
    if no_tools || (defined.is_empty() && used.is_empty()) {
        return None;
    }
    let mut tools = Vec::with_capacity(defined.len() + 1);
    for t in defined {
        tools.push(Tool::ToolSpec(ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema: JsonSchema {
                json: t.schema.clone(),
            },
            strict: t.strict.then_some(true),
        }));
        if let Some(ttl) = t.cache {
            tools.push(Tool::CachePoint(cache_point(ttl)));
        }
    }
    let mut extra: Vec<&str> = used
        .into_iter()
        .filter(|n| !defined.iter().any(|t| t.name == *n))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    for name in extra {
        tools.push(Tool::ToolSpec(ToolSpec {
            name: name.to_string(),
            description: None,
            input_schema: JsonSchema {
                json: serde_json::json!({"type": "object", "properties": {}}),
            },
            strict: None,
        }));
    }
    let tool_choice = match &request.tool_choice {
        Some(inf::ToolChoice::Any) => Some(BedrockToolChoice::Any(Empty {})),
        Some(inf::ToolChoice::Auto) => Some(BedrockToolChoice::Auto(Empty {})),
        Some(inf::ToolChoice::Tool(name)) => {
            Some(BedrockToolChoice::Tool(NamedTool { name: name.clone() }))
        }
        _ => None,
    };
    Some(ToolConfig { tools, tool_choice })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_at_every_level() {
        let v = serde_json::json!({"b": [{"z": 1, "a": 2}], "a": {"y": null, "c": 2.5}});
        assert_eq!(
            sorted_keys(v).to_string(),
            r#"{"a":{"c":2.5,"y":null},"b":[{"a":2,"z":1}]}"#
        );
    }

    #[test]
    fn images() {
        let ok = image_block("data:image/png;base64,iVBORw0KGgo=", "p").unwrap();
        assert_eq!(ok.format, "png");
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
