//! AWS Bedrock through Converse and ConverseStream (chat) and InvokeModel (embeddings), with
//! the official SDK (SigV4 signing,
//! retries with backoff). Clients are built once, one per distinct region, endpoint and
//! retry policy, and shared by the aliases that use them.

pub mod convert;
pub mod embed;
pub mod errors;
pub mod response;

use super::images::ImageFetcher;
use super::{Provider, ProviderError};
use crate::engine::ModelRuntime;
use crate::inference::{EmbedRequest, EventStream, Request, Response};
use crate::upstream::RetryPolicy;
use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{
    BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig,
};
use std::collections::HashMap;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection to Bedrock.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the Bedrock provider gets what `models.yaml` does not say.
#[derive(Debug, Clone, Default)]
pub struct BedrockSettings {
    /// Fixed credentials (tests). `None`: the default AWS credential chain, loaded lazily.
    pub credentials: Option<Credentials>,
    /// Region of aliases that name none. `None`: the default AWS region chain.
    pub default_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    region: String,
    endpoint: Option<String>,
    retry: RetryPolicy,
}

/// The Bedrock provider: a client per alias (shared between aliases that agree).
pub struct Bedrock {
    clients: HashMap<String, Client>,
    /// Fetches `http(s)` image URLs when `image_fetch` is on.
    images: Option<ImageFetcher>,
}

impl std::fmt::Debug for Bedrock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bedrock")
            .field("aliases", &self.clients.len())
            .finish()
    }
}

impl Bedrock {
    /// Builds the clients of `models` (all `provider: bedrock`).
    pub async fn build(
        models: &[&ModelRuntime],
        settings: BedrockSettings,
        images: Option<ImageFetcher>,
    ) -> Result<Self, String> {
        let http = crate::aws::http_client();
        let base = match &settings.credentials {
            Some(_) => None,
            None => {
                let mut loader =
                    aws_config::defaults(BehaviorVersion::latest()).http_client(http.clone());
                // A region given here keeps the loader from looking one up (which may mean
                // asking the instance metadata service); each client sets its own anyway.
                let known = settings.default_region.clone().or_else(|| {
                    models
                        .iter()
                        .all(|m| m.upstream_settings.region.is_some())
                        .then(|| {
                            models
                                .first()
                                .and_then(|m| m.upstream_settings.region.clone())
                        })
                        .flatten()
                });
                if let Some(r) = known {
                    loader = loader.region(Region::new(r));
                }
                Some(loader.load().await)
            }
        };
        let default_region = settings.default_region.clone().or_else(|| {
            base.as_ref()
                .and_then(|b| b.region().map(|r| r.as_ref().to_string()))
        });
        let mut shared: HashMap<ClientKey, Client> = HashMap::new();
        let mut clients = HashMap::new();
        for m in models {
            let s = &m.upstream_settings;
            let region = s
                .region
                .clone()
                .or_else(|| default_region.clone())
                .ok_or_else(|| {
                    format!(
                        "model `{}` names no `region` and no default AWS region is set (AWS_REGION)",
                        m.alias
                    )
                })?;
            let key = ClientKey {
                region,
                endpoint: s.endpoint_url.clone(),
                retry: s.retry,
            };
            let client = shared
                .entry(key.clone())
                .or_insert_with(|| {
                    let mut b = match &base {
                        Some(sdk) => aws_sdk_bedrockruntime::config::Builder::from(sdk),
                        None => {
                            let mut b = aws_sdk_bedrockruntime::config::Builder::new()
                                .behavior_version(BehaviorVersion::latest())
                                .http_client(http.clone());
                            if let Some(c) = settings.credentials.clone() {
                                b = b.credentials_provider(c);
                            }
                            b
                        }
                    };
                    b = b
                        .region(Region::new(key.region.clone()))
                        .retry_config(
                            RetryConfig::standard()
                                .with_max_attempts(key.retry.max_attempts)
                                .with_initial_backoff(key.retry.initial_backoff)
                                .with_max_backoff(key.retry.max_backoff),
                        )
                        .timeout_config(
                            TimeoutConfig::builder()
                                .connect_timeout(CONNECT_TIMEOUT)
                                .build(),
                        )
                        // The gateway enforces its own per-alias timeouts; a model that
                        // thinks quietly for a while is not a stalled stream.
                        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
                        .interceptor(crate::telemetry::BedrockAttempts);
                    if let Some(url) = &key.endpoint {
                        b = b.endpoint_url(url);
                    }
                    Client::from_conf(b.build())
                })
                .clone();
            clients.insert(m.alias.clone(), client);
        }
        tracing::debug!(
            aliases = clients.len(),
            clients = shared.len(),
            "bedrock clients built"
        );
        Ok(Self { clients, images })
    }

    /// With `image_fetch` on, the request with its `http(s)` image URLs fetched and inlined
    /// (`None`: nothing to fetch, or fetching is off and `convert` refuses such URLs).
    async fn inline_images(&self, request: &Request) -> Result<Option<Request>, ProviderError> {
        match &self.images {
            Some(f) => f.inline(request).await,
            None => Ok(None),
        }
    }

    fn client(&self, model: &ModelRuntime) -> Result<&Client, ProviderError> {
        self.clients.get(&model.alias).ok_or_else(|| {
            tracing::error!(model = %model.alias, "no bedrock client was built for this alias");
            ProviderError::Upstream
        })
    }
}

#[async_trait]
impl Provider for Bedrock {
    async fn chat(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let client = self.client(model)?;
        let inlined = self.inline_images(request).await?;
        let p = convert::to_converse(inlined.as_ref().unwrap_or(request), model)?;
        let out = client
            .converse()
            .model_id(&model.upstream)
            .set_system((!p.system.is_empty()).then_some(p.system))
            .set_messages(Some(p.messages))
            .set_inference_config(p.inference)
            .set_tool_config(p.tool_config)
            .set_additional_model_request_fields(p.additional_fields)
            .set_output_config(p.output_config)
            .send()
            .await
            .map_err(|e| errors::from_sdk(&e, &model.alias))?;
        Ok(response::from_converse(out))
    }

    async fn chat_stream(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<EventStream, ProviderError> {
        let client = self.client(model)?;
        let inlined = self.inline_images(request).await?;
        let p = convert::to_converse(inlined.as_ref().unwrap_or(request), model)?;
        let out = client
            .converse_stream()
            .model_id(&model.upstream)
            .set_system((!p.system.is_empty()).then_some(p.system))
            .set_messages(Some(p.messages))
            .set_inference_config(p.inference)
            .set_tool_config(p.tool_config)
            .set_additional_model_request_fields(p.additional_fields)
            .set_output_config(p.output_config)
            .send()
            .await
            .map_err(|e| errors::from_sdk(&e, &model.alias))?;
        Ok(response::event_stream(out.stream, &model.alias))
    }

    /// Bedrock's CountTokens for Claude models (the others have none), on the base model id
    /// (CountTokens takes no cross-region inference profile).
    async fn count_tokens(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<Option<u64>, ProviderError> {
        if !model.upstream.contains("anthropic.claude") {
            return Ok(None);
        }
        let client = self.client(model)?;
        let p = convert::to_converse(request, model)?;
        let base = model
            .upstream
            .split_once("anthropic.")
            .map_or(model.upstream.as_str(), |(_, rest)| rest);
        let input = aws_sdk_bedrockruntime::types::ConverseTokensRequest::builder()
            .set_system((!p.system.is_empty()).then_some(p.system))
            .set_messages(Some(p.messages))
            .set_tool_config(p.tool_config)
            .set_additional_model_request_fields(p.additional_fields)
            .build();
        let out = client
            .count_tokens()
            .model_id(format!("anthropic.{base}"))
            .input(aws_sdk_bedrockruntime::types::CountTokensInput::Converse(
                input,
            ))
            .send()
            .await
            .map_err(|e| errors::from_sdk(&e, &model.alias))?;
        Ok(u64::try_from(out.input_tokens).ok())
    }

    async fn embed(
        &self,
        model: &ModelRuntime,
        request: &EmbedRequest,
    ) -> Result<super::EmbeddingOutput, ProviderError> {
        embed::embed(self.client(model)?, model, request).await
    }
}
