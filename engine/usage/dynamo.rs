//! The ledger on AWS: one on-demand DynamoDB table (`template.yaml`), atomic `ADD` updates,
//! shared by every warm Lambda instance.
//!
//! Items (`pk`, `sk` strings; `expires` is the TTL attribute):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | aggregate | `U#<user>` | `D#<day>#<key>#<model>` | requests, token counts, `cost` (nano-dollars), user, day, key, model, session; expires after [`DETAIL_TTL_DAYS`] |
//! | user month | `U#<user>` | `M#<YYYY-MM>` | `cost` and `d<DD>` (that day's cost); expires after [`ROLLUP_TTL_DAYS`] |
//! | key month | `K#<key id>` | `M#<YYYY-MM>` | the same for one key |
//! | window | `U#<user>` or `K#<key id>` | `W#<minute>` | requests, tokens; expires after an hour |
//!
//! Calls per model request: one `UpdateItem` per aggregate, user month and (with a key) key
//! month, written concurrently after the call; one `BatchGetItem` before it when a budget or
//! a policy needs the spend; one `UpdateItem` per rate-limited scope; plus one `UpdateItem`
//! per tokens-per-minute scope after it. Writes are retried by the SDK (up to three attempts),
//! so an `ADD` whose answer was lost may be applied twice: at-least-once, with at most two
//! extra counts per call under network failures.

use super::period;
use super::store::{Entry, Query, Row, Scope, Spend, Totals, UsageError, UsageStore, Window};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Days an aggregate item is kept.
pub const DETAIL_TTL_DAYS: i64 = 400;
/// Days a month rollup is kept.
pub const ROLLUP_TTL_DAYS: i64 = 800;

type Item = HashMap<String, AttributeValue>;

/// Where the table is.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// Table name.
    pub table: String,
    /// Region.
    pub region: String,
    /// Endpoint override (tests: moto on 127.0.0.1).
    pub endpoint: Option<String>,
    /// Static credentials (tests); `None` uses the default AWS credential chain.
    pub static_credentials: Option<(String, String)>,
}

/// The DynamoDB ledger.
#[derive(Debug)]
pub struct DynamoUsageStore {
    client: Client,
    table: String,
    runtime: tokio::runtime::Handle,
    pending: Arc<(AtomicUsize, Notify)>,
}

/// The table `PENNYWORTH_USAGE_TABLE` names, in `AWS_REGION`, at
/// `PENNYWORTH_DYNAMODB_ENDPOINT` if set (tests); `None` without a table. Read by the
/// binaries only.
pub async fn from_env() -> Result<Option<DynamoUsageStore>, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let Some(table) = var("PENNYWORTH_USAGE_TABLE") else {
        return Ok(None);
    };
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or_else(|| "set AWS_REGION for the usage table".to_string())?;
    Ok(Some(
        DynamoUsageStore::new(DynamoSettings {
            table,
            region,
            endpoint: var("PENNYWORTH_DYNAMODB_ENDPOINT"),
            static_credentials: None,
        })
        .await,
    ))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> UsageError {
    UsageError::Unavailable(e.to_string())
}

fn sdk_error<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> UsageError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e))
}

fn pk(scope: &Scope) -> String {
    match scope {
        Scope::User(u) => format!("U#{u}"),
        Scope::Key(k) => format!("K#{k}"),
    }
}

impl DynamoUsageStore {
    /// Builds the client once (cold start). Must be called inside a Tokio runtime, whose
    /// handle runs the writes.
    pub async fn new(settings: DynamoSettings) -> Self {
        let shared = crate::aws::sdk_config(
            &settings.region,
            settings.endpoint.as_deref(),
            settings.static_credentials.as_ref(),
        )
        .await;
        let config = aws_sdk_dynamodb::config::Builder::from(&shared).build();
        Self {
            client: Client::from_conf(config),
            table: settings.table,
            runtime: tokio::runtime::Handle::current(),
            pending: Arc::new((AtomicUsize::new(0), Notify::new())),
        }
    }

    /// The SDK client (tests create the table with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn write(client: Client, table: String, e: Entry) -> Result<(), UsageError> {
        let day = period::day(e.at);
        let month = period::month(e.at);
        let dom = format!("d{:02}", period::day_of_month(e.at));
        let t = e.totals;
        let mut detail = client
            .update_item()
            .table_name(&table)
            .key("pk", s(format!("U#{}", e.user)))
            .key("sk", s(format!("D#{day}#{}#{}", e.key, e.model)))
            .update_expression(format!(
                "ADD #rq :rq, #in :in, #out :out, #cr :cr, #cw :cw, #cost :cost \
                 SET #u = :u, #d = :d, #k = :k, #m = :m, #exp = :exp{}",
                if e.session.is_some() { ", #s = :s" } else { "" }
            ))
            .expression_attribute_names("#rq", "requests")
            .expression_attribute_names("#in", "input_tokens")
            .expression_attribute_names("#out", "output_tokens")
            .expression_attribute_names("#cr", "cache_read_tokens")
            .expression_attribute_names("#cw", "cache_write_tokens")
            .expression_attribute_names("#cost", "cost")
            .expression_attribute_names("#exp", "expires")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#d", "day")
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#m", "model")
            .expression_attribute_values(":rq", n(t.requests))
            .expression_attribute_values(":in", n(t.input_tokens))
            .expression_attribute_values(":out", n(t.output_tokens))
            .expression_attribute_values(":cr", n(t.cache_read_tokens))
            .expression_attribute_values(":cw", n(t.cache_write_tokens))
            .expression_attribute_values(":cost", n(t.cost_nanos))
            .expression_attribute_values(":u", s(&e.user))
            .expression_attribute_values(":d", s(&day))
            .expression_attribute_values(":k", s(&e.key))
            .expression_attribute_values(":m", s(&e.model))
            .expression_attribute_values(":exp", n(e.at + DETAIL_TTL_DAYS * period::DAY));
        if let Some(session) = &e.session {
            detail = detail
                .expression_attribute_names("#s", "session")
                .expression_attribute_values(":s", s(session));
        }
        let rollup = |scope: Scope| {
            client
                .update_item()
                .table_name(&table)
                .key("pk", s(pk(&scope)))
                .key("sk", s(format!("M#{month}")))
                .update_expression("ADD #cost :cost, #dom :cost SET #exp = :exp")
                .expression_attribute_names("#cost", "cost")
                .expression_attribute_names("#exp", "expires")
                .expression_attribute_names("#dom", &dom)
                .expression_attribute_values(":cost", n(t.cost_nanos))
                .expression_attribute_values(":exp", n(e.at + ROLLUP_TTL_DAYS * period::DAY))
                .send()
        };
        let window = |scope: Scope| {
            client
                .update_item()
                .table_name(&table)
                .key("pk", s(pk(&scope)))
                .key("sk", s(format!("W#{}", period::minute(e.at))))
                .update_expression("ADD #tok :t SET #exp = :exp")
                .expression_attribute_names("#tok", "tokens")
                .expression_attribute_names("#exp", "expires")
                .expression_attribute_values(":t", n(t.tokens()))
                .expression_attribute_values(":exp", n(e.at + 3600))
                .send()
        };
        let user = Scope::User(e.user.clone());
        let key = (!e.key.is_empty()).then(|| Scope::Key(e.key.clone()));
        let (a, b, c, d, f) = tokio::join!(
            detail.send(),
            rollup(user.clone()),
            async {
                match key.clone() {
                    Some(k) => rollup(k).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match e.user_window {
                    true => window(user.clone()).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match key.clone().filter(|_| e.key_window) {
                    Some(k) => window(k).await.map(Some),
                    None => Ok(None),
                }
            },
        );
        a.map_err(sdk_error)?;
        b.map_err(sdk_error)?;
        c.map_err(sdk_error)?;
        d.map_err(sdk_error)?;
        f.map_err(sdk_error)?;
        Ok(())
    }

    fn rows(items: &[Item]) -> impl Iterator<Item = Row> + '_ {
        items.iter().map(|i| Row {
            day: text(i, "day"),
            user: text(i, "user"),
            key: text(i, "key"),
            model: text(i, "model"),
            totals: Totals {
                requests: u64::try_from(num(i, "requests")).unwrap_or(0),
                input_tokens: u64::try_from(num(i, "input_tokens")).unwrap_or(0),
                output_tokens: u64::try_from(num(i, "output_tokens")).unwrap_or(0),
                cache_read_tokens: u64::try_from(num(i, "cache_read_tokens")).unwrap_or(0),
                cache_write_tokens: u64::try_from(num(i, "cache_write_tokens")).unwrap_or(0),
                cost_nanos: num(i, "cost"),
            },
            session: Some(text(i, "session")).filter(|s| !s.is_empty()),
        })
    }
}

/// Decrements the pending count when a write ends, however it ends.
struct Pending(Arc<(AtomicUsize, Notify)>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

#[async_trait]
impl UsageStore for DynamoUsageStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn record(&self, entry: Entry) {
        self.pending.0.fetch_add(1, Ordering::AcqRel);
        let guard = Pending(self.pending.clone());
        let (client, table) = (self.client.clone(), self.table.clone());
        self.runtime.spawn(async move {
            let _guard = guard;
            if let Err(e) = Self::write(client, table, entry).await {
                tracing::error!(target: "pennyworth::usage", error = %e, "ledger write failed");
            }
        });
    }

    async fn flush(&self) -> Result<(), UsageError> {
        loop {
            let notified = self.pending.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.0.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            notified.await;
        }
    }

    async fn spend(&self, user: &str, key: Option<&str>, at: i64) -> Result<Spend, UsageError> {
        let month = format!("M#{}", period::month(at));
        let dom = format!("d{:02}", period::day_of_month(at));
        let upk = pk(&Scope::User(user.to_string()));
        let kpk = key.map(|k| pk(&Scope::Key(k.to_string())));
        let mut keys = KeysAndAttributes::builder()
            .keys(HashMap::from([
                ("pk".to_string(), s(&upk)),
                ("sk".to_string(), s(&month)),
            ]))
            .projection_expression("#pk, #cost, #dom")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#cost", "cost")
            .expression_attribute_names("#dom", &dom);
        if let Some(kpk) = &kpk {
            keys = keys.keys(HashMap::from([
                ("pk".to_string(), s(kpk)),
                ("sk".to_string(), s(&month)),
            ]));
        }
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys.build().map_err(unavailable)?)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut spend = Spend::default();
        for item in out
            .responses()
            .and_then(|r| r.get(&self.table))
            .into_iter()
            .flatten()
        {
            let p = text(item, "pk");
            if p == upk {
                spend.user_month = num(item, "cost");
                spend.user_day = num(item, &dom);
            } else if Some(&p) == kpk.as_ref() {
                spend.key_month = num(item, "cost");
                spend.key_day = num(item, &dom);
            }
        }
        Ok(spend)
    }

    async fn admit(&self, scopes: &[Scope], at: i64) -> Result<Vec<Window>, UsageError> {
        let minute = period::minute(at);
        let calls = scopes.iter().map(|scope| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk(scope)))
                .key("sk", s(format!("W#{minute}")))
                .update_expression("ADD #rq :one SET #exp = :exp")
                .expression_attribute_names("#rq", "requests")
                .expression_attribute_names("#exp", "expires")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":exp", n(at + 3600))
                .return_values(ReturnValue::AllNew)
                .send()
        });
        let mut windows = Vec::with_capacity(scopes.len());
        for out in futures_util::future::join_all(calls).await {
            let out = out.map_err(sdk_error)?;
            let item = out.attributes().cloned().unwrap_or_default();
            windows.push(Window {
                requests: u64::try_from(num(&item, "requests")).unwrap_or(0),
                tokens: u64::try_from(num(&item, "tokens")).unwrap_or(0),
            });
        }
        Ok(windows)
    }

    async fn query(&self, query: &Query) -> Result<Vec<Row>, UsageError> {
        let mut rows = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (items, next) = match &query.user {
                Some(user) => {
                    // '$' sorts right after '#', so this bound ends after every key and model of `to`.
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :b")
                        .expression_attribute_names("#pk", "pk")
                        .expression_attribute_names("#sk", "sk")
                        .expression_attribute_values(":pk", s(format!("U#{user}")))
                        .expression_attribute_values(":a", s(format!("D#{}#", query.from)))
                        .expression_attribute_values(":b", s(format!("D#{}$", query.to)))
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(sdk_error)?;
                    (out.items().to_vec(), out.last_evaluated_key().cloned())
                }
                None => {
                    // Everyone's: a scan of the aggregates (an admin report, not a hot path).
                    let out = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .filter_expression("begins_with(#sk, :p) AND #d BETWEEN :a AND :b")
                        .expression_attribute_names("#sk", "sk")
                        .expression_attribute_names("#d", "day")
                        .expression_attribute_values(":p", s("D#"))
                        .expression_attribute_values(":a", s(&query.from))
                        .expression_attribute_values(":b", s(&query.to))
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(sdk_error)?;
                    (out.items().to_vec(), out.last_evaluated_key().cloned())
                }
            };
            rows.extend(Self::rows(&items));
            match next.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(rows),
            }
        }
    }
}
