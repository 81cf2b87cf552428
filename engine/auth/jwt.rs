//! Cognito JWTs: access and id tokens verified against the user pool's JWKS.
//!
//! RS256 only. The JWKS is fetched once and cached; a token with an unknown `kid` triggers a
//! refetch at most once per [`REFETCH_INTERVAL`] after the last successful fetch (key rotation
//! without a restart, and no way for garbage tokens to make the gateway hammer Cognito). One
//! fetch runs at a time and everyone waiting shares its result; a failed fetch is retried
//! after a backoff (1 s doubling to [`MAX_BACKOFF`]), and while it fails tokens are answered
//! 503, never 401. Checked: signature, `iss`, `exp`
//! and `nbf` with a small leeway, `token_use`, and `client_id` (access tokens) or `aud` (id
//! tokens). Groups come from `cognito:groups`.

use super::{AuthError, Identity};
use crate::config::routes::AuthMethod;
use crate::directory::DirectoryError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Least time between two JWKS fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest wait between two failed JWKS fetches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failed JWKS fetch.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// When the JWKS was fetched and how the last attempts went.
#[derive(Debug, Default)]
struct FetchState {
    last_success: Option<Instant>,
    /// Consecutive failures, and when the next attempt may run.
    failures: u32,
    retry_at: Option<Instant>,
}

/// Clock skew tolerated for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Where tokens come from and whom they are for.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Expected `iss`: `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    pub issuer: String,
    /// The app client id tokens must be issued to.
    pub client_id: String,
    /// Where the JWKS is served (`<issuer>/.well-known/jwks.json`, or a local endpoint in tests).
    pub jwks_url: String,
}

impl JwtConfig {
    /// The usual Cognito URLs for a pool; `endpoint` overrides where the JWKS is fetched
    /// (tests), the issuer stays the pool's.
    pub fn cognito(region: &str, pool_id: &str, client_id: &str, endpoint: Option<&str>) -> Self {
        let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}");
        let jwks_url = match endpoint {
            Some(e) => format!(
                "{}/{pool_id}/.well-known/jwks.json",
                e.trim_end_matches('/')
            ),
            None => format!("{issuer}/.well-known/jwks.json"),
        };
        Self {
            issuer,
            client_id: client_id.to_string(),
            jwks_url,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    token_use: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, rename = "cognito:username")]
    cognito_username: Option<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, s: &str) -> bool {
        match self {
            Audience::One(a) => a == s,
            Audience::Many(v) => v.iter().any(|a| a == s),
        }
    }
}

/// Most verified tokens remembered.
const VERIFIED_CAPACITY: usize = 10_000;

/// A token already verified: who it is for and until when it may be trusted.
struct Verified {
    identity: Identity,
    until: i64,
}

/// Verifies tokens; holds the cached JWKS and the tokens already verified.
///
/// An RS256 check costs about 150 µs with the pure-Rust RSA backend, so a token whose
/// signature and claims have been checked is remembered (by its SHA-256) until it expires:
/// a JWT cannot be revoked before its `exp` anyway, so this trusts nothing the token itself
/// does not already grant.
pub struct JwtVerifier {
    verified: RwLock<HashMap<[u8; 32], Verified>>,
    config: JwtConfig,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Held during a fetch: one fetch at a time, the others wait for its result.
    fetch: tokio::sync::Mutex<FetchState>,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// True when a credential is shaped like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut n = 0;
    for part in token.split('.') {
        n += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    n == 3
}

impl JwtVerifier {
    /// The issuer whose tokens are accepted (the user pool's URL).
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// A verifier; nothing is fetched until the first token arrives.
    pub fn new(config: JwtConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Access tokens carry no `aud`; the audience is checked by hand per `token_use`.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(Self {
            config,
            http,
            keys: RwLock::new(HashMap::new()),
            verified: RwLock::new(HashMap::new()),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            validation,
        })
    }

    /// Makes sure the JWKS has been asked for `kid`: fetches it unless a fetch succeeded
    /// within [`REFETCH_INTERVAL`] or a failed one is backing off. `Err` (503) while the last
    /// attempt failed: then an unknown `kid` may be a valid new key, so it is no 401.
    async fn refresh(&self, kid: &str) -> Result<(), AuthError> {
        let mut state = self.fetch.lock().await;
        // Someone else's fetch, while this caller waited, may have brought the key.
        if self.key(kid).is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(retry_at) = state.retry_at {
            if now < retry_at {
                return Err(unavailable(
                    "the JWKS could not be fetched; retrying after a backoff",
                ));
            }
        } else if state
            .last_success
            .is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL)
        {
            return Ok(());
        }
        let fetching = tracing::info_span!(target: crate::telemetry::TARGET, "jwks.fetch", otel.kind = "client");
        match tracing::Instrument::instrument(self.fetch_keys(), fetching).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
                *state = FetchState {
                    last_success: Some(Instant::now()),
                    failures: 0,
                    retry_at: None,
                };
                Ok(())
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1u32 << state.failures.saturating_sub(1).min(8))
                    .min(MAX_BACKOFF);
                state.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(error = %e, failures = state.failures, backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "JWKS fetch failed");
                Err(unavailable(e))
            }
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("JWKS fetch failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable RS256 key".to_string());
        }
        Ok(keys)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Verifies a token and returns who it is for.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = crate::directory::now();
        if let Some(v) = self.verified.read().ok().and_then(|m| {
            m.get(&digest)
                .filter(|v| v.until + i64::try_from(LEEWAY_SECS).unwrap_or(0) > now)
                .map(|v| v.identity.clone())
        }) {
            return Ok(v);
        }
        let (identity, exp) = self.verify_uncached(token).await?;
        if let Ok(mut m) = self.verified.write() {
            if m.len() >= VERIFIED_CAPACITY {
                m.retain(|_, v| v.until > now);
                if m.len() >= VERIFIED_CAPACITY {
                    m.clear();
                }
            }
            m.insert(
                digest,
                Verified {
                    identity: identity.clone(),
                    until: exp,
                },
            );
        }
        Ok(identity)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Identity, i64), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.refresh(&kid).await?;
                self.key(&kid).ok_or(AuthError::Invalid)?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                _ => AuthError::Invalid,
            }
        })?;
        let c = data.claims;
        let username = match c.token_use.as_str() {
            "access" if c.client_id.as_deref() == Some(self.config.client_id.as_str()) => {
                c.username
            }
            "id" if c
                .aud
                .as_ref()
                .is_some_and(|a| a.contains(&self.config.client_id)) =>
            {
                c.cognito_username
            }
            _ => return Err(AuthError::Invalid),
        };
        Ok((
            Identity {
                username: username.unwrap_or_else(|| c.sub.clone()),
                user_id: c.sub,
                groups: c.groups,
                method: AuthMethod::Jwt,
                key_id: None,
                key_expires_at: None,
            },
            c.exp,
        ))
    }
}

fn unavailable(m: impl Into<String>) -> AuthError {
    AuthError::Directory(DirectoryError::Unavailable(m.into()))
}
