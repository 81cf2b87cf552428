//! The ledger handle the engine and the handlers share: where usage records go, and the
//! limits stage of the request path (budgets and rate limits, checked before the upstream
//! call).

use super::UsageRecord;
use super::limits::{Limit, Limits};
use super::period;
use super::store::{Entry, Query, Row, Scope, Spend, Totals, UsageError, UsageStore, nanos};
use crate::auth::Identity;
use crate::errors::{ApiError, ErrorKind};
use http::{HeaderValue, StatusCode, header};
use std::sync::Arc;

/// The usage store (if any) and the compiled limits. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    store: Option<Arc<dyn UsageStore>>,
    limits: Arc<Limits>,
}

impl Ledger {
    /// A ledger over `store` (`None`: records go to the log only, limits are not enforced).
    pub fn new(store: Option<Arc<dyn UsageStore>>, limits: Arc<Limits>) -> Self {
        Self { store, limits }
    }

    /// The store.
    pub fn store(&self) -> Option<&Arc<dyn UsageStore>> {
        self.store.as_ref()
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds one call to the store (never blocks, never fails the call).
    pub fn record(&self, r: &UsageRecord<'_>) {
        let Some(store) = &self.store else {
            return;
        };
        let user_window = self
            .limits
            .for_user(r.user, r.groups)
            .tokens_per_minute
            .is_some();
        let key_window = self.limits.for_key(r.key_id).tokens_per_minute.is_some();
        store.record(Entry {
            at: crate::directory::now(),
            user: r.user.to_string(),
            key: r.key_id.unwrap_or_default().to_string(),
            model: r.model.to_string(),
            totals: Totals {
                requests: 1,
                input_tokens: r.usage.prompt,
                output_tokens: r.usage.completion,
                cache_read_tokens: r.usage.cache_read,
                cache_write_tokens: r.usage.cache_write,
                cost_nanos: nanos(r.cost),
            },
            session: r.session.map(str::to_string),
            user_window,
            key_window,
        });
    }

    /// Waits until everything recorded is written (shutdown, tests).
    pub async fn flush(&self) -> Result<(), UsageError> {
        match &self.store {
            Some(s) => s.flush().await,
            None => Ok(()),
        }
    }

    /// True when a model call of `identity` needs the caller's spend: a policy reads it or
    /// a budget applies.
    pub fn needs_spend(&self, identity: &Identity) -> bool {
        self.store.is_some()
            && (self.limits.spend_in_policies
                || self
                    .limits
                    .for_user(&identity.username, &identity.groups)
                    .has_budget()
                || self.limits.for_key(identity.key_id.as_deref()).has_budget())
    }

    /// The spend of `identity` (and their key) now, or zero when it is not needed or the
    /// store fails (logged: a ledger outage does not stop the gateway).
    pub async fn spend(&self, identity: &Identity, at: i64) -> Spend {
        let Some(store) = self.store.as_ref().filter(|_| self.needs_spend(identity)) else {
            return Spend::default();
        };
        match store
            .spend(&identity.username, identity.key_id.as_deref(), at)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(target: "pennyworth::usage", error = %e, "cannot read spend; budgets not enforced for this call");
                Spend::default()
            }
        }
    }

    /// The limits stage: budgets against `spend`, then the per-minute windows. Over a budget
    /// → 429 `insufficient_quota`; over a rate → 429 `rate_limit_exceeded`; both with
    /// `Retry-After` (seconds until the period that is over ends).
    pub async fn check(&self, identity: &Identity, spend: Spend, at: i64) -> Result<(), ApiError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let user = self.limits.for_user(&identity.username, &identity.groups);
        let key = self.limits.for_key(identity.key_id.as_deref());
        budget(&user, spend.user_day, spend.user_month, "your", at)?;
        budget(&key, spend.key_day, spend.key_month, "this API key's", at)?;

        let mut scopes = Vec::with_capacity(2);
        let mut limits = Vec::with_capacity(2);
        if user.has_rate() {
            scopes.push(Scope::User(identity.username.clone()));
            limits.push((user, "your"));
        }
        if let Some(id) = identity.key_id.as_deref().filter(|_| key.has_rate()) {
            scopes.push(Scope::Key(id.to_string()));
            limits.push((key, "this API key's"));
        }
        if scopes.is_empty() {
            return Ok(());
        }
        let windows = match store.admit(&scopes, at).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(target: "pennyworth::usage", error = %e, "cannot count the rate; limits not enforced for this call");
                return Ok(());
            }
        };
        for ((limit, whose), w) in limits.iter().zip(windows) {
            let wait = period::until_next_minute(at);
            if let Some(max) = limit.requests_per_minute.filter(|max| w.requests > *max) {
                return Err(too_many(
                    "rate_limit_exceeded",
                    format!("{whose} limit of {max} requests per minute is reached"),
                    wait,
                ));
            }
            if let Some(max) = limit.tokens_per_minute.filter(|max| w.tokens >= *max) {
                return Err(too_many(
                    "rate_limit_exceeded",
                    format!("{whose} limit of {max} tokens per minute is reached"),
                    wait,
                ));
            }
        }
        Ok(())
    }

    /// The aggregates of `query`.
    pub async fn query(&self, query: &Query) -> Result<Vec<Row>, UsageError> {
        match &self.store {
            Some(s) => s.query(query).await,
            None => Ok(Vec::new()),
        }
    }
}

fn budget(limit: &Limit, day: i64, month: i64, whose: &str, at: i64) -> Result<(), ApiError> {
    if let Some(max) = limit.day_nanos.filter(|max| day >= *max) {
        return Err(too_many(
            "insufficient_quota",
            format!(
                "{whose} daily budget of {} USD is used up",
                super::store::usd(max)
            ),
            period::until_next_day(at),
        ));
    }
    if let Some(max) = limit.month_nanos.filter(|max| month >= *max) {
        return Err(too_many(
            "insufficient_quota",
            format!(
                "{whose} monthly budget of {} USD is used up",
                super::store::usd(max)
            ),
            period::until_next_month(at),
        ));
    }
    Ok(())
}

fn too_many(code: &'static str, message: String, retry_after: i64) -> ApiError {
    let e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::RateLimitError,
        code,
        message,
    );
    match HeaderValue::from_str(&retry_after.to_string()) {
        Ok(v) => e.with_header(header::RETRY_AFTER, v),
        Err(_) => e,
    }
}
