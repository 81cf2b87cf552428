//! Users, groups and API keys in an Amazon Cognito user pool.
//!
//! Keys live in one custom attribute of their owner ([`KEYS_ATTRIBUTE`], at most 2,048
//! characters) as compact JSON records: key id suffix, name, SHA-256 of the key, created,
//! expiry, last four characters. Cognito cannot search users by custom attribute, so the key
//! id names its owner and a lookup is one `AdminGetUser` (plus `AdminListGroupsForUser` for
//! the groups). Updates to the attribute are read-modify-write: two writes racing on the same
//! user can lose one key creation (the loser's key simply does not verify); Cognito offers no
//! conditional update to prevent it.

use super::{
    Directory, DirectoryError, KeyOwner, KeyRecord, MAX_KEYS_PER_USER, NewUser, Password, User,
    UserUpdate, validate_groups,
};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType, UserType};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};

/// The custom attribute holding a user's key records (`custom:` + the schema name).
pub const KEYS_ATTRIBUTE: &str = "custom:pw_keys";
/// Cognito's limit on a custom string attribute.
pub const ATTRIBUTE_LIMIT: usize = 2048;

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
#[derive(Debug, Clone)]
pub struct CognitoDirectory {
    client: Client,
    pool_id: String,
}

/// One key record as stored in the attribute.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    /// The key id after the owner part.
    k: String,
    /// Name.
    n: String,
    /// SHA-256 of the key, base64 without padding.
    h: String,
    /// Created.
    c: i64,
    /// Expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<i64>,
    /// Last four characters.
    l: String,
}

fn key_suffix(id: &str) -> &str {
    id.split_once('.').map_or(id, |(_, kid)| kid)
}

fn owner_prefix(owner: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(owner.as_bytes())
}

impl StoredKey {
    fn from_record(r: &KeyRecord) -> Self {
        Self {
            k: key_suffix(&r.id).to_string(),
            n: r.name.clone(),
            h: STANDARD_NO_PAD.encode(&r.hash),
            c: r.created_at,
            e: r.expires_at,
            l: r.last4.clone(),
        }
    }

    fn into_record(self, owner: &str) -> KeyRecord {
        KeyRecord {
            id: format!("{}.{}", owner_prefix(owner), self.k),
            owner: owner.to_string(),
            name: self.n,
            hash: STANDARD_NO_PAD.decode(self.h).unwrap_or_default(),
            last4: self.l,
            created_at: self.c,
            expires_at: self.e,
        }
    }
}

fn map_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
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

fn parse_keys(raw: Option<&str>, owner: &str) -> Vec<KeyRecord> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<StoredKey>>(raw) {
        Ok(keys) => keys.into_iter().map(|k| k.into_record(owner)).collect(),
        Err(e) => {
            // A corrupt attribute must not lock the user out of key management: treat it as
            // no keys (every key of theirs stops verifying) and say so in the log.
            tracing::error!(user = owner, error = %e, "unreadable key attribute");
            Vec::new()
        }
    }
}

impl CognitoDirectory {
    /// Builds the client once (cold start).
    pub async fn new(settings: CognitoSettings) -> Self {
        use aws_config::{BehaviorVersion, Region};
        let http = crate::aws::http_client();
        let config = match &settings.static_credentials {
            Some((id, secret)) => {
                let mut b = aws_sdk_cognitoidentityprovider::config::Builder::new()
                    .behavior_version(BehaviorVersion::latest())
                    .http_client(http)
                    .region(Region::new(settings.region.clone()))
                    .credentials_provider(
                        aws_sdk_cognitoidentityprovider::config::Credentials::new(
                            id,
                            secret,
                            None,
                            None,
                            "pennyworth-static",
                        ),
                    );
                if let Some(e) = &settings.endpoint {
                    b = b.endpoint_url(e);
                }
                b.build()
            }
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http)
                    .region(Region::new(settings.region.clone()))
                    .load()
                    .await;
                let mut b = aws_sdk_cognitoidentityprovider::config::Builder::from(&shared);
                if let Some(e) = &settings.endpoint {
                    b = b.endpoint_url(e);
                }
                b.build()
            }
        };
        Self {
            client: Client::from_conf(config),
            pool_id: settings.pool_id,
        }
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
    async fn fetch(
        &self,
        username: &str,
    ) -> Result<Option<(User, Vec<KeyRecord>)>, DirectoryError> {
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
        let keys = parse_keys(attr(attrs, KEYS_ATTRIBUTE), &name);
        Ok(Some((user, keys)))
    }

    async fn write_keys(&self, username: &str, keys: &[KeyRecord]) -> Result<(), DirectoryError> {
        let stored: Vec<StoredKey> = keys.iter().map(StoredKey::from_record).collect();
        let value = serde_json::to_string(&stored)
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        if value.chars().count() > ATTRIBUTE_LIMIT {
            return Err(DirectoryError::Invalid(format!(
                "the key records of `{username}` would exceed Cognito's {ATTRIBUTE_LIMIT}-character attribute limit; use shorter key names or revoke a key"
            )));
        }
        self.client
            .admin_update_user_attributes()
            .user_pool_id(&self.pool_id)
            .username(username)
            .user_attributes(
                AttributeType::builder()
                    .name(KEYS_ATTRIBUTE)
                    .value(value)
                    .build()
                    .map_err(|e| DirectoryError::Unavailable(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| map_err(e, username))?;
        Ok(())
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
        let Some(key) = keys.into_iter().find(|k| k.id == key_id) else {
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
        let Some((_, mut keys)) = self.fetch(&key.owner).await? else {
            return Err(DirectoryError::NoSuchUser(key.owner));
        };
        if keys.len() >= MAX_KEYS_PER_USER {
            return Err(DirectoryError::TooManyKeys(key.owner));
        }
        let owner = key.owner.clone();
        keys.push(key);
        self.write_keys(&owner, &keys).await
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
            .map(|(_, keys)| keys)
            .unwrap_or_default())
    }

    async fn delete_key(&self, owner: &str, key_id: &str) -> Result<bool, DirectoryError> {
        let Some((_, mut keys)) = self.fetch(owner).await? else {
            return Ok(false);
        };
        let before = keys.len();
        keys.retain(|k| k.id != key_id);
        if keys.len() == before {
            return Ok(false);
        }
        self.write_keys(owner, &keys).await?;
        Ok(true)
    }

    async fn replace_key(
        &self,
        owner: &str,
        old_id: &str,
        new: KeyRecord,
    ) -> Result<bool, DirectoryError> {
        let Some((_, mut keys)) = self.fetch(owner).await? else {
            return Ok(false);
        };
        let Some(pos) = keys.iter().position(|k| k.id == old_id) else {
            return Ok(false);
        };
        keys[pos] = new;
        self.write_keys(owner, &keys).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_round_trip_and_fit_the_attribute() {
        let owner = "a".repeat(128);
        let records: Vec<KeyRecord> = (0..MAX_KEYS_PER_USER)
            .map(|i| KeyRecord {
                id: format!("{}.{:016x}", owner_prefix(&owner), i),
                owner: owner.clone(),
                name: "n".repeat(64),
                hash: vec![0xab; 32],
                last4: "WXYZ".into(),
                created_at: 1_795_431_116,
                expires_at: Some(1_895_431_116),
            })
            .collect();
        let stored: Vec<StoredKey> = records.iter().map(StoredKey::from_record).collect();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(text.len() <= ATTRIBUTE_LIMIT, "{} characters", text.len());
        let back = parse_keys(Some(&text), &owner);
        assert_eq!(back, records);
        assert!(parse_keys(Some("not json"), &owner).is_empty());
        assert!(parse_keys(None, &owner).is_empty());
    }
}
