//! OpenAI request and response shapes. Client bodies are lenient: unknown fields are
//! accepted and ignored; known fields are type-checked and range-checked with the offending
//! parameter named in the error.

use crate::errors::ApiError;
use serde::{Deserialize, Serialize};

pub use super::tools::{
    FunctionCallIn, FunctionDef, JsonSchemaFormat, NamedFunction, NamedToolChoice, ResponseFormat,
    Thinking, Tool, ToolCallIn, ToolChoice,
};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Model alias.
    pub model: String,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Legacy output limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Output limit.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Number of choices (only 1 is supported).
    #[serde(default)]
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// End-user id for abuse tracking.
    #[serde(default)]
    pub user: Option<String>,
    /// Functions the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto`, `required` or `{"type":"function","function":{"name":..}}`.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Legacy function definitions (refused: send `tools`).
    #[serde(default)]
    pub functions: Option<serde_json::Value>,
    /// Legacy function choice (refused: send `tool_choice`).
    #[serde(default)]
    pub function_call: Option<serde_json::Value>,
    /// Log probabilities (not served: refused when asked for).
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Whether the model may call several tools in one answer.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"type":"text"|"json_object"|"json_schema", "json_schema":{..}}`.
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// `none`, `minimal`, `low`, `medium` or `high`: how much the model thinks first.
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// Extension: `{"type":"enabled","budget_tokens":N}` sets the thinking budget exactly
    /// (Anthropic's shape); wins over `reasoning_effort`.
    #[serde(default)]
    pub thinking: Option<Thinking>,
    /// The body as the client sent it, for providers that forward it (with every field the
    /// gateway does not interpret).
    #[serde(skip)]
    pub raw: Option<RawBody>,
}

/// A request body kept as sent; `Debug` shows only its length (it holds prompt text).
#[derive(Clone)]
pub struct RawBody(pub bytes::Bytes);

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBody({} bytes)", self.0.len())
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or up to four.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// Message roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// Developer prompt (system for newer models).
    Developer,
    /// User.
    User,
    /// Assistant.
    Assistant,
    /// Tool result.
    Tool,
}

/// One message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text or parts; may be null for assistant messages with tool calls.
    #[serde(default)]
    pub content: Option<Content>,
    /// Optional author name.
    #[serde(default)]
    pub name: Option<String>,
    /// Assistant tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// For tool messages: the call answered.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Extension on assistant messages: the model's signed reasoning as the gateway returned
    /// it, sent back so a model that thinks can continue after tool calls.
    #[serde(default)]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
}

/// One reasoning block of the `thinking_blocks` extension.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    /// Reasoning text with its signature.
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
        /// The provider's signature.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Encrypted reasoning.
    RedactedThinking {
        /// Opaque data, base64.
        data: String,
    },
}

/// Message content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// A content part; `type` decides which other field is set.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// For `text`.
    #[serde(default)]
    pub text: Option<String>,
    /// For `image_url`.
    #[serde(default)]
    pub image_url: Option<ImageUrl>,
}

/// An image reference.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    /// `data:` or `https:` URL.
    pub url: String,
    /// `low`, `high`, `auto`.
    #[serde(default)]
    pub detail: Option<String>,
}

impl Message {
    /// The text of the message (text parts joined by newlines).
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Turns a serde error at a path into a 400 naming the parameter.
pub fn body_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad_request(
            "invalid_json",
            format!(
                "the request body is not valid JSON: {}",
                strip_position(&inner.to_string())
            ),
        );
    }
    let raw = strip_position(&inner.to_string());
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        // The path already ends with the unknown field.
        let param = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            path.clone()
        };
        let expected = rest
            .split_once(", ")
            .map(|(_, e)| format!(" ({e})"))
            .unwrap_or_default();
        return ApiError::bad_request(
            "unknown_parameter",
            format!("unknown parameter: `{param}`{expected}"),
        )
        .with_param(param);
    }
    if path == "." || path.is_empty() {
        let msg = if let Some(field) = raw.strip_prefix("missing field ") {
            let field = field.trim_matches('`');
            return ApiError::bad_request(
                "missing_required_parameter",
                format!("missing required parameter: `{field}`"),
            )
            .with_param(field);
        } else {
            format!("invalid request body: {raw}")
        };
        return ApiError::bad_request("invalid_request_body", msg);
    }
    if let Some(field) = raw.strip_prefix("missing field ") {
        let field = field.trim_matches('`');
        let param = format!("{path}.{field}");
        return ApiError::bad_request(
            "missing_required_parameter",
            format!("missing required parameter: `{param}`"),
        )
        .with_param(param);
    }
    let raw = plain_types(&raw);
    let raw = raw.replace(
        "data did not match any variant of untagged enum Content",
        "expected a string or an array of content parts",
    );
    let raw = raw.replace(
        "data did not match any variant of untagged enum Stop",
        "expected a string or an array of strings",
    );
    let raw = raw.replace(
        "data did not match any variant of untagged enum ToolChoice",
        "expected a string or an object naming a function",
    );
    ApiError::bad_request("invalid_type", format!("invalid value for `{path}`: {raw}"))
        .with_param(path)
}

/// Replaces Rust type names in serde messages with JSON words.
fn plain_types(s: &str) -> String {
    let mut out = s.to_string();
    for (from, to) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected a borrowed string", "expected a string"),
        ("integer `", "number `"),
        ("floating point `", "number `"),
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
        ("unit value", "null"),
    ] {
        out = out.replace(from, to);
    }
    if let Some(i) = out.find(", expected struct ") {
        out.truncate(i);
        out.push_str(", expected an object");
    }
    out
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Parses a body that must be one JSON object into `T`; errors name the parameter.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty; send a JSON object",
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let probe: Result<serde::de::IgnoredAny, _> = serde_json::from_slice(body);
        return Err(match probe {
            Err(e) => ApiError::bad_request(
                "invalid_json",
                format!(
                    "the request body is not valid JSON: {}",
                    strip_position(&e.to_string())
                ),
            ),
            Ok(_) => ApiError::bad_request(
                "invalid_request_body",
                "the request body must be a JSON object",
            ),
        });
    }
    // Tracking the path costs on every body; only a failure needs it, so a body that fails
    // is parsed again with it (to the same error, now with its path).
    if let Ok(parsed) = serde_json::from_slice(body) {
        return Ok(parsed);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(body_error)
}

impl ChatRequest {
    /// Parses and validates a body.
    pub fn parse(body: &bytes::Bytes) -> Result<Self, ApiError> {
        let mut request: ChatRequest = parse_object(body)?;
        request.validate()?;
        request.raw = Some(RawBody(body.clone()));
        Ok(request)
    }

    /// The effective output limit.
    pub fn output_limit(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Characters of text in the prompt (message text, tool call names and arguments), for
    /// estimating its tokens when a provider reports none.
    pub fn prompt_chars(&self) -> usize {
        self.messages
            .iter()
            .map(|m| {
                m.text().chars().count()
                    + m.tool_calls.as_ref().map_or(0, |calls| {
                        calls
                            .iter()
                            .map(|c| c.function.name.len() + c.function.arguments.len())
                            .sum()
                    })
            })
            .sum()
    }

    /// True when the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True when a streamed answer ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Checks ranges and cross-field rules (also for requests built from other endpoints).
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |param: &str, msg: String| {
            Err(ApiError::bad_request("invalid_value", msg).with_param(param))
        };
        if self.model.trim().is_empty() {
            return bad("model", "`model` must not be empty".into());
        }
        if self.messages.is_empty() {
            return bad(
                "messages",
                "`messages` must contain at least one message".into(),
            );
        }
        for (i, m) in self.messages.iter().enumerate() {
            match (&m.content, m.role) {
                (None, Role::Assistant) if m.tool_calls.is_some() => {}
                (None, _) => {
                    return Err(ApiError::bad_request(
                        "missing_required_parameter",
                        format!("missing required parameter: `messages[{i}].content`"),
                    )
                    .with_param(format!("messages[{i}].content")));
                }
                (Some(Content::Parts(parts)), _) => {
                    for (j, p) in parts.iter().enumerate() {
                        let param = format!("messages[{i}].content[{j}]");
                        match p.kind.as_str() {
                            "text" if p.text.is_some() => {}
                            "text" => {
                                return bad(
                                    &param,
                                    format!("`{param}` of type `text` needs a `text` field"),
                                );
                            }
                            "image_url" if p.image_url.is_some() => {}
                            "image_url" => {
                                return bad(
                                    &param,
                                    format!(
                                        "`{param}` of type `image_url` needs an `image_url` field"
                                    ),
                                );
                            }
                            other => {
                                return bad(
                                    &param,
                                    format!(
                                        "`{param}` has unsupported content part type `{other}`"
                                    ),
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
            if m.role == Role::Tool && m.tool_call_id.is_none() {
                return Err(ApiError::bad_request(
                    "missing_required_parameter",
                    format!("missing required parameter: `messages[{i}].tool_call_id`"),
                )
                .with_param(format!("messages[{i}].tool_call_id")));
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return bad(
                "temperature",
                format!("`temperature` must be between 0 and 2, got {t}"),
            );
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return bad("top_p", format!("`top_p` must be between 0 and 1, got {p}"));
        }
        if let Some(n) = self.n
            && n != 1
        {
            return bad(
                "n",
                format!("`n` must be 1 (this gateway returns one choice), got {n}"),
            );
        }
        for (param, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if v == Some(0) {
                return bad(param, format!("`{param}` must be at least 1"));
            }
        }
        if let Some(Stop::Many(v)) = &self.stop
            && v.len() > 4
        {
            return bad(
                "stop",
                format!("`stop` takes at most 4 sequences, got {}", v.len()),
            );
        }
        for (param, set) in [
            ("functions", self.functions.is_some()),
            ("function_call", self.function_call.is_some()),
        ] {
            if set {
                return bad(
                    param,
                    format!(
                        "`{param}` is the deprecated form of function calling; send `tools` and `tool_choice`"
                    ),
                );
            }
        }
        if self.logprobs == Some(true) {
            return bad(
                "logprobs",
                "`logprobs` is not supported by this gateway (as for legacy completions)".into(),
            );
        }
        self.validate_tools()?;
        if let Some(e) = &self.reasoning_effort
            && !matches!(e.as_str(), "none" | "minimal" | "low" | "medium" | "high")
        {
            return bad(
                "reasoning_effort",
                format!(
                    "`reasoning_effort` must be `none`, `minimal`, `low`, `medium` or `high`, got `{e}`"
                ),
            );
        }
        if let Some(t) = &self.thinking {
            match (t.kind.as_str(), t.budget_tokens) {
                ("disabled", _) => {}
                ("enabled", Some(b)) if b >= 1024 => {}
                ("enabled", _) => {
                    return bad(
                        "thinking.budget_tokens",
                        "`thinking.budget_tokens` must be at least 1024".into(),
                    );
                }
                (other, _) => {
                    return bad(
                        "thinking.type",
                        format!("`thinking.type` must be `enabled` or `disabled`, got `{other}`"),
                    );
                }
            }
        }
        if let Some(f) = &self.response_format {
            match (f.kind.as_str(), &f.json_schema) {
                ("text" | "json_object", _) => {}
                ("json_schema", Some(s)) if s.schema.as_ref().is_some_and(|v| v.is_object()) => {}
                ("json_schema", _) => {
                    return bad(
                        "response_format.json_schema.schema",
                        "`response_format` of type `json_schema` needs `json_schema.schema`, a JSON Schema object".into(),
                    );
                }
                (other, _) => {
                    return bad(
                        "response_format.type",
                        format!(
                            "`response_format.type` must be `text`, `json_object` or `json_schema`, got `{other}`"
                        ),
                    );
                }
            }
        }
        if self.stream_options.is_some() && !self.is_stream() {
            return bad(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true".into(),
            );
        }
        Ok(())
    }
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Prompt tokens (cached included).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Sum.
    pub total_tokens: u64,
    /// Cache detail, when a prompt cache was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the cache (OpenAI's field).
    pub cached_tokens: u64,
    /// Prompt tokens written to the cache (extension; Bedrock reports them).
    pub cache_write_tokens: u64,
}

impl From<crate::providers::TokenUsage> for Usage {
    fn from(u: crate::providers::TokenUsage) -> Self {
        Self {
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.prompt + u.completion,
            prompt_tokens_details: (u.cache_read > 0 || u.cache_write > 0).then_some(
                PromptTokensDetails {
                    cached_tokens: u.cache_read,
                    cache_write_tokens: u.cache_write,
                },
            ),
        }
    }
}
