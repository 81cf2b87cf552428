//! What a model can serve, declared per alias in `models.yaml` (`capabilities`) and defaulted
//! from the model family, so a request the model cannot serve gets a clear 400 from the
//! gateway before any upstream call, and the mapping knows how to ask for reasoning without
//! guessing from substrings of ids (which miss application inference profiles and ARNs).

use super::{Block, ProviderError, Request, ToolChoice};
use crate::config::models::{CapabilitiesSpec, ProviderKind, ReasoningStyle};

/// The capabilities of one alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Tools (function calling).
    pub tools: bool,
    /// Forcing a tool (`any`, or one named tool).
    pub forced_tool_choice: bool,
    /// Image input.
    pub vision: bool,
    /// Document input (PDF, CSV, ...).
    pub documents: bool,
    /// How reasoning is asked for.
    pub reasoning: ReasoningStyle,
    /// Native structured output (JSON schema).
    pub structured_output: bool,
    /// Prompt cache points.
    pub prompt_caching: bool,
}

impl Capabilities {
    /// Everything (the upstream decides): `echo` and OpenAI-compatible upstreams.
    pub const ALL: Self = Self {
        tools: true,
        forced_tool_choice: true,
        vision: true,
        documents: true,
        reasoning: ReasoningStyle::Effort,
        structured_output: true,
        prompt_caching: true,
    };

    /// The defaults of a model family, from the provider and the upstream id (the part after
    /// a region prefix such as `us.` or an ARN's last `/`).
    pub fn family_defaults(provider: ProviderKind, upstream: &str) -> Self {
        if provider != ProviderKind::Bedrock {
            return Self::ALL;
        }
        let id = upstream.rsplit('/').next().unwrap_or(upstream);
        let base = Self {
            tools: true,
            forced_tool_choice: true,
            vision: false,
            documents: false,
            reasoning: ReasoningStyle::None,
            structured_output: false,
            prompt_caching: false,
        };
        if id.contains("anthropic.claude") {
            Self {
                vision: true,
                documents: true,
                reasoning: ReasoningStyle::Budget,
                structured_output: true,
                prompt_caching: true,
                ..base
            }
        } else if id.contains("amazon.nova") {
            let text_only = id.contains("nova-micro");
            Self {
                vision: !text_only,
                documents: !text_only,
                prompt_caching: true,
                ..base
            }
        } else if id.contains("openai.gpt-oss") {
            Self {
                reasoning: ReasoningStyle::Effort,
                ..base
            }
        } else if id.contains("meta.llama") {
            Self {
                vision: id.contains("llama4")
                    || id.contains("vision")
                    || id.contains("-90b")
                    || id.contains("-11b"),
                forced_tool_choice: false,
                ..base
            }
        } else {
            // An unknown family (or an application inference profile): let Bedrock decide.
            Self {
                vision: true,
                documents: true,
                ..base
            }
        }
    }

    /// The family defaults with what the alias declares on top.
    pub fn compile(provider: ProviderKind, upstream: &str, spec: &CapabilitiesSpec) -> Self {
        let d = Self::family_defaults(provider, upstream);
        Self {
            tools: spec.tools.unwrap_or(d.tools),
            forced_tool_choice: spec.forced_tool_choice.unwrap_or(d.forced_tool_choice),
            vision: spec.vision.unwrap_or(d.vision),
            documents: spec.documents.unwrap_or(d.documents),
            reasoning: spec.reasoning.unwrap_or(d.reasoning),
            structured_output: spec.structured_output.unwrap_or(d.structured_output),
            prompt_caching: spec.prompt_caching.unwrap_or(d.prompt_caching),
        }
    }

    /// Refuses a request this model cannot serve, naming what and why.
    pub fn check(&self, alias: &str, request: &Request) -> Result<(), ProviderError> {
        let refuse = |param: &str, what: &str| {
            Err(ProviderError::InvalidParam {
                param: param.to_string(),
                message: format!("model `{alias}` does not accept {what}"),
            })
        };
        if !self.tools && (!request.tools.is_empty() || request.has_tool_history()) {
            return refuse("tools", "tools");
        }
        if !self.forced_tool_choice
            && matches!(
                request.tool_choice,
                Some(ToolChoice::Any | ToolChoice::Tool(_))
            )
        {
            return refuse(
                "tool_choice",
                "a forced tool choice (only `auto` or `none`)",
            );
        }
        for m in &request.messages {
            for b in &m.content {
                let inner: &[Block] = match b {
                    Block::ToolResult { content, .. } => content,
                    other => std::slice::from_ref(other),
                };
                for b in inner {
                    match b {
                        Block::Image { param, .. } if !self.vision => {
                            return refuse(param, "images");
                        }
                        Block::Document { .. } if !self.documents => {
                            return refuse("messages", "documents");
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Refuses a request `model` cannot serve: what its capabilities exclude, and a prompt
/// estimated (about four characters a token) to be longer than its `limits.context_tokens`.
pub fn admits(model: &crate::engine::ModelRuntime, request: &Request) -> Result<(), ProviderError> {
    model.capabilities.check(&model.alias, request)?;
    if let Some(context) = model.context_tokens {
        let chars = request.prompt_chars()
            + request
                .tools
                .iter()
                .map(|t| t.name.len() + t.schema.to_string().len())
                .sum::<usize>();
        let estimate = crate::usage::estimate_tokens(chars);
        if estimate > u64::from(context) {
            return Err(ProviderError::InvalidParam {
                param: "messages".into(),
                message: format!(
                    "the prompt is about {estimate} tokens, more than the {context}-token context of model `{}`",
                    model.alias
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        let c = Capabilities::family_defaults(
            ProviderKind::Bedrock,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        );
        assert_eq!(c.reasoning, ReasoningStyle::Budget);
        assert!(c.prompt_caching && c.documents && c.vision);
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        let c = Capabilities::family_defaults(ProviderKind::Bedrock, arn);
        assert_eq!(c.reasoning, ReasoningStyle::None);
        let c = Capabilities::family_defaults(ProviderKind::Bedrock, "us.amazon.nova-micro-v1:0");
        assert!(!c.vision);
        let spec = CapabilitiesSpec {
            reasoning: Some(ReasoningStyle::Budget),
            ..CapabilitiesSpec::default()
        };
        assert_eq!(
            Capabilities::compile(ProviderKind::Bedrock, arn, &spec).reasoning,
            ReasoningStyle::Budget
        );
    }
}
