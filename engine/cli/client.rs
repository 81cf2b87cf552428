//! The REST client every CLI command uses: base URL, credentials, and API errors turned into
//! one clear line.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A failed command: one line for the user, and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong.
    pub message: String,
    /// Exit code (1: the API refused; 2: usage or local problem; 3: the gateway is unreachable).
    pub code: u8,
}

impl CliError {
    /// A local problem.
    pub fn local(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Talks to the gateway.
pub struct Api {
    base: String,
    credential: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) sending `credential` as a Bearer.
    pub fn new(base: &str, credential: Option<String>) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: base
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            credential,
            http,
        })
    }

    /// Sends a request to `/v1{path}` and returns the JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}/v1{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(c) = &self.credential {
            req = req.bearer_auth(c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| CliError {
            message: format!(
                "cannot reach the gateway at {}: {}",
                self.base,
                root_cause(&e)
            ),
            code: 3,
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        Err(api_error(status, &json, &text))
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

fn api_error(status: StatusCode, json: &Value, text: &str) -> CliError {
    let err = &json["error"];
    let message = match (err["message"].as_str(), err["code"].as_str()) {
        (Some(m), Some(c)) => format!("{m} ({c}, HTTP {})", status.as_u16()),
        (Some(m), None) => format!("{m} (HTTP {})", status.as_u16()),
        _ => format!(
            "HTTP {}: {}",
            status.as_u16(),
            text.chars().take(200).collect::<String>()
        ),
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => "; set PENNYWORTH_API_KEY or run `pennyworth login`",
        _ => "",
    };
    CliError {
        message: format!("{message}{hint}"),
        code: 1,
    }
}
