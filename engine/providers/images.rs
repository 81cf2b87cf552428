//! Fetching `http(s)` image URLs for providers that take only inline images (Bedrock), when
//! the operator enables it (`image_fetch:` in `models.yaml`; off by default).
//!
//! A gateway that fetches URLs its clients name can be pointed at its own network, so the
//! fetcher refuses, unless `allow_private_addresses` is set: any host that resolves to a
//! loopback, private, link-local (the instance metadata service), shared, multicast or
//! otherwise non-global address. The check runs on the addresses the connection will use
//! (the resolver filters them), so a name that resolves to a private address is refused as
//! a literal one is. Redirects are not followed (each hop would need the same check), and
//! the answer must be an image of a format the provider takes, within `max_bytes`, read
//! within `timeout_ms`. Proxy variables are ignored (a proxy would connect on the gateway's
//! behalf, past the address check).
//!
//! Bounded per request and per process: at most [`MAX_IMAGES`] distinct URLs per request,
//! [`PER_REQUEST_CONCURRENCY`] fetches at a time per request and [`MAX_CONCURRENT_FETCHES`]
//! in the whole process, and at most [`MAX_TOTAL_BYTES`] fetched for one request.

use super::ProviderError;
use crate::config::models::ImageFetchSpec;
use crate::inference::{Block, ImageSource, Request};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Most distinct image URLs one request may name (Bedrock takes 20 images per request).
pub const MAX_IMAGES: usize = 20;
/// Fetches one request runs at a time.
pub const PER_REQUEST_CONCURRENCY: usize = 4;
/// Fetches the process runs at a time, over all requests.
pub const MAX_CONCURRENT_FETCHES: usize = 32;
/// Most image bytes fetched for one request.
pub const MAX_TOTAL_BYTES: u64 = 20 * 1024 * 1024;

/// The image fetcher of a provider.
#[derive(Debug, Clone)]
pub struct ImageFetcher {
    client: reqwest::Client,
    spec: ImageFetchSpec,
    slots: Arc<tokio::sync::Semaphore>,
}

fn invalid(param: &str, message: String) -> ProviderError {
    ProviderError::InvalidParam {
        param: param.to_string(),
        message,
    }
}

/// Whether an address is one a fetch may reach without `allow_private_addresses`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let first = seg[0];
            // IPv4-compatible `::a.b.c.d` (deprecated; some stacks still route it as IPv4).
            if seg[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || first == 0x2002 // 6to4 (embeds an IPv4 address)
                || first == 0x2001 && seg[1] == 0x0000 // Teredo (embeds an IPv4 address)
                || first == 0x2001 && seg[1] == 0x0db8 // documentation
                || first == 0x0064 && seg[1] == 0xff9b // NAT64 (embeds IPv4)
                || first == 0x0064 && seg[1] == 0xff9a // local-use NAT64
                || first == 0x0100 && seg[1..4].iter().all(|s| *s == 0)) // discard-only
        }
    }
}

/// Resolves names with the system resolver and keeps only the addresses a fetch may reach.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("`{host}` has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl ImageFetcher {
    /// A fetcher for `spec`, or `None` when fetching is off.
    pub fn new(spec: &ImageFetchSpec) -> Result<Option<Self>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(spec.timeout_ms))
            .connect_timeout(Duration::from_millis(spec.timeout_ms))
            .tcp_nodelay(true)
            .user_agent(concat!("pennyworth/", env!("CARGO_PKG_VERSION")))
            // HTTP(S)_PROXY would make a proxy connect for us, past the address check.
            .no_proxy()
            .https_only(spec.https_only);
        if !spec.allow_private_addresses {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the image fetch client: {e}"))?;
        Ok(Some(Self {
            client,
            spec: spec.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
        }))
    }

    /// Fetches one image; returns its media type and bytes.
    pub async fn fetch(&self, url: &str, param: &str) -> Result<(String, Vec<u8>), ProviderError> {
        let budget = std::sync::atomic::AtomicU64::new(MAX_TOTAL_BYTES);
        self.fetch_within(url, param, &budget).await
    }

    /// [`Self::fetch`], taking the image's bytes from the request's `budget`.
    async fn fetch_within(
        &self,
        url: &str,
        param: &str,
        budget: &std::sync::atomic::AtomicU64,
    ) -> Result<(String, Vec<u8>), ProviderError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| invalid(param, format!("`{param}` is not a valid URL")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if !self.spec.https_only => {}
            s => {
                return Err(invalid(
                    param,
                    format!(
                        "`{param}` is a `{s}:` URL; the gateway fetches {} image URLs",
                        if self.spec.https_only {
                            "only https"
                        } else {
                            "only http and https"
                        }
                    ),
                ));
            }
        }
        // A literal address does not go through the resolver: check it here.
        if !self.spec.allow_private_addresses {
            let literal = parsed.host_str().and_then(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .ok()
            });
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Err(invalid(
                    param,
                    format!(
                        "`{param}` names a private or local address; the gateway fetches only public ones"
                    ),
                ));
            }
        }
        let failed = |why: String| invalid(param, format!("cannot fetch `{param}`: {why}"));
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| failed("the gateway is shutting down".to_string()))?;
        let response = self.client.get(parsed).send().await.map_err(|e| {
            tracing::info!(error = %e, "image fetch failed");
            failed(if e.is_timeout() {
                format!("no answer within {} ms", self.spec.timeout_ms)
            } else if e.is_connect() {
                "cannot connect to its host (or its host has no public address)".to_string()
            } else {
                "the request failed".to_string()
            })
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(failed(format!(
                "it answers {status} (redirects are not followed)"
            )));
        }
        if !status.is_success() {
            return Err(failed(format!("it answers {status}")));
        }
        let media = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !matches!(
            media.as_str(),
            "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp"
        ) {
            return Err(failed(format!(
                "its content type is `{media}`; supported are image/png, image/jpeg, image/gif and image/webp"
            )));
        }
        let max = self.spec.max_bytes;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(failed(format!("it is larger than {max} bytes")));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.transpose() {
            let chunk = chunk.map_err(|e| {
                failed(if e.is_timeout() {
                    format!("no complete answer within {} ms", self.spec.timeout_ms)
                } else {
                    "the answer broke off".to_string()
                })
            })?;
            if (body.len() + chunk.len()) as u64 > max {
                return Err(failed(format!("it is larger than {max} bytes")));
            }
            let n = chunk.len() as u64;
            let taken = budget.fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |left| left.checked_sub(n),
            );
            if taken.is_err() {
                return Err(failed(format!(
                    "the images of this request exceed {MAX_TOTAL_BYTES} bytes in all"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((media, body))
    }

    /// The request with every `http(s)` image URL replaced by the fetched image's bytes, or
    /// `None` when it names none. Images are fetched concurrently.
    pub async fn inline(&self, request: &Request) -> Result<Option<Request>, ProviderError> {
        fn remote(b: &Block) -> Option<(&str, &str)> {
            match b {
                Block::Image {
                    source: ImageSource::Url(url),
                    param,
                } if !url.starts_with("data:") => Some((url, param)),
                _ => None,
            }
        }
        let mut wanted: Vec<(&str, &str)> = Vec::new();
        for m in &request.messages {
            for b in &m.content {
                match b {
                    Block::ToolResult { content, .. } => {
                        wanted.extend(content.iter().filter_map(remote));
                    }
                    b => wanted.extend(remote(b)),
                }
            }
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        // Each URL once.
        let mut seen = std::collections::HashSet::new();
        wanted.retain(|(url, _)| seen.insert(*url));
        if wanted.len() > MAX_IMAGES {
            let param = wanted.get(MAX_IMAGES).map_or("messages", |(_, p)| *p);
            return Err(invalid(
                param,
                format!(
                    "the request names {} image URLs; the gateway fetches at most {MAX_IMAGES} per request",
                    wanted.len()
                ),
            ));
        }
        use futures_util::{StreamExt, TryStreamExt};
        let budget = std::sync::atomic::AtomicU64::new(MAX_TOTAL_BYTES);
        let budget = &budget;
        type Fetch<'a> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<(String, Vec<u8>), ProviderError>>
                    + Send
                    + 'a,
            >,
        >;
        let fetches: Vec<Fetch<'_>> = wanted
            .iter()
            .map(|(url, param)| Box::pin(self.fetch_within(url, param, budget)) as Fetch<'_>)
            .collect();
        let fetched: Vec<(String, Vec<u8>)> = futures_util::stream::iter(fetches)
            .buffered(PER_REQUEST_CONCURRENCY)
            .try_collect()
            .await?;
        let by_url: std::collections::HashMap<String, (String, Vec<u8>)> = wanted
            .iter()
            .map(|(u, _)| u.to_string())
            .zip(fetched)
            .collect();
        let mut out = request.clone();
        let mut replace = |b: &mut Block| {
            if let Block::Image { source, .. } = b
                && let ImageSource::Url(url) = source
                && let Some((media, bytes)) = by_url.get(url.as_str())
            {
                *source = ImageSource::Bytes {
                    media_type: media.clone(),
                    data: bytes::Bytes::from(bytes.clone()),
                };
            }
        };
        for m in &mut out.messages {
            for b in &mut m.content {
                if let Block::ToolResult { content, .. } = b {
                    content.iter_mut().for_each(&mut replace);
                } else {
                    replace(b);
                }
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "::169.254.169.254",
            "::10.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "52.94.0.1", "2600:1f18::1", "::ffff:8.8.8.8"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }
}
