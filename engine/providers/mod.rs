//! Model providers behind one trait, chosen by an enum from `models.yaml`.
//!
//! Providers see a neutral [`crate::inference::Request`] and the alias's configuration, never
//! the client's HTTP request nor a dialect's types; they answer in the same neutral
//! vocabulary, which each dialect's handler renders.

pub mod bedrock;
pub mod echo;
pub mod images;
pub mod openai;

use crate::config::models::ProviderKind;
use crate::engine::ModelRuntime;
use crate::inference::{EmbedRequest, EventStream, Request, Response};
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::inference::Usage as TokenUsage;

/// Provider failures, mapped to OpenAI errors by the handler. Messages of upstream failures
/// other than validation are generic; their detail goes to the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider is configured but not available in this engine.
    #[error("provider `{0}` is not available in this build")]
    Unavailable(&'static str),
    /// The request is not valid for this provider.
    #[error("{0}")]
    InvalidRequest(String),
    /// A request parameter is not valid for this provider.
    #[error("{message}")]
    InvalidParam {
        /// The parameter (`messages[1].content[0].image_url`).
        param: String,
        /// Why.
        message: String,
    },
    /// The upstream throttled the call (after the configured retries).
    #[error("the model is receiving too many requests; retry later")]
    Throttled {
        /// Seconds the client should wait, when the upstream said.
        retry_after: Option<u64>,
    },
    /// The upstream rejected the request as invalid; its message is about the request.
    #[error("the model rejected the request: {0}")]
    UpstreamValidation(String),
    /// The gateway may not use the upstream model.
    #[error("the gateway is not permitted to use this model upstream")]
    AccessDenied,
    /// The upstream does not know the model.
    #[error("the upstream model was not found")]
    NotFound,
    /// The upstream (or the configured timeout) took too long.
    #[error("the model did not answer in time")]
    Timeout,
    /// Any other upstream failure.
    #[error("the model provider failed to answer")]
    Upstream,
    /// The gateway found no credentials for the upstream (AWS: none in the default chain).
    #[error(
        "the gateway has no AWS credentials to call Bedrock; its operator must provide them (AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an IAM role)"
    )]
    NoCredentials,
}

impl ProviderError {
    /// True when another alias may succeed where this one failed: upstream trouble, not a
    /// request the client must fix.
    pub fn allows_fallback(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable(_)
                | ProviderError::Throttled { .. }
                | ProviderError::AccessDenied
                | ProviderError::NotFound
                | ProviderError::Timeout
                | ProviderError::Upstream
        )
    }
}

/// Embedding vectors, one per input in order.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingOutput {
    /// Vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens (an estimate where the upstream does not report them).
    pub prompt_tokens: u64,
}

/// What the engine needs of a provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A complete answer from `model` (its upstream id and settings).
    async fn chat(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError>;

    /// A streamed answer. Dropping the stream cancels the upstream call.
    async fn chat_stream(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<EventStream, ProviderError>;

    /// The prompt tokens of `request` as the provider counts them, or `None` when it offers
    /// no count (the caller estimates).
    async fn count_tokens(
        &self,
        _model: &ModelRuntime,
        _request: &Request,
    ) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }

    /// Embeddings of the request's inputs.
    async fn embed(
        &self,
        model: &ModelRuntime,
        _request: &EmbedRequest,
    ) -> Result<EmbeddingOutput, ProviderError> {
        Err(ProviderError::InvalidRequest(format!(
            "model `{}` does not serve embeddings",
            model.alias
        )))
    }
}

/// What building the provider clients needs besides `models.yaml`.
#[derive(Clone)]
pub struct ProviderSettings {
    /// Bedrock credentials and default region.
    pub bedrock: bedrock::BedrockSettings,
    /// Where `api_key_env` variables are read (default: the process environment).
    pub env: openai::EnvLookup,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            bedrock: bedrock::BedrockSettings::default(),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("bedrock", &self.bedrock)
            .finish_non_exhaustive()
    }
}

/// The providers an engine has, by kind; clients are built once, before the first request.
pub struct Providers {
    echo: echo::Echo,
    bedrock: Option<Arc<bedrock::Bedrock>>,
    openai: Option<Arc<openai::OpenAi>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers")
    }
}

impl Default for Providers {
    /// Only the providers that need no upstream (`echo`).
    fn default() -> Self {
        Self {
            echo: echo::Echo,
            bedrock: None,
            openai: None,
        }
    }
}

impl Providers {
    /// Builds the clients every alias of `config` needs: one Bedrock client per distinct
    /// region, endpoint and retry policy, and one HTTP client for OpenAI-compatible upstreams
    /// (whose API keys are read from the environment here, once). With
    /// `bedrock.credentials` unset, credentials come from the default AWS chain (environment,
    /// profile, web identity, container, instance), resolved lazily on the first call;
    /// nothing here touches the network.
    pub async fn build(
        config: &crate::CompiledConfig,
        settings: ProviderSettings,
    ) -> Result<Self, String> {
        let of = |kind: ProviderKind| -> Vec<&ModelRuntime> {
            config.models().filter(|m| m.provider == kind).collect()
        };
        let bedrock_models = of(ProviderKind::Bedrock);
        let bedrock = if bedrock_models.is_empty() {
            None
        } else {
            Some(Arc::new(
                bedrock::Bedrock::build(
                    &bedrock_models,
                    settings.bedrock,
                    images::ImageFetcher::new(config.image_fetch())?,
                )
                .await?,
            ))
        };
        let openai_models = of(ProviderKind::Openai);
        let openai = if openai_models.is_empty() {
            None
        } else {
            Some(Arc::new(openai::OpenAi::build(
                &openai_models,
                &settings.env,
            )?))
        };
        Ok(Self {
            echo: echo::Echo,
            bedrock,
            openai,
        })
    }

    /// The provider for a kind, or why there is none.
    pub fn get(&self, kind: ProviderKind) -> Result<&dyn Provider, ProviderError> {
        match kind {
            ProviderKind::Echo => Ok(&self.echo),
            ProviderKind::Bedrock => match &self.bedrock {
                Some(b) => Ok(b.as_ref()),
                None => Err(ProviderError::Unavailable("bedrock")),
            },
            ProviderKind::Openai => match &self.openai {
                Some(p) => Ok(p.as_ref()),
                None => Err(ProviderError::Unavailable("openai")),
            },
        }
    }
}
