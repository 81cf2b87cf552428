//! `POST /v1/embeddings`: one vector per input, as floats or base64 (little-endian f32).

use super::super::{Ctx, json};
use super::fallback;
use super::types::parse_object;
use crate::config::models::ModelKind;
use crate::errors::ApiError;
use crate::providers::TokenUsage;
use crate::usage::UsageRecord;
use base64::Engine as _;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// Model alias.
    pub model: String,
    /// The texts.
    #[serde(default)]
    pub input: Option<EmbeddingInput>,
    /// Vector length, for models that can shorten their vectors.
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
    /// Extension for Cohere models: `search_document` (default), `search_query`,
    /// `classification` or `clustering`.
    #[serde(default)]
    pub input_type: Option<String>,
}

/// `input`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Token ids (not supported).
    Tokens(Vec<serde_json::Value>),
}

impl EmbeddingRequest {
    /// Parses and checks a body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let r: EmbeddingRequest = parse_object(body)?;
        let bad = |param: &str, msg: String| {
            Err(ApiError::bad_request("invalid_value", msg).with_param(param))
        };
        match &r.input {
            None => {
                return Err(ApiError::bad_request(
                    "missing_required_parameter",
                    "missing required parameter: `input`",
                )
                .with_param("input"));
            }
            Some(EmbeddingInput::Tokens(_)) => {
                return bad(
                    "input",
                    "`input` must be a string or an array of strings; token arrays are not supported".into(),
                );
            }
            Some(EmbeddingInput::Many(v)) if v.is_empty() || v.len() > MAX_INPUTS => {
                return bad(
                    "input",
                    format!(
                        "`input` must hold 1 to {MAX_INPUTS} strings, got {}",
                        v.len()
                    ),
                );
            }
            _ => {}
        }
        if let Some(i) = r.texts().iter().position(|t| t.is_empty()) {
            return bad("input", format!("`input[{i}]` must not be empty"));
        }
        if let Some(f) = &r.encoding_format
            && f != "float"
            && f != "base64"
        {
            return bad(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{f}`"),
            );
        }
        if r.dimensions == Some(0) {
            return bad("dimensions", "`dimensions` must be at least 1".into());
        }
        Ok(r)
    }

    /// The request in the neutral vocabulary.
    pub fn to_core(&self) -> crate::inference::EmbedRequest {
        crate::inference::EmbedRequest {
            inputs: self.texts().into_iter().map(str::to_string).collect(),
            dimensions: self.dimensions,
            user: self.user.clone(),
            input_type: self.input_type.clone(),
        }
    }

    /// The input texts.
    pub fn texts(&self) -> Vec<&str> {
        match &self.input {
            Some(EmbeddingInput::One(s)) => vec![s.as_str()],
            Some(EmbeddingInput::Many(v)) => v.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

fn base64_f32(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Answers an embeddings request.
pub async fn embed(
    ctx: &Ctx<'_>,
    request: EmbeddingRequest,
) -> Result<Response<crate::body::Body>, ApiError> {
    let model = ctx.engine.known_model(&request.model)?;
    if model.kind != ModelKind::Embedding {
        return Err(ApiError::bad_request(
            "wrong_model_kind",
            format!(
                "model `{}` is a chat model; send it to /v1/chat/completions",
                model.alias
            ),
        )
        .with_param("model"));
    }
    let identity = ctx
        .identity
        .ok_or_else(|| ApiError::internal(&"embeddings reached without an identity"))?;
    let (served, out) = fallback::embed(ctx, model, &request.to_core()).await?;
    let usage = TokenUsage {
        prompt: out.prompt_tokens,
        ..TokenUsage::default()
    };
    UsageRecord::complete(ctx.ids(), identity, served, false, usage).emit(ctx.engine.ledger());
    let base64 = request.encoding_format.as_deref() == Some("base64");
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: if base64 {
                Vector::Base64(base64_f32(&v))
            } else {
                Vector::Float(v)
            },
        })
        .collect();
    json(
        StatusCode::OK,
        &List {
            object: "list",
            data,
            model: &served.alias,
            usage: EmbeddingUsage {
                prompt_tokens: out.prompt_tokens,
                total_tokens: out.prompt_tokens,
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }
}
