//! SigV4 for the direct Bedrock client: credentials from the AWS provider chain (or fixed
//! test credentials) behind a cache shared by every client, and header signing of a
//! POST with a JSON body whose signing key (four HMACs of the secret, the day, the region
//! and the service) is derived once per day and credentials, not per call.
//!
//! The canonical request is the one `aws-sigv4` builds for the SDK with its default settings
//! (path segments encoded twice, the payload hash in the canonical request but not in a
//! header); a unit test checks the signature against `aws_sigv4::http_request::sign`.

use crate::providers::ProviderError;
use aws_sdk_bedrockruntime::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// The service name Bedrock Runtime signs for.
const SERVICE: &str = "bedrock";
/// Credentials are refreshed this long before they expire (the SDK's identity cache buffer).
const EXPIRY_BUFFER: Duration = Duration::from_secs(10);
/// Longest wait for the provider chain (the SDK's identity cache load timeout).
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where credentials come from, cached: fixed ones are returned as they are; the provider
/// chain's are kept until shortly before they expire, refreshed by one caller at a time.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    provider: Option<SharedCredentialsProvider>,
    current: RwLock<Option<Credentials>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCache")
    }
}

fn fresh(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|e| e > now + EXPIRY_BUFFER)
}

impl CredentialCache {
    /// Fixed credentials (tests).
    pub fn fixed(c: Credentials) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                provider: None,
                current: RwLock::new(Some(c)),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Credentials of a provider (the default chain), loaded on first use (`None`: no
    /// provider, every call fails for want of credentials).
    pub fn provider(p: Option<SharedCredentialsProvider>) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                provider: p,
                current: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn cached(&self, now: SystemTime) -> Option<Credentials> {
        let current = self.inner.current.read().ok()?;
        current.as_ref().filter(|c| fresh(c, now)).cloned()
    }

    /// Current credentials: from the cache, or loaded (one load at a time; the others wait
    /// for it asynchronously). `Err` carries a log line.
    pub async fn get(&self) -> Result<Credentials, String> {
        let now = SystemTime::now();
        if let Some(c) = self.cached(now) {
            return Ok(c);
        }
        let Some(provider) = &self.inner.provider else {
            return Err(
                "no AWS credentials provider is configured, or the fixed credentials have expired"
                    .into(),
            );
        };
        let _one = self.inner.refresh.lock().await;
        if let Some(c) = self.cached(SystemTime::now()) {
            return Ok(c);
        }
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, provider.provide_credentials())
            .await
            .map_err(|_| "credentials provider timed out".to_string())?
            .map_err(|e| crate::providers::bedrock::errors::chain(&e))?;
        if let Ok(mut current) = self.inner.current.write() {
            *current = Some(loaded.clone());
        }
        Ok(loaded)
    }
}

/// A derived signing key and what it was derived from.
struct Key {
    day: String,
    access_key: String,
    secret: String,
    key: Vec<u8>,
}

/// Signs requests to one region.
pub struct Signer {
    region: String,
    scope_tail: String,
    key: Mutex<Option<Key>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish()
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'` of a time.
fn amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = crate::usage::period::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Appends `path` as a SigV4 canonical URI: the (already percent-encoded) path encoded once
/// more, so `%3A` becomes `%253A`.
fn canonical_uri(path: &str, out: &mut String) {
    for c in path.chars() {
        if c == '%' {
            out.push_str("%25");
        } else {
            out.push(c);
        }
    }
}

/// Appends `bytes` as lowercase hex.
fn hex_into(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// The headers a signed request carries besides its content type and host.
#[derive(Debug)]
pub struct Signature {
    /// `x-amz-date`.
    pub date: String,
    /// `x-amz-security-token`, for temporary credentials.
    pub token: Option<String>,
    /// `authorization`.
    pub authorization: String,
}

impl Signer {
    /// A signer for `region`.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_string(),
            scope_tail: format!("/{region}/{SERVICE}/aws4_request"),
            key: Mutex::new(None),
        }
    }

    fn signing_key(&self, creds: &Credentials, day: &str, now: SystemTime) -> Vec<u8> {
        if let Ok(guard) = self.key.lock()
            && let Some(k) = guard.as_ref()
            && k.day == day
            && k.access_key == creds.access_key_id()
            && k.secret == creds.secret_access_key()
        {
            return k.key.clone();
        }
        let key = aws_sigv4::sign::v4::generate_signing_key(
            creds.secret_access_key(),
            now,
            &self.region,
            SERVICE,
        )
        .as_ref()
        .to_vec();
        if let Ok(mut guard) = self.key.lock() {
            *guard = Some(Key {
                day: day.to_string(),
                access_key: creds.access_key_id().to_string(),
                secret: creds.secret_access_key().to_string(),
                key: key.clone(),
            });
        }
        key
    }

    /// Signs `POST <path>` to `host` with a JSON `body` at `now`.
    pub fn sign(
        &self,
        creds: &Credentials,
        host: &str,
        path: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Signature {
        let date = amz_date(now);
        let day = &date[..8];
        let token = creds.session_token();
        let signed_headers = if token.is_some() {
            "content-type;host;x-amz-date;x-amz-security-token"
        } else {
            "content-type;host;x-amz-date"
        };
        let mut canonical = String::with_capacity(256 + path.len());
        canonical.push_str("POST\n");
        canonical_uri(path, &mut canonical);
        canonical.push_str("\n\ncontent-type:application/json\nhost:");
        canonical.push_str(host);
        canonical.push_str("\nx-amz-date:");
        canonical.push_str(&date);
        canonical.push('\n');
        if let Some(t) = token {
            canonical.push_str("x-amz-security-token:");
            canonical.push_str(t.trim());
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(signed_headers);
        canonical.push('\n');
        hex_into(&Sha256::digest(body), &mut canonical);
        let mut to_sign = String::with_capacity(160);
        to_sign.push_str("AWS4-HMAC-SHA256\n");
        to_sign.push_str(&date);
        to_sign.push('\n');
        to_sign.push_str(day);
        to_sign.push_str(&self.scope_tail);
        to_sign.push('\n');
        hex_into(&Sha256::digest(canonical.as_bytes()), &mut to_sign);
        let key = self.signing_key(creds, day, now);
        let signature = aws_sigv4::sign::v4::calculate_signature(&key, to_sign.as_bytes());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{day}{}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id(),
            self.scope_tail
        );
        Signature {
            date,
            token: token.map(str::to_string),
            authorization,
        }
    }
}

/// Maps a credential failure (its log line) to the provider error.
pub fn no_credentials(alias: &str, detail: &str) -> ProviderError {
    super::errors::dispatch_failure(alias, ProviderError::NoCredentials, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    fn reference(
        creds: &Credentials,
        region: &str,
        path: &str,
        body: &[u8],
        now: SystemTime,
    ) -> String {
        let identity: Identity = creds.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let url = format!("https://bedrock-runtime.{region}.amazonaws.com{path}");
        let host = format!("bedrock-runtime.{region}.amazonaws.com");
        let headers = [
            ("content-type", "application/json"),
            ("host", host.as_str()),
        ];
        let request =
            SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .find(|h| h.name() == "authorization")
            .map(|h| h.value().to_string())
            .unwrap()
    }

    #[test]
    fn signatures_match_aws_sigv4() {
        let path = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse";
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        for (creds, region, now) in [
            (
                Credentials::new(
                    "AKIDEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    None,
                    None,
                    "t",
                ),
                "us-east-1",
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_150_000),
            ),
            (
                Credentials::new(
                    "ASIAEXAMPLE",
                    "secret",
                    Some("session/token+=".into()),
                    None,
                    "t",
                ),
                "eu-west-3",
                SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400),
            ),
        ] {
            let signer = Signer::new(region);
            let host = format!("bedrock-runtime.{region}.amazonaws.com");
            let ours = signer.sign(&creds, &host, path, body, now);
            assert_eq!(
                ours.authorization,
                reference(&creds, region, path, body, now)
            );
            // The cached key signs the same way.
            let again = signer.sign(&creds, &host, path, body, now);
            assert_eq!(again.authorization, ours.authorization);
            assert_eq!(ours.token.as_deref(), creds.session_token());
        }
    }

    #[test]
    fn dates() {
        let t = |s| amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "19700101T000000Z");
        assert_eq!(t(951_782_400), "20000229T000000Z");
        assert_eq!(t(1_764_150_000), "20251126T094000Z");
        assert_eq!(t(4_102_444_799), "20991231T235959Z");
        assert_eq!(t(4_107_542_399), "21000228T235959Z");
    }
}
