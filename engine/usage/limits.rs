//! Budgets and rate limits: `limits.yaml` (optional) in the config directory, compiled once.
//!
//! ```yaml
//! defaults:            # everyone
//!   requests_per_minute: 120
//! groups:              # members of a group (each member on their own)
//!   users: { usd_per_day: "5", usd_per_month: "50", tokens_per_minute: 200000 }
//! users:               # one user; overrides what their groups say, field by field
//!   alice: { usd_per_month: "200" }
//! keys:                # one API key, on top of its owner's limits
//!   alice.0123456789abcdef: { requests_per_minute: 10 }
//! ```
//!
//! For each field, the most specific entry that sets it wins: the user's own entry, else the
//! tightest of their groups' entries, else `defaults`. A key's entry limits that key's own
//! spend and rate in addition to its owner's.

use crate::config::{ConfigError, SourceFile, locate, parse_yaml};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::HashMap;

/// The file name inside a config directory.
pub const LIMITS_FILE: &str = "limits.yaml";

/// `limits.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Limits of everyone.
    #[serde(default)]
    pub defaults: Option<LimitSpec>,
    /// Limits of each member of a group.
    #[serde(default)]
    pub groups: HashMap<String, LimitSpec>,
    /// Limits of one user.
    #[serde(default)]
    pub users: HashMap<String, LimitSpec>,
    /// Limits of one API key (by key id).
    #[serde(default)]
    pub keys: HashMap<String, LimitSpec>,
}

/// One entry of `limits.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// USD per UTC day (a decimal; quote it for exactness: `"2.50"`).
    #[serde(default)]
    pub usd_per_day: Option<Decimal>,
    /// USD per UTC calendar month.
    #[serde(default)]
    pub usd_per_month: Option<Decimal>,
    /// Model calls per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Input and output tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

/// One set of limits, compiled: budgets in nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Nano-dollars per UTC day.
    pub day_nanos: Option<i64>,
    /// Nano-dollars per UTC month.
    pub month_nanos: Option<i64>,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

impl Limit {
    /// True when a budget is set.
    pub fn has_budget(&self) -> bool {
        self.day_nanos.is_some() || self.month_nanos.is_some()
    }

    /// True when a per-minute limit is set.
    pub fn has_rate(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }

    /// Fields of `self`, else of `other`.
    fn or(self, other: Limit) -> Limit {
        Limit {
            day_nanos: self.day_nanos.or(other.day_nanos),
            month_nanos: self.month_nanos.or(other.month_nanos),
            requests_per_minute: self.requests_per_minute.or(other.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.or(other.tokens_per_minute),
        }
    }

    /// The tighter of each field.
    fn min(self, other: Limit) -> Limit {
        fn m<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Limit {
            day_nanos: m(self.day_nanos, other.day_nanos),
            month_nanos: m(self.month_nanos, other.month_nanos),
            requests_per_minute: m(self.requests_per_minute, other.requests_per_minute),
            tokens_per_minute: m(self.tokens_per_minute, other.tokens_per_minute),
        }
    }
}

/// Every limit of the config, and whether the policies read `context.spend`.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    defaults: Limit,
    groups: HashMap<String, Limit>,
    users: HashMap<String, Limit>,
    keys: HashMap<String, Limit>,
    /// Some policy mentions `context.spend`, so model calls read the caller's spend before
    /// authorization.
    pub spend_in_policies: bool,
}

impl Limits {
    /// The limits of `user` in `groups`.
    pub fn for_user(&self, user: &str, groups: &[String]) -> Limit {
        let from_groups = groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .copied()
            .reduce(Limit::min)
            .unwrap_or_default();
        self.users
            .get(user)
            .copied()
            .unwrap_or_default()
            .or(from_groups)
            .or(self.defaults)
    }

    /// The limits of one key (none unless it has an entry).
    pub fn for_key(&self, key: Option<&str>) -> Limit {
        key.and_then(|k| self.keys.get(k))
            .copied()
            .unwrap_or_default()
    }

    /// Compiles the optional `limits.yaml`; `policies` are the policy sources.
    pub fn compile(
        file: Option<&SourceFile>,
        policies: &[SourceFile],
    ) -> Result<Self, Vec<ConfigError>> {
        let spend_in_policies = policies.iter().any(|p| p.text.contains("context.spend"));
        let Some(file) = file else {
            return Ok(Self {
                spend_in_policies,
                ..Self::default()
            });
        };
        let raw: LimitsFile = parse_yaml(file).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut one = |section: &str, name: &str, spec: &LimitSpec| -> Limit {
            let mut money = |field: &str, v: Option<Decimal>| -> Option<i64> {
                let v = v?;
                if v.is_sign_negative() || v > Decimal::from(1_000_000_000u32) {
                    let at = if name.is_empty() {
                        locate(&file.text, &[&format!("{section}:"), &format!("{field}:")])
                    } else {
                        locate(
                            &file.text,
                            &[
                                &format!("{section}:"),
                                &format!("{name}:"),
                                &format!("{field}:"),
                            ],
                        )
                    };
                    errors.push(ConfigError::new(
                        &file.name,
                        at,
                        format!("`{field}` must be between 0 and 1000000000 USD, not `{v}`"),
                    ));
                    return None;
                }
                Some(super::store::nanos(v))
            };
            Limit {
                day_nanos: money("usd_per_day", spec.usd_per_day),
                month_nanos: money("usd_per_month", spec.usd_per_month),
                requests_per_minute: spec.requests_per_minute,
                tokens_per_minute: spec.tokens_per_minute,
            }
        };
        let defaults = raw
            .defaults
            .as_ref()
            .map(|d| one("defaults", "", d))
            .unwrap_or_default();
        let mut section = |name: &str, map: &HashMap<String, LimitSpec>| {
            map.iter()
                .map(|(k, v)| (k.clone(), one(name, k, v)))
                .collect::<HashMap<_, _>>()
        };
        let groups = section("groups", &raw.groups);
        let users = section("users", &raw.users);
        let keys = section("keys", &raw.keys);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            defaults,
            groups,
            users,
            keys,
            spend_in_policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Limits, Vec<ConfigError>> {
        let file = SourceFile {
            name: LIMITS_FILE.into(),
            text: text.into(),
        };
        Limits::compile(Some(&file), &[])
    }

    #[test]
    fn most_specific_then_tightest() {
        let l = compile(
            "defaults: {requests_per_minute: 100, usd_per_day: 10}\n\
             groups:\n  a: {usd_per_day: \"5\", tokens_per_minute: 1000}\n  b: {usd_per_day: \"2.5\"}\n\
             users:\n  alice: {usd_per_day: \"20\"}\n\
             keys:\n  k1: {requests_per_minute: 3}\n",
        )
        .unwrap();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bob = l.for_user("bob", &g(&["a", "b"]));
        assert_eq!(bob.day_nanos, Some(2_500_000_000));
        assert_eq!(bob.tokens_per_minute, Some(1000));
        assert_eq!(bob.requests_per_minute, Some(100));
        let alice = l.for_user("alice", &g(&["a"]));
        assert_eq!(alice.day_nanos, Some(20_000_000_000));
        assert_eq!(alice.tokens_per_minute, Some(1000));
        assert_eq!(l.for_user("carol", &[]).day_nanos, Some(10_000_000_000));
        assert_eq!(l.for_key(Some("k1")).requests_per_minute, Some(3));
        assert_eq!(l.for_key(Some("k2")), Limit::default());
        assert_eq!(l.for_key(None), Limit::default());
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = compile("groups:\n  a:\n    usd_per_day: \"-1\"\n").unwrap_err();
        assert_eq!(e.len(), 1);
        let text = e[0].to_string();
        assert!(text.contains("limits.yaml:3"), "{text}");
        let e = compile("groups:\n  a: {usd_per_week: 3}\n").unwrap_err();
        assert!(e[0].to_string().contains("usd_per_week"), "{}", e[0]);
    }
}
