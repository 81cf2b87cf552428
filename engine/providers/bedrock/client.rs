//! The direct Bedrock Runtime client of Converse, ConverseStream and CountTokens: the
//! endpoint resolved once, when the client is built, by the SDK's own endpoint rules; each
//! call a pre-serialized JSON body signed with SigV4 and sent on the gateway's hyper client,
//! with the SDK's standard retry mode (attempts, exponential backoff with full jitter, a
//! retry quota) re-created here; error answers mapped as the SDK read them.

use super::errors;
use super::sign::{CredentialCache, Signer};
use super::wire::ErrorBody;
use crate::providers::ProviderError;
use crate::upstream::{HttpClient, RetryPolicy};
use aws_sdk_bedrockruntime::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// The retry quota of a client (the SDK's standard-mode token bucket).
const QUOTA: u32 = 500;
/// What a retry takes from the quota.
const RETRY_COST: u32 = 5;
/// What a retry after a transient failure (a timeout, a 5xx) takes.
const TRANSIENT_RETRY_COST: u32 = 10;
/// The `user-agent` of Bedrock calls (not signed, as the SDK leaves it out too).
const AGENT: &str = concat!("pennyworth/", env!("CARGO_PKG_VERSION"));
/// Longest error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Error codes the SDK retries as throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];
/// Error codes the SDK retries as transient.
const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];
/// Error codes Bedrock models as retryable (`ModelNotReadyException`).
const RETRYABLE_CODES: &[&str] = &["ModelNotReadyException"];
/// Statuses the SDK retries as transient.
const TRANSIENT_STATUSES: &[u16] = &[500, 502, 503, 504];

/// How a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not at all.
    No,
    /// Throttled (or modeled retryable): the normal retry cost.
    Throttling,
    /// Transient (a timeout, a broken connection, a 5xx): twice the cost.
    Transient,
}

/// How the SDK's standard mode classifies an error answer.
pub fn classify_answer(status: u16, code: Option<&str>) -> Retry {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) || RETRYABLE_CODES.contains(&c) => {
            Retry::Throttling
        }
        Some(c) if TRANSIENT_CODES.contains(&c) => Retry::Transient,
        _ if TRANSIENT_STATUSES.contains(&status) => Retry::Transient,
        _ => Retry::No,
    }
}

/// The backoff before retry `retry` (1 for the first): `min(initial × 2^(retry−1), max)`
/// times a random fraction (full jitter), as the SDK's standard mode waits.
pub fn backoff(policy: RetryPolicy, retry: u32, fraction: f64) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
        .min(policy.max_backoff);
    exp.mul_f64(fraction.clamp(0.0, 1.0))
}

fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// How calls are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// SigV4 with AWS credentials.
    SigV4(CredentialCache),
    /// A Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`), sent as `Authorization: Bearer`, as
    /// the SDK does when that variable is set.
    Bearer(HeaderValue),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::SigV4(_) => "SigV4",
            Auth::Bearer(_) => "Bearer",
        })
    }
}

impl Auth {
    /// Bearer authentication with an API key (`None`: the key is not usable in a header).
    pub fn bearer(key: &str) -> Option<Self> {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
        v.set_sensitive(true);
        Some(Auth::Bearer(v))
    }
}

/// The client of one region, endpoint and retry policy.
pub struct Client {
    http: HttpClient,
    /// `scheme://authority` and any path prefix of the endpoint, without a trailing `/`.
    base: String,
    /// The endpoint's path prefix (part of `base`), for the canonical request.
    prefix: String,
    host: HeaderValue,
    auth: Auth,
    signer: Signer,
    retry: RetryPolicy,
    quota: Arc<AtomicU32>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// What resolving an endpoint needs.
#[derive(Debug, Clone, Default)]
pub struct EndpointSettings {
    /// The region.
    pub region: String,
    /// An endpoint URL that replaces the public one.
    pub endpoint_url: Option<String>,
    /// FIPS endpoints (`AWS_USE_FIPS_ENDPOINT`).
    pub use_fips: bool,
    /// Dual-stack endpoints (`AWS_USE_DUALSTACK_ENDPOINT`).
    pub use_dual_stack: bool,
}

/// The endpoint URL of a region (or the given endpoint URL), by the SDK's endpoint rules.
pub async fn resolve_endpoint(s: &EndpointSettings) -> Result<String, String> {
    let params = Params::builder()
        .region(s.region.clone())
        .use_fips(s.use_fips)
        .use_dual_stack(s.use_dual_stack)
        .set_endpoint(s.endpoint_url.clone())
        .build()
        .map_err(|e| format!("Bedrock endpoint parameters: {e}"))?;
    DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map(|e| e.url().to_string())
        .map_err(|e| {
            format!(
                "no Bedrock endpoint for region `{}`: {}",
                s.region,
                errors::chain(e.as_ref())
            )
        })
}

/// A built request, before signing.
struct Attempt<'a> {
    path: &'a str,
    body: &'a Bytes,
}

impl Client {
    /// A client of `endpoint` (from [`resolve_endpoint`]).
    pub fn new(
        http: HttpClient,
        endpoint: &str,
        region: &str,
        auth: Auth,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("Bedrock endpoint `{endpoint}`: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("Bedrock endpoint `{endpoint}` names no host"))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let prefix = uri.path().trim_end_matches('/').to_string();
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("Bedrock endpoint `{endpoint}`: {e}"))?;
        Ok(Self {
            http,
            base: format!("{scheme}://{authority}{prefix}"),
            prefix,
            host,
            auth,
            signer: Signer::new(region),
            retry,
            quota: Arc::new(AtomicU32::new(QUOTA)),
        })
    }

    /// `/model/<id>/<operation>` with the model id percent-encoded as the SDK encodes a
    /// path label (everything but unreserved characters).
    pub fn path(model_id: &str, operation: &str) -> String {
        let mut p = String::with_capacity(model_id.len() + operation.len() + 16);
        p.push_str("/model/");
        for b in model_id.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                p.push(char::from(b));
            } else {
                p.push_str(&format!("%{b:02X}"));
            }
        }
        p.push('/');
        p.push_str(operation);
        p
    }

    fn take_quota(&self, cost: u32) -> bool {
        self.quota
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| q.checked_sub(cost))
            .is_ok()
    }

    fn give_quota(&self, n: u32) {
        let _ = self
            .quota
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_add(n).min(QUOTA))
            });
    }

    async fn attempt(
        &self,
        alias: &str,
        a: &Attempt<'_>,
    ) -> Result<Result<Response<Incoming>, hyper_util::client::legacy::Error>, ProviderError> {
        let mut url = String::with_capacity(self.base.len() + a.path.len());
        url.push_str(&self.base);
        url.push_str(a.path);
        let mut builder = http::Request::post(url)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(AGENT));
        match &self.auth {
            Auth::SigV4(credentials) => {
                let creds = credentials
                    .get()
                    .await
                    .map_err(|detail| super::sign::no_credentials(alias, &detail))?;
                let mut signed_path = String::with_capacity(self.prefix.len() + a.path.len());
                signed_path.push_str(&self.prefix);
                signed_path.push_str(a.path);
                let host = self.host.to_str().unwrap_or_default();
                let sig = self
                    .signer
                    .sign(&creds, host, &signed_path, a.body, SystemTime::now());
                builder = builder.header("x-amz-date", sig.date);
                if let Some(t) = sig.token {
                    builder = builder.header("x-amz-security-token", t);
                }
                builder = builder.header(AUTHORIZATION, sig.authorization);
            }
            Auth::Bearer(key) => builder = builder.header(AUTHORIZATION, key.clone()),
        }
        let mut request = builder.body(Full::new(a.body.clone())).map_err(|e| {
            errors::dispatch_failure(
                alias,
                ProviderError::Upstream,
                &format!("cannot build the Bedrock request: {e}"),
            )
        })?;
        if let Some(v) = request.headers_mut().get_mut(AUTHORIZATION) {
            v.set_sensitive(true);
        }
        Ok(self.http.request(request).await)
    }

    /// POSTs `body` to `path` (from [`Self::path`]) with retries; the answer once its status is
    /// a success. Records the retries on the current span (the model call's).
    pub async fn send(
        &self,
        alias: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, ProviderError> {
        let a = Attempt { path, body: &body };
        let mut attempt: u32 = 0;
        let mut held: u32 = 0;
        loop {
            attempt += 1;
            let sent = self.attempt(alias, &a).await;
            let (error, retry) = match sent {
                Err(e) => {
                    record_retries(attempt);
                    return Err(e);
                }
                Ok(Ok(response)) if response.status().is_success() => {
                    // A success returns what the retries took, or regenerates one token.
                    self.give_quota(if held > 0 { held } else { 1 });
                    record_retries(attempt);
                    return Ok(response);
                }
                Ok(Ok(response)) => error_of(alias, response).await,
                Ok(Err(e)) => {
                    let timeout = is_timeout(&e);
                    let detail = format!("dispatch failure: {}", errors::chain(&e));
                    let mapped = if timeout {
                        ProviderError::Timeout
                    } else {
                        ProviderError::Upstream
                    };
                    (
                        errors::dispatch_failure(alias, mapped, &detail),
                        Retry::Transient,
                    )
                }
            };
            let cost = match retry {
                Retry::No => 0,
                Retry::Throttling => RETRY_COST,
                Retry::Transient => TRANSIENT_RETRY_COST,
            };
            if retry == Retry::No || attempt >= self.retry.max_attempts || !self.take_quota(cost) {
                record_retries(attempt);
                return Err(error);
            }
            held += cost;
            let wait = backoff(self.retry, attempt, random_fraction());
            tracing::info!(
                model = alias,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying the Bedrock call"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Records on the current span how many times the call was retried.
fn record_retries(attempt: u32) {
    if attempt > 1 && crate::telemetry::enabled() {
        tracing::Span::current().record("retries", i64::from(attempt - 1));
    }
}

/// True when a connection attempt or request timed out.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// An error answer → the provider error and how it may be retried.
async fn error_of(alias: &str, response: Response<Incoming>) -> (ProviderError, Retry) {
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::Limited::new(response.into_body(), ERROR_BODY_LIMIT).collect(),
    )
    .await
    {
        Ok(Ok(c)) => c.to_bytes(),
        _ => Bytes::new(),
    };
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let code = header
        .as_deref()
        .or(parsed.kind.as_deref())
        .or(parsed.code.as_deref())
        .map(errors::error_code)
        .filter(|c| !c.is_empty());
    let retry = classify_answer(status, code);
    (
        errors::from_response(alias, status, code, parsed.message.as_deref()),
        retry,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded_like_path_labels() {
        assert_eq!(
            Client::path("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "converse"),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
        );
        assert_eq!(
            Client::path(
                "arn:aws:bedrock:us-east-1:1:inference-profile/x",
                "converse-stream"
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/converse-stream"
        );
    }

    #[test]
    fn standard_mode_classification() {
        assert_eq!(
            classify_answer(400, Some("ThrottlingException")),
            Retry::Throttling
        );
        assert_eq!(
            classify_answer(429, Some("ServiceQuotaExceededException")),
            Retry::No
        );
        assert_eq!(
            classify_answer(429, Some("ModelNotReadyException")),
            Retry::Throttling
        );
        assert_eq!(classify_answer(400, Some("ValidationException")), Retry::No);
        assert_eq!(
            classify_answer(403, Some("AccessDeniedException")),
            Retry::No
        );
        assert_eq!(
            classify_answer(500, Some("InternalServerException")),
            Retry::Transient
        );
        assert_eq!(
            classify_answer(503, Some("ServiceUnavailableException")),
            Retry::Transient
        );
        assert_eq!(
            classify_answer(408, Some("ModelTimeoutException")),
            Retry::No
        );
        assert_eq!(classify_answer(502, None), Retry::Transient);
        assert_eq!(classify_answer(504, None), Retry::Transient);
        assert_eq!(classify_answer(501, None), Retry::No);
        assert_eq!(classify_answer(404, None), Retry::No);
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(backoff(p, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(p, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(p, 3, 1.0), Duration::from_millis(350));
        assert_eq!(backoff(p, 30, 1.0), Duration::from_millis(350));
        assert_eq!(backoff(p, 2, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(p, 2, 0.0), Duration::ZERO);
    }
}
