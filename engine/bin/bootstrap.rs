//! Lambda entry point: the same engine as `pennyworth serve`, behind `lambda_http`'s
//! streaming runner (API Gateway REST and HTTP API events).

use pennyworth::directory::local::LocalDirectory;
use pennyworth::directory::{Directory, cognito};
use pennyworth::providers::{ProviderSettings, Providers};
use pennyworth::{CompiledConfig, Engine, lambda};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the template's config layer puts the files (Lambda extracts layers under /opt; the
/// layer's Makefile writes `pennyworth/`), so a function without PENNYWORTH_CONFIG_DIR still
/// finds them.
const LAYER_CONFIG_DIR: &str = "/opt/pennyworth";

fn config_dir() -> PathBuf {
    std::env::var_os("PENNYWORTH_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LAYER_CONFIG_DIR))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    // Traces: to the X-Ray daemon with active tracing, or OTLP when configured
    // (doc/observability.md). A pipeline that cannot be set up leaves tracing off.
    let lookup = |name: &str| std::env::var(name).ok();
    let mut problem = None;
    let (traces, _telemetry) = match pennyworth::telemetry::export::from_env(lookup, true) {
        Some(exporter) => {
            match pennyworth::telemetry::export::install(
                &exporter,
                Some(tokio::runtime::Handle::current()),
            ) {
                Ok((layer, guard)) => (Some(layer), Some(guard)),
                Err(e) => {
                    problem = Some(e);
                    (None, None)
                }
            }
        }
        None => (None, None),
    };
    let off = traces
        .is_none()
        .then(pennyworth::cli::logging::not_trace_spans);
    let logs = tracing_subscriber::EnvFilter::try_from_env("PENNYWORTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .and(pennyworth::cli::logging::not_trace_spans());
    tracing_subscriber::registry()
        .with(traces)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .without_time()
                .with_filter(logs),
        )
        .with(off)
        .init();
    if let Some(e) = problem {
        tracing::warn!(error = %e, "tracing is off");
    }

    // CloudWatch metrics as EMF lines on stdout (on unless PENNYWORTH_METRICS=off).
    pennyworth::metrics::install(pennyworth::metrics::Emf::from_env(true)?);

    // Built once, before the runtime polls for the first event; a bad config fails the
    // cold start with every problem listed.
    let dir = config_dir();
    let (directory, jwt): (Arc<dyn Directory>, _) = match cognito::from_env().await? {
        Some((d, jwt)) => (Arc::new(d), jwt),
        None => {
            // Without a user pool the function keeps users in an embedded store in /tmp,
            // which does not outlive the instance: fine for a trial, not for production.
            let data_dir = std::env::var_os("PENNYWORTH_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/pennyworth"));
            tracing::warn!(
                "PENNYWORTH_USER_POOL_ID is not set; using an embedded store in {}",
                data_dir.display()
            );
            (Arc::new(LocalDirectory::open(&data_dir)?), None)
        }
    };
    // The usage ledger: the DynamoDB table of the template (PENNYWORTH_USAGE_TABLE), else
    // SQLite in the instance's /tmp (lost with the instance: a trial only).
    let usage_dir = std::env::var_os("PENNYWORTH_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pennyworth"));
    let usage = pennyworth::usage::store_from_env(&usage_dir)
        .await
        .map_err(|e| format!("cannot open the usage ledger: {e}"))?;
    let engine = match CompiledConfig::load(&dir) {
        Ok(config) => {
            let providers = Providers::build(&config, ProviderSettings::default())
                .await
                .map_err(|e| format!("cannot set up the model providers: {e}"))?;
            let engine = Engine::with_providers(config, directory, providers)
                .identity_cache(pennyworth::auth::cache::IdentityCache::from_env())
                .usage_store(usage);
            if let Some(p) = engine.mcp().problems().first() {
                return Err(p.clone().into());
            }
            Arc::new(match jwt {
                Some(v) => engine.with_jwt(v),
                None => engine,
            })
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(target: "pennyworth::config", "{e}");
            }
            return Err(format!(
                "configuration in `{}` is invalid ({} problems)",
                dir.display(),
                errors.0.len()
            )
            .into());
        }
    };
    lambda_http::run_with_streaming_response(lambda_http::service_fn(move |request| {
        let engine = engine.clone();
        async move { Ok::<_, std::convert::Infallible>(lambda::handle(&engine, request).await) }
    }))
    .await
}
