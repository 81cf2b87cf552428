//! The resource stage: what a request acts on, looked up once, for Cedar and the handler.
//!
//! Keys and user accounts are owned resources: policies compare `resource.owner` with the
//! principal. A key id names its owner, so a key's owner is known even when the key does not
//! exist; a missing owner becomes an id no principal can have, so only policies that permit
//! regardless of owner (admins) let the request through to its 404.

use crate::auth::{Identity, api_key};
use crate::config::routes::ResourceKind;
use crate::directory::{Directory, KeyRecord, User};
use crate::errors::ApiError;
use crate::handlers::Prepared;

/// The owner id used when an owner does not exist; no principal has it.
pub const NOBODY: &str = "";

/// What a request acts on.
#[derive(Debug, Clone)]
pub enum Target {
    /// An `Api` or `Model` resource (no lookup needed).
    None,
    /// A user account.
    Account {
        /// User name.
        username: String,
        /// The user, if they exist.
        user: Option<User>,
    },
    /// An API key.
    Key {
        /// Key id.
        id: String,
        /// Owner's user name (from the key id).
        owner: String,
        /// Owner, if they exist.
        owner_user: Option<User>,
        /// The key, if it exists.
        record: Option<KeyRecord>,
    },
}

impl Target {
    /// The owner's id for `resource.owner`.
    pub fn owner_id(&self) -> &str {
        match self {
            Target::Account { user, .. }
            | Target::Key {
                owner_user: user, ..
            } => user.as_ref().map_or(NOBODY, |u| u.id.as_str()),
            Target::None => NOBODY,
        }
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Looks up the target of a `key` or `account` route.
pub async fn resolve(
    kind: ResourceKind,
    params: &[(&str, &str)],
    query: Option<&str>,
    prepared: &Prepared,
    identity: &Identity,
    directory: &dyn Directory,
) -> Result<Target, ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    match kind {
        ResourceKind::Api | ResourceKind::Model => Ok(Target::None),
        ResourceKind::Account => {
            let username = param("username")
                .map(str::to_string)
                .or_else(|| prepared.target_user().map(str::to_string))
                .or_else(|| query_param(query, "user"))
                .unwrap_or_else(|| identity.username.clone());
            let user = directory.get_user(&username).await?;
            Ok(Target::Account { username, user })
        }
        ResourceKind::Key => {
            let id = param("id").unwrap_or_default().to_string();
            let not_found = || {
                ApiError::not_found("key_not_found", format!("no API key with id `{id}`"))
                    .with_param("id")
            };
            let owner = api_key::owner_of_id(&id).ok_or_else(not_found)?;
            let owner_user = directory.get_user(&owner).await?;
            let record = match &owner_user {
                Some(_) => directory
                    .list_keys(&owner)
                    .await?
                    .into_iter()
                    .find(|k| k.id == id),
                None => None,
            };
            Ok(Target::Key {
                id,
                owner,
                owner_user,
                record,
            })
        }
    }
}
