//! Embeddings through InvokeModel: Amazon Titan Text Embeddings (one text per call, calls run
//! concurrently) and Cohere Embed (up to 96 texts per call).

use super::client::Client;
use super::errors;
use crate::engine::ModelRuntime;
use crate::inference::EmbedRequest;
use crate::providers::{EmbeddingOutput, ProviderError};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Titan calls in flight at once for one request.
const TITAN_CONCURRENCY: usize = 8;
/// Cohere's limit of texts per call.
const COHERE_BATCH: usize = 96;

/// The embedding model families this provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Titan Text Embeddings v2: `dimensions` 256, 512 or 1024.
    TitanV2,
    /// Titan Text Embeddings v1 / G1: fixed 1536 dimensions.
    TitanV1,
    /// Cohere Embed v3: fixed dimensions.
    CohereV3,
    /// Cohere Embed v4: `output_dimension` 256, 512, 1024 or 1536.
    CohereV4,
}

fn family(upstream: &str) -> Option<Family> {
    if upstream.contains("titan-embed-text-v2") {
        Some(Family::TitanV2)
    } else if upstream.contains("titan-embed") {
        Some(Family::TitanV1)
    } else if upstream.contains("cohere.embed-v4") {
        Some(Family::CohereV4)
    } else if upstream.contains("cohere.embed") {
        Some(Family::CohereV3)
    } else {
        None
    }
}

fn invalid(param: &str, message: String) -> ProviderError {
    ProviderError::InvalidParam {
        param: param.to_string(),
        message,
    }
}

fn check_dimensions(f: Family, d: Option<u32>) -> Result<(), ProviderError> {
    let allowed: &[u32] = match f {
        Family::TitanV2 => &[256, 512, 1024],
        Family::CohereV4 => &[256, 512, 1024, 1536],
        Family::TitanV1 | Family::CohereV3 => &[],
    };
    match d {
        None => Ok(()),
        Some(d) if allowed.contains(&d) => Ok(()),
        Some(d) if allowed.is_empty() => Err(invalid(
            "dimensions",
            format!("this model has a fixed vector length; `dimensions` ({d}) is not supported"),
        )),
        Some(d) => Err(invalid(
            "dimensions",
            format!("`dimensions` must be one of {allowed:?} for this model, got {d}"),
        )),
    }
}

async fn invoke(
    client: &Client,
    model: &ModelRuntime,
    body: &Value,
) -> Result<Value, ProviderError> {
    let path = Client::path(&model.upstream, "invoke");
    let response = client
        .send(&model.alias, &path, Bytes::from(body.to_string()))
        .await?;
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            errors::stream_failure(&model.alias, &format!("reading the answer failed: {e}"))
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        tracing::warn!(model = %model.alias, error = %e, "bedrock embedding answer is not JSON");
        ProviderError::Upstream
    })
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

fn malformed(model: &ModelRuntime, what: &str) -> ProviderError {
    tracing::warn!(model = %model.alias, what, "bedrock embedding answer has an unexpected shape");
    ProviderError::Upstream
}

async fn titan_one(
    client: &Client,
    model: &ModelRuntime,
    body: Value,
) -> Result<(Vec<f32>, u64), ProviderError> {
    let v = invoke(client, model, &body).await?;
    let vector = floats(&v["embedding"]).ok_or_else(|| malformed(model, "embedding"))?;
    Ok((vector, v["inputTextTokenCount"].as_u64().unwrap_or(0)))
}

/// Embeds the request's texts with `model`.
pub async fn embed(
    client: &Client,
    model: &ModelRuntime,
    request: &EmbedRequest,
) -> Result<EmbeddingOutput, ProviderError> {
    let Some(f) = family(&model.upstream) else {
        return Err(ProviderError::InvalidRequest(format!(
            "model `{}` is not a supported embedding model (Titan Text Embeddings or Cohere Embed)",
            model.alias
        )));
    };
    check_dimensions(f, request.dimensions)?;
    let texts: Vec<&str> = request.inputs.iter().map(String::as_str).collect();
    match f {
        Family::TitanV1 | Family::TitanV2 => {
            let bodies: Vec<Value> = texts
                .iter()
                .map(|t| {
                    let mut body = json!({"inputText": t});
                    if f == Family::TitanV2 {
                        body["normalize"] = json!(true);
                        if let Some(d) = request.dimensions {
                            body["dimensions"] = json!(d);
                        }
                    }
                    body
                })
                .collect();
            let results: Vec<(Vec<f32>, u64)> = futures_util::stream::iter(bodies)
                .map(|body| titan_one(client, model, body))
                .buffered(TITAN_CONCURRENCY)
                .try_collect()
                .await?;
            Ok(EmbeddingOutput {
                prompt_tokens: results.iter().map(|r| r.1).sum(),
                vectors: results.into_iter().map(|r| r.0).collect(),
            })
        }
        Family::CohereV3 | Family::CohereV4 => {
            let input_type = request.input_type.as_deref().unwrap_or("search_document");
            if !matches!(
                input_type,
                "search_document" | "search_query" | "classification" | "clustering"
            ) {
                return Err(invalid(
                    "input_type",
                    format!(
                        "`input_type` must be `search_document`, `search_query`, `classification` or `clustering`, got `{input_type}`"
                    ),
                ));
            }
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(COHERE_BATCH) {
                let mut body = json!({"texts": batch, "input_type": input_type});
                if f == Family::CohereV4 {
                    body["embedding_types"] = json!(["float"]);
                    if let Some(d) = request.dimensions {
                        body["output_dimension"] = json!(d);
                    }
                }
                let v = invoke(client, model, &body).await?;
                // v3 answers `embeddings: [[..]]`; with `embedding_types`, `{"float": [[..]]}`.
                let list = match &v["embeddings"] {
                    Value::Array(a) => a.clone(),
                    Value::Object(o) => o
                        .get("float")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                if list.len() != batch.len() {
                    return Err(malformed(model, "embeddings"));
                }
                for e in &list {
                    vectors.push(floats(e).ok_or_else(|| malformed(model, "embeddings"))?);
                }
            }
            // Cohere on Bedrock reports no token counts in the body: estimate 4 bytes a token.
            let prompt_tokens = texts.iter().map(|t| t.len().div_ceil(4) as u64).sum();
            Ok(EmbeddingOutput {
                vectors,
                prompt_tokens,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_dimensions() {
        assert_eq!(
            family("amazon.titan-embed-text-v2:0"),
            Some(Family::TitanV2)
        );
        assert_eq!(family("amazon.titan-embed-text-v1"), Some(Family::TitanV1));
        assert_eq!(family("cohere.embed-english-v3"), Some(Family::CohereV3));
        assert_eq!(family("us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(family("amazon.nova-pro-v1:0"), None);
        assert!(check_dimensions(Family::TitanV2, Some(512)).is_ok());
        assert!(check_dimensions(Family::TitanV2, Some(100)).is_err());
        assert!(check_dimensions(Family::CohereV3, Some(1024)).is_err());
    }
}
