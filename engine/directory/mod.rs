//! Where users, groups and API keys live. `local` is the embedded store `serve` uses; a
//! Cognito implementation of the same trait serves Lambda.
//!
//! A directory stores and finds records; verifying a presented key (hash, expiry, enabled)
//! happens once, in [`crate::auth`], so every directory behaves the same.

pub mod local;

use async_trait::async_trait;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

/// The current time in seconds since the Unix epoch.
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (Cognito `sub`); the Cedar principal id.
    pub id: String,
    /// Unique user name.
    pub username: String,
    /// E-mail address, if known.
    pub email: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
    /// Disabled users cannot authenticate.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A stored API key: metadata and hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `<owner>.<kid>`.
    pub id: String,
    /// Owner's user name.
    pub owner: String,
    /// Human label.
    pub name: String,
    /// SHA-256 of the full key.
    pub hash: Vec<u8>,
    /// Last four characters of the key.
    pub last4: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
}

/// A key found by id, with its owner.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    /// The key.
    pub key: KeyRecord,
    /// Its owner.
    pub user: User,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// User name.
    pub username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// Directory failures.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The name is taken.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No such user.
    #[error("user `{0}` does not exist")]
    NoSuchUser(String),
    /// The store refused or failed.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// Users, groups and API keys.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Short name for logs (`local`, `cognito`).
    fn kind(&self) -> &'static str;

    /// Finds a key by id together with its owner (one lookup, no scan).
    async fn find_key(&self, owner: &str, key_id: &str)
    -> Result<Option<KeyOwner>, DirectoryError>;

    /// Creates a user.
    async fn create_user(&self, user: NewUser) -> Result<User, DirectoryError>;

    /// Finds a user by name.
    async fn get_user(&self, username: &str) -> Result<Option<User>, DirectoryError>;

    /// Number of users.
    async fn user_count(&self) -> Result<u64, DirectoryError>;

    /// Stores a new key record for its owner.
    async fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError>;
}

/// Checks a user or group name: non-empty, at most 128 characters, no control characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 128 {
        return Err(format!("{what} must be 1 to 128 characters"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{what} `{}` must not contain spaces or control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}
