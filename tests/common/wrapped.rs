//! A directory wrapping the embedded store that counts key lookups and fails with
//! `Throttled` when told to. Shared by the tests and `benches/auth.rs`.

use async_trait::async_trait;
use pennyworth::directory::local::LocalDirectory;
use pennyworth::directory::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct Wrapped {
    pub inner: LocalDirectory,
    /// `find_key` calls so far.
    pub finds: AtomicU64,
    /// `list_users` calls so far (whole-directory scans).
    pub scans: AtomicU64,
    /// Fail every call but `user_count` with `Throttled`.
    pub throttled: AtomicBool,
    /// Refuse names the way Cognito does (`InvalidParameterException` for names with spaces
    /// or control characters, or longer than 128 characters).
    pub cognito_names: AtomicBool,
}

impl Wrapped {
    pub fn in_memory() -> Self {
        Self {
            inner: LocalDirectory::in_memory().expect("store"),
            finds: AtomicU64::new(0),
            scans: AtomicU64::new(0),
            throttled: AtomicBool::new(false),
            cognito_names: AtomicBool::new(false),
        }
    }

    fn check(&self) -> Result<(), DirectoryError> {
        if self.throttled.load(Ordering::SeqCst) {
            Err(DirectoryError::Throttled)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Directory for Wrapped {
    fn kind(&self) -> &'static str {
        "wrapped"
    }
    async fn find_key(
        &self,
        owner: &str,
        key_id: &str,
    ) -> Result<Option<KeyOwner>, DirectoryError> {
        self.finds.fetch_add(1, Ordering::Relaxed);
        self.check()?;
        if self.cognito_names.load(Ordering::SeqCst)
            && (owner.chars().count() > 128
                || owner.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(DirectoryError::Invalid(
                "1 validation error detected: Value at 'username' failed to satisfy constraint"
                    .into(),
            ));
        }
        self.inner.find_key(owner, key_id).await
    }
    async fn create_user(&self, user: NewUser) -> Result<User, DirectoryError> {
        self.check()?;
        self.inner.create_user(user).await
    }
    async fn get_user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        self.check()?;
        self.inner.get_user(username).await
    }
    async fn user_count(&self) -> Result<u64, DirectoryError> {
        self.inner.user_count().await
    }
    async fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError> {
        self.check()?;
        self.inner.insert_key(key).await
    }
    async fn list_users(&self) -> Result<Vec<User>, DirectoryError> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.check()?;
        self.inner.list_users().await
    }
    async fn update_user(
        &self,
        username: &str,
        update: UserUpdate,
    ) -> Result<User, DirectoryError> {
        self.check()?;
        self.inner.update_user(username, update).await
    }
    async fn delete_user(&self, username: &str) -> Result<bool, DirectoryError> {
        self.check()?;
        self.inner.delete_user(username).await
    }
    async fn set_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<(), DirectoryError> {
        self.check()?;
        self.inner.set_password(username, password).await
    }
    async fn list_keys(&self, owner: &str) -> Result<Vec<KeyRecord>, DirectoryError> {
        self.check()?;
        self.inner.list_keys(owner).await
    }
    async fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError> {
        self.check()?;
        self.inner.delete_key(owner, key_id).await
    }
    async fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError> {
        self.check()?;
        self.inner.replace_key(owner, old_id, new).await
    }
}
