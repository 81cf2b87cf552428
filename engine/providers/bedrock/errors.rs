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

fn log(alias: &str, mapped: &ProviderError, e: &(dyn std::error::Error + 'static)) {
    let detail = aws_sdk_bedrockruntime::error::DisplayErrorContext(e);
    match mapped {
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
