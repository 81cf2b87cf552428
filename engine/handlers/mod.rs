//! Handlers: what answers a request once it is routed, authenticated and authorized.
//!
//! Some handlers need the request body to know their Cedar resource (chat names its model),
//! so a handler runs in two phases: [`prepare`] parses and validates the body before
//! authorization, [`run`] answers after it.

pub mod meta;
pub mod openai;

use crate::auth::Identity;
use crate::body::Body;
use crate::config::routes::HandlerKind;
use crate::engine::Engine;
use crate::errors::ApiError;
use crate::policy::RequestFacts;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use openai::types::ChatRequest;

/// Everything a handler may use.
pub struct Ctx<'a> {
    /// The engine (models, policy, providers, directory).
    pub engine: &'a Engine,
    /// The authenticated caller (`None` on public routes).
    pub identity: Option<&'a Identity>,
    /// Path parameters.
    pub params: &'a [(&'a str, &'a str)],
    /// Request id.
    pub request_id: &'a str,
    /// Facts given to Cedar.
    pub facts: &'a RequestFacts,
    /// When the answer must be complete (Lambda), if the front end has a limit.
    pub deadline: Option<tokio::time::Instant>,
}

impl Ctx<'_> {
    /// A path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// A parsed request body.
#[derive(Debug)]
pub enum Prepared {
    /// The handler needs no body.
    Nothing,
    /// A chat completion request.
    Chat(Box<ChatRequest>),
    /// A legacy completion request, as the chat request that answers it.
    Completion(Box<ChatRequest>),
    /// An embeddings request.
    Embeddings(Box<openai::embeddings::EmbeddingRequest>),
}

impl Prepared {
    /// The model the request names, for `resource: model` routes.
    pub fn model(&self) -> Option<&str> {
        match self {
            Prepared::Chat(c) | Prepared::Completion(c) => Some(&c.model),
            Prepared::Embeddings(e) => Some(&e.model),
            Prepared::Nothing => None,
        }
    }

    /// Adds what the body says to the Cedar facts.
    pub fn fill_facts(&self, facts: &mut RequestFacts) {
        if let Prepared::Chat(c) | Prepared::Completion(c) = self {
            facts.stream = c.is_stream();
            facts.max_tokens = c.output_limit().map(u64::from);
        }
    }
}

/// Phase one: parse and validate the body.
pub fn prepare(handler: HandlerKind, body: &Bytes) -> Result<Prepared, ApiError> {
    match handler {
        HandlerKind::ChatCompletions => Ok(Prepared::Chat(Box::new(ChatRequest::parse(body)?))),
        HandlerKind::Completions => Ok(Prepared::Completion(Box::new(
            openai::completions::CompletionRequest::parse(body)?,
        ))),
        HandlerKind::Embeddings => Ok(Prepared::Embeddings(Box::new(
            openai::embeddings::EmbeddingRequest::parse(body)?,
        ))),
        HandlerKind::Health
        | HandlerKind::Version
        | HandlerKind::Whoami
        | HandlerKind::ListModels
        | HandlerKind::GetModel => Ok(Prepared::Nothing),
    }
}

/// Phase two: answer.
pub async fn run(
    handler: HandlerKind,
    ctx: Ctx<'_>,
    prepared: Prepared,
) -> Result<Response<Body>, ApiError> {
    match (handler, prepared) {
        (HandlerKind::Health, _) => Ok(meta::health()),
        (HandlerKind::Version, _) => Ok(meta::version()),
        (HandlerKind::Whoami, _) => meta::whoami(&ctx),
        (HandlerKind::ListModels, _) => openai::models::list(&ctx),
        (HandlerKind::GetModel, _) => openai::models::get(&ctx),
        (HandlerKind::ChatCompletions, Prepared::Chat(request)) => {
            openai::chat::complete(&ctx, *request).await
        }
        (HandlerKind::Completions, Prepared::Completion(request)) => {
            openai::completions::complete(&ctx, *request).await
        }
        (HandlerKind::Embeddings, Prepared::Embeddings(request)) => {
            openai::embeddings::embed(&ctx, *request).await
        }
        (HandlerKind::ChatCompletions | HandlerKind::Completions | HandlerKind::Embeddings, _) => {
            Err(ApiError::internal(
                &"a model handler was reached without its parsed body",
            ))
        }
    }
}

/// A JSON response.
pub fn json<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Response<Body>, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ApiError::internal(&e))?;
    let mut response = Response::new(Body::full(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
