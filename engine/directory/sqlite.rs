//! The SQLite store behind [`super::local::Store`] (WAL, synchronous=FULL, in the
//! data directory). Everything here blocks (disk, fsync, the connection mutex, argon2): it
//! runs on tokio's blocking pool, never on the async worker threads.

use super::{
    DirectoryError, KeyOwner, KeyRecord, MAX_KEYS_PER_USER, NewUser, Password, Timestamp, User,
    UserUpdate, now, validate_groups,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// File name of the store inside the data directory.
pub const DB_FILE: &str = "pennyworth.db";

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  email TEXT,
  enabled INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  password_hash TEXT
);
CREATE TABLE IF NOT EXISTS user_groups (
  username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
  grp TEXT NOT NULL,
  PRIMARY KEY (username, grp)
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
  name TEXT NOT NULL,
  hash BLOB NOT NULL,
  last4 TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER
);
";

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.enabled, u.created_at,
    (SELECT group_concat(grp, char(31)) FROM user_groups g WHERE g.username = u.username)";

const USER_SELECT_ONE: &str = "SELECT u.id, u.username, u.email, u.enabled, u.created_at,
    (SELECT group_concat(grp, char(31)) FROM user_groups g WHERE g.username = u.username)
    FROM users u WHERE u.username = ?1";

const KEY_COLUMNS: &str = "id, username, name, hash, last4, created_at, expires_at";

/// Group names are joined with this separator in one query; names cannot contain it.
const SEP: char = '\u{1f}';

/// The SQLite store.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, DirectoryError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| unavailable(format!("cannot create `{}`: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| unavailable(format!("cannot open `{}`: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        Self::init(conn, path)
    }

    /// A store that lives in memory only (tests and benchmarks of the engine).
    pub fn in_memory() -> Result<Self, DirectoryError> {
        let conn = Connection::open_in_memory().map_err(unavailable)?;
        Self::init(conn, PathBuf::from(":memory:"))
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, DirectoryError> {
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(unavailable)?;
        if version > SCHEMA_VERSION {
            return Err(unavailable(format!(
                "`{}` was written by a newer Pennyworth (schema {version}, this build knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        if version < SCHEMA_VERSION {
            if version == 1 {
                conn.execute_batch("ALTER TABLE users ADD COLUMN password_hash TEXT;")
                    .map_err(unavailable)?;
            }
            conn.execute_batch(SCHEMA).map_err(unavailable)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(unavailable)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, DirectoryError> {
        self.conn
            .lock()
            .map_err(|_| unavailable("store lock poisoned"))
    }

    /// Generates a user id shaped like a UUID v4 (Cognito `sub`s look the same).
    fn new_user_id() -> Result<String, DirectoryError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(unavailable)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }

    fn split_groups(joined: Option<String>) -> Vec<String> {
        let mut groups: Vec<String> = joined
            .unwrap_or_default()
            .split(SEP)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        groups.sort();
        groups
    }

    fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
        Ok(User {
            id: r.get(0)?,
            username: r.get(1)?,
            email: r.get(2)?,
            enabled: r.get(3)?,
            created_at: r.get(4)?,
            groups: Self::split_groups(r.get(5)?),
        })
    }

    fn user_row(conn: &Connection, username: &str) -> Result<Option<User>, DirectoryError> {
        let mut stmt = conn.prepare_cached(USER_SELECT_ONE).map_err(unavailable)?;
        stmt.query_row(params![username], Self::user_from_row)
            .optional()
            .map_err(unavailable)
    }

    fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
        Ok(KeyRecord {
            id: r.get(0)?,
            owner: r.get(1)?,
            name: r.get(2)?,
            hash: r.get(3)?,
            last4: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
        })
    }

    fn insert_key_row(conn: &Connection, key: &KeyRecord) -> Result<(), DirectoryError> {
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM api_keys WHERE username = ?1",
                params![key.owner],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_KEYS_PER_USER {
            return Err(DirectoryError::TooManyKeys(key.owner.clone()));
        }
        let n = conn
            .execute(
                "INSERT INTO api_keys (id, username, name, hash, last4, created_at, expires_at)
                 SELECT ?1, username, ?3, ?4, ?5, ?6, ?7 FROM users WHERE username = ?2",
                params![
                    key.id,
                    key.owner,
                    key.name,
                    key.hash,
                    key.last4,
                    key.created_at,
                    key.expires_at
                ],
            )
            .map_err(unavailable)?;
        if n == 0 {
            return Err(DirectoryError::NoSuchUser(key.owner.clone()));
        }
        Ok(())
    }

    /// Checks a password (the embedded store's own login check; tests and local tooling).
    pub fn verify_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<bool, DirectoryError> {
        use argon2::PasswordVerifier;
        let conn = self.conn()?;
        let stored: Option<Option<String>> = conn
            .query_row(
                "SELECT password_hash FROM users WHERE username = ?1",
                params![username],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        Ok(match stored.flatten() {
            Some(hash) => argon2::Argon2::default()
                .verify_password(password.0.as_bytes(), hash.as_str())
                .is_ok(),
            None => false,
        })
    }

    /// Sets expiry of a key (tests and admin tooling).
    pub fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<bool, DirectoryError> {
        let conn = self.conn()?;
        let n = conn
            .execute(
                "UPDATE api_keys SET expires_at = ?2 WHERE id = ?1",
                params![key_id, expires_at],
            )
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    /// Enables or disables a user.
    pub fn set_enabled(&self, username: &str, enabled: bool) -> Result<bool, DirectoryError> {
        let conn = self.conn()?;
        let n = conn
            .execute(
                "UPDATE users SET enabled = ?2 WHERE username = ?1",
                params![username, enabled],
            )
            .map_err(unavailable)?;
        Ok(n == 1)
    }
}

/// The directory operations, blocking.
impl Store {
    pub(crate) fn find_key(
        &self,
        owner: &str,
        key_id: &str,
    ) -> Result<Option<KeyOwner>, DirectoryError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT k.id, k.name, k.hash, k.last4, k.created_at, k.expires_at,
                        u.id, u.username, u.email, u.enabled, u.created_at,
                        (SELECT group_concat(grp, char(31)) FROM user_groups g WHERE g.username = u.username)
                 FROM api_keys k JOIN users u ON u.username = k.username
                 WHERE k.id = ?1 AND k.username = ?2",
            )
            .map_err(unavailable)?;
        stmt.query_row(params![key_id, owner], |r| {
            let username: String = r.get(7)?;
            Ok(KeyOwner {
                key: KeyRecord {
                    id: r.get(0)?,
                    owner: username.clone(),
                    name: r.get(1)?,
                    hash: r.get(2)?,
                    last4: r.get(3)?,
                    created_at: r.get(4)?,
                    expires_at: r.get(5)?,
                },
                user: User {
                    id: r.get(6)?,
                    username,
                    email: r.get(8)?,
                    enabled: r.get(9)?,
                    created_at: r.get(10)?,
                    groups: Self::split_groups(r.get(11)?),
                },
            })
        })
        .optional()
        .map_err(unavailable)
    }

    pub(crate) fn create_user(&self, user: NewUser) -> Result<User, DirectoryError> {
        validate_groups(&user.groups)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(unavailable)?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM users WHERE username = ?1",
                params![user.username],
                |_| Ok(true),
            )
            .optional()
            .map_err(unavailable)?
            .unwrap_or(false);
        if exists {
            return Err(DirectoryError::UserExists(user.username));
        }
        let id = Self::new_user_id()?;
        let created_at = now();
        tx.execute(
            "INSERT INTO users (id, username, email, enabled, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
            params![id, user.username, user.email, created_at],
        )
        .map_err(unavailable)?;
        let mut groups = user.groups.clone();
        groups.sort();
        groups.dedup();
        for g in &groups {
            tx.execute(
                "INSERT INTO user_groups (username, grp) VALUES (?1, ?2)",
                params![user.username, g],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        Ok(User {
            id,
            username: user.username,
            email: user.email,
            groups,
            enabled: true,
            created_at,
        })
    }

    pub(crate) fn get_user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        let conn = self.conn()?;
        Self::user_row(&conn, username)
    }

    pub(crate) fn user_count(&self) -> Result<u64, DirectoryError> {
        let conn = self.conn()?;
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(unavailable)?;
        Self::insert_key_row(&tx, &key)?;
        tx.commit().map_err(unavailable)
    }

    pub(crate) fn list_users(&self) -> Result<Vec<User>, DirectoryError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users u ORDER BY u.username"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], Self::user_from_row)
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    pub(crate) fn update_user(
        &self,
        username: &str,
        update: UserUpdate,
    ) -> Result<User, DirectoryError> {
        if let Some(groups) = &update.groups {
            validate_groups(groups)?;
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(unavailable)?;
        if Self::user_row(&tx, username)?.is_none() {
            return Err(DirectoryError::NoSuchUser(username.to_string()));
        }
        if let Some(enabled) = update.enabled {
            tx.execute(
                "UPDATE users SET enabled = ?2 WHERE username = ?1",
                params![username, enabled],
            )
            .map_err(unavailable)?;
        }
        if let Some(groups) = &update.groups {
            tx.execute(
                "DELETE FROM user_groups WHERE username = ?1",
                params![username],
            )
            .map_err(unavailable)?;
            for g in groups {
                tx.execute(
                    "INSERT OR IGNORE INTO user_groups (username, grp) VALUES (?1, ?2)",
                    params![username, g],
                )
                .map_err(unavailable)?;
            }
        }
        let user = Self::user_row(&tx, username)?
            .ok_or_else(|| DirectoryError::NoSuchUser(username.to_string()))?;
        tx.commit().map_err(unavailable)?;
        Ok(user)
    }

    pub(crate) fn delete_user(&self, username: &str) -> Result<bool, DirectoryError> {
        let conn = self.conn()?;
        let n = conn
            .execute("DELETE FROM users WHERE username = ?1", params![username])
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    pub(crate) fn set_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<(), DirectoryError> {
        use argon2::PasswordHasher;
        super::validate_password(password).map_err(DirectoryError::Invalid)?;
        let hash = argon2::Argon2::default()
            .hash_password(password.0.as_bytes())
            .map_err(unavailable)?
            .to_string();
        let conn = self.conn()?;
        let n = conn
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE username = ?1",
                params![username, hash],
            )
            .map_err(unavailable)?;
        if n == 0 {
            return Err(DirectoryError::NoSuchUser(username.to_string()));
        }
        Ok(())
    }

    pub(crate) fn list_keys(&self, owner: &str) -> Result<Vec<KeyRecord>, DirectoryError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE username = ?1 ORDER BY created_at, id"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![owner], Self::key_from_row)
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    pub(crate) fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError> {
        let conn = self.conn()?;
        let n = conn
            .execute(
                "DELETE FROM api_keys WHERE id = ?1 AND username = ?2",
                params![key_id, owner],
            )
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    pub(crate) fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(unavailable)?;
        let n = tx
            .execute(
                "DELETE FROM api_keys WHERE id = ?1 AND username = ?2",
                params![old_id, owner],
            )
            .map_err(unavailable)?;
        if n == 0 {
            return Ok(false);
        }
        Self::insert_key_row(&tx, &new)?;
        tx.commit().map_err(unavailable)?;
        Ok(true)
    }
}
