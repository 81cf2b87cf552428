//! Users, groups and API keys in an Amazon Cognito user pool.
//!
//! Key records live in custom attributes of their owner, one key per slot attribute
//! (`custom:pw_key0` ..; keys of earlier versions in the list attribute `custom:pw_keys`), as
//! compact JSON: key id suffix, name, SHA-256 of the key, created, expiry, last four
//! characters. Cognito cannot search users by custom attribute, so the key id names its owner
//! and a lookup is one `AdminGetUser` (plus `AdminListGroupsForUser` for the groups). Cognito
//! has no conditional update; [`super::cognito_keys`] explains how concurrent key changes are
//! kept from undoing a revocation or silently losing a created key.

use super::cognito_keys::{self, FREE, KeySet, KeyTiming, slot_attribute, slot_value};
use super::{
    Directory, DirectoryError, KeyOwner, KeyRecord, MAX_KEYS_PER_USER, NewUser, Password, User,
    UserUpdate, validate_groups,
};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType, UserType};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use super::cognito_keys::{ATTRIBUTE_LIMIT, LEGACY_ATTRIBUTE as KEYS_ATTRIBUTE};

/// A pause between the read and the write of a key change (or the read of a lookup), named by
/// the operation (`create`, `revoke`, `rotate`, `find`): tests interleave concurrent writers
/// deterministically with it.
pub type PauseHook =
    Arc<dyn Fn(&'static str) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Stripes of the in-process lock that serialises key changes per user.
pub(super) const LOCK_STRIPES: usize = 64;

/// Where the pool is and how to reach it.
#[derive(Debug, Clone)]
pub struct CognitoSettings {
    /// User pool id (`us-east-1_AbCdEf`).
    pub pool_id: String,
    /// Region of the pool.
    pub region: String,
    /// Endpoint override (tests: moto on 127.0.0.1).
    pub endpoint: Option<String>,
    /// Static credentials (tests); `None` uses the default AWS credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Timing bounds of key writes.
    pub key_timing: KeyTiming,
}

/// Cognito as the environment configures it: `PENNYWORTH_USER_POOL_ID`,
/// `PENNYWORTH_USER_POOL_CLIENT_ID` (for tokens), `PENNYWORTH_COGNITO_ENDPOINT` (tests), and the
/// region from `AWS_REGION`, `AWS_DEFAULT_REGION` or the pool id's prefix. `None` when no pool
/// is configured. Read by the binaries only.
pub async fn from_env()
-> Result<Option<(CognitoDirectory, Option<crate::auth::jwt::JwtVerifier>)>, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let Some(pool_id) = var("PENNYWORTH_USER_POOL_ID") else {
        return Ok(None);
    };
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| pool_id.split_once('_').map(|(r, _)| r.to_string()))
        .ok_or_else(|| "set AWS_REGION for the user pool".to_string())?;
    let endpoint = var("PENNYWORTH_COGNITO_ENDPOINT");
    let directory = CognitoDirectory::new(CognitoSettings {
        pool_id: pool_id.clone(),
        region: region.clone(),
        endpoint: endpoint.clone(),
        static_credentials: None,
        key_timing: KeyTiming::default(),
    })
    .await;
    let jwt = match var("PENNYWORTH_USER_POOL_CLIENT_ID") {
        Some(client) => Some(crate::auth::jwt::JwtVerifier::new(
            crate::auth::jwt::JwtConfig::cognito(&region, &pool_id, &client, endpoint.as_deref()),
        )?),
        None => None,
    };
    Ok(Some((directory, jwt)))
}

/// The Cognito directory.
#[derive(Clone)]
pub struct CognitoDirectory {
    pub(super) client: Client,
    pub(super) pool_id: String,
    pub(super) timing: KeyTiming,
    /// Key changes to one user run one at a time in this process (other processes: see
    /// [`super::cognito_keys`]).
    pub(super) locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    pub(super) pause: Option<PauseHook>,
}

impl std::fmt::Debug for CognitoDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoDirectory")
            .field("pool_id", &self.pool_id)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

pub(super) fn map_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
    username: &str,
) -> DirectoryError {
    let code = e.code().unwrap_or_default().to_string();
    let message = e.message().unwrap_or_default().to_string();
    match code.as_str() {
        "UserNotFoundException" => DirectoryError::NoSuchUser(username.to_string()),
        "UsernameExistsException" => DirectoryError::UserExists(username.to_string()),
        "InvalidPasswordException" | "InvalidParameterException" => {
            DirectoryError::Invalid(message)
        }
        "TooManyRequestsException" | "LimitExceededException" => DirectoryError::Throttled,
        "" => DirectoryError::Unavailable(format!("cognito: {e:?}")),
        _ => DirectoryError::Unavailable(format!("cognito: {code}: {message}")),
    }
}

fn attr<'a>(attrs: &'a [AttributeType], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.value())
}

impl CognitoDirectory {
    /// Builds the client once (cold start).
    pub async fn new(settings: CognitoSettings) -> Self {
        let shared = crate::aws::sdk_config(
            &settings.region,
            settings.endpoint.as_deref(),
            settings.static_credentials.as_ref(),
        )
        .await;
        let config = aws_sdk_cognitoidentityprovider::config::Builder::from(&shared).build();
        Self {
            client: Client::from_conf(config),
            pool_id: settings.pool_id,
            timing: settings.key_timing,
            locks: Arc::new(
                (0..LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            pause: None,
        }
    }

    /// The same directory with a pause between the read and the write of each key change
    /// (tests).
    #[doc(hidden)]
    #[must_use]
    pub fn with_pause(mut self, hook: PauseHook) -> Self {
        self.pause = Some(hook);
        self
    }

    async fn groups_of(&self, username: &str) -> Result<Vec<String>, DirectoryError> {
        let mut groups = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .admin_list_groups_for_user()
                .user_pool_id(&self.pool_id)
                .username(username)
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| map_err(e, username))?;
            groups.extend(
                out.groups()
                    .iter()
                    .filter_map(|g| g.group_name().map(str::to_string)),
            );
            next = out.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        groups.sort();
        Ok(groups)
    }

    /// `AdminGetUser`: the user (without groups) and their keys; `None` when absent.
    pub(super) async fn fetch(
        &self,
        username: &str,
    ) -> Result<Option<(User, KeySet)>, DirectoryError> {
        let out = match self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                return match map_err(e, username) {
                    DirectoryError::NoSuchUser(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let attrs = out.user_attributes();
        let name = out.username().to_string();
        let user = User {
            id: attr(attrs, "sub").unwrap_or(&name).to_string(),
            email: attr(attrs, "email").map(str::to_string),
            groups: Vec::new(),
            enabled: out.enabled(),
            created_at: out.user_create_date().map_or(0, |d| d.secs()),
            username: name.clone(),
        };
        let keys = KeySet::parse(&name, |n| attr(attrs, n));
        Ok(Some((user, keys)))
    }

    fn user_of(u: &UserType) -> User {
        let attrs = u.attributes();
        let name = u.username().unwrap_or_default().to_string();
        User {
            id: attr(attrs, "sub").unwrap_or(&name).to_string(),
            email: attr(attrs, "email").map(str::to_string),
            groups: Vec::new(),
            enabled: u.enabled(),
            created_at: u.user_create_date().map_or(0, |d| d.secs()),
            username: name,
        }
    }

    async fn add_to_group(&self, username: &str, group: &str) -> Result<(), DirectoryError> {
        self.client
            .admin_add_user_to_group()
            .user_pool_id(&self.pool_id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .map_err(|e| match map_err(e, username) {
                DirectoryError::Unavailable(m) if m.contains("ResourceNotFoundException") => {
                    DirectoryError::NoSuchGroup(group.to_string())
                }
                other => other,
            })?;
        Ok(())
    }
}

#[async_trait]
impl Directory for CognitoDirectory {
    fn kind(&self) -> &'static str {
        "cognito"
    }

    async fn find_key(
        &self,
        owner: &str,
        key_id: &str,
    ) -> Result<Option<KeyOwner>, DirectoryError> {
        let Some((mut user, keys)) = self.fetch(owner).await? else {
            return Ok(None);
        };
        self.paused("find").await;
        let Some(key) = keys.find(key_id) else {
            return Ok(None);
        };
        user.groups = self.groups_of(owner).await?;
        Ok(Some(KeyOwner { key, user }))
    }

    async fn create_user(&self, new: NewUser) -> Result<User, DirectoryError> {
        validate_groups(&new.groups)?;
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(&new.username)
            .message_action(MessageActionType::Suppress);
        if let Some(email) = &new.email {
            req = req.user_attributes(
                AttributeType::builder()
                    .name("email")
                    .value(email)
                    .build()
                    .map_err(|e| DirectoryError::Unavailable(e.to_string()))?,
            );
        }
        let out = req.send().await.map_err(|e| map_err(e, &new.username))?;
        let mut user = out
            .user()
            .map(Self::user_of)
            .ok_or_else(|| DirectoryError::Unavailable("cognito returned no user".to_string()))?;
        for g in &new.groups {
            self.add_to_group(&new.username, g).await?;
        }
        let mut groups = new.groups.clone();
        groups.sort();
        groups.dedup();
        user.groups = groups;
        Ok(user)
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        let Some((mut user, _)) = self.fetch(username).await? else {
            return Ok(None);
        };
        user.groups = self.groups_of(username).await?;
        Ok(Some(user))
    }

    async fn user_count(&self) -> Result<u64, DirectoryError> {
        Ok(self.list_users().await?.len() as u64)
    }

    async fn insert_key(&self, key: KeyRecord) -> Result<(), DirectoryError> {
        let owner = key.owner.clone();
        let value = slot_value(&key)?;
        let _serial = self.lock_of(&owner).lock().await;
        let Some(set) = self.read_for_change(&owner, "create").await? else {
            return Err(DirectoryError::NoSuchUser(owner));
        };
        if set.count() >= MAX_KEYS_PER_USER {
            return Err(DirectoryError::TooManyKeys(owner));
        }
        let slot = set
            .free_slot()
            .ok_or_else(|| DirectoryError::TooManyKeys(owner.clone()))?;
        self.write_attributes(&set, vec![(slot_attribute(slot), value)])
            .await?;
        // Answer success only if no concurrent change that read the slot as free (or as
        // holding an older key) overwrote it: such a write lands within the settle time.
        if self.settled(&owner).await?.slot_of(&key.id) == Some(slot) {
            Ok(())
        } else {
            Err(cognito_keys::conflict(&owner))
        }
    }

    async fn list_users(&self) -> Result<Vec<User>, DirectoryError> {
        let mut users = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_users()
                .user_pool_id(&self.pool_id)
                .set_pagination_token(next.clone())
                .send()
                .await
                .map_err(|e| map_err(e, "*"))?;
            users.extend(out.users().iter().map(Self::user_of));
            next = out.pagination_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        // Groups per group, not per user: a handful of calls instead of one per user.
        for group in super::KNOWN_GROUPS {
            let mut next: Option<String> = None;
            loop {
                let out = match self
                    .client
                    .list_users_in_group()
                    .user_pool_id(&self.pool_id)
                    .group_name(*group)
                    .set_next_token(next.clone())
                    .send()
                    .await
                {
                    Ok(o) => o,
                    Err(e) if e.code() == Some("ResourceNotFoundException") => break,
                    Err(e) => return Err(map_err(e, "*")),
                };
                for member in out.users() {
                    if let Some(u) = users
                        .iter_mut()
                        .find(|u| Some(u.username.as_str()) == member.username())
                    {
                        u.groups.push((*group).to_string());
                    }
                }
                next = out.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
        }
        for u in &mut users {
            u.groups.sort();
        }
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }

    async fn update_user(
        &self,
        username: &str,
        update: UserUpdate,
    ) -> Result<User, DirectoryError> {
        if let Some(groups) = &update.groups {
            validate_groups(groups)?;
        }
        if self.fetch(username).await?.is_none() {
            return Err(DirectoryError::NoSuchUser(username.to_string()));
        }
        if let Some(wanted) = &update.groups {
            let current = self.groups_of(username).await?;
            for g in wanted.iter().filter(|g| !current.contains(g)) {
                self.add_to_group(username, g).await?;
            }
            for g in current.iter().filter(|g| !wanted.contains(g)) {
                self.client
                    .admin_remove_user_from_group()
                    .user_pool_id(&self.pool_id)
                    .username(username)
                    .group_name(g)
                    .send()
                    .await
                    .map_err(|e| map_err(e, username))?;
            }
        }
        match update.enabled {
            Some(true) => {
                self.client
                    .admin_enable_user()
                    .user_pool_id(&self.pool_id)
                    .username(username)
                    .send()
                    .await
                    .map_err(|e| map_err(e, username))?;
            }
            Some(false) => {
                self.client
                    .admin_disable_user()
                    .user_pool_id(&self.pool_id)
                    .username(username)
                    .send()
                    .await
                    .map_err(|e| map_err(e, username))?;
            }
            None => {}
        }
        self.get_user(username)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchUser(username.to_string()))
    }

    async fn delete_user(&self, username: &str) -> Result<bool, DirectoryError> {
        match self
            .client
            .admin_delete_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match map_err(e, username) {
                DirectoryError::NoSuchUser(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn set_password(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<(), DirectoryError> {
        super::validate_password(password).map_err(DirectoryError::Invalid)?;
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(username)
            .password(&password.0)
            .permanent(true)
            .send()
            .await
            .map_err(|e| map_err(e, username))?;
        Ok(())
    }

    async fn list_keys(&self, owner: &str) -> Result<Vec<KeyRecord>, DirectoryError> {
        Ok(self
            .fetch(owner)
            .await?
            .map(|(_, keys)| keys.records())
            .unwrap_or_default())
    }

    async fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError> {
        let _serial = self.lock_of(owner).lock().await;
        let Some(set) = self.read_for_change(owner, "revoke").await? else {
            return Ok(false);
        };
        if let Some(slot) = set.slot_of(key_id) {
            // Only this key's slot is written: no other request carries the key record, so
            // nothing can bring it back once this write is done.
            self.write_attributes(&set, vec![(slot_attribute(slot), FREE.to_string())])
                .await?;
            return Ok(true);
        }
        if set.in_legacy(key_id) {
            self.remove_legacy(set, key_id, Vec::new()).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError> {
        let value = slot_value(&new)?;
        let _serial = self.lock_of(owner).lock().await;
        let Some(set) = self.read_for_change(owner, "rotate").await? else {
            return Ok(false);
        };
        let (slot, after) = if let Some(slot) = set.slot_of(old_id) {
            // The new key takes the old one's slot: one write removes the old key and adds
            // the new one.
            self.write_attributes(&set, vec![(slot_attribute(slot), value)])
                .await?;
            (slot, self.settled(owner).await?)
        } else if set.in_legacy(old_id) {
            let slot = set
                .free_slot()
                .ok_or_else(|| DirectoryError::TooManyKeys(owner.to_string()))?;
            let after = self
                .remove_legacy(set, old_id, vec![(slot_attribute(slot), value)])
                .await?;
            (slot, after)
        } else {
            return Ok(false);
        };
        if after.slot_of(&new.id) == Some(slot) {
            Ok(true)
        } else {
            // A concurrent revoke of the old key won: it stays revoked and so is the new one.
            Err(cognito_keys::conflict(owner))
        }
    }
}
