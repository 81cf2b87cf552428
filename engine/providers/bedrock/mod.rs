//! AWS Bedrock through Converse and ConverseStream (chat), CountTokens and InvokeModel
//! (embeddings), called directly: request bodies serialized with serde from the neutral
//! request (`convert.rs`, `wire.rs`), signed with SigV4 (`sign.rs`), sent on the gateway's
//! hyper client with the AWS SDK's standard retry behaviour (`client.rs`), answers and
//! ConverseStream's event stream decoded into typed structs (`response.rs`, `stream.rs`).
//! The AWS SDK supplies what is not per call: the endpoint rules (resolved once per client),
//! the credential provider chain (behind a cache shared by every client) and the service's
//! own settings (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, and `AWS_BEARER_TOKEN_BEDROCK`, a
//! Bedrock API key sent as a bearer token instead of signing, as the SDK does).
//!
//! Clients are built once, one per distinct region, endpoint and retry policy, and shared by
//! the aliases that use them.

pub mod client;
pub mod convert;
pub mod embed;
pub mod errors;
pub mod response;
pub mod sign;
pub mod stream;
pub mod wire;

use super::images::ImageFetcher;
use super::{Provider, ProviderError};
use crate::engine::ModelRuntime;
use crate::inference::{EmbedRequest, EventStream, Request, Response};
use crate::upstream::RetryPolicy;
use async_trait::async_trait;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use client::{Auth, Client, EndpointSettings};
use http_body_util::BodyExt;
use sign::CredentialCache;
use std::collections::HashMap;
use std::sync::Arc;
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
    clients: HashMap<String, Arc<Client>>,
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
    /// Builds the clients of `models` (all `provider: bedrock`): endpoints resolved here, once;
    /// credentials loaded on the first call.
    pub async fn build(
        models: &[&ModelRuntime],
        settings: BedrockSettings,
        images: Option<ImageFetcher>,
    ) -> Result<Self, String> {
        let base = match &settings.credentials {
            Some(_) => None,
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(crate::aws::http_client());
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
        let api_key = base
            .as_ref()
            .and_then(|sdk| service_setting(sdk, "bedrock", "AWS_BEARER_TOKEN", ""));
        let auth = match (&settings.credentials, &base, api_key) {
            (Some(c), _, _) => Auth::SigV4(CredentialCache::fixed(c.clone())),
            (None, _, Some(key)) => Auth::bearer(&key)
                .ok_or("AWS_BEARER_TOKEN_BEDROCK holds characters not allowed in an HTTP header")?,
            (None, Some(sdk), None) => {
                Auth::SigV4(CredentialCache::provider(sdk.credentials_provider()))
            }
            (None, None, None) => Auth::SigV4(CredentialCache::provider(None)),
        };
        // The service's own endpoint variable (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, or
        // `endpoint_url` in the profile's `services` section) before the general one.
        let default_endpoint = base.as_ref().and_then(|sdk| {
            service_setting(sdk, "Bedrock Runtime", "AWS_ENDPOINT_URL", "endpoint_url")
                .or_else(|| sdk.endpoint_url().map(str::to_string))
        });
        let default_region = settings.default_region.clone().or_else(|| {
            base.as_ref()
                .and_then(|b| b.region().map(|r| r.as_ref().to_string()))
        });
        let http = crate::upstream::http_client_with(Some(CONNECT_TIMEOUT))?;
        let mut shared: HashMap<ClientKey, Arc<Client>> = HashMap::new();
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
                endpoint: s.endpoint_url.clone().or_else(|| default_endpoint.clone()),
                retry: s.retry,
            };
            let client = match shared.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let endpoint = client::resolve_endpoint(&EndpointSettings {
                        region: key.region.clone(),
                        endpoint_url: key.endpoint.clone(),
                        use_fips: base.as_ref().and_then(|b| b.use_fips()).unwrap_or(false),
                        use_dual_stack: base
                            .as_ref()
                            .and_then(|b| b.use_dual_stack())
                            .unwrap_or(false),
                    })
                    .await
                    .map_err(|e| format!("model `{}`: {e}", m.alias))?;
                    let c = Arc::new(Client::new(
                        http.clone(),
                        &endpoint,
                        &key.region,
                        auth.clone(),
                        key.retry,
                    )?);
                    shared.insert(key, c.clone());
                    c
                }
            };
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
        self.clients
            .get(&model.alias)
            .map(Arc::as_ref)
            .ok_or_else(|| {
                tracing::error!(model = %model.alias, "no bedrock client was built for this alias");
                ProviderError::Upstream
            })
    }

    /// The Converse body of a request, images inlined first when fetching is on.
    async fn body(&self, model: &ModelRuntime, request: &Request) -> Result<Bytes, ProviderError> {
        let inlined = self.inline_images(request).await?;
        let body = convert::to_converse(inlined.as_ref().unwrap_or(request), model)?;
        to_json(&body, &model.alias)
    }
}

/// A service-specific setting of the environment or profile, as the SDK reads it.
fn service_setting(
    sdk: &aws_config::SdkConfig,
    service_id: &str,
    env: &str,
    profile: &str,
) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service_id)
        .env(env)
        .profile(profile)
        .build()
        .ok()?;
    sdk.service_config()?
        .load_config(key)
        .filter(|v| !v.is_empty())
}

fn to_json(body: &impl serde::Serialize, alias: &str) -> Result<Bytes, ProviderError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| {
        errors::dispatch_failure(
            alias,
            ProviderError::Upstream,
            &format!("cannot serialize the request: {e}"),
        )
    })
}

/// The whole body of a successful answer.
async fn read_all(
    response: http::Response<hyper::body::Incoming>,
    alias: &str,
) -> Result<Bytes, ProviderError> {
    response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| errors::stream_failure(alias, &format!("reading the answer failed: {e}")))
}

/// A successful answer's JSON, typed.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], alias: &str) -> Result<T, ProviderError> {
    serde_json::from_slice(bytes).map_err(|e| {
        errors::stream_failure(alias, &format!("the answer does not match its type: {e}"))
    })
}

#[async_trait]
impl Provider for Bedrock {
    async fn chat(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let client = self.client(model)?;
        let body = self.body(model, request).await?;
        let path = Client::path(&model.upstream, "converse");
        let response = client.send(&model.alias, &path, body).await?;
        let bytes = read_all(response, &model.alias).await?;
        Ok(response::from_converse(parse(&bytes, &model.alias)?))
    }

    async fn chat_stream(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<EventStream, ProviderError> {
        let client = self.client(model)?;
        let body = self.body(model, request).await?;
        let path = Client::path(&model.upstream, "converse-stream");
        let response = client.send(&model.alias, &path, body).await?;
        Ok(stream::events(response.into_body(), &model.alias))
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
        let body = wire::CountTokensBody {
            input: wire::CountTokensInput {
                converse: wire::CountTokensConverse {
                    additional_model_request_fields: p.additional_model_request_fields.as_ref(),
                    messages: &p.messages,
                    system: &p.system,
                    tool_config: p.tool_config.as_ref(),
                },
            },
        };
        let body = to_json(&body, &model.alias)?;
        let path = Client::path(&format!("anthropic.{base}"), "count-tokens");
        let response = client.send(&model.alias, &path, body).await?;
        let bytes = read_all(response, &model.alias).await?;
        let out: wire::CountTokensOutput = parse(&bytes, &model.alias)?;
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
