//! CloudWatch metrics as Embedded Metric Format (EMF) log lines.
//!
//! On Lambda every line the function writes to stdout goes to CloudWatch Logs, and a line that
//! is a JSON object with an `_aws.CloudWatchMetrics` member also becomes metrics, with no API
//! call and no agent. Two kinds of lines are written when EMF is on:
//!
//! - one per request (target `pennyworth::access`): `Requests`, `Status4xx`, `Status5xx` and
//!   `Latency` (milliseconds to the response head; a stream's body continues after it);
//! - one per model call (target `pennyworth::usage`), replacing the usage log line:
//!   `ModelCalls`, `PromptTokens`, `CompletionTokens`, `CacheReadTokens`, `CacheWriteTokens`
//!   and `CostUsd`, by model alias and in total.
//!
//! Dimensions stay bounded (the model alias, nothing per user): user, key id, request id,
//! session and the cost (`cost_usd`, exact decimal; `cost_nano_usd`, the integer the ledger
//! adds) are properties of the line, so Logs Insights can sum cost per user or key
//! (`doc/observability.md`) without a metric per user. EMF is on by default in the Lambda binary and off in `pennyworth serve`
//! (`PENNYWORTH_METRICS=emf|off`); the namespace is `PENNYWORTH_METRICS_NAMESPACE` (default
//! `Pennyworth`).

use crate::usage::UsageRecord;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default namespace of the metrics.
pub const DEFAULT_NAMESPACE: &str = "Pennyworth";

static EMF: OnceLock<Option<Emf>> = OnceLock::new();

/// Where EMF lines go and under which namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emf {
    namespace: String,
}

impl Emf {
    /// EMF lines under `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    /// From `PENNYWORTH_METRICS` (`emf` or `off`; unset: `default_on`) and
    /// `PENNYWORTH_METRICS_NAMESPACE`.
    pub fn from_env(default_on: bool) -> Result<Option<Self>, String> {
        Self::from_settings(
            std::env::var("PENNYWORTH_METRICS").ok().as_deref(),
            std::env::var("PENNYWORTH_METRICS_NAMESPACE")
                .ok()
                .as_deref(),
            default_on,
        )
    }

    /// From the values of the two variables (`None`: unset).
    pub fn from_settings(
        metrics: Option<&str>,
        namespace: Option<&str>,
        default_on: bool,
    ) -> Result<Option<Self>, String> {
        let on = match metrics {
            None => default_on,
            Some(v) if v.eq_ignore_ascii_case("emf") => true,
            Some(v) if v.eq_ignore_ascii_case("off") || v.is_empty() => false,
            Some(v) => {
                return Err(format!(
                    "PENNYWORTH_METRICS must be `emf` or `off`, not `{v}`"
                ));
            }
        };
        if !on {
            return Ok(None);
        }
        let namespace = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned();
        // CloudWatch: 1 to 255 characters, no leading colon, printable ASCII.
        if namespace.len() > 255
            || namespace.starts_with(':')
            || !namespace.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(format!(
                "PENNYWORTH_METRICS_NAMESPACE `{namespace}` is not a valid CloudWatch namespace"
            ));
        }
        Ok(Some(Self::new(namespace)))
    }

    /// The EMF document of one request.
    pub fn request_line(
        &self,
        ids: crate::usage::Ids<'_>,
        method: &str,
        path: &str,
        status: u16,
        user: &str,
        micros: u64,
    ) -> Value {
        let mut doc = json!({
            "_aws": {
                "Timestamp": now_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [[]],
                    "Metrics": [
                        {"Name": "Requests", "Unit": "Count"},
                        {"Name": "Status4xx", "Unit": "Count"},
                        {"Name": "Status5xx", "Unit": "Count"},
                        {"Name": "Latency", "Unit": "Milliseconds"},
                    ],
                }],
            },
            "level": "INFO",
            "target": "pennyworth::access",
            "request_id": ids.request_id,
            "trace_id": ids.trace_id,
            "method": method,
            "path": path,
            "status": status,
            "user": user,
            "Requests": 1,
            "Status4xx": u8::from((400..500).contains(&status)),
            "Status5xx": u8::from(status >= 500),
        });
        doc["Latency"] = json!(micros as f64 / 1000.0);
        doc
    }

    /// The EMF document of one model call.
    pub fn usage_line(&self, r: &UsageRecord<'_>) -> Value {
        let metrics = json!([
            {"Name": "ModelCalls", "Unit": "Count"},
            {"Name": "PromptTokens", "Unit": "Count"},
            {"Name": "CompletionTokens", "Unit": "Count"},
            {"Name": "CacheReadTokens", "Unit": "Count"},
            {"Name": "CacheWriteTokens", "Unit": "Count"},
            {"Name": "CostUsd", "Unit": "None"},
        ]);
        json!({
            "_aws": {
                "Timestamp": now_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Model"], []],
                    "Metrics": metrics,
                }],
            },
            "level": "INFO",
            "target": "pennyworth::usage",
            "request_id": r.request_id,
            "trace_id": r.trace_id,
            "user": r.user,
            "key_id": r.key_id.unwrap_or(""),
            "Model": r.model,
            "stream": r.stream,
            "partial": r.partial,
            "estimated": r.estimated,
            "cost_usd": r.cost.to_string(),
            "cost_nano_usd": crate::usage::store::nanos(r.cost),
            "session": r.session,
            "ModelCalls": 1,
            "PromptTokens": r.usage.prompt,
            "CompletionTokens": r.usage.completion,
            "CacheReadTokens": r.usage.cache_read,
            "CacheWriteTokens": r.usage.cache_write,
            "CostUsd": r.cost.to_f64().unwrap_or(0.0),
        })
    }
}

/// Turns EMF lines on (`Some`) or off for this process. The first call wins; later calls
/// change nothing (the setting is read on every request, so it must not move under load).
pub fn install(emf: Option<Emf>) {
    let _ = EMF.set(emf);
}

/// The installed EMF setting, if on.
pub fn emf() -> Option<&'static Emf> {
    EMF.get().and_then(Option::as_ref)
}

/// Writes one document as one line on stdout (one `write_all` under the stdout lock, so it
/// does not interleave with log lines). A closed stdout is ignored: metrics never fail a
/// request.
pub fn write_line(doc: &Value) {
    let mut line = doc.to_string();
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::TokenUsage;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    /// Checks the document against the EMF specification's rules that CloudWatch enforces:
    /// every metric and dimension named in a directive is a top-level member, metric values
    /// are numbers, dimension values are strings, at most 100 metrics and 30 dimensions.
    fn assert_valid_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert!(!directives.is_empty());
        for d in directives {
            assert!(!d["Namespace"].as_str().unwrap().is_empty());
            let metrics = d["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                assert!(
                    doc[name].is_number(),
                    "metric {name} is not a number: {doc}"
                );
            }
            for set in d["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert!(set.len() <= 30);
                for dim in set {
                    let dim = dim.as_str().unwrap();
                    assert!(doc[dim].is_string(), "dimension {dim} is not a string");
                }
            }
        }
    }

    #[test]
    fn usage_line_carries_the_record() {
        let emf = Emf::new("Pennyworth/test");
        let record = UsageRecord {
            request_id: "req_1",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            user: "alice \"quoted\"",
            groups: &[],
            key_id: Some("alice.0123456789abcdef"),
            model: "claude",
            session: Some("s-1"),
            stream: true,
            usage: TokenUsage {
                prompt: 1200,
                completion: 34,
                cache_read: 1000,
                cache_write: 0,
            },
            cost: Decimal::from_str("0.00123").unwrap(),
            partial: true,
            estimated: false,
        };
        let doc = emf.usage_line(&record);
        assert_valid_emf(&doc);
        // A round trip through the text that is written.
        let doc: Value = serde_json::from_str(&doc.to_string()).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Pennyworth/test"
        );
        assert_eq!(doc["Model"], "claude");
        assert_eq!(doc["user"], "alice \"quoted\"");
        assert_eq!(doc["PromptTokens"], 1200);
        assert_eq!(doc["CompletionTokens"], 34);
        assert_eq!(doc["CacheReadTokens"], 1000);
        assert_eq!(doc["CostUsd"], 0.00123);
        assert_eq!(doc["cost_usd"], "0.00123");
        assert_eq!(doc["cost_nano_usd"], 1_230_000);
        assert_eq!(doc["session"], "s-1");
        assert_eq!(doc["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(doc["target"], "pennyworth::usage");
        assert_eq!(doc["partial"], true);
        assert_eq!(doc["estimated"], false);
    }

    #[test]
    fn settings() {
        let on = |m, n, d| Emf::from_settings(m, n, d);
        assert_eq!(on(None, None, true), Ok(Some(Emf::new("Pennyworth"))));
        assert_eq!(on(None, None, false), Ok(None));
        assert_eq!(on(Some("off"), None, true), Ok(None));
        assert_eq!(
            on(Some("EMF"), Some("A/b"), false),
            Ok(Some(Emf::new("A/b")))
        );
        assert!(on(Some("statsd"), None, true).is_err());
        assert!(on(Some("emf"), Some(":x"), true).is_err());
        assert!(on(Some("emf"), Some("caf\u{e9}"), true).is_err());
        assert!(on(Some("emf"), Some(&"n".repeat(256)), true).is_err());
    }

    #[test]
    fn request_line_counts_by_status_class() {
        let emf = Emf::new(DEFAULT_NAMESPACE);
        for (status, c4, c5) in [(200u16, 0, 0), (404, 1, 0), (429, 1, 0), (502, 0, 1)] {
            let doc = emf.request_line(
                crate::usage::Ids {
                    request_id: "req_2",
                    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                },
                "POST",
                "/v1/chat/completions",
                status,
                "-",
                1500,
            );
            assert_valid_emf(&doc);
            assert_eq!(doc["Requests"], 1);
            assert_eq!(doc["Status4xx"], c4, "{status}");
            assert_eq!(doc["Status5xx"], c5, "{status}");
            assert_eq!(doc["Latency"], 1.5);
        }
    }
}
