//! Anthropic Messages request shapes and their conversion into the neutral request. Client
//! bodies are lenient: unknown fields are ignored (`context_management` among them), known
//! ones are type-checked with the offending parameter named in the error.

use crate::errors::ApiError;
use crate::inference::{
    self as inf, Block, CacheTtl, DocumentFormat, ImageSource, Message, Reasoning, Request,
    Sampling, SystemBlock, ToolDef,
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// `POST /v1/messages` body.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    /// Model alias (or one of its `names`).
    pub model: String,
    /// Output limit (required by `/v1/messages`, not by `count_tokens`).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Conversation.
    pub messages: Vec<InMessage>,
    /// System prompt: a string or text blocks.
    #[serde(default)]
    pub system: Option<TextOrBlocks>,
    /// Stream the answer.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Tools.
    #[serde(default)]
    pub tools: Option<Vec<InTool>>,
    /// Tool choice.
    #[serde(default)]
    pub tool_choice: Option<InToolChoice>,
    /// Extended thinking.
    #[serde(default)]
    pub thinking: Option<InThinking>,
    /// `{"effort": ...}` and structured output.
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// `{"user_id": ...}`.
    #[serde(default)]
    pub metadata: Option<InMetadata>,
}

/// A string or a list of content blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TextOrBlocks {
    /// Plain text.
    Text(String),
    /// Blocks.
    Blocks(Vec<InBlock>),
}

/// One message. Role `system` in the middle of a conversation is accepted (Claude Code
/// sends it) and becomes user content at its place.
#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Content.
    pub content: TextOrBlocks,
}

/// `cache_control`.
#[derive(Debug, Clone, Deserialize)]
pub struct CacheControl {
    /// `ephemeral`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `5m` or `1h`.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// An image or document source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InSource {
    /// Inline base64 data.
    Base64 {
        /// Media type.
        media_type: String,
        /// Data.
        data: String,
    },
    /// Plain text (documents).
    Text {
        /// Media type (`text/plain`).
        #[serde(default)]
        media_type: Option<String>,
        /// The text.
        data: String,
    },
    /// A URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// A content block.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Cache point after it.
        #[serde(default)]
        cache_control: Option<CacheControl>,
    },
    /// An image.
    Image {
        /// Its source.
        source: InSource,
        /// Cache point after it.
        #[serde(default)]
        cache_control: Option<CacheControl>,
    },
    /// A document.
    Document {
        /// Its source.
        source: InSource,
        /// Title.
        #[serde(default)]
        title: Option<String>,
        /// Cache point after it.
        #[serde(default)]
        cache_control: Option<CacheControl>,
    },
    /// A tool call of the assistant.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        #[serde(default)]
        input: Value,
        /// Cache point after it.
        #[serde(default)]
        cache_control: Option<CacheControl>,
    },
    /// A tool result.
    ToolResult {
        /// The call answered.
        tool_use_id: String,
        /// Text or blocks.
        #[serde(default)]
        content: Option<TextOrBlocks>,
        /// The tool failed.
        #[serde(default)]
        is_error: Option<bool>,
        /// Cache point after it.
        #[serde(default)]
        cache_control: Option<CacheControl>,
    },
    /// Signed reasoning.
    Thinking {
        /// Reasoning text.
        #[serde(default)]
        thinking: String,
        /// Signature.
        #[serde(default)]
        signature: Option<String>,
    },
    /// Encrypted reasoning.
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
}

/// A tool definition.
#[derive(Debug, Clone, Deserialize)]
pub struct InTool {
    /// Server tools have a versioned type (`web_search_20250305`); custom tools none or
    /// `custom`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON schema of the input.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Strict input.
    #[serde(default)]
    pub strict: Option<bool>,
    /// Cache point after it.
    #[serde(default)]
    pub cache_control: Option<CacheControl>,
}

/// `tool_choice`.
#[derive(Debug, Clone, Deserialize)]
pub struct InToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `tool`.
    #[serde(default)]
    pub name: Option<String>,
    /// One tool call at most.
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`.
#[derive(Debug, Clone, Deserialize)]
pub struct InThinking {
    /// `enabled`, `adaptive` or `disabled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `enabled`.
    #[serde(default)]
    pub budget_tokens: Option<u32>,
}

/// `output_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputConfig {
    /// `low`, `medium`, `high`, `max`.
    #[serde(default)]
    pub effort: Option<String>,
    /// `{"type":"json_schema","schema":{..}}`.
    #[serde(default)]
    pub format: Option<OutputFormatIn>,
}

/// `output_config.format`.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputFormatIn {
    /// `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema.
    #[serde(default)]
    pub schema: Option<Value>,
}

/// `metadata`.
#[derive(Debug, Clone, Deserialize)]
pub struct InMetadata {
    /// The end user.
    #[serde(default)]
    pub user_id: Option<String>,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_param(param)
}

fn ttl(c: &Option<CacheControl>) -> Option<CacheTtl> {
    c.as_ref().map(|c| match c.ttl.as_deref() {
        Some("1h") => CacheTtl::OneHour,
        _ => CacheTtl::Default,
    })
}

fn decode(data: &str, param: &str) -> Result<bytes::Bytes, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(bytes::Bytes::from)
        .map_err(|_| bad(param, format!("`{param}` is not valid base64")))
}

/// Appends the neutral form of `block` to `out` (a cache point is kept on text blocks; on
/// other blocks it becomes an empty cached text block right after them).
fn convert(block: &InBlock, param: &str, out: &mut Vec<Block>) -> Result<(), ApiError> {
    let cache = match block {
        InBlock::Text {
            text,
            cache_control,
        } => {
            out.push(Block::Text {
                text: text.clone(),
                cache: ttl(cache_control),
            });
            return Ok(());
        }
        InBlock::Image {
            source,
            cache_control,
        } => {
            let sp = format!("{param}.source");
            let source = match source {
                InSource::Base64 { media_type, data } => ImageSource::Bytes {
                    media_type: media_type.clone(),
                    data: decode(data, &format!("{sp}.data"))?,
                },
                InSource::Url { url } => ImageSource::Url(url.clone()),
                InSource::Text { .. } => {
                    return Err(bad(
                        &sp,
                        format!("`{sp}`: images take a base64 or url source"),
                    ));
                }
            };
            out.push(Block::Image { source, param: sp });
            cache_control
        }
        InBlock::Document {
            source,
            title,
            cache_control,
        } => {
            let sp = format!("{param}.source");
            let (media, data) = match source {
                InSource::Base64 { media_type, data } => {
                    (media_type.as_str(), decode(data, &format!("{sp}.data"))?)
                }
                InSource::Text { media_type, data } => (
                    media_type.as_deref().unwrap_or("text/plain"),
                    bytes::Bytes::from(data.clone().into_bytes()),
                ),
                InSource::Url { .. } => {
                    return Err(bad(
                        &sp,
                        format!(
                            "`{sp}`: this gateway does not fetch documents; send them inline (base64)"
                        ),
                    ));
                }
            };
            let format = DocumentFormat::from_media_type(media).ok_or_else(|| {
                bad(
                    format!("{sp}.media_type"),
                    format!("`{sp}.media_type` `{media}` is not a supported document type (PDF, CSV, DOC, DOCX, XLS, XLSX, HTML, TXT, MD)"),
                )
            })?;
            out.push(Block::Document {
                format,
                name: title.clone().unwrap_or_else(|| "document".into()),
                data,
            });
            cache_control
        }
        InBlock::ToolUse {
            id,
            name,
            input,
            cache_control,
        } => {
            out.push(Block::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: if input.is_null() {
                    serde_json::json!({})
                } else {
                    input.clone()
                },
            });
            cache_control
        }
        InBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
            cache_control,
        } => {
            let mut inner = Vec::new();
            match content {
                None => {}
                Some(TextOrBlocks::Text(t)) => inner.push(Block::text(t.clone())),
                Some(TextOrBlocks::Blocks(blocks)) => {
                    for (k, b) in blocks.iter().enumerate() {
                        convert(b, &format!("{param}.content.{k}"), &mut inner)?;
                    }
                }
            }
            out.push(Block::ToolResult {
                id: tool_use_id.clone(),
                content: inner,
                is_error: is_error.unwrap_or(false),
            });
            cache_control
        }
        InBlock::Thinking {
            thinking,
            signature,
        } => {
            out.push(Block::Reasoning {
                text: thinking.clone(),
                signature: signature.clone().filter(|s| !s.is_empty()),
            });
            &None
        }
        InBlock::RedactedThinking { data } => {
            out.push(Block::RedactedReasoning { data: data.clone() });
            &None
        }
    };
    if let Some(t) = ttl(cache) {
        out.push(Block::Text {
            text: String::new(),
            cache: Some(t),
        });
    }
    Ok(())
}

fn blocks(content: &TextOrBlocks, param: &str) -> Result<Vec<Block>, ApiError> {
    match content {
        TextOrBlocks::Text(t) => Ok(vec![Block::text(t.clone())]),
        TextOrBlocks::Blocks(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (k, b) in list.iter().enumerate() {
                convert(b, &format!("{param}.{k}"), &mut out)?;
            }
            Ok(out)
        }
    }
}

impl MessagesRequest {
    /// Parses and validates a `/v1/messages` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let r: Self = crate::handlers::openai::types::parse_object(body)?;
        if r.max_tokens.is_none() {
            return Err(ApiError::bad_request(
                "missing_required_parameter",
                "missing required parameter: `max_tokens`",
            )
            .with_param("max_tokens"));
        }
        r.validate()?;
        Ok(r)
    }

    /// Parses and validates a `/v1/messages/count_tokens` body.
    pub fn parse_count(body: &[u8]) -> Result<Self, ApiError> {
        let r: Self = crate::handlers::openai::types::parse_object(body)?;
        r.validate()?;
        Ok(r)
    }

    /// True when the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    fn validate(&self) -> Result<(), ApiError> {
        if self.model.trim().is_empty() {
            return Err(bad("model", "`model` must not be empty"));
        }
        if self.max_tokens == Some(0) {
            return Err(bad("max_tokens", "`max_tokens` must be at least 1"));
        }
        if self.messages.is_empty() {
            return Err(bad(
                "messages",
                "`messages` must contain at least one message",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
                return Err(bad(
                    format!("messages.{i}.role"),
                    format!(
                        "`messages.{i}.role` must be `user` or `assistant`, got `{}`",
                        m.role
                    ),
                ));
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            return Err(bad(
                "temperature",
                format!("`temperature` must be between 0 and 1, got {t}"),
            ));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(bad(
                "top_p",
                format!("`top_p` must be between 0 and 1, got {p}"),
            ));
        }
        if let Some(t) = &self.thinking {
            match (t.kind.as_str(), t.budget_tokens) {
                ("disabled" | "adaptive", _) => {}
                ("enabled", Some(b)) if b >= 1024 && self.max_tokens.is_none_or(|m| b < m) => {}
                ("enabled", _) => {
                    return Err(bad(
                        "thinking.budget_tokens",
                        "`thinking.budget_tokens` must be at least 1024 and less than `max_tokens`",
                    ));
                }
                (other, _) => {
                    return Err(bad(
                        "thinking.type",
                        format!(
                            "`thinking.type` must be `enabled`, `adaptive` or `disabled`, got `{other}`"
                        ),
                    ));
                }
            }
        }
        if let Some(c) = &self.tool_choice {
            match (c.kind.as_str(), &c.name) {
                ("auto" | "any" | "none", _) | ("tool", Some(_)) => {}
                ("tool", None) => {
                    return Err(bad(
                        "tool_choice.name",
                        "`tool_choice` of type `tool` needs a `name`",
                    ));
                }
                (other, _) => {
                    return Err(bad(
                        "tool_choice.type",
                        format!(
                            "`tool_choice.type` must be `auto`, `any`, `tool` or `none`, got `{other}`"
                        ),
                    ));
                }
            }
        }
        for (i, t) in self.tools.iter().flatten().enumerate() {
            if let Some(kind) = &t.kind
                && kind != "custom"
            {
                return Err(bad(
                    format!("tools.{i}.type"),
                    format!(
                        "`tools.{i}` is the server tool `{kind}`, which this gateway does not run; define it as a custom tool"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Characters of prompt text, for estimates.
    pub fn prompt_chars(&self, core: &Request) -> usize {
        core.prompt_chars()
            + core
                .tools
                .iter()
                .map(|t| {
                    t.name.len()
                        + t.description.as_ref().map_or(0, String::len)
                        + t.schema.to_string().len()
                })
                .sum::<usize>()
    }

    /// The request in the neutral vocabulary.
    pub fn to_core(&self, session_id: Option<String>) -> Result<Request, ApiError> {
        let mut out = Request {
            stream: self.is_stream(),
            ..Request::default()
        };
        match &self.system {
            None => {}
            Some(TextOrBlocks::Text(t)) => out.system.push(SystemBlock {
                text: t.clone(),
                cache: None,
            }),
            Some(TextOrBlocks::Blocks(list)) => {
                for (k, b) in list.iter().enumerate() {
                    let InBlock::Text {
                        text,
                        cache_control,
                    } = b
                    else {
                        return Err(bad(
                            format!("system.{k}"),
                            format!("`system.{k}`: the system prompt takes only text blocks"),
                        ));
                    };
                    out.system.push(SystemBlock {
                        text: text.clone(),
                        cache: ttl(cache_control),
                    });
                }
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            let param = format!("messages.{i}.content");
            let role = match m.role.as_str() {
                "assistant" => inf::Role::Assistant,
                _ => inf::Role::User,
            };
            let mut content = blocks(&m.content, &param)?;
            if m.role == "system" {
                // A system message inside the conversation stays where it is, as user
                // content the model reads as an instruction.
                content = content
                    .into_iter()
                    .map(|b| match b {
                        Block::Text { text, cache } => Block::Text {
                            text: format!("<system>{text}</system>"),
                            cache,
                        },
                        other => other,
                    })
                    .collect();
            }
            out.messages.push(Message { role, content });
        }
        out.tools = self
            .tools
            .iter()
            .flatten()
            .map(|t| ToolDef {
                name: t.name.clone(),
                description: t.description.clone(),
                schema: t
                    .input_schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                strict: t.strict.unwrap_or(false),
                cache: ttl(&t.cache_control),
            })
            .collect();
        if let Some(c) = &self.tool_choice {
            out.tool_choice = Some(match c.kind.as_str() {
                "any" => inf::ToolChoice::Any,
                "none" => inf::ToolChoice::None,
                "tool" => inf::ToolChoice::Tool(c.name.clone().unwrap_or_default()),
                _ => inf::ToolChoice::Auto,
            });
            out.parallel_tool_calls = c.disable_parallel_tool_use.map(|d| !d);
        }
        let effort = self.output_config.as_ref().and_then(|o| o.effort.clone());
        out.reasoning = match &self.thinking {
            Some(t) if t.kind == "enabled" => Some(Reasoning {
                budget: t.budget_tokens,
                effort,
                param: "thinking.budget_tokens",
                ..Reasoning::default()
            }),
            Some(t) if t.kind == "adaptive" => Some(Reasoning {
                adaptive: true,
                effort,
                param: "thinking",
                ..Reasoning::default()
            }),
            _ => None,
        };
        if let Some(f) = self.output_config.as_ref().and_then(|o| o.format.as_ref())
            && f.kind == "json_schema"
        {
            out.output = inf::OutputFormat::JsonSchema {
                name: None,
                description: None,
                schema: f.schema.clone().unwrap_or(Value::Null),
            };
        }
        out.sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop: self.stop_sequences.clone().unwrap_or_default(),
            max_tokens: self.max_tokens,
            max_tokens_param: "max_tokens",
        };
        out.metadata.end_user = self.metadata.as_ref().and_then(|m| m.user_id.clone());
        out.metadata.session_id = session_id;
        Ok(out)
    }
}
