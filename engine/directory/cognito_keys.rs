//! How a Cognito user's API key records are laid out in custom attributes, and the rules that
//! keep concurrent key changes (many Lambda instances) from undoing each other.
//!
//! Cognito has no conditional update: `AdminUpdateUserAttributes` is last-writer-wins per
//! attribute. So instead of one list that every change rewrites (where a create that read the
//! list before a revoke writes the revoked key back), each key lives in a slot attribute of its
//! own (`custom:pw_key0` .. `custom:pw_key9`) and:
//!
//! - a key record is sent to Cognito in exactly one request, ever: the create (or rotation)
//!   that made it, with SDK retries off. A create whose key was lost tries again with a new
//!   key, never with the same one;
//! - a revoke writes only the slot that held the key (a free marker).
//!
//! So once a revoke has removed a key and answered, no request that contains the key can
//! still arrive: a revocation is never undone, whatever the timing. A create can still lose
//! its slot to another create or revoke that read the slot as free (or as holding an older key)
//! before this create wrote it; every write is sent at most [`KeyTiming::max_staleness`] after
//! the read it is based on and is abandoned after [`KeyTiming::attempt_timeout`], so such a
//! write lands within their sum, and a create reads its slot again [`KeyTiming::settle`] (at
//! least that sum) after writing and answers success only if its key is still there.
//!
//! Keys written by earlier versions stay in the old list attribute (`custom:pw_keys`); they
//! are read and verified as before and no longer added to. Removing one (revoke, rotation)
//! rewrites that list, which only removals ever write, and reads it again after the settle
//! time, writing again if a concurrent removal put the key back.

use super::{DirectoryError, KeyRecord, MAX_KEYS_PER_USER};
use aws_sdk_cognitoidentityprovider::types::AttributeType;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The attribute of earlier versions: a JSON list of key records (read; only shrunk).
pub const LEGACY_ATTRIBUTE: &str = "custom:pw_keys";
/// Cognito's limit on a custom string attribute.
pub const ATTRIBUTE_LIMIT: usize = 2048;
/// Number of key slots (`custom:pw_key0` ..), one per key a user may hold.
pub const SLOTS: usize = MAX_KEYS_PER_USER;
/// The value of a slot that holds no key.
pub const FREE: &str = "-";

/// The attribute name of slot `i`.
pub fn slot_attribute(i: usize) -> String {
    format!("custom:pw_key{i}")
}

/// Timing bounds of key writes (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct KeyTiming {
    /// Longest time between the read a write is based on and sending the write; older reads
    /// are repeated.
    pub max_staleness: Duration,
    /// A key write not answered within this is abandoned (and never retried).
    pub attempt_timeout: Duration,
    /// How long a create waits after its write before it checks its key is still there.
    pub settle: Duration,
}

impl Default for KeyTiming {
    fn default() -> Self {
        let max_staleness = Duration::from_secs(1);
        let attempt_timeout = Duration::from_secs(2);
        Self {
            max_staleness,
            attempt_timeout,
            settle: max_staleness + attempt_timeout,
        }
    }
}

/// One key record as stored (compact field names: the legacy list holds up to ten).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StoredKey {
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
    pub(crate) fn from_record(r: &KeyRecord) -> Self {
        Self {
            k: key_suffix(&r.id).to_string(),
            n: r.name.clone(),
            h: STANDARD_NO_PAD.encode(&r.hash),
            c: r.created_at,
            e: r.expires_at,
            l: r.last4.clone(),
        }
    }

    fn record(&self, owner: &str) -> KeyRecord {
        KeyRecord {
            id: format!("{}.{}", owner_prefix(owner), self.k),
            owner: owner.to_string(),
            name: self.n.clone(),
            hash: STANDARD_NO_PAD.decode(&self.h).unwrap_or_default(),
            last4: self.l.clone(),
            created_at: self.c,
            expires_at: self.e,
        }
    }

    fn is(&self, id: &str) -> bool {
        self.k == key_suffix(id)
    }
}

/// A user's key attributes as read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct KeySet {
    pub(crate) owner: String,
    pub(crate) read_at: Instant,
    pub(crate) legacy: Vec<StoredKey>,
    pub(crate) slots: Vec<Option<StoredKey>>,
}

fn parse_one<T: for<'de> Deserialize<'de>>(raw: &str, owner: &str, what: &str) -> Option<T> {
    match serde_json::from_str::<T>(raw) {
        Ok(v) => Some(v),
        Err(e) => {
            // A corrupt attribute must not lock the user out of key management: its keys stop
            // verifying and the log says so.
            tracing::error!(user = owner, attribute = what, error = %e, "unreadable key attribute");
            None
        }
    }
}

impl KeySet {
    /// Reads the attributes `get` returns by name.
    pub(crate) fn parse<'a>(owner: &str, get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let legacy = get(LEGACY_ATTRIBUTE)
            .filter(|r| !r.trim().is_empty())
            .and_then(|r| parse_one::<Vec<StoredKey>>(r, owner, LEGACY_ATTRIBUTE))
            .unwrap_or_default();
        let slots = (0..SLOTS)
            .map(|i| {
                let name = slot_attribute(i);
                get(&name)
                    .map(str::trim)
                    .filter(|r| !r.is_empty() && *r != FREE)
                    .and_then(|r| parse_one::<StoredKey>(r, owner, &name))
            })
            .collect();
        Self {
            owner: owner.to_string(),
            read_at: Instant::now(),
            legacy,
            slots,
        }
    }

    /// Every key, oldest first.
    pub(crate) fn records(&self) -> Vec<KeyRecord> {
        let mut all: Vec<KeyRecord> = self
            .legacy
            .iter()
            .chain(self.slots.iter().flatten())
            .map(|k| k.record(&self.owner))
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    pub(crate) fn find(&self, id: &str) -> Option<KeyRecord> {
        self.legacy
            .iter()
            .chain(self.slots.iter().flatten())
            .find(|k| k.is(id) && k.record(&self.owner).id == id)
            .map(|k| k.record(&self.owner))
    }

    pub(crate) fn count(&self) -> usize {
        self.legacy.len() + self.slots.iter().flatten().count()
    }

    /// The slot holding `id`.
    pub(crate) fn slot_of(&self, id: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|k| k.is(id)))
    }

    pub(crate) fn in_legacy(&self, id: &str) -> bool {
        self.legacy.iter().any(|k| k.is(id))
    }

    /// A free slot, chosen at random so that two concurrent creates rarely pick the same one.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        let free: Vec<usize> = (0..SLOTS).filter(|i| self.slots[*i].is_none()).collect();
        if free.is_empty() {
            return None;
        }
        let mut b = [0u8; 1];
        let r = getrandom::fill(&mut b).map_or(0, |()| usize::from(b[0]));
        free.get(r % free.len()).copied()
    }

    /// The legacy list without `id`, as an attribute value.
    pub(crate) fn legacy_without(&self, id: &str) -> Result<String, DirectoryError> {
        let kept: Vec<&StoredKey> = self.legacy.iter().filter(|k| !k.is(id)).collect();
        serde_json::to_string(&kept).map_err(|e| DirectoryError::Unavailable(e.to_string()))
    }
}

/// A key record as the value of one slot attribute.
pub(crate) fn slot_value(key: &KeyRecord) -> Result<String, DirectoryError> {
    let value = serde_json::to_string(&StoredKey::from_record(key))
        .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
    if value.chars().count() > ATTRIBUTE_LIMIT {
        return Err(DirectoryError::Invalid(format!(
            "the key record would exceed Cognito's {ATTRIBUTE_LIMIT}-character attribute limit; use a shorter key name"
        )));
    }
    Ok(value)
}

/// The error of a key change that lost to a concurrent one.
pub(crate) fn conflict(owner: &str) -> DirectoryError {
    DirectoryError::Conflict(owner.to_string())
}

/// The key-change steps of the Cognito directory (the rules above).
impl super::cognito::CognitoDirectory {
    pub(super) async fn paused(&self, op: &'static str) {
        if let Some(hook) = &self.pause {
            hook(op).await;
        }
    }

    pub(super) fn lock_of(&self, username: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        username.hash(&mut h);
        let i = usize::try_from(h.finish() % super::cognito::LOCK_STRIPES as u64).unwrap_or(0);
        &self.locks[i % self.locks.len()]
    }

    /// The user's key attributes, for a change (`None`: no such user).
    pub(super) async fn key_set(&self, username: &str) -> Result<Option<KeySet>, DirectoryError> {
        Ok(self.fetch(username).await?.map(|(_, keys)| keys))
    }

    /// One `AdminUpdateUserAttributes` of key attributes: sent only while the read it is based
    /// on is at most `max_staleness` old, never retried (a retry could deliver a key record
    /// twice), abandoned after `attempt_timeout`.
    pub(super) async fn write_attributes(
        &self,
        set: &KeySet,
        values: Vec<(String, String)>,
    ) -> Result<(), DirectoryError> {
        use aws_sdk_cognitoidentityprovider::config::retry::RetryConfig;
        use aws_sdk_cognitoidentityprovider::config::timeout::TimeoutConfig;
        if set.read_at.elapsed() > self.timing.max_staleness {
            return Err(DirectoryError::Conflict(set.owner.clone()));
        }
        let mut req = self
            .client
            .admin_update_user_attributes()
            .user_pool_id(&self.pool_id)
            .username(&set.owner);
        for (name, value) in values {
            req = req.user_attributes(
                AttributeType::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(|e| DirectoryError::Unavailable(e.to_string()))?,
            );
        }
        req.customize()
            .config_override(
                aws_sdk_cognitoidentityprovider::config::Builder::default()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(self.timing.attempt_timeout)
                            .build(),
                    ),
            )
            .send()
            .await
            .map_err(|e| super::cognito::map_err(e, &set.owner))?;
        Ok(())
    }

    /// Reads the key attributes again after the settle time (a change to check).
    pub(super) async fn settled(&self, username: &str) -> Result<KeySet, DirectoryError> {
        tokio::time::sleep(self.timing.settle).await;
        self.key_set(username)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchUser(username.to_string()))
    }

    /// Removes `id` from the legacy list, writing `extra` in the same request; reads the list
    /// again after the settle time and repeats while a concurrent removal put the key back.
    pub(super) async fn remove_legacy(
        &self,
        mut set: KeySet,
        id: &str,
        mut extra: Vec<(String, String)>,
    ) -> Result<KeySet, DirectoryError> {
        for _ in 0..4 {
            let mut values = std::mem::take(&mut extra);
            values.push((LEGACY_ATTRIBUTE.to_string(), set.legacy_without(id)?));
            self.write_attributes(&set, values).await?;
            let after = self.settled(&set.owner).await?;
            if !after.in_legacy(id) {
                return Ok(after);
            }
            set = after;
        }
        Err(conflict(&set.owner))
    }

    /// The user's key attributes read for a change (`None`: no such user), after the test
    /// pause; read again while the pause left them older than `max_staleness`.
    pub(super) async fn read_for_change(
        &self,
        username: &str,
        op: &'static str,
    ) -> Result<Option<KeySet>, DirectoryError> {
        for _ in 0..3 {
            let Some(set) = self.key_set(username).await? else {
                return Ok(None);
            };
            self.paused(op).await;
            if set.read_at.elapsed() <= self.timing.max_staleness {
                return Ok(Some(set));
            }
        }
        Err(conflict(username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn record(owner: &str, i: usize) -> KeyRecord {
        KeyRecord {
            id: format!("{}.{:016x}", owner_prefix(owner), i),
            owner: owner.to_string(),
            name: "n".repeat(64),
            hash: vec![0xab; 32],
            last4: "WXYZ".into(),
            created_at: 1_795_431_116 + i as i64,
            expires_at: Some(1_895_431_116),
        }
    }

    #[test]
    fn legacy_lists_and_slots_read_together() {
        let owner = "a".repeat(128);
        let records: Vec<KeyRecord> = (0..MAX_KEYS_PER_USER).map(|i| record(&owner, i)).collect();
        // The legacy list of ten longest records fits the attribute, as before.
        let legacy: Vec<StoredKey> = records[..4].iter().map(StoredKey::from_record).collect();
        let all: Vec<StoredKey> = records.iter().map(StoredKey::from_record).collect();
        assert!(serde_json::to_string(&all).unwrap().len() <= ATTRIBUTE_LIMIT);
        let mut attrs: HashMap<String, String> = HashMap::new();
        attrs.insert(
            LEGACY_ATTRIBUTE.into(),
            serde_json::to_string(&legacy).unwrap(),
        );
        for (i, r) in records[4..].iter().enumerate() {
            attrs.insert(
                slot_attribute([0, 2, 3, 4, 5, 6][i]),
                slot_value(r).unwrap(),
            );
        }
        attrs.insert(slot_attribute(1), FREE.into());
        let set = KeySet::parse(&owner, |n| attrs.get(n).map(String::as_str));
        assert_eq!(set.records(), records);
        assert_eq!(set.count(), MAX_KEYS_PER_USER);
        assert!(set.in_legacy(&records[0].id) && set.slot_of(&records[0].id).is_none());
        assert_eq!(set.slot_of(&records[5].id), Some(2));
        assert_eq!(set.find(&records[9].id).as_ref(), Some(&records[9]));
        let free = set.free_slot().unwrap();
        assert!(set.slots[free].is_none());
        let shrunk = set.legacy_without(&records[1].id).unwrap();
        assert!(!shrunk.contains(key_suffix(&records[1].id)));

        // Corrupt values read as no key.
        let bad = KeySet::parse(&owner, |n| {
            (n == LEGACY_ATTRIBUTE || n == slot_attribute(0)).then_some("not json")
        });
        assert_eq!(bad.count(), 0);
    }
}
