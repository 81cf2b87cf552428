//! Cognito JWTs: access and id tokens verified against the user pool's JWKS.
//!
//! RS256 only. The JWKS is fetched once and cached; a token with an unknown `kid` triggers a
//! refetch at most once per [`REFETCH_INTERVAL`] (key rotation without a restart, and no way
//! for garbage tokens to make the gateway hammer Cognito). Checked: signature, `iss`, `exp`
//! and `nbf` with a small leeway, `token_use`, and `client_id` (access tokens) or `aud` (id
//! tokens). Groups come from `cognito:groups`.

use super::{AuthError, Identity};
use crate::config::routes::AuthMethod;
use crate::directory::DirectoryError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Least time between two JWKS fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
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
    last_fetch: Mutex<Option<Instant>>,
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
            last_fetch: Mutex::new(None),
            validation,
        })
    }

    /// Fetches the JWKS unless one was fetched within [`REFETCH_INTERVAL`].
    async fn refresh(&self) -> Result<(), AuthError> {
        {
            let Ok(mut last) = self.last_fetch.lock() else {
                return Err(unavailable("JWKS state poisoned"));
            };
            if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(format!("JWKS fetch failed: {e}")))?
            .json()
            .await
            .map_err(|e| unavailable(format!("JWKS is not valid JSON: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            keys.insert(kid, key);
        }
        tracing::info!(keys = keys.len(), "JWKS fetched");
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        Ok(())
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
                self.refresh().await?;
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
