//! Where users, groups and API keys live. `local` is the embedded store `serve` uses; a
//! Cognito implementation of the same trait serves Lambda.
//!
//! A directory stores and finds records; verifying a presented key (hash, expiry, enabled)
//! happens once, in [`crate::auth`], so every directory behaves the same.

pub mod cognito;
pub mod cognito_keys;
pub mod local;
mod sqlite;

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

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// Replace the groups.
    pub groups: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A password on its way to the directory. Never printed by `Debug`.
#[derive(Clone)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The groups every directory knows (the Cognito template creates the same ones).
pub const KNOWN_GROUPS: &[&str] = &["admins", "developers", "users"];

/// Most API keys one user may hold. Cognito stores key metadata in one custom attribute of at
/// most 2,048 characters; ten records fit with room to spare, and both directories enforce the
/// same limit so they behave alike.
pub const MAX_KEYS_PER_USER: usize = 10;

/// Directory failures.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The name is taken.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No such user.
    #[error("user `{0}` does not exist")]
    NoSuchUser(String),
    /// No such group.
    #[error("group `{0}` does not exist")]
    NoSuchGroup(String),
    /// The directory refused a value (e.g. a password that breaks the policy).
    #[error("{0}")]
    Invalid(String),
    /// Too many keys.
    #[error("user `{0}` already has the maximum of {MAX_KEYS_PER_USER} API keys; revoke one first")]
    TooManyKeys(String),
    /// A concurrent change to the same user's keys won; nothing of this change is in effect
    /// (Cognito, see [`cognito_keys`]).
    #[error("the keys of `{0}` changed at the same moment; retry")]
    Conflict(String),
    /// The directory is throttling requests.
    #[error("directory throttled the request")]
    Throttled,
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

    /// Stores a new key record for its owner (fails with `TooManyKeys` at the limit).
    async fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError>;

    /// All users, by name.
    async fn list_users(&self) -> Result<Vec<User>, DirectoryError>;

    /// Changes a user's groups or enabled flag.
    async fn update_user(&self, username: &str, update: UserUpdate)
    -> Result<User, DirectoryError>;

    /// Deletes a user and their keys; `false` if there was no such user.
    async fn delete_user(&self, username: &str) -> Result<bool, DirectoryError>;

    /// Sets a user's password.
    async fn set_password(&self, username: &str, password: &Password)
    -> Result<(), DirectoryError>;

    /// A user's keys (metadata and hash), oldest first.
    async fn list_keys(&self, owner: &str) -> Result<Vec<KeyRecord>, DirectoryError>;

    /// Deletes a key of `owner`; `false` if there was no such key.
    async fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError>;

    /// Replaces key `old_id` of `owner` by `new` in one step (rotation); `false` if the old
    /// key did not exist (then nothing is stored).
    async fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError>;
}

/// Checks a password against the policy both directories apply (Cognito's default): at least
/// 8 characters with a lowercase letter, an uppercase letter, a digit and a symbol.
pub fn validate_password(p: &Password) -> Result<(), String> {
    let s = &p.0;
    let ok = s.chars().count() >= 8
        && s.chars().count() <= 256
        && s.chars().any(|c| c.is_lowercase())
        && s.chars().any(|c| c.is_uppercase())
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err("the password must be 8 to 256 characters with a lowercase letter, an uppercase letter, a digit and a symbol".to_string())
    }
}

/// Checks group names against [`KNOWN_GROUPS`].
pub fn validate_groups(groups: &[String]) -> Result<(), DirectoryError> {
    match groups.iter().find(|g| !KNOWN_GROUPS.contains(&g.as_str())) {
        Some(g) => Err(DirectoryError::NoSuchGroup(g.clone())),
        None => Ok(()),
    }
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
