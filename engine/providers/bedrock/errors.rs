//! Bedrock failures → provider errors. Only a validation message reaches the client (it is
//! about the request); every other upstream detail goes to the log.

use crate::providers::ProviderError;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;

/// What kind of failure an upstream error code or status is.
fn classify(code: Option<&str>, status: Option<u16>, message: Option<&str>) -> ProviderError {
    let name = code
        .unwrap_or_default()
        .trim_end_matches("Exception")
        .to_ascii_lowercase();
    match name.as_str() {
        "throttling" | "servicequotaexceeded" | "toomanyrequests" => {
            return ProviderError::Throttled { retry_after: None };
        }
        "validation" => {
            return ProviderError::UpstreamValidation(
                message.unwrap_or("invalid request").to_string(),
            );
        }
        "accessdenied" => return ProviderError::AccessDenied,
        "resourcenotfound" => return ProviderError::NotFound,
        "modeltimeout" => return ProviderError::Timeout,
        "" => {}
        _ => return ProviderError::Upstream,
    }
    match status {
        Some(429) => ProviderError::Throttled { retry_after: None },
        Some(400) => {
            ProviderError::UpstreamValidation(message.unwrap_or("invalid request").to_string())
        }
        Some(403) => ProviderError::AccessDenied,
        Some(404) => ProviderError::NotFound,
        Some(408 | 504) => ProviderError::Timeout,
        _ => ProviderError::Upstream,
    }
}

/// Maps a failed Converse or ConverseStream call (before any event).
pub fn from_sdk<E>(
    e: &SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>,
    alias: &str,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mapped = match e {
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) if no_credentials(e) => {
            ProviderError::NoCredentials
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            classify(se.err().code(), Some(status), se.err().message())
        }
        SdkError::TimeoutError(_) => ProviderError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ProviderError::Timeout,
        SdkError::ResponseError(r) => classify(None, Some(r.raw().status().as_u16()), None),
        _ => ProviderError::Upstream,
    };
    log(alias, &mapped, e);
    mapped
}

/// Maps an error met while reading a stream (an exception event, or a broken stream).
pub fn from_stream_error(
    e: &SdkError<ConverseStreamOutputError, aws_smithy_types::event_stream::RawMessage>,
    alias: &str,
) -> ProviderError {
    let mapped = match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = if err.is_throttling_exception() {
                Some("ThrottlingException")
            } else if err.is_validation_exception() {
                Some("ValidationException")
            } else if err.is_service_unavailable_exception() {
                Some("ServiceUnavailableException")
            } else if err.is_internal_server_exception() {
                Some("InternalServerException")
            } else if err.is_model_stream_error_exception() {
                Some("ModelStreamErrorException")
            } else {
                err.code().or(Some("Unknown"))
            };
            classify(code, None, err.message())
        }
        SdkError::TimeoutError(_) => ProviderError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ProviderError::Timeout,
        _ => ProviderError::Upstream,
    };
    log(alias, &mapped, e);
    mapped
}

/// What the AWS credential providers say when they find nothing (the `Display` texts of
/// `aws_credential_types::provider::error::CredentialsError`). The SDK reports a failed
/// credential lookup as a dispatch failure whose source chain holds one of these.
const CREDENTIAL_FAILURES: &[&str] = &[
    "the credential provider was not enabled",
    "credentials provider timed out",
    "the credentials provider was not properly configured",
    "an error occurred while loading credentials",
    "unexpected credentials error",
];

/// True when the call failed before it was sent because no AWS credentials could be loaded.
fn no_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if CREDENTIAL_FAILURES.iter().any(|f| text.starts_with(f)) {
            return true;
        }
        next = err.source();
    }
    false
}

/// The error and its sources on one line (`dispatch failure: other: ...`), without the SDK's
/// `Debug` dump of the whole error tree.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(err) = next {
        let text = err.to_string();
        // Wrappers often repeat their source's text.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = err.source();
    }
    out
}

fn log(alias: &str, mapped: &ProviderError, e: &(dyn std::error::Error + 'static)) {
    let detail = chain(e);
    match mapped {
        ProviderError::NoCredentials => {
            tracing::error!(
                model = alias,
                error = %detail,
                "no AWS credentials for Bedrock: set AWS_PROFILE (with `aws configure` or `aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role"
            );
        }
        ProviderError::UpstreamValidation(_) => {
            tracing::info!(model = alias, error = %detail, "bedrock rejected the request");
        }
        ProviderError::Throttled { .. } => {
            tracing::warn!(model = alias, error = %detail, "bedrock throttled the request");
        }
        _ => tracing::warn!(model = alias, error = %detail, "bedrock call failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional source, like the SDK's wrappers.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn missing_credentials_found_anywhere_in_the_chain() {
        let e = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "other",
                Some(Box::new(Layer(
                    "the credential provider was not enabled",
                    Some(Box::new(Layer(
                        "no providers in chain provided credentials",
                        None,
                    ))),
                ))),
            ))),
        );
        assert!(no_credentials(&e));
        assert_eq!(
            chain(&e),
            "dispatch failure: other: the credential provider was not enabled: no providers in chain provided credentials"
        );
        let refused = Layer(
            "dispatch failure",
            Some(Box::new(Layer("connection refused", None))),
        );
        assert!(!no_credentials(&refused));
        assert_eq!(chain(&refused), "dispatch failure: connection refused");
    }

    #[test]
    fn codes_and_statuses() {
        assert!(matches!(
            classify(Some("ThrottlingException"), Some(429), None),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            classify(Some("ValidationException"), Some(400), Some("bad")),
            ProviderError::UpstreamValidation(m) if m == "bad"
        ));
        assert!(matches!(
            classify(Some("ModelTimeoutException"), Some(408), None),
            ProviderError::Timeout
        ));
        assert!(matches!(
            classify(Some("ModelNotReadyException"), Some(429), None),
            ProviderError::Upstream
        ));
        assert!(matches!(
            classify(None, Some(404), None),
            ProviderError::NotFound
        ));
        assert!(matches!(
            classify(None, Some(500), None),
            ProviderError::Upstream
        ));
    }
}
