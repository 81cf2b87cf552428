//! Model providers behind one trait, chosen by an enum from `models.yaml`.
//!
//! Providers see a validated OpenAI chat request and the alias's configuration, never the
//! client's HTTP request; they answer in provider-neutral types the handlers turn into
//! OpenAI responses.

pub mod echo;

use crate::config::models::ProviderKind;
use crate::handlers::openai::types::ChatRequest;
use async_trait::async_trait;
use futures_util::stream::BoxStream;

/// Why a chat ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model asked for tools.
    ToolCalls,
    /// Filtered.
    ContentFilter,
}

impl FinishReason {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct ChatOutput {
    /// Assistant text.
    pub content: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens.
    pub usage: TokenUsage,
}

/// One event of a streamed answer.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// More assistant text.
    Text(String),
    /// The answer ended.
    Finish(FinishReason),
    /// Final token counts.
    Usage(TokenUsage),
}

/// Provider failures, mapped to OpenAI errors by the handler.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider is configured but not available in this build.
    #[error("provider `{0}` is not available in this build")]
    Unavailable(&'static str),
    /// The request is not valid for this provider.
    #[error("{0}")]
    InvalidRequest(String),
}

/// A stream of chat events.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, ProviderError>>;

/// What the engine needs of a provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A complete answer.
    async fn chat(
        &self,
        upstream: &str,
        request: &ChatRequest,
    ) -> Result<ChatOutput, ProviderError>;

    /// A streamed answer.
    async fn chat_stream(
        &self,
        upstream: &str,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError>;
}

/// The providers this build has, by kind.
pub struct Providers {
    echo: echo::Echo,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers")
    }
}

impl Default for Providers {
    fn default() -> Self {
        Self { echo: echo::Echo }
    }
}

impl Providers {
    /// The provider for a kind, or why there is none.
    pub fn get(&self, kind: ProviderKind) -> Result<&dyn Provider, ProviderError> {
        match kind {
            ProviderKind::Echo => Ok(&self.echo),
            ProviderKind::Bedrock => Err(ProviderError::Unavailable("bedrock")),
        }
    }
}
