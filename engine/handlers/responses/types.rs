//! OpenAI Responses request shapes (their conversion into the neutral request is in
//! `to_core.rs`). Client bodies are lenient: unknown fields are ignored; `input` items are
//! read by their `type` with the offending parameter named in errors
//! (`input[3].content[0].image_url`).

use crate::errors::ApiError;
use crate::inference::Request;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /v1/responses` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    /// Model alias.
    pub model: String,
    /// A string (one user message) or a list of items.
    #[serde(default)]
    pub input: Option<Value>,
    /// System prompt.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tool definitions (`function`, `custom`; hosted tools are left out).
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required` or an object.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Several tool calls at once.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {...}, "verbosity": ...}`.
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// `{"effort": ..., "summary": ...}`.
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    /// Output token limit.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Extra output asked for (`reasoning.encrypted_content`: always given).
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Prompt cache key: cache points are set where the model caches.
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    /// Echoed in the response.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Codex's client metadata (accepted, not forwarded).
    #[serde(default)]
    pub client_metadata: Option<Value>,
    /// Accepted; nothing is stored either way.
    #[serde(default)]
    pub store: Option<bool>,
    /// Refused: the gateway keeps no state.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Refused: the gateway keeps no state.
    #[serde(default)]
    pub conversation: Option<Value>,
    /// Stream the answer.
    #[serde(default)]
    pub stream: Option<bool>,
    /// End user (deprecated by OpenAI for `safety_identifier`).
    #[serde(default)]
    pub user: Option<String>,
    /// End user.
    #[serde(default)]
    pub safety_identifier: Option<String>,
}

/// `text`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Output format.
    #[serde(default)]
    pub format: Option<TextFormat>,
    /// `low`, `medium` or `high`.
    #[serde(default)]
    pub verbosity: Option<String>,
}

/// `text.format`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// The schema.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Strict adherence.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `reasoning`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReasoningConfig {
    /// `none`, `minimal`, `low`, `medium`, `high`.
    #[serde(default)]
    pub effort: Option<String>,
    /// `auto`, `concise`, `detailed`: the reasoning text is given as its summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// The older name of `summary`.
    #[serde(default)]
    pub generate_summary: Option<String>,
}

/// What the answer needs to know of the request beyond the neutral request.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Names of `custom` tools: their calls are answered as `custom_tool_call` items.
    pub custom_tools: Vec<String>,
    /// Tool types left out (hosted tools the gateway cannot run), for a response header.
    pub omitted_tools: Vec<String>,
    /// A reasoning summary was asked for.
    pub summary: bool,
    /// Reasoning items whose sealed content did not open (another key, altered): dropped.
    pub dropped_reasoning: usize,
}

/// What a sealed reasoning item holds.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct SealedReasoning {
    /// Reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
    /// Signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    /// Redacted data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
}

pub(super) fn bad(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_param(param)
}

/// The schema of a `custom` tool's single argument.
pub const CUSTOM_ARG: &str = "input";

impl ResponsesRequest {
    /// Parses and validates a `/v1/responses` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
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
        let stateless = "this gateway keeps no conversation state: send the whole conversation in `input` (with `store: false`)";
        if self.previous_response_id.is_some() {
            return Err(
                ApiError::bad_request("stateless", stateless).with_param("previous_response_id")
            );
        }
        if self.conversation.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(ApiError::bad_request("stateless", stateless).with_param("conversation"));
        }
        if self.max_output_tokens == Some(0) {
            return Err(bad(
                "max_output_tokens",
                "`max_output_tokens` must be at least 1",
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(bad(
                "temperature",
                format!("`temperature` must be between 0 and 2, got {t}"),
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
        match &self.input {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if !items.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(bad("input", "`input` must contain at least one item"));
            }
            Some(_) => return Err(bad("input", "`input` must be a string or a list of items")),
        }
        if self.input.is_none() {
            return Err(ApiError::bad_request(
                "missing_required_parameter",
                "missing required parameter: `input`",
            )
            .with_param("input"));
        }
        Ok(())
    }

    /// The reasoning summary asked for, if any.
    pub fn summary(&self) -> Option<&str> {
        let r = self.reasoning.as_ref()?;
        r.summary
            .as_deref()
            .or(r.generate_summary.as_deref())
            .filter(|s| *s != "none")
    }

    /// Characters of prompt text and tool definitions, for estimates.
    pub fn prompt_chars(core: &Request) -> usize {
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
}

/// The `metadata` to echo: an object of strings, else empty.
pub fn metadata_echo(m: &Option<Value>) -> Value {
    match m {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => Value::Object(Map::new()),
    }
}
