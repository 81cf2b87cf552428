//! `routes.yaml`: which method and path go to which handler, with which authentication,
//! Cedar action and resource.

use serde::Deserialize;

/// Default request body limit: 6 MB, the Lambda synchronous payload limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// Gateway-wide request settings.
    #[serde(default)]
    pub settings: Settings,
    /// The route table, in order; each entry is checked as a [`RouteSpec`] on its own so
    /// that every bad route is reported, not just the first.
    pub routes: Vec<serde_norway::Value>,
    /// The MCP endpoint's settings and upstream MCP servers.
    #[serde(default)]
    pub mcp: super::mcp::McpSpec,
}

/// Gateway-wide request settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Largest accepted request body in bytes; larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique route name; also the id of its `Api::"<name>"` resource.
    pub name: String,
    /// HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// matchit path pattern, e.g. `/v1/models/{id}`.
    pub path: String,
    /// What answers the request.
    pub handler: HandlerKind,
    /// `true` for routes that need no principal (health, version). Everything else is
    /// authenticated and authorized.
    #[serde(default)]
    pub public: bool,
    /// Accepted authentication methods (default: `[api_key]`).
    #[serde(default = "default_auth")]
    pub auth: Vec<AuthMethod>,
    /// The Cedar action (an action id of the schema); required unless `public`.
    #[serde(default)]
    pub action: Option<String>,
    /// How the Cedar resource is derived (default: `api`, the route itself).
    #[serde(default)]
    pub resource: ResourceKind,
}

fn default_auth() -> Vec<AuthMethod> {
    vec![AuthMethod::ApiKey]
}

/// Handler kinds the engine can dispatch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerKind {
    /// `GET /v1/health`.
    Health,
    /// `GET /v1/version`.
    Version,
    /// `GET /v1/whoami`.
    Whoami,
    /// `GET /v1/models`.
    ListModels,
    /// `GET /v1/models/{id}`.
    GetModel,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions` (legacy), answered through chat.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/messages` (Anthropic Messages API).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/responses` (OpenAI Responses API).
    Responses,
    /// `POST /v1/responses/compact`.
    ResponsesCompact,
    /// `POST /v1/keys`.
    KeysCreate,
    /// `GET /v1/keys`.
    KeysList,
    /// `DELETE /v1/keys/{id}`.
    KeysRevoke,
    /// `DELETE /v1/keys[?user=NAME]`: every key of a user.
    KeysRevokeAll,
    /// `POST /v1/keys/{id}/rotate`.
    KeysRotate,
    /// `POST /v1/admin/users`.
    UsersCreate,
    /// `GET /v1/admin/users`.
    UsersList,
    /// `GET /v1/admin/users/{username}`.
    UsersGet,
    /// `PATCH /v1/admin/users/{username}`.
    UsersUpdate,
    /// `DELETE /v1/admin/users/{username}`.
    UsersDelete,
    /// `POST /v1/admin/users/{username}/password`.
    UsersSetPassword,
    /// `POST /v1/mcp`: the MCP endpoint (Streamable HTTP).
    Mcp,
    /// `GET /.well-known/oauth-protected-resource[/v1/mcp]`: RFC 9728 metadata.
    OauthProtectedResource,
    /// `GET /v1/usage`.
    Usage,
}

impl HandlerKind {
    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Health => "health",
            HandlerKind::Version => "version",
            HandlerKind::Whoami => "whoami",
            HandlerKind::ListModels => "list_models",
            HandlerKind::GetModel => "get_model",
            HandlerKind::ChatCompletions => "chat_completions",
            HandlerKind::Completions => "completions",
            HandlerKind::Embeddings => "embeddings",
            HandlerKind::Messages => "messages",
            HandlerKind::CountTokens => "count_tokens",
            HandlerKind::Responses => "responses",
            HandlerKind::ResponsesCompact => "responses_compact",
            HandlerKind::KeysCreate => "keys_create",
            HandlerKind::KeysList => "keys_list",
            HandlerKind::KeysRevoke => "keys_revoke",
            HandlerKind::KeysRevokeAll => "keys_revoke_all",
            HandlerKind::KeysRotate => "keys_rotate",
            HandlerKind::UsersCreate => "users_create",
            HandlerKind::UsersList => "users_list",
            HandlerKind::UsersGet => "users_get",
            HandlerKind::UsersUpdate => "users_update",
            HandlerKind::UsersDelete => "users_delete",
            HandlerKind::UsersSetPassword => "users_set_password",
            HandlerKind::Mcp => "mcp",
            HandlerKind::OauthProtectedResource => "oauth_protected_resource",
            HandlerKind::Usage => "usage",
        }
    }

    /// The API dialect whose error shape the handler's errors take.
    pub fn dialect(self) -> crate::errors::Dialect {
        match self {
            HandlerKind::Messages | HandlerKind::CountTokens => crate::errors::Dialect::Anthropic,
            _ => crate::errors::Dialect::OpenAi,
        }
    }

    /// True for handlers that need a caller (cannot be public).
    pub fn needs_caller(self) -> bool {
        !matches!(
            self,
            HandlerKind::Health | HandlerKind::Version | HandlerKind::OauthProtectedResource
        )
    }

    /// The resource kind this handler needs to be authorized.
    pub fn required_resource(self) -> ResourceKind {
        match self {
            HandlerKind::ChatCompletions
            | HandlerKind::Completions
            | HandlerKind::Embeddings
            | HandlerKind::Messages
            | HandlerKind::CountTokens
            | HandlerKind::Responses
            | HandlerKind::ResponsesCompact => ResourceKind::Model,
            HandlerKind::KeysRevoke | HandlerKind::KeysRotate => ResourceKind::Key,
            HandlerKind::KeysCreate
            | HandlerKind::KeysList
            | HandlerKind::KeysRevokeAll
            | HandlerKind::UsersGet
            | HandlerKind::UsersUpdate
            | HandlerKind::UsersDelete
            | HandlerKind::UsersSetPassword
            | HandlerKind::Usage => ResourceKind::Account,
            HandlerKind::Health
            | HandlerKind::Version
            | HandlerKind::Whoami
            | HandlerKind::ListModels
            | HandlerKind::GetModel
            | HandlerKind::UsersCreate
            | HandlerKind::UsersList
            | HandlerKind::Mcp
            | HandlerKind::OauthProtectedResource => ResourceKind::Api,
        }
    }
}

/// Authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `Authorization: Bearer pw-...` or `x-api-key: pw-...`.
    ApiKey,
    /// `Authorization: Bearer <Cognito access or id token>`.
    Jwt,
}

impl AuthMethod {
    /// The name used in Cedar context and whoami.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// How a route's Cedar resource is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// `Api::"<route name>"`.
    #[default]
    Api,
    /// `Model::"<alias>"` from the request body's `model` field.
    Model,
    /// `Key::"<id>"` from the path's `{id}`, owned by the user the key id names.
    Key,
    /// `UserAccount::"<name>"`: the path's `{username}`, else the body's or query's `user`,
    /// else the caller.
    Account,
}

impl ResourceKind {
    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Api => "api",
            ResourceKind::Model => "model",
            ResourceKind::Key => "key",
            ResourceKind::Account => "account",
        }
    }
}
