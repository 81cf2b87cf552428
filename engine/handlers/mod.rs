//! Handlers: what answers a request once it is routed, authenticated and authorized.
//!
//! Some handlers need the request body to know their Cedar resource (chat names its model),
//! so a handler runs in two phases: [`prepare`] parses and validates the body before
//! authorization, [`run`] answers after it.

pub mod admin;
pub mod anthropic;
pub mod mcp;
pub mod meta;
pub mod openai;
pub mod responses;
pub mod stream;

use crate::auth::Identity;
use crate::body::Body;
use crate::config::routes::HandlerKind;
use crate::engine::Engine;
use crate::errors::ApiError;
use crate::policy::RequestFacts;
use crate::resource::Target;
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
    /// Trace id (see [`crate::telemetry`]).
    pub trace_id: &'a str,
    /// Facts given to Cedar.
    pub facts: &'a RequestFacts,
    /// When the answer must be complete (Lambda), if the front end has a limit.
    pub deadline: Option<tokio::time::Instant>,
    /// The looked-up resource of `key` and `account` routes.
    pub target: &'a Target,
    /// The query string.
    pub query: Option<&'a str>,
    /// The request headers (MCP protocol headers, Anthropic version and beta flags).
    pub headers: &'a http::HeaderMap,
}

impl<'a> Ctx<'a> {
    /// The request and trace ids, for usage records.
    pub fn ids(&self) -> crate::usage::Ids<'a> {
        crate::usage::Ids {
            request_id: self.request_id,
            trace_id: self.trace_id,
        }
    }

    /// A path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    /// A request header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
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
    /// An Anthropic Messages request.
    Messages(Box<anthropic::types::MessagesRequest>),
    /// An Anthropic token count request.
    CountTokens(Box<anthropic::types::MessagesRequest>),
    /// An OpenAI Responses request.
    Responses(Box<responses::types::ResponsesRequest>),
    /// `POST /v1/keys`.
    KeyCreate(admin::keys::CreateKey),
    /// `POST /v1/admin/users`.
    UserCreate(admin::users::CreateUser),
    /// `PATCH /v1/admin/users/{username}`.
    UserUpdate(admin::users::UpdateUser),
    /// `POST /v1/admin/users/{username}/password`.
    PasswordSet(admin::users::SetPassword),
    /// `POST /v1/mcp`: the raw body; the handler answers malformed JSON-RPC itself.
    Mcp(Bytes),
}

impl Prepared {
    /// The model the request names, for `resource: model` routes.
    pub fn model(&self) -> Option<&str> {
        match self {
            Prepared::Chat(c) | Prepared::Completion(c) => Some(&c.model),
            Prepared::Embeddings(e) => Some(&e.model),
            Prepared::Messages(m) | Prepared::CountTokens(m) => Some(&m.model),
            Prepared::Responses(r) => Some(&r.model),
            _ => None,
        }
    }

    /// The user a body names as its target (`POST /v1/keys` `{"user": ...}`).
    pub fn target_user(&self) -> Option<&str> {
        match self {
            Prepared::KeyCreate(k) => k.user.as_deref(),
            _ => None,
        }
    }

    /// Adds what the body says to the Cedar facts.
    pub fn fill_facts(&self, facts: &mut RequestFacts) {
        if let Prepared::Chat(c) | Prepared::Completion(c) = self {
            facts.stream = c.is_stream();
            facts.max_tokens = c.output_limit().map(u64::from);
        }
        if let Prepared::Messages(m) = self {
            facts.stream = m.is_stream();
            facts.max_tokens = m.max_tokens.map(u64::from);
        }
        if let Prepared::Responses(r) = self {
            facts.stream = r.is_stream();
            facts.max_tokens = r.max_output_tokens.map(u64::from);
        }
    }
}

/// Phase one: parse and validate the body.
pub fn prepare(handler: HandlerKind, body: &Bytes) -> Result<Prepared, ApiError> {
    use openai::types::parse_object as parse;
    Ok(match handler {
        HandlerKind::ChatCompletions => Prepared::Chat(Box::new(ChatRequest::parse(body)?)),
        HandlerKind::KeysCreate => Prepared::KeyCreate(parse(body)?),
        HandlerKind::UsersCreate => Prepared::UserCreate(parse(body)?),
        HandlerKind::UsersUpdate => Prepared::UserUpdate(parse(body)?),
        HandlerKind::UsersSetPassword => Prepared::PasswordSet(parse(body)?),
        HandlerKind::Completions => Prepared::Completion(Box::new(
            openai::completions::CompletionRequest::parse(body)?,
        )),
        HandlerKind::Embeddings => {
            Prepared::Embeddings(Box::new(openai::embeddings::EmbeddingRequest::parse(body)?))
        }
        HandlerKind::Messages => {
            Prepared::Messages(Box::new(anthropic::types::MessagesRequest::parse(body)?))
        }
        HandlerKind::CountTokens => Prepared::CountTokens(Box::new(
            anthropic::types::MessagesRequest::parse_count(body)?,
        )),
        HandlerKind::Mcp => Prepared::Mcp(body.clone()),
        HandlerKind::Responses | HandlerKind::ResponsesCompact => {
            Prepared::Responses(Box::new(responses::types::ResponsesRequest::parse(body)?))
        }
        HandlerKind::Health
        | HandlerKind::OauthProtectedResource
        | HandlerKind::Version
        | HandlerKind::Whoami
        | HandlerKind::ListModels
        | HandlerKind::GetModel
        | HandlerKind::KeysList
        | HandlerKind::KeysRevoke
        | HandlerKind::KeysRevokeAll
        | HandlerKind::KeysRotate
        | HandlerKind::UsersList
        | HandlerKind::UsersGet
        | HandlerKind::UsersDelete
        | HandlerKind::Usage => Prepared::Nothing,
    })
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
        (HandlerKind::Messages, Prepared::Messages(request)) => {
            anthropic::messages::create(&ctx, *request).await
        }
        (HandlerKind::CountTokens, Prepared::CountTokens(request)) => {
            anthropic::count_tokens(&ctx, *request).await
        }
        (HandlerKind::Responses, Prepared::Responses(request)) => {
            responses::create(&ctx, *request).await
        }
        (HandlerKind::ResponsesCompact, Prepared::Responses(request)) => {
            responses::compact(&ctx, *request).await
        }
        (HandlerKind::KeysCreate, Prepared::KeyCreate(body)) => {
            admin::keys::create(&ctx, body).await
        }
        (HandlerKind::KeysList, _) => admin::keys::list(&ctx).await,
        (HandlerKind::KeysRevoke, _) => admin::keys::revoke(&ctx).await,
        (HandlerKind::KeysRevokeAll, _) => admin::keys::revoke_all(&ctx).await,
        (HandlerKind::KeysRotate, _) => admin::keys::rotate(&ctx).await,
        (HandlerKind::UsersCreate, Prepared::UserCreate(body)) => {
            admin::users::create(&ctx, body).await
        }
        (HandlerKind::UsersList, _) => admin::users::list(&ctx).await,
        (HandlerKind::UsersGet, _) => admin::users::get(&ctx),
        (HandlerKind::UsersUpdate, Prepared::UserUpdate(body)) => {
            admin::users::update(&ctx, body).await
        }
        (HandlerKind::UsersDelete, _) => admin::users::delete(&ctx).await,
        (HandlerKind::UsersSetPassword, Prepared::PasswordSet(body)) => {
            admin::users::set_password(&ctx, body).await
        }
        (HandlerKind::Mcp, Prepared::Mcp(body)) => mcp::handle(&ctx, &body).await,
        (HandlerKind::OauthProtectedResource, _) => mcp::metadata(&ctx),
        (HandlerKind::Usage, _) => admin::usage::report(&ctx).await,
        (handler, _) => Err(ApiError::internal(&format!(
            "handler `{}` reached without its parsed body",
            handler.as_str()
        ))),
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
