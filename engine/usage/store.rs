//! The ledger's storage: one trait, the SQLite store of `serve` ([`super::sqlite`]) and the
//! DynamoDB store of the Lambda deployment ([`super::dynamo`]).
//!
//! What is kept: aggregates per (user, key, model, UTC day) of requests, tokens and cost in
//! integer nano-dollars; the spend of every user and key per day and month (what budgets and
//! the Cedar context read); and per-minute windows of requests and tokens (rate limits).

use async_trait::async_trait;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

/// Ledger failures. They are logged; a request never fails because the ledger did (see
/// `doc/observability.md`).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The store cannot be opened, read or written.
    #[error("usage store unavailable: {0}")]
    Unavailable(String),
}

/// Nano-dollars of a cost in USD, the ledger's unit. A price per million tokens with up to
/// three decimals (every Bedrock list price at the time of writing: 0.035, 0.02, 3.75, ...)
/// costs a whole number of nano-dollars per token, so the ledger is exact for them; finer
/// prices are rounded half away from zero once per call. Micro-dollars would round a small
/// embedding call (3 tokens at 0.02 USD per million: 0.06 micro-dollars) to nothing. An i64
/// holds 9.2 billion USD.
pub fn nanos(usd: Decimal) -> i64 {
    (usd * Decimal::from(1_000_000_000u32))
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(i64::MAX)
}

/// USD as a decimal string (`"0.001234"`) from nano-dollars.
pub fn usd(nanos: i64) -> String {
    Decimal::new(nanos, 9).normalize().to_string()
}

/// One call to add to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When (Unix seconds); decides the day, month and minute.
    pub at: i64,
    /// User name.
    pub user: String,
    /// Key id, empty when the caller used a token.
    pub key: String,
    /// Model alias.
    pub model: String,
    /// Tokens and cost.
    pub totals: Totals,
    /// The client's session id (Claude Code's), when it sent one.
    pub session: Option<String>,
    /// Count the tokens in the user's per-minute window (a tokens-per-minute limit applies).
    pub user_window: bool,
    /// Count the tokens in the key's per-minute window.
    pub key_window: bool,
}

/// Sums of one aggregate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Calls.
    pub requests: u64,
    /// Prompt tokens (cached included).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the cache.
    pub cache_write_tokens: u64,
    /// Cost in nano-dollars.
    pub cost_nanos: i64,
}

impl Totals {
    /// Adds `other`.
    pub fn add(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
    }

    /// Tokens that count against a tokens-per-minute limit (input and output).
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Spend in nano-dollars of a user and of a key, in the UTC day and month of a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// The user today.
    pub user_day: i64,
    /// The user this month.
    pub user_month: i64,
    /// The key today (0 without a key).
    pub key_day: i64,
    /// The key this month.
    pub key_month: i64,
}

/// What a rate-limit window holds: requests admitted and tokens recorded this minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Requests admitted in the window (the one being admitted included).
    pub requests: u64,
    /// Tokens recorded in the window.
    pub tokens: u64,
}

/// Whose rate-limit window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A user's.
    User(String),
    /// A key's.
    Key(String),
}

impl Scope {
    /// A stable text form (`u#alice`, `k#<key id>`), the stores' key.
    pub fn id(&self) -> String {
        match self {
            Scope::User(u) => format!("u#{u}"),
            Scope::Key(k) => format!("k#{k}"),
        }
    }
}

/// Which aggregates to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// First day, `YYYY-MM-DD`, inclusive.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// One user's, or everyone's (`None`).
    pub user: Option<String>,
}

/// One aggregate: a (user, key, model, day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// User name.
    pub user: String,
    /// Key id, empty for calls made with a token.
    pub key: String,
    /// Model alias.
    pub model: String,
    /// Sums.
    pub totals: Totals,
    /// The last session id seen for this aggregate.
    pub session: Option<String>,
}

/// Where the ledger lives.
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `dynamodb`, for logs.
    fn kind(&self) -> &'static str;

    /// Adds one call. Never blocks the caller and never fails it: the write happens on the
    /// store's own thread or task, and a failed write is logged. Callable outside a runtime
    /// (a stream's meter records when it is dropped).
    fn record(&self, entry: Entry);

    /// Waits until every entry recorded so far is written.
    async fn flush(&self) -> Result<(), UsageError>;

    /// The spend of `user` and `key` in the UTC day and month of `at`.
    async fn spend(&self, user: &str, key: Option<&str>, at: i64) -> Result<Spend, UsageError>;

    /// Counts one request in the minute window of `at` of each scope and returns each
    /// window after it.
    async fn admit(&self, scopes: &[Scope], at: i64) -> Result<Vec<Window>, UsageError>;

    /// The aggregates of the days and user of `query`, in no particular order.
    async fn query(&self, query: &Query) -> Result<Vec<Row>, UsageError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn nano_dollars() {
        let d = |s| Decimal::from_str(s).unwrap();
        assert_eq!(nanos(d("0.033")), 33_000_000);
        assert_eq!(nanos(d("0.00000006")), 60);
        assert_eq!(nanos(d("0.0000000005")), 1);
        assert_eq!(nanos(d("0.00000000049")), 0);
        assert_eq!(nanos(d("12.3456789012")), 12_345_678_901);
        assert_eq!(usd(33_000_000), "0.033");
        assert_eq!(usd(0), "0");
        assert_eq!(usd(60), "0.00000006");
        assert_eq!(usd(50_000_000_000), "50");
    }
}
