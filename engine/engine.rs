//! The engine: config compiled once into immutable runtime state, and the one request path
//! every front end (local server, Lambda, tests) drives.

use crate::auth::cache::IdentityCache;
use crate::auth::jwt::JwtVerifier;
use crate::auth::{self, Identity};
use crate::body::Body;
use crate::config::ConfigErrors;
pub use crate::config::compile::{CompiledConfig, ModelRuntime};
use crate::config::routes::ResourceKind;
use crate::directory::Directory;
use crate::errors::ApiError;
use crate::handlers::{self, Ctx};
use crate::policy::{Owned, PrincipalInfo, RequestFacts};
use crate::providers::Providers;
use crate::resource::{self, Target};
use crate::router::Match;
use crate::telemetry;
use crate::usage::Ledger;
use crate::usage::store::UsageStore;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

/// The client address, set by the front end as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// When the answer must be complete, set by a front end with a time limit (Lambda) as a
/// request extension, already less a margin for sending the end of the answer. Buffered calls
/// time out at it; streams end there with what they have and a warning.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub tokio::time::Instant);

/// The outcome of [`Engine::authenticate_early`], carried to [`Engine::handle`] as a request
/// extension (set only by a front end; clients cannot set extensions).
#[derive(Clone)]
pub struct EarlyAuth {
    refused: bool,
    result: Arc<std::sync::Mutex<Option<Result<Identity, auth::AuthError>>>>,
}

impl EarlyAuth {
    /// True when authentication failed: the answer is an error whatever the body holds.
    pub fn refused(&self) -> bool {
        self.refused
    }

    fn take(&self) -> Option<Result<Identity, auth::AuthError>> {
        self.result.lock().ok().and_then(|mut r| r.take())
    }
}

impl std::fmt::Debug for EarlyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyAuth")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// The immutable engine, shared as `Arc<Engine>` by every request.
pub struct Engine {
    config: CompiledConfig,
    directory: Arc<dyn Directory>,
    identities: IdentityCache,
    jwt: Option<JwtVerifier>,
    providers: Providers,
    mcp: crate::handlers::mcp::Gateway,
    loaded_at: i64,
    request_prefix: String,
    counter: AtomicU64,
    ledger: Ledger,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("routes", &self.config.router.routes().len())
            .field("models", &self.config.models.len())
            .field("directory", &self.directory.kind())
            .finish()
    }
}

impl Engine {
    /// Loads and compiles `config_dir` and binds the engine to a directory.
    pub fn load(config_dir: &Path, directory: Arc<dyn Directory>) -> Result<Self, ConfigErrors> {
        Ok(Self::new(CompiledConfig::load(config_dir)?, directory))
    }

    /// Binds compiled config to a directory, with the default identity cache and only the
    /// providers that need no upstream (`echo`); aliases of other providers answer 501 until
    /// providers are given with [`Engine::with_providers`] or [`Engine::providers_from`].
    pub fn new(config: CompiledConfig, directory: Arc<dyn Directory>) -> Self {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let env: crate::handlers::mcp::upstream::EnvLookup =
            Arc::new(|name| std::env::var(name).ok());
        let mcp = crate::handlers::mcp::Gateway::new(&config.mcp, &env);
        let ledger = Ledger::new(None, config.limits.clone());
        Self {
            mcp,
            ledger,
            config,
            directory,
            identities: IdentityCache::default(),
            jwt: None,
            providers: Providers::default(),
            loaded_at: crate::directory::now(),
            request_prefix: hex::encode(b),
            counter: AtomicU64::new(0),
        }
    }

    /// [`Engine::new`] with the given identity cache.
    pub fn with_cache(
        config: CompiledConfig,
        directory: Arc<dyn Directory>,
        identities: IdentityCache,
    ) -> Self {
        Self::new(config, directory).identity_cache(identities)
    }

    /// [`Engine::new`] with the provider clients built for the config (see
    /// [`Providers::build`]).
    pub fn with_providers(
        config: CompiledConfig,
        directory: Arc<dyn Directory>,
        providers: Providers,
    ) -> Self {
        Self::new(config, directory).providers_from(providers)
    }

    /// Uses these provider clients.
    pub fn providers_from(mut self, providers: Providers) -> Self {
        self.providers = providers;
        self
    }

    /// Reads the secrets of upstream MCP servers' headers from `env` instead of the process
    /// environment (tests).
    pub fn mcp_env(mut self, env: crate::handlers::mcp::upstream::EnvLookup) -> Self {
        self.mcp = crate::handlers::mcp::Gateway::new(&self.config.mcp, &env);
        self
    }

    /// The MCP endpoint's upstream servers and settings.
    pub fn mcp(&self) -> &crate::handlers::mcp::Gateway {
        &self.mcp
    }

    /// The Cognito issuer whose tokens are accepted, if any.
    pub fn jwt_issuer(&self) -> Option<&str> {
        self.jwt.as_ref().map(JwtVerifier::issuer)
    }

    /// Authorizes `identity` to call the MCP tool `tool` of `server` (`call_tool`).
    pub fn authorize_tool(
        &self,
        identity: &Identity,
        tool: &str,
        server: &str,
        facts: &RequestFacts,
    ) -> crate::policy::Verdict {
        let policy = &self.config.policy;
        match policy.action(crate::config::mcp::CALL_TOOL) {
            Some(action) => {
                policy.authorize_tool(&principal(identity), action, tool, server, facts)
            }
            None => crate::policy::Verdict {
                allowed: false,
                reasons: Vec::new(),
                errors: vec!["the schema has no `call_tool` action".into()],
            },
        }
    }

    /// Records usage in `store` and enforces `limits.yaml` against it (without a store, usage
    /// goes to the log only and limits are not enforced).
    pub fn usage_store(mut self, store: Arc<dyn UsageStore>) -> Self {
        self.ledger = Ledger::new(Some(store), self.config.limits.clone());
        self
    }

    /// The usage ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Uses this identity cache.
    pub fn identity_cache(mut self, identities: IdentityCache) -> Self {
        self.identities = identities;
        self
    }

    /// Model aliases in config order.
    pub fn models(&self) -> impl Iterator<Item = &ModelRuntime> {
        self.config.models.values()
    }

    /// One alias, by its name or one of its `names`.
    pub fn model(&self, name: &str) -> Option<&ModelRuntime> {
        self.config.model(name)
    }

    /// The model an alias names, or the 404 that answers unknown and hidden aliases alike.
    pub fn known_model(&self, name: &str) -> Result<&ModelRuntime, ApiError> {
        self.model(name)
            .ok_or_else(|| ApiError::model_not_found(name))
    }

    /// The dialect of the route a request goes to (OpenAI's when it goes nowhere), for the
    /// shape of its error answers.
    fn dialect_of(&self, request: &Request<Bytes>) -> crate::errors::Dialect {
        match self
            .config
            .router
            .at(request.method(), request.uri().path())
        {
            Match::Found(route, _) => route.handler.dialect(),
            _ => crate::errors::Dialect::OpenAi,
        }
    }

    /// Providers.
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Accepts Cognito tokens on routes that list `jwt`.
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The identity cache (management handlers forget what they change).
    pub fn identities(&self) -> &IdentityCache {
        &self.identities
    }

    /// When the engine was built (seconds since the epoch).
    pub fn loaded_at(&self) -> i64 {
        self.loaded_at
    }

    /// Largest accepted request body.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// True when `method path` is a public health route: answered at once from static data,
    /// so `serve` can answer it off the workers that run model calls.
    pub fn is_health_probe(&self, method: &Method, path: &str) -> bool {
        matches!(
            self.config.router.at(method, path),
            Match::Found(route, _) if route.public
                && route.handler == crate::config::routes::HandlerKind::Health
        )
    }

    /// True when `identity` may invoke `model` with the action of its kind.
    pub fn may_invoke(
        &self,
        identity: &Identity,
        model: &ModelRuntime,
        facts: &RequestFacts,
    ) -> bool {
        let Some(action) = self.config.policy.action(model.invoke_action()) else {
            return false;
        };
        self.config
            .policy
            .authorize_model(&principal(identity), action, &model.alias, facts)
            .allowed
    }

    /// True when `identity` may do `action` on the account of `username` (id `user_id`).
    pub fn may_on_account(
        &self,
        identity: &Identity,
        action: &str,
        username: &str,
        user_id: &str,
        facts: &RequestFacts,
    ) -> bool {
        let policy = &self.config.policy;
        let Some(action) = policy.action(action) else {
            return false;
        };
        policy
            .authorize_owned(
                &principal(identity),
                action,
                &Owned {
                    kind: &policy.types.account,
                    id: username,
                    owner_id: user_id,
                    name: None,
                },
                facts,
            )
            .allowed
    }

    /// True when `identity` may do `action` on the route `route` (`Api::"<route>"`).
    pub fn may_on_api(
        &self,
        identity: &Identity,
        action: &str,
        route: &str,
        facts: &RequestFacts,
    ) -> bool {
        let policy = &self.config.policy;
        let Some(action) = policy.action(action) else {
            return false;
        };
        policy
            .authorize_api(&principal(identity), action, route, facts)
            .allowed
    }

    /// Authenticates a request from its head alone, before its body is read: `None` when the
    /// route is unknown, public, or an MCP route whose origin check fails (those take the
    /// usual path). A front end puts the result into the request's extensions, where
    /// [`Engine::handle`] uses it instead of authenticating again, and need not read the
    /// body of a refused request: the answer does not depend on it.
    pub async fn authenticate_early(&self, head: &http::request::Parts) -> Option<EarlyAuth> {
        let Match::Found(route, _) = self.config.router.at(&head.method, head.uri.path()) else {
            return None;
        };
        if route.public
            || (route.handler == crate::config::routes::HandlerKind::Mcp
                && handlers::mcp::check_origin(&self.mcp, &head.headers).is_err())
        {
            return None;
        }
        let result = auth::authenticate(
            &route.auth,
            &head.headers,
            self.directory.as_ref(),
            &self.identities,
            self.jwt.as_ref(),
        )
        .await;
        Some(EarlyAuth {
            refused: result.is_err(),
            result: Arc::new(std::sync::Mutex::new(Some(result))),
        })
    }

    fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("req_{}{:012x}", self.request_prefix, n)
    }

    /// Answers one request. Never panics on client input; every failure is an OpenAI-style
    /// error response.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Body> {
        let started = Instant::now();
        let request_id = self.next_request_id();
        let trace = telemetry::start(&request, &request_id);
        let trace_id = trace.trace_id.as_str();
        let (mut response, user) = match self
            .dispatch(&request, &request_id, trace_id)
            .instrument(trace.span.clone())
            .await
        {
            Ok((r, user)) => (r, user),
            Err((e, user)) => (e.into_response_in(self.dialect_of(&request)), user),
        };
        if request.method() == Method::HEAD {
            *response.body_mut() = Body::empty();
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let status = response.status().as_u16();
        telemetry::finish(&trace, &mut response, user.as_deref());
        let user = user.as_deref().unwrap_or("-");
        if let Some(emf) = crate::metrics::emf() {
            crate::metrics::write_line(&emf.request_line(
                crate::usage::Ids {
                    request_id: &request_id,
                    trace_id,
                },
                request.method().as_str(),
                request.uri().path(),
                status,
                user,
                micros,
            ));
        } else {
            tracing::info!(
                target: "pennyworth::access",
                request_id = %request_id,
                trace_id,
                method = %request.method(),
                path = request.uri().path(),
                status,
                user,
                micros,
                "request"
            );
        }
        response
    }

    /// The request path, in the one order that is safe: route → authenticate → parse →
    /// authorize → limits → handler. Authentication comes before parsing so an anonymous caller
    /// learns nothing about bodies; authorization comes after parsing because the
    /// resource (the model) is named in the body.
    async fn dispatch(
        &self,
        request: &Request<Bytes>,
        request_id: &str,
        trace_id: &str,
    ) -> Result<(Response<Body>, Option<String>), (ApiError, Option<String>)> {
        let fail = |e: ApiError| (e, None);
        if request.body().len() > self.config.max_body_bytes {
            return Err(fail(too_large(self.config.max_body_bytes)));
        }
        let path = request.uri().path();
        let routed = tracing::info_span!(target: telemetry::TARGET, "route").entered();
        let (route, params) = match self.config.router.at(request.method(), path) {
            Match::Found(route, params) => (route, params),
            Match::WrongMethod(methods) => {
                return Err(fail(method_not_allowed(request.method(), path, methods)));
            }
            Match::NotFound => {
                return Err(fail(ApiError::not_found(
                    "unknown_url",
                    format!("unknown request URL: {} `{path}`", request.method()),
                )));
            }
        };
        drop(routed);
        telemetry::record_route(request.method().as_str(), &route.name);
        // Path parameters as the client meant them (`carol%40example.com` is `carol@example.com`),
        // so handlers, policies and error messages see the decoded id.
        let decoded = crate::router::decode_params(&params).map_err(fail)?;
        let params: Vec<(&str, &str)> = decoded.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let mut facts = RequestFacts {
            source_ip: request
                .extensions()
                .get::<ClientAddr>()
                .map(|a| a.0.ip().to_string()),
            ..RequestFacts::default()
        };

        let query = request.uri().query();
        if route.public {
            let prepared = handlers::prepare(route.handler, request.body()).map_err(fail)?;
            let ctx = Ctx {
                engine: self,
                identity: None,
                params: &params,
                request_id,
                trace_id,
                facts: &facts,
                target: &Target::None,
                query,
                deadline: request.extensions().get::<Deadline>().map(|d| d.0),
                headers: request.headers(),
            };
            return handlers::run(route.handler, ctx, prepared)
                .instrument(telemetry::handler_span(route.handler))
                .await
                .map(|r| (r, None))
                .map_err(fail);
        }

        let is_mcp = route.handler == crate::config::routes::HandlerKind::Mcp;
        if is_mcp {
            handlers::mcp::check_origin(&self.mcp, request.headers()).map_err(fail)?;
        }
        // A front end that authenticated from the headers before reading the body (`serve`)
        // hands its result over; otherwise authenticate now.
        let authenticating = telemetry::authenticate_span();
        let early = request
            .extensions()
            .get::<EarlyAuth>()
            .and_then(EarlyAuth::take);
        let authenticated = match early {
            Some(result) => result,
            None => {
                auth::authenticate(
                    &route.auth,
                    request.headers(),
                    self.directory.as_ref(),
                    &self.identities,
                    self.jwt.as_ref(),
                )
                .instrument(authenticating.clone())
                .await
            }
        };
        let identity = authenticated
            .inspect_err(|_| telemetry::record_error(&authenticating, "unauthenticated"))
            .map_err(|e| {
                let e: ApiError = e.into();
                fail(if is_mcp {
                    handlers::mcp::challenge(&self.mcp, request.headers(), e)
                } else {
                    e
                })
            })?;
        let user = Some(identity.username.clone());
        let with_user = |e: ApiError| (e, user.clone());

        let prepared = handlers::prepare(route.handler, request.body()).map_err(with_user)?;
        prepared.fill_facts(&mut facts);
        let target = resource::resolve(
            route.resource,
            &params,
            query,
            &prepared,
            &identity,
            self.directory.as_ref(),
        )
        .instrument(tracing::info_span!(target: telemetry::TARGET, "resource"))
        .await
        .map_err(with_user)?;

        let Some((action_name, action)) = &route.action else {
            return Err(with_user(ApiError::internal(&format!(
                "route `{}` has no action",
                route.name
            ))));
        };
        let p = principal(&identity);
        let policy = &self.config.policy;
        let now = crate::directory::now();
        let authorize = telemetry::authorize_span(action_name);
        let (verdict, on) = match (route.resource, &target) {
            (ResourceKind::Model, _) => {
                let name = prepared.model().unwrap_or_default();
                let model = self.known_model(name).map_err(with_user)?;
                let alias = model.alias.as_str();
                // The caller's spend enters the Cedar context of model calls (when a policy
                // or a budget reads it), and the limits stage below reuses it.
                facts.spend = self
                    .ledger
                    .spend(&identity, now)
                    .instrument(tracing::info_span!(target: telemetry::TARGET, "usage.spend"))
                    .await;
                let _in = authorize.enter();
                let verdict = policy.authorize_model(&p, action, alias, &facts);
                (verdict, format!(" on model `{alias}`"))
            }
            (_, Target::Account { username, .. }) => {
                let _in = authorize.enter();
                let verdict = policy.authorize_owned(
                    &p,
                    action,
                    &Owned {
                        kind: &policy.types.account,
                        id: username,
                        owner_id: target.owner_id(),
                        name: None,
                    },
                    &facts,
                );
                (verdict, format!(" on user `{username}`"))
            }
            (_, Target::Key { id, record, .. }) => {
                let _in = authorize.enter();
                let name = record.as_ref().map(|r| r.name.as_str()).or(Some(""));
                let verdict = policy.authorize_owned(
                    &p,
                    action,
                    &Owned {
                        kind: &policy.types.key,
                        id,
                        owner_id: target.owner_id(),
                        name,
                    },
                    &facts,
                );
                (verdict, format!(" on key `{id}`"))
            }
            (_, Target::None) => (
                authorize.in_scope(|| policy.authorize_api(&p, action, &route.name, &facts)),
                String::new(),
            ),
        };
        telemetry::record_verdict(&authorize, verdict.allowed, &verdict.reasons);
        drop(authorize);
        tracing::info!(
            target: "pennyworth::audit",
            request_id,
            trace_id,
            user = %identity.username,
            action = %action_name,
            route = %route.name,
            resource = %on.trim_start_matches(" on "),
            allowed = verdict.allowed,
            policies = ?verdict.reasons,
            errors = ?verdict.errors,
            "authorization"
        );
        if !verdict.allowed {
            // A model the caller may not see (one `GET /v1/models` leaves out: denied under
            // the facts of a plain listing) answers as if it did not exist; a denial that
            // depends on this request (its spend, stream or max_tokens) stays a 403.
            if route.resource == ResourceKind::Model {
                let name = prepared.model().unwrap_or_default();
                let listing = RequestFacts {
                    source_ip: facts.source_ip.clone(),
                    ..RequestFacts::default()
                };
                let alias = self.model(name).map_or(name, |m| m.alias.as_str());
                if !policy.authorize_model(&p, action, alias, &listing).allowed {
                    return Err(with_user(ApiError::model_not_found(name)));
                }
            }
            return Err(with_user(ApiError::forbidden(format!(
                "you are not permitted to perform `{action_name}`{on}"
            ))));
        }

        // Limits after authorization (a denied request neither counts against a rate nor
        // learns about budgets), before the handler's upstream call.
        if route.resource == ResourceKind::Model {
            self.ledger
                .check(&identity, facts.spend, now)
                .instrument(tracing::info_span!(target: telemetry::TARGET, "limits"))
                .await
                .map_err(with_user)?;
        }

        let ctx = Ctx {
            engine: self,
            identity: Some(&identity),
            params: &params,
            request_id,
            trace_id,
            facts: &facts,
            target: &target,
            query,
            deadline: request.extensions().get::<Deadline>().map(|d| d.0),
            headers: request.headers(),
        };
        handlers::run(route.handler, ctx, prepared)
            .instrument(telemetry::handler_span(route.handler))
            .await
            .map(|r| (r, user.clone()))
            .map_err(with_user)
    }
}

fn principal(identity: &Identity) -> PrincipalInfo<'_> {
    PrincipalInfo {
        user_id: &identity.user_id,
        username: &identity.username,
        groups: &identity.groups,
        auth: identity.method.as_str(),
    }
}

/// 413 for a body over the limit (also used by front ends that stop reading early).
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        crate::errors::ErrorKind::InvalidRequestError,
        "request_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> ApiError {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::errors::ErrorKind::InvalidRequestError,
        "method_not_allowed",
        format!("method {method} is not allowed on `{path}`; allowed: {allow}"),
    );
    if let Ok(v) = HeaderValue::from_str(&allow) {
        e = e.with_header(header::ALLOW, v);
    }
    e
}
