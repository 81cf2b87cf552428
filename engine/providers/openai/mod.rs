//! Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, another gateway): the neutral request
//! is rendered as an OpenAI chat body (or, for `passthrough` aliases, the client's own OpenAI
//! chat body is forwarded with the upstream model id substituted), answers are read back into
//! the neutral types, and streams are mapped chunk by chunk as they arrive.

mod answer;
mod chunk;
mod mapping;
mod sse;

mod body;

use super::{EmbeddingOutput, Provider, ProviderError};
use crate::engine::ModelRuntime;
use crate::inference::{EmbedRequest, EventStream, Request, Response};
use crate::upstream::RetryPolicy;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Looks up an environment variable (tests pass their own).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// An API key that never prints.
#[derive(Clone)]
struct ApiKey(HeaderValue);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// The OpenAI-compatible provider: one HTTP client, and the key of each alias.
pub struct OpenAi {
    client: crate::upstream::HttpClient,
    keys: HashMap<String, ApiKey>,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("aliases", &self.keys.len())
            .finish()
    }
}

impl OpenAi {
    /// Builds the client and reads each alias's API key from `env` (once, at start).
    pub fn build(models: &[&ModelRuntime], env: &EnvLookup) -> Result<Self, String> {
        let client = crate::upstream::http_client()?;
        let mut keys = HashMap::new();
        for m in models {
            if let Some(var) = &m.upstream_settings.api_key_env {
                let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!(
                        "model `{}`: the environment variable `{var}` (its `api_key_env`) is not set",
                        m.alias
                    )
                })?;
                let mut header =
                    HeaderValue::from_str(&format!("Bearer {value}")).map_err(|_| {
                        format!(
                            "model `{}`: the value of `{var}` is not usable in an HTTP header",
                            m.alias
                        )
                    })?;
                header.set_sensitive(true);
                keys.insert(m.alias.clone(), ApiKey(header));
            }
        }
        Ok(Self { client, keys })
    }

    /// Sends `body` to `<base_url>/<path>` with retries for throttling and transient failures;
    /// returns the response once its status is a success.
    async fn send(
        &self,
        model: &ModelRuntime,
        path: &str,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, ProviderError> {
        let base = model.upstream_settings.base_url.as_deref().unwrap_or("");
        let url = format!("{base}/{path}");
        let policy = model.upstream_settings.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = http::Request::post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .body(Full::new(body.clone()))
                .map_err(|e| {
                    tracing::error!(model = %model.alias, error = %e, "cannot build the upstream request");
                    ProviderError::Upstream
                })?;
            if let Some(key) = self.keys.get(&model.alias) {
                request
                    .headers_mut()
                    .insert(header::AUTHORIZATION, key.0.clone());
            }
            crate::telemetry::inject(request.headers_mut());
            let sent = self.client.request(request).await;
            if attempt > 1 {
                // Recorded once, by the last attempt (a later record would add a duplicate).
                let last = matches!(&sent, Ok(r) if r.status().is_success())
                    || attempt >= policy.max_attempts;
                if last {
                    tracing::Span::current().record("retries", i64::from(attempt - 1));
                }
            }
            let error = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => error_of(model, response).await,
                Err(e) => {
                    tracing::warn!(model = %model.alias, error = %e, "upstream connection failed");
                    ProviderError::Upstream
                }
            };
            let retryable = matches!(
                error,
                ProviderError::Throttled { .. } | ProviderError::Upstream | ProviderError::Timeout
            );
            if !retryable || attempt >= policy.max_attempts {
                return Err(error);
            }
            let wait = backoff(policy, attempt, &error);
            tracing::info!(model = %model.alias, attempt, wait_ms = wait.as_millis() as u64, "retrying the upstream call");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff with full jitter, or the upstream's `Retry-After` when it is shorter
/// than the longest backoff.
fn backoff(policy: RetryPolicy, attempt: u32, error: &ProviderError) -> Duration {
    if let ProviderError::Throttled {
        retry_after: Some(s),
    } = error
    {
        let asked = Duration::from_secs(*s);
        if asked <= policy.max_backoff {
            return asked;
        }
    }
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let fraction = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    exp.mul_f64(fraction.max(0.1))
}

/// An error status → a provider error (the upstream's message only for a validation error).
async fn error_of(
    model: &ModelRuntime,
    response: http::Response<hyper::body::Incoming>,
) -> ProviderError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::Limited::new(response.into_body(), 64 * 1024).collect(),
    )
    .await
    {
        Ok(Ok(c)) => c.to_bytes(),
        _ => Bytes::new(),
    };
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("upstream status {}", status.as_u16()));
    tracing::warn!(model = %model.alias, status = status.as_u16(), error = %message, "upstream call failed");
    mapping::from_status(status, retry_after, message)
}

/// The body to send for a chat request: the client's own OpenAI chat body for `passthrough`
/// aliases (every field forwarded), else one rendered from the neutral request; the model id
/// replaced, and for streams usage asked for (the gateway accounts tokens).
fn chat_body(
    model: &ModelRuntime,
    request: &Request,
    stream: bool,
) -> Result<Bytes, ProviderError> {
    let mut map: Map<String, Value> = match &request.raw_openai {
        Some(raw) if model.upstream_settings.passthrough => {
            serde_json::from_slice(&raw.0).map_err(|_| ProviderError::Upstream)?
        }
        _ => body::render(request),
    };
    map.insert("model".into(), Value::String(model.upstream.clone()));
    map.insert("stream".into(), Value::Bool(stream));
    if stream {
        let opts = map.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        } else {
            *opts = json!({"include_usage": true});
        }
    } else {
        map.remove("stream_options");
    }
    serde_json::to_vec(&map)
        .map(Bytes::from)
        .map_err(|_| ProviderError::Upstream)
}

#[async_trait]
impl Provider for OpenAi {
    async fn chat(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let body = chat_body(model, request, false)?;
        let response = self.send(model, "chat/completions", body).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                tracing::warn!(model = %model.alias, error = %e, "reading the upstream answer failed");
                ProviderError::Upstream
            })?
            .to_bytes();
        let answer = match answer::completion(&bytes) {
            Some(answer) => answer,
            None => {
                let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    tracing::warn!(model = %model.alias, "the upstream answer is not JSON");
                    ProviderError::Upstream
                })?;
                mapping::completion(&v)
            }
        };
        answer.ok_or_else(|| {
            tracing::warn!(model = %model.alias, "the upstream answer has no choices");
            ProviderError::Upstream
        })
    }

    async fn chat_stream(
        &self,
        model: &ModelRuntime,
        request: &Request,
    ) -> Result<EventStream, ProviderError> {
        let body = chat_body(model, request, true)?;
        let response = self.send(model, "chat/completions", body).await?;
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            tracing::warn!(model = %model.alias, "the upstream answered a stream request without an event stream");
            return Err(ProviderError::Upstream);
        }
        Ok(sse::events(response.into_body(), model.alias.clone()))
    }

    async fn embed(
        &self,
        model: &ModelRuntime,
        request: &EmbedRequest,
    ) -> Result<EmbeddingOutput, ProviderError> {
        let mut body = json!({
            "model": model.upstream,
            "input": request.inputs,
            "encoding_format": "float",
        });
        if let Some(d) = request.dimensions {
            body["dimensions"] = json!(d);
        }
        if let Some(u) = &request.user {
            body["user"] = json!(u);
        }
        let response = self
            .send(model, "embeddings", Bytes::from(body.to_string()))
            .await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ProviderError::Upstream)?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| ProviderError::Upstream)?;
        mapping::embeddings(&v, request.inputs.len()).ok_or_else(|| {
            tracing::warn!(model = %model.alias, "the upstream embeddings answer has an unexpected shape");
            ProviderError::Upstream
        })
    }
}
