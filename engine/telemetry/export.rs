//! Where spans go, chosen once at start from the standard environment variables:
//!
//! - OTLP/HTTP (protobuf) when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set: the SDK's batch processor on its own thread with a
//!   bounded queue (`OTEL_BSP_*`; spans are dropped when it is full), sending with the
//!   gateway's hyper client on the async runtime, so a slow or unreachable collector never
//!   holds a request. A request's spans enter the queue together when it ends.
//! - X-Ray on Lambda when the runtime provides the X-Ray daemon (`AWS_XRAY_DAEMON_ADDRESS`,
//!   set with active tracing): when a request ends, its spans go to an exporter thread, which
//!   makes them one segment document (its subsegments nested) and sends it in one UDP
//!   datagram to the daemon (a non-blocking send). The Lambda front end waits for that thread
//!   before the invocation ends ([`super::flush`]), since Lambda may freeze the instance at
//!   any time after.
//! - Otherwise nothing, and the spans are disabled at their call sites.
//!
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turns both off. Sampling follows
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: the caller's decision, else
//! every request); on Lambda the invocation's `Sampled` flag is the caller's decision.

use super::layer::{Background, Decider, Direct, Sampled, Sink, TraceLayer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_aws::xray_exporter::daemon_client::XrayDaemonClient;
use opentelemetry_aws::xray_exporter::{SegmentTranslator, XrayExporter};
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanExporter, SpanProcessor as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::Layer;

/// A failed export was logged (once per process: a collector that is down stays quiet).
static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Longest an OTLP export may take (on the exporter's thread, never on a request).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exporter {
    /// OTLP over HTTP; the endpoint and headers are read by the exporter from the standard
    /// variables.
    Otlp,
    /// Segment documents to the X-Ray daemon at this address.
    Xray(SocketAddr),
}

/// The exporter the environment asks for, if any (`lookup` reads a variable). `lambda`: the
/// process is a Lambda function, whose X-Ray daemon is used when OTLP is not configured.
pub fn from_env(lookup: impl Fn(&str) -> Option<String>, lambda: bool) -> Option<Exporter> {
    let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return None;
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
    {
        return Some(Exporter::Otlp);
    }
    if lambda {
        let addr = set("AWS_XRAY_DAEMON_ADDRESS")?;
        // The variable may list a UDP and a TCP address (`udp:1.2.3.4:2000 tcp:...`).
        let udp = addr
            .split_whitespace()
            .find_map(|a| a.strip_prefix("udp:"))
            .unwrap_or_else(|| addr.split_whitespace().next().unwrap_or(""));
        return udp.parse().ok().map(Exporter::Xray);
    }
    None
}

/// A boxed layer for the process's subscriber.
pub type BoxLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The installed pipeline; dropping it flushes what is queued (give it a moment at exit).
#[derive(Debug)]
pub struct Telemetry {
    sink: Arc<dyn Sink>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.sink.shutdown();
    }
}

fn resource() -> Resource {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "pennyworth".into()),
        );
    }
    resource.build()
}

/// Builds the pipeline for `exporter` and the `tracing` layer that feeds it (only spans of
/// [`super::TARGET`] of sampled requests), and turns the gateway's spans on. `runtime` runs OTLP's
/// HTTP requests.
pub fn install(
    exporter: &Exporter,
    runtime: Option<tokio::runtime::Handle>,
) -> Result<(BoxLayer, Telemetry), String> {
    let resource = resource();
    let (sink, xray): (Arc<dyn Sink>, bool) = match exporter {
        Exporter::Otlp => {
            let runtime = runtime.ok_or("OTLP export needs the async runtime")?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(OtlpHttp::new(runtime)?)
                .build()
                .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
            // `OTEL_BSP_*` are read here.
            let mut processor = BatchSpanProcessor::builder(exporter).build();
            processor.set_resource(&resource);
            (Arc::new(processor), false)
        }
        Exporter::Xray(addr) => {
            let client = XrayDaemonClient::new(*addr)
                .map_err(|e| format!("cannot open a socket to the X-Ray daemon at {addr}: {e}"))?;
            // Attributes become annotations, so a trace can be found by request id, model,
            // route or user; a request's subsegments are nested in one document.
            let mut exporter = XrayExporter::new(client).with_translator(
                SegmentTranslator::new()
                    .index_all_attrs()
                    .always_nest_subsegments(),
            );
            exporter.set_resource(&resource);
            (Arc::new(Background::start(exporter)?), true)
        }
    };
    let layer = with_sink(sink.clone(), xray);
    Ok((layer, Telemetry { sink }))
}

/// The `tracing` layer that hands each sampled request's spans to `exporter` as the request
/// ends (on the request's thread), and turns the gateway's spans on. `xray`: the spans are
/// subsegments of a Lambda function's segment (the root is not a server span). For tests and
/// tools; [`install`] builds the binaries' pipelines.
pub fn layer(exporter: impl SpanExporter + 'static, xray: bool) -> BoxLayer {
    with_sink(Arc::new(Direct(Mutex::new(exporter))), xray)
}

fn with_sink(sink: Arc<dyn Sink>, xray: bool) -> BoxLayer {
    // Sampling follows `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the SDK's reading
    // of them); X-Ray needs its own trace ids (the first 4 bytes are the epoch seconds).
    let config = opentelemetry_sdk::trace::Config::default();
    let ids: Box<dyn opentelemetry_sdk::trace::IdGenerator> = if xray {
        Box::new(opentelemetry_aws::trace::XrayIdGenerator::default())
    } else {
        config.id_generator
    };
    super::layer::set_decider(Decider {
        sampler: config.sampler,
        ids,
    });
    super::mark_installed(xray);
    Box::new(TraceLayer::new(sink).with_filter(Sampled))
}

/// The OTLP exporter's HTTP client: the gateway's hyper client, its requests run on the async
/// runtime (the batch processor's thread has none) with a time limit.
#[derive(Debug)]
struct OtlpHttp {
    client: crate::upstream::HttpClient,
    runtime: tokio::runtime::Handle,
}

impl OtlpHttp {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let client = crate::upstream::http_client()?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let task = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, async move {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, 1 << 20)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
            })
            .await
        });
        let result = match task.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the OTLP endpoint did not answer in time".into()),
            Err(e) => Err(e.into()),
        };
        let failed = match &result {
            Ok(r) if !r.status().is_success() => Some(format!("status {}", r.status().as_u16())),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(error = %e, "cannot send traces to the OTLP endpoint; they are dropped (said once)");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn choice() {
        assert_eq!(from_env(env(&[]), false), None);
        assert_eq!(from_env(env(&[]), true), None);
        assert_eq!(
            from_env(
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
                false
            ),
            Some(Exporter::Otlp)
        );
        assert_eq!(
            from_env(
                env(&[
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://127.0.0.1:4318/v1/traces"
                    ),
                    ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000"),
                ]),
                true
            ),
            Some(Exporter::Otlp)
        );
        assert_eq!(
            from_env(
                env(&[("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000")]),
                true
            ),
            Some(Exporter::Xray("169.254.79.129:2000".parse().unwrap()))
        );
        assert_eq!(
            from_env(
                env(&[(
                    "AWS_XRAY_DAEMON_ADDRESS",
                    "tcp:127.0.0.1:2000 udp:127.0.0.2:2001"
                )]),
                true
            ),
            Some(Exporter::Xray("127.0.0.2:2001".parse().unwrap()))
        );
        // `serve` does not talk to an X-Ray daemon.
        assert_eq!(
            from_env(env(&[("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")]), false),
            None
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                from_env(
                    env(&[
                        off,
                        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
                    ]),
                    false
                ),
                None
            );
        }
    }
}
