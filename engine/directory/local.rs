//! The embedded directory `serve` uses: a SQLite store in the data directory.
//!
//! Every operation runs on tokio's blocking pool (`spawn_blocking`): SQLite waits for the disk
//! (`synchronous=FULL` fsyncs each write) and for its connection mutex, and password hashing
//! (argon2id) takes tens of milliseconds of CPU. On the async worker threads either would
//! stall every other request, health checks included.

use super::sqlite::Store;
use super::{
    Directory, DirectoryError, KeyOwner, KeyRecord, NewUser, Password, Timestamp, User, UserUpdate,
};
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

pub use super::sqlite::DB_FILE;

/// The embedded directory.
#[derive(Debug, Clone)]
pub struct LocalDirectory {
    store: Arc<Store>,
}

impl LocalDirectory {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, DirectoryError> {
        Ok(Self {
            store: Arc::new(Store::open(data_dir)?),
        })
    }

    /// A store that lives in memory only (tests and benchmarks of the engine).
    pub fn in_memory() -> Result<Self, DirectoryError> {
        Ok(Self {
            store: Arc::new(Store::in_memory()?),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Checks a password (the embedded store's own login check; tests and local tooling).
    /// Blocking: call it from a blocking context.
    pub fn verify_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<bool, DirectoryError> {
        self.store.verify_password(username, password)
    }

    /// Sets expiry of a key (tests and admin tooling). Blocking.
    pub fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<bool, DirectoryError> {
        self.store.set_key_expiry(key_id, expires_at)
    }

    /// Enables or disables a user (tests and admin tooling). Blocking.
    pub fn set_enabled(&self, username: &str, enabled: bool) -> Result<bool, DirectoryError> {
        self.store.set_enabled(username, enabled)
    }

    /// Runs `f` on the store in tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DirectoryError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, DirectoryError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| DirectoryError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Directory for LocalDirectory {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn find_key(
        &self,
        owner: &str,
        key_id: &str,
    ) -> Result<Option<KeyOwner>, DirectoryError> {
        let (owner, key_id) = (owner.to_string(), key_id.to_string());
        self.blocking(move |s| s.find_key(&owner, &key_id)).await
    }

    async fn create_user(&self, user: NewUser) -> Result<User, DirectoryError> {
        self.blocking(move |s| s.create_user(user)).await
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        let username = username.to_string();
        self.blocking(move |s| s.get_user(&username)).await
    }

    async fn user_count(&self) -> Result<u64, DirectoryError> {
        self.blocking(Store::user_count).await
    }

    async fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError> {
        self.blocking(move |s| s.insert_key(key)).await
    }

    async fn list_users(&self) -> Result<Vec<User>, DirectoryError> {
        self.blocking(Store::list_users).await
    }

    async fn update_user(
        &self,
        username: &str,
        update: UserUpdate,
    ) -> Result<User, DirectoryError> {
        let username = username.to_string();
        self.blocking(move |s| s.update_user(&username, update))
            .await
    }

    async fn delete_user(&self, username: &str) -> Result<bool, DirectoryError> {
        let username = username.to_string();
        self.blocking(move |s| s.delete_user(&username)).await
    }

    async fn set_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<(), DirectoryError> {
        let (username, password) = (username.to_string(), password.clone());
        self.blocking(move |s| s.set_password(&username, &password))
            .await
    }

    async fn list_keys(&self, owner: &str) -> Result<Vec<KeyRecord>, DirectoryError> {
        let owner = owner.to_string();
        self.blocking(move |s| s.list_keys(&owner)).await
    }

    async fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError> {
        let (owner, key_id) = (owner.to_string(), key_id.to_string());
        self.blocking(move |s| s.delete_key(&owner, &key_id)).await
    }

    async fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError> {
        let (owner, old_id) = (owner.to_string(), old_id.to_string());
        self.blocking(move |s| s.replace_key(&owner, &old_id, new))
            .await
    }
}
