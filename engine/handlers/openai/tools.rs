//! OpenAI request parts for tools, structured output and reasoning, and their checks.

use super::types::ChatRequest;
use crate::errors::ApiError;
use serde::Deserialize;

/// A tool definition.
#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    /// Only `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

fn function_type() -> String {
    "function".to_string()
}

/// A function the model may call.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef {
    /// Name (letters, digits, `_`, `-`; at most 64).
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// Strict schema adherence.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// One named function.
    Named(NamedToolChoice),
}

/// `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedToolChoice {
    /// The function.
    pub function: NamedFunction,
}

/// A function name.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedFunction {
    /// Name.
    pub name: String,
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `json_schema`.
    #[serde(default)]
    pub json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    /// Name of the schema.
    #[serde(default)]
    pub name: Option<String>,
    /// What the output is.
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON Schema.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
}

/// The `thinking` extension.
#[derive(Debug, Clone, Deserialize)]
pub struct Thinking {
    /// `enabled` or `disabled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tokens the model may spend thinking (at least 1024).
    #[serde(default)]
    pub budget_tokens: Option<u32>,
}

/// An assistant tool call sent back in the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolCallIn {
    /// Call id.
    pub id: String,
    /// The call.
    pub function: FunctionCallIn,
}

/// Name and arguments of a tool call.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallIn {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text.
    #[serde(default)]
    pub arguments: String,
}

fn valid_tool_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ChatRequest {
    /// Checks `tools` and `tool_choice`.
    pub(super) fn validate_tools(&self) -> Result<(), ApiError> {
        let bad = |param: String, msg: String| {
            Err(ApiError::bad_request("invalid_value", msg).with_param(param))
        };
        let tools = self.tools.as_deref().unwrap_or_default();
        for (i, t) in tools.iter().enumerate() {
            if t.kind != "function" {
                return bad(
                    format!("tools[{i}].type"),
                    format!("`tools[{i}].type` must be `function`, got `{}`", t.kind),
                );
            }
            if !valid_tool_name(&t.function.name) {
                return bad(
                    format!("tools[{i}].function.name"),
                    format!(
                        "`tools[{i}].function.name` must be 1 to 64 letters, digits, `_` or `-`, got `{}`",
                        t.function.name
                    ),
                );
            }
            if t.function
                .parameters
                .as_ref()
                .is_some_and(|p| !p.is_object())
            {
                return bad(
                    format!("tools[{i}].function.parameters"),
                    format!("`tools[{i}].function.parameters` must be a JSON Schema object"),
                );
            }
            if tools[..i]
                .iter()
                .any(|o| o.function.name == t.function.name)
            {
                return bad(
                    format!("tools[{i}].function.name"),
                    format!("tool `{}` is defined twice", t.function.name),
                );
            }
        }
        match &self.tool_choice {
            None => {}
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "none" | "auto" => {}
                "required" if !tools.is_empty() => {}
                "required" => {
                    return bad(
                        "tool_choice".into(),
                        "`tool_choice` is `required` but no `tools` are given".into(),
                    );
                }
                other => {
                    return bad(
                        "tool_choice".into(),
                        format!(
                            "`tool_choice` must be `none`, `auto`, `required` or a named function, got `{other}`"
                        ),
                    );
                }
            },
            Some(ToolChoice::Named(n))
                if !tools.iter().any(|t| t.function.name == n.function.name) =>
            {
                return bad(
                    "tool_choice".into(),
                    format!(
                        "`tool_choice` names function `{}`, which is not in `tools`",
                        n.function.name
                    ),
                );
            }
            Some(ToolChoice::Named(_)) => {}
        }
        Ok(())
    }
}
