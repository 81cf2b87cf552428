//! The span of one upstream model call: which provider, operation and model, how it ended,
//! time to first byte and token counts.

use super::TARGET;
use crate::config::models::ProviderKind;
use crate::engine::ModelRuntime;
use crate::inference::{Event, EventStream, Usage};
use crate::providers::ProviderError;
use futures_util::StreamExt;
use std::time::Instant;
use tracing::Span;

/// What is asked of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A buffered answer.
    Chat,
    /// A streamed answer.
    ChatStream,
    /// Embeddings.
    Embed,
    /// A token count.
    CountTokens,
}

impl Operation {
    fn gen_ai(self) -> &'static str {
        match self {
            Operation::Chat | Operation::ChatStream => "chat",
            Operation::Embed => "embeddings",
            Operation::CountTokens => "count_tokens",
        }
    }

    /// The Bedrock Runtime operation the provider calls.
    fn bedrock(self) -> &'static str {
        match self {
            Operation::Chat => "Converse",
            Operation::ChatStream => "ConverseStream",
            Operation::Embed => "InvokeModel",
            Operation::CountTokens => "CountTokens",
        }
    }
}

/// A short, fixed name of a provider failure (span attributes never carry upstream messages,
/// which may quote the request).
pub fn error_kind(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Unavailable(_) => "unavailable",
        ProviderError::InvalidRequest(_) | ProviderError::InvalidParam { .. } => "invalid_request",
        ProviderError::Throttled { .. } => "throttled",
        ProviderError::UpstreamValidation(_) => "upstream_validation",
        ProviderError::AccessDenied => "access_denied",
        ProviderError::NotFound => "not_found",
        ProviderError::Timeout => "timeout",
        ProviderError::Upstream => "upstream",
        ProviderError::NoCredentials => "no_credentials",
    }
}

/// One attempt at one model (an alias or one of its fallbacks).
#[derive(Debug)]
pub struct ModelCall {
    /// The span; upstream calls made inside it (the provider's HTTP request) carry its context.
    pub span: Span,
    started: Instant,
}

impl ModelCall {
    /// Opens the span of attempt `attempt` (0: the alias itself) at `model`.
    pub fn start(model: &ModelRuntime, op: Operation, attempt: usize) -> Self {
        let span = tracing::info_span!(
            target: TARGET,
            "model",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            gen_ai.operation.name = op.gen_ai(),
            gen_ai.system = tracing::field::Empty,
            gen_ai.request.model = model.upstream.as_str(),
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            pennyworth.model = model.alias.as_str(),
            pennyworth.fallback = super::int(attempt as u64),
            rpc.system = tracing::field::Empty,
            rpc.service = tracing::field::Empty,
            rpc.method = tracing::field::Empty,
            aws.region = tracing::field::Empty,
            server.address = tracing::field::Empty,
            retries = tracing::field::Empty,
            ttfb_ms = tracing::field::Empty,
        );
        if !span.is_disabled() {
            let system = match model.provider {
                ProviderKind::Bedrock => "aws.bedrock",
                ProviderKind::Openai => "openai",
                ProviderKind::Echo => "echo",
            };
            span.record("gen_ai.system", system);
            match model.provider {
                ProviderKind::Bedrock => {
                    // What X-Ray shows as an AWS call (namespace `aws`, operation, region).
                    span.record("otel.name", format!("BedrockRuntime.{}", op.bedrock()));
                    span.record("rpc.system", "aws-api");
                    span.record("rpc.service", "BedrockRuntime");
                    span.record("rpc.method", op.bedrock());
                    if let Some(r) = &model.upstream_settings.region {
                        span.record("aws.region", r.as_str());
                    }
                }
                ProviderKind::Openai | ProviderKind::Echo => {
                    span.record("otel.name", format!("{} {}", op.gen_ai(), model.upstream));
                    if let Some(host) = model
                        .upstream_settings
                        .base_url
                        .as_deref()
                        .and_then(|u| u.parse::<http::Uri>().ok())
                        .and_then(|u| u.host().map(str::to_string))
                    {
                        span.record("server.address", host);
                    }
                }
            }
        }
        Self {
            span,
            started: Instant::now(),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records how a buffered call ended (with its token counts when it answered).
    pub fn finish(&self, result: Result<Option<Usage>, &ProviderError>) {
        if self.span.is_disabled() {
            return;
        }
        self.span.record("ttfb_ms", super::int(self.millis()));
        match result {
            Ok(usage) => {
                if let Some(u) = usage {
                    self.tokens(u);
                }
            }
            Err(e) => super::record_error(&self.span, error_kind(e)),
        }
    }

    fn tokens(&self, u: Usage) {
        self.span
            .record("gen_ai.usage.input_tokens", super::int(u.prompt));
        self.span
            .record("gen_ai.usage.output_tokens", super::int(u.completion));
    }

    /// Records the first event of a stream (time to first byte).
    pub fn first_byte(&self) {
        if !self.span.is_disabled() {
            self.span.record("ttfb_ms", super::int(self.millis()));
        }
    }

    /// The stream, keeping the span open until it ends and recording its token counts and a
    /// failure mid-stream.
    pub fn watch(self, stream: EventStream) -> EventStream {
        if self.span.is_disabled() {
            return stream;
        }
        // Entered at each event: a span ends at its last exit, so it ends with the last event.
        stream
            .inspect(move |item| {
                let _in = self.span.enter();
                match item {
                    Ok(Event::Usage(u)) => self.tokens(*u),
                    Ok(_) => {}
                    Err(e) => super::record_error(&self.span, error_kind(e)),
                }
            })
            .boxed()
    }
}
