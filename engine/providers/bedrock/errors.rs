//! Bedrock failures → provider errors: error answers (status, `x-amzn-errortype` or the
//! body's `__type` / `code`, `message`), exception events of a stream, failed connections
//! and missing credentials. Only a validation message reaches the client (it is
//! about the request); every other upstream detail goes to the log.

use crate::providers::ProviderError;

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

/// The error code of an `x-amzn-errortype` header or an error body's `__type` / `code`:
/// `ns#Name:http://...` → `Name` (as the SDK reads it).
pub fn error_code(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or_default();
    raw.rsplit('#').next().unwrap_or_default().trim()
}

/// Maps an error answer of a direct Converse or ConverseStream call: its status, its error
/// code (from `x-amzn-errortype`, else the body) and its message.
pub fn from_response(
    alias: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> ProviderError {
    let mapped = classify(code, Some(status), message);
    let detail = format!(
        "{}: status {status}: {}",
        code.unwrap_or("unknown error"),
        message.unwrap_or_default()
    );
    log(alias, &mapped, &detail);
    mapped
}

/// Maps an exception event of a stream (its modeled code, e.g. `ThrottlingException`).
pub fn from_exception(alias: &str, code: &str, message: Option<&str>) -> ProviderError {
    let mapped = classify(Some(code), None, message);
    let detail = format!("{code}: {}", message.unwrap_or_default());
    log(alias, &mapped, &detail);
    mapped
}

/// A stream that broke or could not be decoded.
pub fn stream_failure(alias: &str, detail: &str) -> ProviderError {
    let mapped = ProviderError::Upstream;
    log(alias, &mapped, detail);
    mapped
}

/// A call that failed before an answer: no connection, a timeout, no credentials.
pub fn dispatch_failure(alias: &str, mapped: ProviderError, detail: &str) -> ProviderError {
    log(alias, &mapped, detail);
    mapped
}

/// The error and its sources on one line (`dispatch failure: other: ...`), without a
/// `Debug` dump of the whole error tree.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

fn log(alias: &str, mapped: &ProviderError, detail: &str) {
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
    fn chains_on_one_line() {
        let e = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "other",
                Some(Box::new(Layer(
                    "connection refused",
                    Some(Box::new(Layer("connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(chain(&e), "dispatch failure: other: connection refused");
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            "ThrottlingException"
        );
        assert_eq!(
            error_code("com.amazon.coral.validate#ValidationException"),
            "ValidationException"
        );
        assert_eq!(error_code("AccessDeniedException"), "AccessDeniedException");
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
