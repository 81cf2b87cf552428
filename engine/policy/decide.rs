//! Building the entities and the context of a request, and evaluating the policies.

use super::cache::Found;
use super::{EntityTypes, PolicyEngine, PrincipalInfo, RequestFacts, Subject, Verdict};
use cedar_policy::{Context, Entities, Entity, EntityUid, Request, RestrictedExpression};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

impl PolicyEngine {
    pub(super) fn context(auth: &str, facts: &RequestFacts) -> Result<Context, String> {
        let mut pairs = vec![
            (
                "auth".to_string(),
                RestrictedExpression::new_string(auth.to_string()),
            ),
            (
                "stream".to_string(),
                RestrictedExpression::new_bool(facts.stream),
            ),
        ];
        if let Some(max) = facts.max_tokens {
            pairs.push((
                "max_tokens".to_string(),
                RestrictedExpression::new_long(i64::try_from(max).unwrap_or(i64::MAX)),
            ));
        }
        if let Some(ip) = &facts.source_ip {
            pairs.push((
                "source_ip".to_string(),
                RestrictedExpression::new_string(ip.clone()),
            ));
        }
        pairs.push(("spend".to_string(), spend_record(&facts.spend)?));
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }

    fn principal_entity(&self, p: &PrincipalInfo<'_>) -> Result<Entity, String> {
        let parents: HashSet<EntityUid> = p
            .groups
            .iter()
            .map(|g| EntityTypes::uid(&self.types.group, g))
            .collect();
        let attrs = HashMap::from([
            (
                "username".to_string(),
                RestrictedExpression::new_string(p.username.to_string()),
            ),
            (
                "auth".to_string(),
                RestrictedExpression::new_string(p.auth.to_string()),
            ),
        ]);
        Entity::new(
            EntityTypes::uid(&self.types.user, p.user_id),
            attrs,
            parents,
        )
        .map_err(|e| e.to_string())
    }

    /// A decision from the [`cache`] when one was made under the same facts; else made with
    /// the entities from the cache, or built from `resource` (its uid and entity), and
    /// remembered.
    pub(super) fn authorize_cached(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        subject: Subject<'_>,
        facts: &RequestFacts,
        resource: impl FnOnce() -> Result<(EntityUid, Option<Entity>), String>,
    ) -> Verdict {
        let key = self.decisions.key(principal, action, subject);
        let cached = match self.decisions.get(&key, facts) {
            Found::Decision(verdict) => return verdict,
            Found::Entities(entities) => Some(entities),
            Found::Nothing => None,
        };
        let (uid, entity) = match resource() {
            Ok(r) => r,
            Err(e) => return deny(e),
        };
        let entities = match cached {
            Some(entities) => entities,
            None => match self.entities(principal, action, entity) {
                Ok(entities) => Arc::new(entities),
                Err(e) => return deny(e),
            },
        };
        let verdict = self.decide(principal, action, uid, &entities, facts);
        self.decisions.put(&key, facts, entities, &verdict);
        verdict
    }

    /// The principal's, the resource's and the action's entities with their closure.
    pub(super) fn entities(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        resource: Option<Entity>,
    ) -> Result<Entities, String> {
        let user = self.principal_entity(principal)?;
        Entities::from_entities(
            std::iter::once(user).chain(resource).chain(
                self.action_entities
                    .get(action)
                    .into_iter()
                    .flatten()
                    .cloned(),
            ),
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// Evaluates the policies of `action` for the request.
    pub(super) fn decide(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        resource: EntityUid,
        entities: &Entities,
        facts: &RequestFacts,
    ) -> Verdict {
        let principal_uid = EntityTypes::uid(&self.types.user, principal.user_id);
        let context = match Self::context(principal.auth, facts) {
            Ok(c) => c,
            Err(e) => return deny(e),
        };
        let request = match Request::new(principal_uid, action.clone(), resource, context, None) {
            Ok(r) => r,
            Err(e) => return deny(e.to_string()),
        };
        let policies = self.by_action.get(action).unwrap_or(&self.policies);
        let response = self.authorizer.is_authorized(&request, policies, entities);
        let diagnostics = response.diagnostics();
        Verdict {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            reasons: diagnostics.reason().map(ToString::to_string).collect(),
            errors: diagnostics.errors().map(ToString::to_string).collect(),
        }
    }
}

/// A denial for a failure before evaluation.
pub(super) fn deny(why: String) -> Verdict {
    Verdict {
        allowed: false,
        reasons: Vec::new(),
        errors: vec![why],
    }
}

/// `context.spend`: whole USD and micro-dollars (both rounded down), today and this month (UTC),
/// of the caller and of the key they used.
fn spend_record(s: &crate::usage::store::Spend) -> Result<RestrictedExpression, String> {
    let long = |v: i64| RestrictedExpression::new_long(v);
    RestrictedExpression::new_record([
        ("day_usd".to_string(), long(s.user_day / 1_000_000_000)),
        ("month_usd".to_string(), long(s.user_month / 1_000_000_000)),
        ("day_micro_usd".to_string(), long(s.user_day / 1_000)),
        ("month_micro_usd".to_string(), long(s.user_month / 1_000)),
        ("key_day_usd".to_string(), long(s.key_day / 1_000_000_000)),
        (
            "key_month_usd".to_string(),
            long(s.key_month / 1_000_000_000),
        ),
    ])
    .map_err(|e| e.to_string())
}
