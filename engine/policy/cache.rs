//! Cedar decisions remembered per principal, action and resource.
//!
//! A Cedar decision is a pure function of its inputs: the policy set (fixed at load), the
//! entities (the principal built from its id, name, authentication method and groups; the
//! resource, from config or from its name; the action and its groups, from the schema) and
//! the context (from the request's facts). Building the entities costs the most of an
//! authorization (`Entities::from_entities` computes their transitive closure on every call,
//! and cedar-policy 4 has no public way to skip it), evaluating the policies and building the
//! context most of the rest. So the built `Entities` are kept per (principal, action,
//! resource), and with them the last few decisions, each under the exact facts it was made
//! with.
//!
//! Nothing needs invalidating: the key holds every input of the decision (a user whose groups
//! change is a different key; policies and models change only with a new engine). A hit
//! returns the same decision, reasons and errors the evaluation would. The table is bounded
//! (cleared when full, like the identity cache: no recency tracking on the hot path), so
//! callers who vary their facts (client addresses, `max_tokens`) cost memory only up to it.

use super::{PrincipalInfo, RequestFacts, Verdict};
use crate::usage::store::Spend;
use cedar_policy::{Entities, EntityUid};
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Most (principal, action, resource) entries; the table starts over beyond.
pub(super) const CAPACITY: usize = 4096;

/// Most decisions kept per entry (one per distinct set of facts); the oldest is replaced.
pub(super) const DECISIONS: usize = 8;

/// The resource of a decision, as the caller names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Subject<'a> {
    /// `Api::"<route>"` (no entity).
    Api(&'a str),
    /// `Model::"<alias>"` (its entity from config).
    Model(&'a str),
    /// `Tool::"<tool>"` in `ToolServer::"<server>"`.
    Tool(&'a str, &'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedSubject {
    Api(String),
    Model(String),
    Tool(String, String),
}

impl OwnedSubject {
    fn of(s: Subject<'_>) -> Self {
        match s {
            Subject::Api(r) => Self::Api(r.to_string()),
            Subject::Model(m) => Self::Model(m.to_string()),
            Subject::Tool(t, s) => Self::Tool(t.to_string(), s.to_string()),
        }
    }

    fn is(&self, s: Subject<'_>) -> bool {
        match (self, s) {
            (Self::Api(a), Subject::Api(b)) | (Self::Model(a), Subject::Model(b)) => a == b,
            (Self::Tool(t, s), Subject::Tool(u, v)) => t == u && s == v,
            _ => false,
        }
    }
}

/// The facts a decision was made under (every field of [`RequestFacts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    stream: bool,
    max_tokens: Option<u64>,
    source_ip: Option<String>,
    spend: Spend,
}

impl Facts {
    fn of(f: &RequestFacts) -> Self {
        Self {
            stream: f.stream,
            max_tokens: f.max_tokens,
            source_ip: f.source_ip.clone(),
            spend: f.spend,
        }
    }

    fn is(&self, f: &RequestFacts) -> bool {
        self.stream == f.stream
            && self.max_tokens == f.max_tokens
            && self.spend == f.spend
            && self.source_ip.as_deref() == f.source_ip.as_deref()
    }
}

struct Entry {
    hash: u64,
    user_id: String,
    username: String,
    groups: Vec<String>,
    auth: &'static str,
    action: EntityUid,
    subject: OwnedSubject,
    entities: Arc<Entities>,
    decisions: Vec<(Facts, Verdict)>,
    /// Where the next decision goes once `decisions` is full.
    next: usize,
}

impl Entry {
    fn is(&self, key: &Key<'_>) -> bool {
        let p = key.principal;
        self.hash == key.hash
            && self.user_id == p.user_id
            && self.username == p.username
            && self.auth == p.auth
            && self.groups.as_slice() == p.groups
            && self.subject.is(key.subject)
            && self.action == *key.action
    }
}

/// What a lookup found.
pub(super) enum Found {
    /// A decision made under the same facts.
    Decision(Verdict),
    /// The entities, but no decision under these facts.
    Entities(Arc<Entities>),
    /// Nothing.
    Nothing,
}

/// The table of entities and decisions.
pub(super) struct DecisionCache {
    hasher: RandomState,
    table: Mutex<HashTable<Entry>>,
}

impl Default for DecisionCache {
    fn default() -> Self {
        Self {
            hasher: RandomState::default(),
            table: Mutex::new(HashTable::new()),
        }
    }
}

/// What a decision is about: the principal, the action and the resource, with their hash.
pub(super) struct Key<'a> {
    hash: u64,
    principal: &'a PrincipalInfo<'a>,
    action: &'a EntityUid,
    subject: Subject<'a>,
}

impl DecisionCache {
    pub(super) fn key<'a>(
        &self,
        principal: &'a PrincipalInfo<'a>,
        action: &'a EntityUid,
        subject: Subject<'a>,
    ) -> Key<'a> {
        let mut h = self.hasher.build_hasher();
        principal.user_id.hash(&mut h);
        principal.username.hash(&mut h);
        principal.groups.hash(&mut h);
        principal.auth.hash(&mut h);
        action.hash(&mut h);
        subject.hash(&mut h);
        Key {
            hash: h.finish(),
            principal,
            action,
            subject,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashTable<Entry>> {
        // A panic while the lock was held cannot leave an entry half-written in a way that
        // matters (entries are replaced whole), so a poisoned table is used as it is.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn get(&self, key: &Key<'_>, facts: &RequestFacts) -> Found {
        let table = self.lock();
        let Some(entry) = table.find(key.hash, |e| e.is(key)) else {
            return Found::Nothing;
        };
        match entry.decisions.iter().find(|(f, _)| f.is(facts)) {
            Some((_, verdict)) => Found::Decision(verdict.clone()),
            None => Found::Entities(entry.entities.clone()),
        }
    }

    /// Remembers `verdict`, made under `facts` with `entities`.
    pub(super) fn put(
        &self,
        key: &Key<'_>,
        facts: &RequestFacts,
        entities: Arc<Entities>,
        verdict: &Verdict,
    ) {
        let mut table = self.lock();
        if let Some(entry) = table.find_mut(key.hash, |e| e.is(key)) {
            if entry.decisions.iter().any(|(f, _)| f.is(facts)) {
                return;
            }
            if entry.decisions.len() < DECISIONS {
                entry.decisions.push((Facts::of(facts), verdict.clone()));
            } else {
                let at = entry.next % DECISIONS;
                entry.decisions[at] = (Facts::of(facts), verdict.clone());
                entry.next = (at + 1) % DECISIONS;
            }
            return;
        }
        if table.len() >= CAPACITY {
            *table = HashTable::new();
        }
        let mut decisions = Vec::with_capacity(DECISIONS);
        decisions.push((Facts::of(facts), verdict.clone()));
        let p = key.principal;
        table.insert_unique(
            key.hash,
            Entry {
                hash: key.hash,
                user_id: p.user_id.to_string(),
                username: p.username.to_string(),
                groups: p.groups.to_vec(),
                auth: p.auth,
                action: key.action.clone(),
                subject: OwnedSubject::of(key.subject),
                entities,
                decisions,
                next: 0,
            },
            |e| e.hash,
        );
    }

    /// Number of entries (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forgets everything (tests).
    #[cfg(test)]
    fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ModelEntity, PolicyEngine, PrincipalInfo, RequestFacts};
    use crate::config::SourceFile;
    use crate::usage::store::Spend;

    /// The shipped schema and policies, and one that reads every fact of the context.
    fn engine() -> PolicyEngine {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let read = |name: &str| SourceFile {
            name: format!("policies/{name}"),
            text: std::fs::read_to_string(dir.join(name)).unwrap(),
        };
        let mut policies: Vec<SourceFile> = ["base.cedar", "models.cedar", "tools.cedar"]
            .into_iter()
            .map(read)
            .collect();
        policies.push(SourceFile {
            name: "policies/facts.cedar".into(),
            text: r#"
@id("facts")
permit (principal in Pennyworth::Group::"facts", action in Pennyworth::Action::"invoke", resource)
when {
  !context.stream && context has max_tokens && context.max_tokens < 100 &&
  context has source_ip && context.source_ip == "10.0.0.1" && context.spend.day_micro_usd < 5
};
@id("no-premium-streams")
forbid (principal, action, resource in Pennyworth::ModelGroup::"premium")
when { context.stream && principal.auth == "api_key" };
"#
            .into(),
        });
        let (standard, premium) = (vec!["standard".to_string()], vec!["premium".to_string()]);
        let models = [
            ModelEntity {
                alias: "small",
                groups: &standard,
                provider: "echo",
                kind: "chat",
            },
            ModelEntity {
                alias: "big",
                groups: &premium,
                provider: "echo",
                kind: "chat",
            },
        ];
        PolicyEngine::compile(&read("schema.cedarschema"), &policies, &models).unwrap()
    }

    #[test]
    fn remembered_decisions_are_the_decisions() {
        let cached = engine();
        let fresh = engine();
        let groups: Vec<Vec<String>> = [
            &[][..],
            &["users"],
            &["developers"],
            &["facts"],
            &["users", "developers"],
        ]
        .iter()
        .map(|g| g.iter().map(|s| s.to_string()).collect())
        .collect();
        let mut facts = Vec::new();
        for stream in [false, true] {
            for max_tokens in [None, Some(50), Some(500)] {
                for source_ip in [None, Some("10.0.0.1".to_string()), Some("10.0.0.2".into())] {
                    for day in [0, 1_000, 9_000] {
                        facts.push(RequestFacts {
                            stream,
                            max_tokens,
                            source_ip: source_ip.clone(),
                            spend: Spend {
                                user_day: day,
                                ..Spend::default()
                            },
                        });
                    }
                }
            }
        }
        let chat = cached.action("chat").unwrap().clone();
        let whoami = cached.action("whoami").unwrap().clone();
        let call_tool = cached.action("call_tool").unwrap().clone();
        let (mut allowed, mut denied) = (0, 0);
        // Twice over: the first pass fills the cache, the second reads it (and replaces
        // decisions, as there are more sets of facts than an entry keeps).
        for pass in 0..2 {
            for g in &groups {
                for auth in ["api_key", "jwt"] {
                    let p = PrincipalInfo {
                        user_id: "u1",
                        username: "alice",
                        groups: g,
                        auth,
                    };
                    for f in &facts {
                        let mut pairs = Vec::new();
                        // `fresh` computes every decision.
                        let mut both = |call: &dyn Fn(&PolicyEngine) -> super::super::Verdict| {
                            fresh.decisions.clear();
                            pairs.push((call(&cached), call(&fresh)));
                        };
                        for alias in ["small", "big", "missing"] {
                            both(&|e| e.authorize_model(&p, &chat, alias, f));
                        }
                        both(&|e| e.authorize_api(&p, &whoami, "whoami", f));
                        both(&|e| e.authorize_tool(&p, &call_tool, "chat", "builtin", f));
                        for (a, b) in pairs {
                            assert_eq!(a.allowed, b.allowed, "pass {pass} {g:?} {auth} {f:?}");
                            // The order of the reasons was never fixed (Cedar collects them
                            // in a hash set): the same ids, in any order.
                            let sorted = |mut v: Vec<String>| {
                                v.sort();
                                v
                            };
                            assert_eq!(sorted(a.reasons), sorted(b.reasons));
                            assert_eq!(a.errors, b.errors);
                            if pass == 0 {
                                if a.allowed { allowed += 1 } else { denied += 1 }
                            }
                        }
                    }
                }
            }
        }
        // The grid exercises both outcomes, the context-dependent policies included.
        assert!(allowed > 100 && denied > 100, "{allowed} {denied}");
        // One entry per principal (groups and auth), action and resource ("missing" is not
        // a configured model: refused before the cache).
        assert_eq!(cached.decisions.len(), groups.len() * 2 * 4);
    }

    #[test]
    fn the_table_is_bounded() {
        let e = engine();
        let chat = e.action("chat").unwrap().clone();
        let f = RequestFacts::default();
        let g = vec!["users".to_string()];
        for i in 0..super::CAPACITY + 10 {
            let id = format!("u{i}");
            let p = PrincipalInfo {
                user_id: &id,
                username: "x",
                groups: &g,
                auth: "jwt",
            };
            assert!(e.authorize_model(&p, &chat, "small", &f).allowed);
        }
        assert!(e.decisions.len() <= super::CAPACITY);
        // A user moved out of the group is a different entry, denied at once.
        let p = PrincipalInfo {
            user_id: "u1",
            username: "x",
            groups: &[],
            auth: "jwt",
        };
        assert!(!e.authorize_model(&p, &chat, "small", &f).allowed);
    }
}
