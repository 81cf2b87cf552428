//! A short-lived cache of verified key lookups in the warm process, so a warm Lambda does not
//! ask the directory (Cognito) on every request.
//!
//! Entries live for a configurable TTL (default 60 s). A revoke, rotation, disable, group
//! change or delete made through this process forgets the affected entries at once; changes
//! made elsewhere (another Lambda instance, the Cognito console) take effect within the TTL.
//! What is cached is the directory's record (hash, expiry, owner, groups); the presented key
//! is still hashed and compared, and expiry checked, on every request.

use crate::directory::{KeyOwner, User};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Default time an entry is trusted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default number of entries.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Longest time an unknown key id is remembered as unknown (never longer than the TTL), so a
/// stream of one bogus key costs one directory lookup per interval, not one per request.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

struct Entry {
    at: Instant,
    found: Arc<KeyOwner>,
}

/// Key id → directory record, for at most `ttl`.
pub struct IdentityCache {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<String, Entry>>,
    /// Key ids the directory did not know, and when it said so.
    unknown: RwLock<HashMap<String, Instant>>,
    /// Users behind tokens (enabled state and groups), by user name.
    users: RwLock<HashMap<String, (Instant, Arc<User>)>>,
    /// Key ids (`k:`) and user names (`u:`) forgotten recently, and when: a lookup that
    /// started before a revoke must not put back what the revoke just removed.
    forgotten: RwLock<HashMap<String, Instant>>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for IdentityCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl IdentityCache {
    /// A cache; a zero TTL or capacity disables it.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: RwLock::new(HashMap::new()),
            unknown: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            forgotten: RwLock::new(HashMap::new()),
        }
    }

    /// True when `key_id` or `username` was forgotten at or after `since`.
    fn stale(&self, since: Instant, key_id: Option<&str>, username: Option<&str>) -> bool {
        let Ok(f) = self.forgotten.read() else {
            return true;
        };
        let hit = |k: String| f.get(&k).is_some_and(|at| *at >= since);
        key_id.is_some_and(|k| hit(format!("k:{k}")))
            || username.is_some_and(|u| hit(format!("u:{u}")))
    }

    fn remember_forgotten(&self, what: String) {
        if !self.enabled() {
            return;
        }
        let Ok(mut f) = self.forgotten.write() else {
            return;
        };
        if f.len() >= self.capacity {
            // A lookup in flight for longer than this is stale anyway.
            let keep = self.ttl.max(Duration::from_secs(60));
            f.retain(|_, at| at.elapsed() < keep);
            if f.len() >= self.capacity {
                f.clear();
            }
        }
        f.insert(what, Instant::now());
    }

    /// A fresh directory record of the user behind a token.
    pub fn get_user(&self, username: &str) -> Option<Arc<User>> {
        if !self.enabled() {
            return None;
        }
        let users = self.users.read().ok()?;
        users
            .get(username)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, u)| u.clone())
    }

    /// Remembers the user behind a token, looked up from `since` on (nothing if the user was
    /// forgotten meanwhile).
    pub fn put_user(&self, user: Arc<User>, since: Instant) {
        if !self.enabled() || self.stale(since, None, Some(&user.username)) {
            return;
        }
        let Ok(mut users) = self.users.write() else {
            return;
        };
        if users.len() >= self.capacity {
            let ttl = self.ttl;
            users.retain(|_, (at, _)| at.elapsed() < ttl);
            if users.len() >= self.capacity {
                users.clear();
            }
        }
        users.insert(user.username.clone(), (Instant::now(), user));
    }

    fn negative_ttl(&self) -> Duration {
        self.ttl.min(NEGATIVE_TTL)
    }

    /// True when the directory recently said `key_id` does not exist.
    pub fn known_unknown(&self, key_id: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        let ttl = self.negative_ttl();
        self.unknown
            .read()
            .ok()
            .and_then(|m| m.get(key_id).map(|at| at.elapsed() < ttl))
            .unwrap_or(false)
    }

    /// Remembers that `key_id` does not exist (for at most [`NEGATIVE_TTL`]), as looked up
    /// from `since` on.
    pub fn put_unknown(&self, key_id: &str, since: Instant) {
        if !self.enabled() || self.stale(since, Some(key_id), None) {
            return;
        }
        let Ok(mut m) = self.unknown.write() else {
            return;
        };
        if m.len() >= self.capacity {
            let ttl = self.negative_ttl();
            m.retain(|_, at| at.elapsed() < ttl);
            if m.len() >= self.capacity {
                m.clear();
            }
        }
        m.insert(key_id.to_string(), Instant::now());
    }

    /// The cache as `PENNYWORTH_IDENTITY_CACHE_TTL` (seconds; 0 disables) and
    /// `PENNYWORTH_IDENTITY_CACHE_SIZE` say; unset or unparsable values keep the defaults.
    /// Read by the binaries only; the engine takes the cache as a parameter.
    pub fn from_env() -> Self {
        let ttl = std::env::var("PENNYWORTH_IDENTITY_CACHE_TTL")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_TTL, Duration::from_secs);
        let size = std::env::var("PENNYWORTH_IDENTITY_CACHE_SIZE")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_CAPACITY);
        Self::new(ttl, size)
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// A fresh entry for `key_id`.
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyOwner>> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        entries
            .get(key_id)
            .filter(|e| e.at.elapsed() < self.ttl)
            .map(|e| e.found.clone())
    }

    /// Remembers a lookup that started at `since`; nothing if the key or its owner was
    /// forgotten (revoked, disabled, ...) meanwhile, so a revoke racing a lookup sticks.
    pub fn put(&self, found: Arc<KeyOwner>, since: Instant) {
        if !self.enabled() || self.stale(since, Some(&found.key.id), Some(&found.user.username)) {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, e| e.at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than track recency on the
                // hot path; the next requests refill it from the directory.
                entries.clear();
            }
        }
        entries.insert(
            found.key.id.clone(),
            Entry {
                at: Instant::now(),
                found,
            },
        );
    }

    /// Forgets one key (revoked, rotated or just created).
    pub fn forget_key(&self, key_id: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key_id);
        }
        if let Ok(mut m) = self.unknown.write() {
            m.remove(key_id);
        }
        self.remember_forgotten(format!("k:{key_id}"));
    }

    /// Forgets every key of a user (disabled, regrouped or deleted).
    pub fn forget_owner(&self, username: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.found.user.username != username);
        }
        if let Ok(mut users) = self.users.write() {
            users.remove(username);
        }
        self.remember_forgotten(format!("u:{username}"));
    }

    /// Drops every entry that can no longer be used (expired positive and negative entries,
    /// forgotten marks older than any lookup can be) and gives back the tables' spare room, so
    /// a burst of forged keys leaves nothing behind once it has expired.
    pub fn sweep(&self) {
        let ttl = self.ttl;
        let negative = self.negative_ttl();
        let keep = self.ttl.max(Duration::from_secs(60));
        if let Ok(mut m) = self.entries.write() {
            m.retain(|_, e| e.at.elapsed() < ttl);
            m.shrink_to_fit();
        }
        if let Ok(mut m) = self.unknown.write() {
            m.retain(|_, at| at.elapsed() < negative);
            m.shrink_to_fit();
        }
        if let Ok(mut m) = self.users.write() {
            m.retain(|_, (at, _)| at.elapsed() < ttl);
            m.shrink_to_fit();
        }
        if let Ok(mut m) = self.forgotten.write() {
            m.retain(|_, at| at.elapsed() < keep);
            m.shrink_to_fit();
        }
    }

    /// Number of entries (tests).
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{KeyRecord, User};

    fn owner(id: &str, user: &str) -> Arc<KeyOwner> {
        Arc::new(KeyOwner {
            key: KeyRecord {
                id: id.into(),
                owner: user.into(),
                name: "n".into(),
                hash: vec![0; 32],
                last4: "abcd".into(),
                created_at: 0,
                expires_at: None,
            },
            user: User {
                id: "u".into(),
                username: user.into(),
                email: None,
                groups: vec![],
                enabled: true,
                created_at: 0,
            },
        })
    }

    impl IdentityCache {
        fn put_now(&self, found: Arc<KeyOwner>) {
            self.put(found, Instant::now());
        }
    }

    #[test]
    fn a_revoke_racing_a_lookup_is_not_undone() {
        let c = IdentityCache::new(Duration::from_secs(60), 10);
        // A lookup starts, the key is revoked (and forgotten), then the lookup's result
        // arrives: it must not be cached, or the key would work for the TTL.
        let started = Instant::now();
        c.forget_key("a");
        c.put(owner("a", "alice"), started);
        assert!(c.get("a").is_none());
        // Same for a user disabled during the lookup.
        let started = Instant::now();
        c.forget_owner("bob");
        c.put(owner("b", "bob"), started);
        assert!(c.get("b").is_none());
        // A lookup that starts after the revoke is cached as usual.
        c.put(owner("a", "alice"), Instant::now());
        assert!(c.get("a").is_some());
    }

    #[test]
    fn sweep_drops_what_has_expired() {
        let c = IdentityCache::new(Duration::from_millis(50), 100);
        c.put_now(owner("a", "alice"));
        c.put_unknown("ghost", Instant::now());
        c.forget_key("gone");
        c.sweep();
        // Fresh entries stay.
        assert!(c.get("a").is_some() && c.known_unknown("ghost"));
        std::thread::sleep(Duration::from_millis(60));
        c.sweep();
        assert!(c.is_empty());
        assert!(c.unknown.read().unwrap().is_empty());
        // Forgotten marks live longer (a lookup may still be in flight).
        assert_eq!(c.forgotten.read().unwrap().len(), 1);
    }

    #[test]
    fn ttl_capacity_and_invalidation() {
        let c = IdentityCache::new(Duration::from_secs(60), 2);
        c.put_now(owner("a", "alice"));
        c.put_now(owner("b", "bob"));
        assert!(c.get("a").is_some() && c.get("b").is_some());
        c.put_now(owner("c", "carol"));
        assert!(c.len() <= 2 && c.get("c").is_some());
        c.forget_key("c");
        assert!(c.get("c").is_none());
        c.put_now(owner("d", "dave"));
        c.forget_owner("dave");
        assert!(c.get("d").is_none());

        let expired = IdentityCache::new(Duration::from_nanos(1), 10);
        expired.put_now(owner("a", "alice"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(expired.get("a").is_none());

        let off = IdentityCache::new(Duration::ZERO, 10);
        off.put_now(owner("a", "alice"));
        assert!(off.get("a").is_none() && off.is_empty());
    }
}
