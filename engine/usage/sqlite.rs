//! The ledger of `pennyworth serve`: SQLite (WAL, synchronous=FULL) in the data directory,
//! written by one dedicated thread fed through a bounded channel, so no async worker thread
//! ever waits on the disk.
//!
//! The writer takes what is queued (up to [`BATCH`] entries) and writes it in one transaction:
//! one fsync per batch, not per call. The spend of the current month and the per-minute
//! rate-limit windows are also kept in memory, updated when a call is recorded, so budget and
//! rate-limit checks cost a mutex and a hash lookup; the spend is reloaded from the file at
//! start, the windows start empty.

use super::period;
use super::store::{Entry, Query, Row, Scope, Spend, Totals, UsageError, UsageStore, Window};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// File name of the ledger inside the data directory.
pub const DB_FILE: &str = "usage.db";

/// Entries queued before `record` hands the send to a blocking thread.
const QUEUE: usize = 8192;

/// Most entries written in one transaction.
const BATCH: usize = 512;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS usage_daily (
  user TEXT NOT NULL,
  day TEXT NOT NULL,
  key TEXT NOT NULL,
  model TEXT NOT NULL,
  requests INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  cost_nanos INTEGER NOT NULL,
  session TEXT,
  PRIMARY KEY (user, day, key, model)
);
CREATE INDEX IF NOT EXISTS usage_daily_day ON usage_daily (day);
";

const UPSERT: &str = "
INSERT INTO usage_daily (user, day, key, model, requests, input_tokens, output_tokens,
  cache_read_tokens, cache_write_tokens, cost_nanos, session)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (user, day, key, model) DO UPDATE SET
  requests = requests + excluded.requests,
  input_tokens = input_tokens + excluded.input_tokens,
  output_tokens = output_tokens + excluded.output_tokens,
  cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
  cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
  cost_nanos = cost_nanos + excluded.cost_nanos,
  session = coalesce(excluded.session, session)";

const SELECT: &str = "SELECT user, day, key, model, requests, input_tokens, output_tokens,
  cache_read_tokens, cache_write_tokens, cost_nanos, session FROM usage_daily";

type Reply<T> = oneshot::Sender<Result<T, UsageError>>;

enum Msg {
    Record(Entry),
    Flush(Reply<()>),
    Query(Query, Reply<Vec<Row>>),
    Spend(String, Option<String>, String, String, Reply<Spend>),
}

/// Spend of the current month and rate-limit windows.
#[derive(Default)]
struct Memory {
    month: String,
    /// (scope id, day or month) → nano-dollars.
    spend: HashMap<(String, String), i64>,
    /// scope id → (minute, window).
    windows: HashMap<String, (i64, Window)>,
}

impl Memory {
    fn add_spend(&mut self, scope: String, day: &str, month: &str, cost: i64) {
        let d = self
            .spend
            .entry((scope.clone(), day.to_string()))
            .or_default();
        *d = d.saturating_add(cost);
        let m = self.spend.entry((scope, month.to_string())).or_default();
        *m = m.saturating_add(cost);
    }

    fn spend_of(&self, scope: &str, period: &str) -> i64 {
        self.spend
            .get(&(scope.to_string(), period.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// The SQLite ledger.
pub struct SqliteUsageStore {
    tx: SyncSender<Msg>,
    memory: Arc<Mutex<Memory>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteUsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteUsageStore")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> UsageError {
    UsageError::Unavailable(e.to_string())
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl SqliteUsageStore {
    /// Opens (creating if needed) the ledger in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<Self, UsageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| unavailable(format!("cannot create `{}`: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| unavailable(format!("cannot open `{}`: {e}", path.display())))?;
        Self::start(conn, path)
    }

    /// A ledger in memory (tests).
    pub fn in_memory() -> Result<Self, UsageError> {
        let conn = Connection::open_in_memory().map_err(unavailable)?;
        Self::start(conn, PathBuf::from(":memory:"))
    }

    fn start(conn: Connection, path: PathBuf) -> Result<Self, UsageError> {
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let now = crate::directory::now();
        let memory = Memory {
            month: period::month(now),
            ..Memory::default()
        };
        let memory = Arc::new(Mutex::new(memory));
        load_month(&conn, &mut lock(&memory), now)?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("pennyworth-usage".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| unavailable(format!("cannot start the ledger writer: {e}")))?;
        Ok(Self { tx, memory, path })
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                // The writer is behind: wait for room off the async workers.
                let tx = self.tx.clone();
                let send = move || {
                    if tx.send(msg).is_err() {
                        tracing::error!(target: "pennyworth::usage", "ledger writer stopped");
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        h.spawn_blocking(send);
                    }
                    Err(_) => send(),
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(target: "pennyworth::usage", "ledger writer stopped");
            }
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, UsageError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        let msg = make(reply);
        // A full queue must not block this worker thread.
        tokio::task::spawn_blocking(move || tx.send(msg).map_err(|_| ()))
            .await
            .map_err(unavailable)?
            .map_err(|()| unavailable("ledger writer stopped"))?;
        rx.await.map_err(|_| unavailable("ledger writer stopped"))?
    }
}

fn lock(m: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn load_month(conn: &Connection, memory: &mut Memory, now: i64) -> Result<(), UsageError> {
    let month = period::month(now);
    let mut stmt = conn
        .prepare(
            "SELECT user, key, day, sum(cost_nanos) FROM usage_daily
             WHERE day >= ?1 GROUP BY user, key, day",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![period::month_start(now)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (user, key, day, cost) = row.map_err(unavailable)?;
        memory.add_spend(Scope::User(user).id(), &day, &month, cost);
        if !key.is_empty() {
            memory.add_spend(Scope::Key(key).id(), &day, &month, cost);
        }
    }
    Ok(())
}

fn write_batch(conn: &mut Connection, entries: &[Entry]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for e in entries {
            let t = &e.totals;
            stmt.execute(params![
                e.user,
                period::day(e.at),
                e.key,
                e.model,
                int(t.requests),
                int(t.input_tokens),
                int(t.output_tokens),
                int(t.cache_read_tokens),
                int(t.cache_write_tokens),
                t.cost_nanos,
                e.session,
            ])?;
        }
    }
    tx.commit()
}

fn query(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<Row>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Row {
            user: r.get(0)?,
            day: r.get(1)?,
            key: r.get(2)?,
            model: r.get(3)?,
            totals: Totals {
                requests: uint(r.get(4)?),
                input_tokens: uint(r.get(5)?),
                output_tokens: uint(r.get(6)?),
                cache_read_tokens: uint(r.get(7)?),
                cache_write_tokens: uint(r.get(8)?),
                cost_nanos: r.get(9)?,
            },
            session: r.get(10)?,
        })
    };
    match &q.user {
        Some(user) => conn
            .prepare_cached(&format!(
                "{SELECT} WHERE user = ?1 AND day BETWEEN ?2 AND ?3"
            ))?
            .query_map(params![user, q.from, q.to], map)?
            .collect(),
        None => conn
            .prepare_cached(&format!("{SELECT} WHERE day BETWEEN ?1 AND ?2"))?
            .query_map(params![q.from, q.to], map)?
            .collect(),
    }
}

fn spend(
    conn: &Connection,
    user: &str,
    key: Option<&str>,
    day: &str,
    month: &str,
) -> rusqlite::Result<Spend> {
    let sum = |column: &str, id: &str, from: &str, to: &str| -> rusqlite::Result<i64> {
        conn.prepare_cached(&format!(
            "SELECT coalesce(sum(cost_nanos), 0) FROM usage_daily
             WHERE {column} = ?1 AND day BETWEEN ?2 AND ?3"
        ))?
        .query_row(params![id, from, to], |r| r.get(0))
    };
    let (m_from, m_to) = (format!("{month}-01"), format!("{month}-31"));
    let mut s = Spend {
        user_day: sum("user", user, day, day)?,
        user_month: sum("user", user, &m_from, &m_to)?,
        ..Spend::default()
    };
    if let Some(key) = key {
        s.key_day = sum("key", key, day, day)?;
        s.key_month = sum("key", key, &m_from, &m_to)?;
    }
    Ok(s)
}

/// The writer thread: batches of records in one transaction each; flushes and reads answered
/// in order after what was queued before them.
fn writer(mut conn: Connection, rx: Receiver<Msg>) {
    let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<Msg> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(e) => batch.push(e),
                other => waiting.push(other),
            }
            if batch.len() < BATCH && waiting.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        let written = if batch.is_empty() {
            Ok(())
        } else {
            write_batch(&mut conn, &batch)
        };
        if let Err(e) = &written {
            tracing::error!(target: "pennyworth::usage", error = %e, lost = batch.len(), "ledger write failed");
        }
        batch.clear();
        for msg in waiting.drain(..) {
            match msg {
                Msg::Record(_) => {}
                Msg::Flush(reply) => {
                    let _ = reply.send(written.as_ref().map(|_| ()).map_err(unavailable));
                }
                Msg::Query(q, reply) => {
                    let _ = reply.send(query(&conn, &q).map_err(unavailable));
                }
                Msg::Spend(user, key, day, month, reply) => {
                    let s = spend(&conn, &user, key.as_deref(), &day, &month);
                    let _ = reply.send(s.map_err(unavailable));
                }
            }
        }
    }
}

#[async_trait]
impl UsageStore for SqliteUsageStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn record(&self, entry: Entry) {
        {
            let mut m = lock(&self.memory);
            let month = period::month(entry.at);
            if month > m.month {
                m.month = month.clone();
                m.spend.clear();
            }
            if month == m.month {
                let day = period::day(entry.at);
                let cost = entry.totals.cost_nanos;
                m.add_spend(Scope::User(entry.user.clone()).id(), &day, &month, cost);
                if !entry.key.is_empty() {
                    m.add_spend(Scope::Key(entry.key.clone()).id(), &day, &month, cost);
                }
            }
            let minute = period::minute(entry.at);
            let tokens = entry.totals.tokens();
            let mut scopes = Vec::new();
            if entry.user_window {
                scopes.push(Scope::User(entry.user.clone()));
            }
            if entry.key_window && !entry.key.is_empty() {
                scopes.push(Scope::Key(entry.key.clone()));
            }
            for scope in scopes {
                let w = m
                    .windows
                    .entry(scope.id())
                    .or_insert((minute, Window::default()));
                if w.0 < minute {
                    *w = (minute, Window::default());
                }
                if w.0 == minute {
                    w.1.tokens = w.1.tokens.saturating_add(tokens);
                }
            }
        }
        self.send(Msg::Record(entry));
    }

    async fn flush(&self) -> Result<(), UsageError> {
        self.ask(Msg::Flush).await
    }

    async fn spend(&self, user: &str, key: Option<&str>, at: i64) -> Result<Spend, UsageError> {
        let month = period::month(at);
        let day = period::day(at);
        {
            let m = lock(&self.memory);
            if month > m.month {
                return Ok(Spend::default());
            }
            if month == m.month {
                let u = Scope::User(user.to_string()).id();
                let mut s = Spend {
                    user_day: m.spend_of(&u, &day),
                    user_month: m.spend_of(&u, &month),
                    ..Spend::default()
                };
                if let Some(key) = key {
                    let k = Scope::Key(key.to_string()).id();
                    s.key_day = m.spend_of(&k, &day);
                    s.key_month = m.spend_of(&k, &month);
                }
                return Ok(s);
            }
        }
        // A past month: from the file.
        let (user, key) = (user.to_string(), key.map(str::to_string));
        self.ask(|r| Msg::Spend(user, key, day, month, r)).await
    }

    async fn admit(&self, scopes: &[Scope], at: i64) -> Result<Vec<Window>, UsageError> {
        let minute = period::minute(at);
        let mut m = lock(&self.memory);
        if m.windows.len() > 100_000 {
            m.windows.retain(|_, (w, _)| *w >= minute);
        }
        Ok(scopes
            .iter()
            .map(|scope| {
                let w = m
                    .windows
                    .entry(scope.id())
                    .or_insert((minute, Window::default()));
                if w.0 != minute {
                    *w = (minute, Window::default());
                }
                w.1.requests = w.1.requests.saturating_add(1);
                w.1
            })
            .collect())
    }

    async fn query(&self, query: &Query) -> Result<Vec<Row>, UsageError> {
        let q = query.clone();
        self.ask(|r| Msg::Query(q, r)).await
    }
}
