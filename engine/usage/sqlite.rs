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
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// File name of the ledger inside the data directory.
pub const DB_FILE: &str = "usage.db";

/// Entries queued before `record` hands the send to a blocking thread.
const QUEUE: usize = 8192;

/// Most entries written in one transaction.
const BATCH: usize = 512;

/// How long the writer, woken by a record, waits for more before writing them together.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

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

/// A scope (`Scope`) as the in-memory tables' key, without the text form's formatting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    key: bool,
    id: String,
}

/// A borrowed [`ScopeKey`], to look one up without allocating (same hash, same equality).
#[derive(Debug, Clone, Copy, Hash)]
struct ScopeRef<'a> {
    key: bool,
    id: &'a str,
}

impl<'a> ScopeRef<'a> {
    fn user(id: &'a str) -> Self {
        Self { key: false, id }
    }

    fn key(id: &'a str) -> Self {
        Self { key: true, id }
    }

    fn of(scope: &'a Scope) -> Self {
        match scope {
            Scope::User(u) => Self::user(u),
            Scope::Key(k) => Self::key(k),
        }
    }

    fn owned(self) -> ScopeKey {
        ScopeKey {
            key: self.key,
            id: self.id.to_string(),
        }
    }
}

impl hashbrown::Equivalent<ScopeKey> for ScopeRef<'_> {
    fn equivalent(&self, k: &ScopeKey) -> bool {
        self.key == k.key && self.id == k.id
    }
}

/// One scope's spend in nano-dollars: this month, and per day of it.
#[derive(Debug, Default)]
struct ScopeSpend {
    month: i64,
    /// (day number, spend), in the order first seen.
    days: Vec<(i64, i64)>,
}

/// Spend of the current month and rate-limit windows.
#[derive(Default)]
struct Memory {
    /// The current month (`period::month_number`).
    month: i64,
    /// Scope → its spend this month.
    spend: hashbrown::HashMap<ScopeKey, ScopeSpend>,
    /// Scope → (minute, window).
    windows: hashbrown::HashMap<ScopeKey, (i64, Window)>,
}

impl Memory {
    /// Adds `cost` to the scope's month and to its day `day` (`None`: a day that cannot be
    /// read, which counts in the month only).
    fn add_spend(&mut self, scope: ScopeRef<'_>, day: Option<i64>, cost: i64) {
        let (_, s) = self
            .spend
            .raw_entry_mut()
            .from_key(&scope)
            .or_insert_with(|| (scope.owned(), ScopeSpend::default()));
        s.month = s.month.saturating_add(cost);
        let Some(day) = day else { return };
        match s.days.iter_mut().find(|(d, _)| *d == day) {
            Some((_, v)) => *v = v.saturating_add(cost),
            None => s.days.push((day, cost)),
        }
    }

    /// (spend on `day`, spend this month) of a scope.
    fn spend_of(&self, scope: ScopeRef<'_>, day: i64) -> (i64, i64) {
        self.spend.get(&scope).map_or((0, 0), |s| {
            let d = s
                .days
                .iter()
                .find(|(d, _)| *d == day)
                .map_or(0, |(_, v)| *v);
            (d, s.month)
        })
    }

    /// The window of a scope, started afresh when `minute` is a later one.
    fn window(&mut self, scope: ScopeRef<'_>, minute: i64) -> &mut (i64, Window) {
        let (_, w) = self
            .windows
            .raw_entry_mut()
            .from_key(&scope)
            .or_insert_with(|| (scope.owned(), (minute, Window::default())));
        if w.0 < minute {
            *w = (minute, Window::default());
        }
        w
    }
}

/// The SQLite ledger.
pub struct SqliteUsageStore {
    tx: SyncSender<Msg>,
    /// The writer thread, woken at once for anything but a record.
    writer: std::thread::Thread,
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
            month: period::month_number(now),
            ..Memory::default()
        };
        let memory = Arc::new(Mutex::new(memory));
        load_month(&conn, &mut lock(&memory), now)?;
        let (tx, rx) = sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("pennyworth-usage".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| unavailable(format!("cannot start the ledger writer: {e}")))?
            .thread()
            .clone();
        Ok(Self {
            tx,
            writer,
            memory,
            path,
        })
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
        let writer = self.writer.clone();
        let msg = make(reply);
        // A full queue must not block this worker thread.
        tokio::task::spawn_blocking(move || {
            let sent = tx.send(msg).map_err(|_| ());
            // Not to wait out a record's linger.
            writer.unpark();
            sent
        })
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
        let day = period::parse_day(&day).map(period::day_number);
        memory.add_spend(ScopeRef::user(&user), day, cost);
        if !key.is_empty() {
            memory.add_spend(ScopeRef::key(&key), day, cost);
        }
    }
    Ok(())
}

/// The rows a batch adds to: entries of the same user, day, key and model summed into one
/// (the upsert adds them up all the same; the last session given wins, as it would row by
/// row), in the order first seen.
fn merge(entries: &[Entry]) -> Vec<(String, &Entry, Totals, Option<&str>)> {
    let mut rows: Vec<(String, &Entry, Totals, Option<&str>)> = Vec::new();
    let mut at: hashbrown::HashMap<(&str, i64, &str, &str), usize> = hashbrown::HashMap::new();
    for e in entries {
        let slot = *at
            .entry((&e.user, period::day_number(e.at), &e.key, &e.model))
            .or_insert_with(|| {
                rows.push((period::day(e.at), e, Totals::default(), None));
                rows.len() - 1
            });
        let (_, _, totals, session) = &mut rows[slot];
        let t = &e.totals;
        totals.requests = totals.requests.saturating_add(t.requests);
        totals.input_tokens = totals.input_tokens.saturating_add(t.input_tokens);
        totals.output_tokens = totals.output_tokens.saturating_add(t.output_tokens);
        totals.cache_read_tokens = totals.cache_read_tokens.saturating_add(t.cache_read_tokens);
        totals.cache_write_tokens = totals
            .cache_write_tokens
            .saturating_add(t.cache_write_tokens);
        totals.cost_nanos = totals.cost_nanos.saturating_add(t.cost_nanos);
        if e.session.is_some() {
            *session = e.session.as_deref();
        }
    }
    rows
}

fn write_batch(conn: &mut Connection, entries: &[Entry]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for (day, e, t, session) in merge(entries) {
            stmt.execute(params![
                e.user,
                day,
                e.key,
                e.model,
                int(t.requests),
                int(t.input_tokens),
                int(t.output_tokens),
                int(t.cache_read_tokens),
                int(t.cache_write_tokens),
                t.cost_nanos,
                session,
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
///
/// A record that finds the writer idle does not get its own transaction: the writer waits
/// [`LINGER`] for the records that follow (a flush, query or spend read cuts the wait short:
/// [`SqliteUsageStore::ask`] wakes it), so under a steady load it wakes and commits some
/// `1 / LINGER` times a second instead of once per call. What is recorded is already in the
/// in-memory spend and windows that budgets and rate limits read; the file lags by at most
/// `LINGER`.
fn writer(mut conn: Connection, rx: Receiver<Msg>) {
    let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<Msg> = Vec::new();
    loop {
        let first = match rx.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let Ok(msg) = rx.recv() else { return };
                if matches!(msg, Msg::Record(_)) {
                    std::thread::park_timeout(LINGER);
                }
                msg
            }
        };
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
            let month = period::month_number(entry.at);
            if month > m.month {
                m.month = month;
                m.spend.clear();
            }
            if month == m.month {
                let day = Some(period::day_number(entry.at));
                let cost = entry.totals.cost_nanos;
                m.add_spend(ScopeRef::user(&entry.user), day, cost);
                if !entry.key.is_empty() {
                    m.add_spend(ScopeRef::key(&entry.key), day, cost);
                }
            }
            let minute = period::minute(entry.at);
            let tokens = entry.totals.tokens();
            let user = entry.user_window.then(|| ScopeRef::user(&entry.user));
            let key =
                (entry.key_window && !entry.key.is_empty()).then(|| ScopeRef::key(&entry.key));
            for scope in [user, key].into_iter().flatten() {
                let w = m.window(scope, minute);
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
        let month = period::month_number(at);
        {
            let m = lock(&self.memory);
            if month > m.month {
                return Ok(Spend::default());
            }
            if month == m.month {
                let day = period::day_number(at);
                let (user_day, user_month) = m.spend_of(ScopeRef::user(user), day);
                let mut s = Spend {
                    user_day,
                    user_month,
                    ..Spend::default()
                };
                if let Some(key) = key {
                    (s.key_day, s.key_month) = m.spend_of(ScopeRef::key(key), day);
                }
                return Ok(s);
            }
        }
        // A past month: from the file.
        let (user, key) = (user.to_string(), key.map(str::to_string));
        let (day, month) = (period::day(at), period::month(at));
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
                let w = m.window(ScopeRef::of(scope), minute);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, key: &str, model: &str, at: i64, session: Option<&str>, n: u64) -> Entry {
        Entry {
            at,
            user: user.into(),
            key: key.into(),
            model: model.into(),
            totals: Totals {
                requests: 1,
                input_tokens: n,
                output_tokens: 2 * n,
                cache_read_tokens: n / 2,
                cache_write_tokens: n / 3,
                cost_nanos: i64::try_from(n).unwrap() * 1_000,
            },
            session: session.map(str::to_string),
            user_window: false,
            key_window: false,
        }
    }

    fn rows(conn: &Connection) -> Vec<Row> {
        let mut rows = query(
            conn,
            &Query {
                from: "1970-01-01".into(),
                to: "2999-12-31".into(),
                user: None,
            },
        )
        .unwrap();
        rows.sort_by(|a, b| {
            (&a.user, &a.day, &a.key, &a.model).cmp(&(&b.user, &b.day, &b.key, &b.model))
        });
        rows
    }

    #[test]
    fn a_merged_batch_writes_what_row_by_row_writes() {
        let day = 1_764_000_000;
        let batch = vec![
            entry("alice", "k1", "m", day, None, 10),
            entry("alice", "k1", "m", day, Some("s1"), 20),
            entry("alice", "k1", "m", day, None, 30),
            entry("bob", "", "m", day, Some("b"), 5),
            entry("alice", "k1", "m", day + period::DAY, None, 7),
            entry("alice", "k1", "other", day, None, 1),
            entry("alice", "k1", "m", day, Some("s2"), 40),
            entry("alice", "k1", "m", day, None, 50),
            entry("bob", "", "m", day, None, 6),
        ];
        let open = || {
            let c = Connection::open_in_memory().unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c
        };
        let (mut merged, mut single) = (open(), open());
        // A row that exists before the batch keeps its session unless the batch names one.
        for c in [&mut merged, &mut single] {
            write_batch(c, &[entry("bob", "", "m", day, Some("old"), 1)]).unwrap();
        }
        write_batch(&mut merged, &batch).unwrap();
        for e in &batch {
            write_batch(&mut single, std::slice::from_ref(e)).unwrap();
        }
        let (m, s) = (rows(&merged), rows(&single));
        assert_eq!(m, s);
        assert_eq!(m.len(), 4);
        let alice = m
            .iter()
            .find(|r| r.user == "alice" && r.model == "m" && r.totals.requests == 5)
            .unwrap();
        assert_eq!(alice.session.as_deref(), Some("s2"));
        assert_eq!(alice.totals.input_tokens, 150);
        assert_eq!(
            m.iter()
                .find(|r| r.user == "bob")
                .unwrap()
                .session
                .as_deref(),
            Some("b")
        );
    }

    #[tokio::test]
    async fn records_reach_the_file_and_memory_at_once() {
        let store = SqliteUsageStore::in_memory().unwrap();
        let now = crate::directory::now();
        for i in 0..100 {
            store.record(entry("carol", "k", "m", now, None, i));
        }
        // Budgets read the memory: every record is there before the writer has run.
        let spend = store.spend("carol", Some("k"), now).await.unwrap();
        assert_eq!(spend.user_day, (0..100).sum::<i64>() * 1_000);
        assert_eq!(spend.key_month, spend.user_day);
        // A query waits for what was recorded before it, without waiting out the linger.
        let started = std::time::Instant::now();
        let day = period::day(now);
        let got = store
            .query(&Query {
                from: day.clone(),
                to: day,
                user: Some("carol".into()),
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].totals.requests, 100);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
