//! Usage accounting: one record per model call, priced from `models.yaml`.
//!
//! Records go to the log as one structured line (target `pennyworth::usage`) that log
//! metric filters and queries can aggregate; a persistent ledger can consume the same record.

use crate::providers::TokenUsage;
use rust_decimal::Decimal;

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Price {
    /// Input tokens.
    pub input: Decimal,
    /// Output tokens.
    pub output: Decimal,
}

impl Price {
    /// Cost in USD of `usage`.
    pub fn cost(&self, usage: TokenUsage) -> Decimal {
        let million = Decimal::from(1_000_000u32);
        (Decimal::from(usage.prompt) * self.input + Decimal::from(usage.completion) * self.output)
            / million
    }
}

/// One model call.
#[derive(Debug, Clone)]
pub struct UsageRecord<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// User name.
    pub user: &'a str,
    /// Key id, if a key was used.
    pub key_id: Option<&'a str>,
    /// Model alias.
    pub model: &'a str,
    /// Streamed or not.
    pub stream: bool,
    /// Tokens.
    pub usage: TokenUsage,
    /// Cost in USD.
    pub cost: Decimal,
}

impl UsageRecord<'_> {
    /// Writes the record to the usage log.
    pub fn emit(&self) {
        tracing::info!(
            target: "pennyworth::usage",
            request_id = self.request_id,
            user = self.user,
            key_id = self.key_id.unwrap_or(""),
            model = self.model,
            stream = self.stream,
            prompt_tokens = self.usage.prompt,
            completion_tokens = self.usage.completion,
            cost_usd = %self.cost,
            "usage"
        );
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
        };
        let c = p.cost(TokenUsage {
            prompt: 1000,
            completion: 2000,
        });
        assert_eq!(c, Decimal::from_str("0.033").unwrap());
    }
}
