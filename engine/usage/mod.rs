//! Usage accounting: one record per model call, priced from `models.yaml`.
//!
//! Records go to the log as one structured line (target `pennyworth::usage`) that queries can
//! aggregate, on Lambda as an EMF line that also makes CloudWatch metrics, and to the
//! [`ledger::Ledger`]: aggregates per user, key, model and day in a [`store::UsageStore`]
//! (SQLite for `serve`, DynamoDB on AWS) that budgets, rate limits and `GET /v1/usage` read.

pub mod dynamo;
pub mod ledger;
pub mod limits;
pub mod period;
pub mod report;
pub mod sqlite;
pub mod store;

pub use ledger::Ledger;

use crate::auth::Identity;
use crate::engine::ModelRuntime;
use crate::inference::{BlockStart, Delta, Event};
use crate::providers::TokenUsage;
use rust_decimal::Decimal;

/// The ledger the environment asks for: the DynamoDB table `PENNYWORTH_USAGE_TABLE` when
/// set, else SQLite in `data_dir`. Read by the binaries only.
pub async fn store_from_env(
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn store::UsageStore>, String> {
    if let Some(table) = dynamo::from_env().await? {
        return Ok(std::sync::Arc::new(table));
    }
    let local = sqlite::SqliteUsageStore::open(data_dir).map_err(|e| e.to_string())?;
    Ok(std::sync::Arc::new(local))
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Price {
    /// Input tokens.
    pub input: Decimal,
    /// Output tokens.
    pub output: Decimal,
    /// Prompt-cache reads (default: the input price).
    pub cache_read: Option<Decimal>,
    /// Prompt-cache writes (default: the input price).
    pub cache_write: Option<Decimal>,
}

impl Price {
    /// Cost in USD of `usage`. Cached prompt tokens are priced at the cache prices, the rest
    /// of the prompt at the input price.
    pub fn cost(&self, usage: TokenUsage) -> Decimal {
        let million = Decimal::from(1_000_000u32);
        let uncached = usage
            .prompt
            .saturating_sub(usage.cache_read)
            .saturating_sub(usage.cache_write);
        (Decimal::from(uncached) * self.input
            + Decimal::from(usage.cache_read) * self.cache_read.unwrap_or(self.input)
            + Decimal::from(usage.cache_write) * self.cache_write.unwrap_or(self.input)
            + Decimal::from(usage.completion) * self.output)
            / million
    }
}

/// The ids of the request a model call belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    /// Request id (`x-request-id`).
    pub request_id: &'a str,
    /// Trace id (`x-trace-id`).
    pub trace_id: &'a str,
}

/// One model call.
#[derive(Debug, Clone)]
pub struct UsageRecord<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Trace id.
    pub trace_id: &'a str,
    /// User name.
    pub user: &'a str,
    /// The user's groups (which limits apply).
    pub groups: &'a [String],
    /// Key id, if a key was used.
    pub key_id: Option<&'a str>,
    /// Model alias.
    pub model: &'a str,
    /// The client's session id (Claude Code's), when known.
    pub session: Option<&'a str>,
    /// Streamed or not.
    pub stream: bool,
    /// Tokens.
    pub usage: TokenUsage,
    /// Cost in USD.
    pub cost: Decimal,
    /// The call ended before the provider's end: the client left or it failed mid-stream.
    pub partial: bool,
    /// The provider reported no token counts, so `usage` is an estimate
    /// ([`estimate_tokens`] of the prompt's and the streamed answer's characters).
    pub estimated: bool,
}

impl<'a> UsageRecord<'a> {
    /// A call `model` answered in full for `identity`, with the provider's counts, priced
    /// from the alias's prices.
    pub fn complete(
        ids: Ids<'a>,
        identity: &'a Identity,
        model: &'a ModelRuntime,
        stream: bool,
        usage: TokenUsage,
    ) -> Self {
        Self {
            request_id: ids.request_id,
            trace_id: ids.trace_id,
            user: &identity.username,
            groups: &identity.groups,
            key_id: identity.key_id.as_deref(),
            model: &model.alias,
            session: None,
            stream,
            usage,
            cost: model.price.cost(usage),
            partial: false,
            estimated: false,
        }
    }

    /// Writes the record to the usage log (an EMF line with the metrics when EMF is on
    /// ([`crate::metrics`]), else a log line) and adds it to `ledger`.
    pub fn emit(&self, ledger: &Ledger) {
        ledger.record(self);
        if let Some(emf) = crate::metrics::emf() {
            crate::metrics::write_line(&emf.usage_line(self));
            return;
        }
        tracing::info!(
            target: "pennyworth::usage",
            request_id = self.request_id,
            trace_id = self.trace_id,
            user = self.user,
            key_id = self.key_id.unwrap_or(""),
            model = self.model,
            stream = self.stream,
            prompt_tokens = self.usage.prompt,
            completion_tokens = self.usage.completion,
            cache_read_tokens = self.usage.cache_read,
            cache_write_tokens = self.usage.cache_write,
            cost_usd = %self.cost,
            partial = self.partial,
            estimated = self.estimated,
            "usage"
        );
    }
}

/// Tokens in `chars` characters of text by the usual rule of thumb (about four characters a
/// token for English text), for calls whose provider reported no counts.
pub fn estimate_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
}

/// Who and what a streamed call is billed to.
#[derive(Debug, Clone)]
pub struct Billing {
    /// Request id.
    pub request_id: String,
    /// Trace id.
    pub trace_id: String,
    /// User name.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// Key id, if a key was used.
    pub key_id: Option<String>,
    /// Model alias that served the call.
    pub model: String,
    /// Its prices.
    pub price: Price,
    /// The client's session id, when known.
    pub session: Option<String>,
    /// Where the record goes.
    pub ledger: Ledger,
}

impl Billing {
    /// The billing of a call `model` serves for `identity`, recorded in `ledger`.
    pub fn new(ids: Ids<'_>, identity: &Identity, model: &ModelRuntime, ledger: &Ledger) -> Self {
        Self {
            request_id: ids.request_id.to_string(),
            trace_id: ids.trace_id.to_string(),
            user: identity.username.clone(),
            groups: identity.groups.clone(),
            key_id: identity.key_id.clone(),
            model: model.alias.clone(),
            price: model.price.clone(),
            session: None,
            ledger: ledger.clone(),
        }
    }
}

/// The usage of one streamed call while it streams. It records itself exactly once: when
/// the stream ends ([`StreamMeter::finish`]) or, if the stream is dropped before its end
/// (the client disconnected), when it is dropped, so an abandoned stream is still accounted
/// for (as `partial`, with estimated counts when the provider had not reported any yet).
#[derive(Debug)]
pub struct StreamMeter {
    billing: Billing,
    usage: TokenUsage,
    reported: bool,
    prompt_chars: usize,
    streamed_chars: usize,
    recorded: bool,
}

impl StreamMeter {
    /// A meter for a call whose prompt has `prompt_chars` characters of text.
    pub fn new(billing: Billing, prompt_chars: usize) -> Self {
        Self {
            billing,
            usage: TokenUsage::default(),
            reported: false,
            prompt_chars,
            streamed_chars: 0,
            recorded: false,
        }
    }

    /// Counts one event of the answer.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Delta { delta, .. } => {
                let (Delta::Text(t) | Delta::Reasoning(t) | Delta::ToolInput(t)) = delta else {
                    return;
                };
                self.streamed_chars += t.chars().count();
            }
            Event::BlockStart {
                start: BlockStart::ToolUse { name, .. },
                ..
            } => self.streamed_chars += name.chars().count(),
            Event::Usage(u) => {
                self.usage = *u;
                self.reported = true;
            }
            Event::BlockStart { .. } | Event::BlockStop { .. } | Event::Stop(_) | Event::Cut => {}
        }
    }

    /// The counts the provider reported (zero until it does).
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    /// The model alias that served the call.
    pub fn model(&self) -> &str {
        &self.billing.model
    }

    /// Records the call (once; later calls do nothing). `partial`: the stream ended before
    /// the provider's end.
    pub fn finish(&mut self, partial: bool) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let usage = if self.reported {
            self.usage
        } else {
            TokenUsage {
                prompt: estimate_tokens(self.prompt_chars),
                completion: estimate_tokens(self.streamed_chars),
                ..TokenUsage::default()
            }
        };
        let b = &self.billing;
        UsageRecord {
            request_id: &b.request_id,
            trace_id: &b.trace_id,
            user: &b.user,
            groups: &b.groups,
            key_id: b.key_id.as_deref(),
            model: &b.model,
            session: b.session.as_deref(),
            stream: true,
            usage,
            cost: b.price.cost(usage),
            partial,
            estimated: !self.reported,
        }
        .emit(&b.ledger);
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.finish(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn cost_per_million() {
        let p = Price {
            input: Decimal::from_str("3.00").unwrap(),
            output: Decimal::from_str("15.00").unwrap(),
            cache_read: Some(Decimal::from_str("0.30").unwrap()),
            cache_write: None,
        };
        let c = p.cost(TokenUsage {
            prompt: 1000,
            completion: 2000,
            ..TokenUsage::default()
        });
        assert_eq!(c, Decimal::from_str("0.033").unwrap());
        let c = p.cost(TokenUsage {
            prompt: 3000,
            completion: 0,
            cache_read: 1000,
            cache_write: 1000,
        });
        // 1000 uncached at 3, 1000 read at 0.30, 1000 written at the input price.
        assert_eq!(c, Decimal::from_str("0.0063").unwrap());
    }
}
