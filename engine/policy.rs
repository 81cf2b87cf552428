//! Cedar: the schema and policy set compiled once at load, and the per-request authorization.
//!
//! Evaluation errors mean deny (fail closed). Which policies decided goes to the log, never to
//! the client.

use crate::config::{ConfigError, SourceFile, line_of_offset};
use cedar_policy::{
    ActionConstraint, Authorizer, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

mod cache;
mod decide;
use cache::{DecisionCache, Subject};
use decide::deny;

/// The Cedar namespace of every Pennyworth entity type and action.
pub const NAMESPACE: &str = "Pennyworth";

/// Entity types the engine builds.
#[derive(Debug, Clone)]
pub struct EntityTypes {
    /// `Pennyworth::User`.
    pub user: EntityTypeName,
    /// `Pennyworth::Group`.
    pub group: EntityTypeName,
    /// `Pennyworth::Model`.
    pub model: EntityTypeName,
    /// `Pennyworth::ModelGroup`.
    pub model_group: EntityTypeName,
    /// `Pennyworth::Api`.
    pub api: EntityTypeName,
    /// `Pennyworth::Action`.
    pub action: EntityTypeName,
    /// `Pennyworth::Key`.
    pub key: EntityTypeName,
    /// `Pennyworth::UserAccount`.
    pub account: EntityTypeName,
    /// `Pennyworth::Tool` (an MCP tool).
    pub tool: EntityTypeName,
    /// `Pennyworth::ToolServer` (an upstream MCP server, or `builtin`).
    pub tool_server: EntityTypeName,
}

impl EntityTypes {
    fn new() -> Result<Self, String> {
        let t = |name: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{name}"))
                .map_err(|e| format!("entity type `{name}`: {e}"))
        };
        Ok(Self {
            user: t("User")?,
            group: t("Group")?,
            model: t("Model")?,
            model_group: t("ModelGroup")?,
            api: t("Api")?,
            action: t("Action")?,
            key: t("Key")?,
            account: t("UserAccount")?,
            tool: t("Tool")?,
            tool_server: t("ToolServer")?,
        })
    }

    /// The entity type of a route's resource kind.
    pub fn of(&self, kind: crate::config::routes::ResourceKind) -> &EntityTypeName {
        use crate::config::routes::ResourceKind;
        match kind {
            ResourceKind::Api => &self.api,
            ResourceKind::Model => &self.model,
            ResourceKind::Key => &self.key,
            ResourceKind::Account => &self.account,
        }
    }

    /// `<type>::"<id>"`.
    pub fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// The principal as Cedar sees it.
#[derive(Debug, Clone)]
pub struct PrincipalInfo<'a> {
    /// Stable user id (Cognito `sub`, or the local store's id).
    pub user_id: &'a str,
    /// User name.
    pub username: &'a str,
    /// Groups.
    pub groups: &'a [String],
    /// Authentication method name.
    pub auth: &'static str,
}

/// Per-request facts policies may use.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The request asks for a streamed answer.
    pub stream: bool,
    /// Requested output token limit, if any.
    pub max_tokens: Option<u64>,
    /// Client address, if known.
    pub source_ip: Option<String>,
    /// The caller's spend (`context.spend`); zero unless a model call needs it.
    pub spend: crate::usage::store::Spend,
}

/// The outcome of an authorization, with the deciding policy ids for the audit log.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Allowed or not.
    pub allowed: bool,
    /// Policy ids that decided.
    pub reasons: Vec<String>,
    /// Evaluation errors (each one denied the policy it occurred in).
    pub errors: Vec<String>,
}

/// Compiled Cedar state.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
    /// Entity type names, built once.
    pub types: EntityTypes,
    actions: HashMap<String, EntityUid>,
    /// Per action: its entity and those of its ancestor groups, so `action in
    /// Action::"invoke"` holds without putting every action into every request.
    action_entities: HashMap<EntityUid, Vec<Entity>>,
    /// Per action: the policies whose action scope can match it. The others cannot apply
    /// to a request for it, nor fail (a scope that does not match ends a policy's
    /// evaluation before its conditions), so only these are evaluated: same decision,
    /// reasons and errors, less work per request.
    by_action: HashMap<EntityUid, PolicySet>,
    models: HashMap<String, Entity>,
    /// Entities and decisions per principal, action and resource ([`cache`]).
    decisions: DecisionCache,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.policies.policies().count())
            .field("actions", &self.actions.len())
            .field("models", &self.models.len())
            .finish()
    }
}

/// Renders a Cedar diagnostic (and its related ones) as config errors with lines.
fn diagnostics(file: &SourceFile, diag: &dyn miette::Diagnostic, out: &mut Vec<ConfigError>) {
    let line = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| line_of_offset(&file.text, l.offset()));
    let mut message = diag.to_string();
    if let Some(help) = diag.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    out.push(ConfigError::new(&file.name, line, message));
    if let Some(related) = diag.related() {
        for r in related {
            diagnostics(file, r, out);
        }
    }
}

/// An owned resource (`Key` or `UserAccount`).
#[derive(Debug, Clone, Copy)]
pub struct Owned<'a> {
    /// Entity type (`types.key` or `types.account`).
    pub kind: &'a EntityTypeName,
    /// Entity id.
    pub id: &'a str,
    /// The owner's user id.
    pub owner_id: &'a str,
    /// `name` attribute (keys).
    pub name: Option<&'a str>,
}

/// A model alias as a Cedar entity: `Model::"<alias>"` in its `ModelGroup`s.
pub struct ModelEntity<'a> {
    /// Alias.
    pub alias: &'a str,
    /// Model groups.
    pub groups: &'a [String],
    /// Provider name.
    pub provider: &'a str,
    /// Model kind name.
    pub kind: &'a str,
}

impl PolicyEngine {
    /// Parses the schema and every policy file, validates them in strict mode, and builds the
    /// model entities. Returns every problem found.
    pub fn compile(
        schema_file: &SourceFile,
        policy_files: &[SourceFile],
        models: &[ModelEntity<'_>],
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let types =
            EntityTypes::new().map_err(|e| vec![ConfigError::new(&schema_file.name, None, e)])?;
        let schema = match Schema::from_cedarschema_str(&schema_file.text) {
            Ok((schema, _warnings)) => schema,
            Err(e) => {
                diagnostics(schema_file, &e, &mut errors);
                return Err(errors);
            }
        };
        let validator = Validator::new(schema.clone());
        let mut policies = PolicySet::new();
        for file in policy_files {
            let parsed = match PolicySet::from_str(&file.text) {
                Ok(p) => p,
                Err(e) => {
                    diagnostics(file, &e, &mut errors);
                    continue;
                }
            };
            let stem = file
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&file.name)
                .trim_end_matches(".cedar");
            // Policy ids: `@id("...")` when given, else `<file>.<n>` in file order; unique
            // across files so the audit log names exactly one policy.
            let mut renamed = PolicySet::new();
            let mut in_file: Vec<&Policy> = parsed.policies().collect();
            in_file.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (n, p) in in_file.into_iter().enumerate() {
                let id = p
                    .annotation("id")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{stem}.{n}"));
                let p = p.new_id(PolicyId::new(&id));
                if let Err(e) = renamed.add(p.clone()) {
                    errors.push(ConfigError::new(
                        &file.name,
                        None,
                        format!("policy id `{id}`: {e}"),
                    ));
                    continue;
                }
                if let Err(e) = policies.add(p) {
                    errors.push(ConfigError::new(
                        &file.name,
                        None,
                        format!("policy id `{id}` is used twice: {e}"),
                    ));
                }
            }
            if parsed.templates().next().is_some() {
                errors.push(ConfigError::new(
                    &file.name,
                    None,
                    "policy templates are not supported; write static policies",
                ));
            }
            let result = validator.validate(&renamed, ValidationMode::Strict);
            for e in result.validation_errors() {
                diagnostics(file, e, &mut errors);
            }
        }

        let action_entities: HashMap<EntityUid, Vec<Entity>> = match schema.action_entities() {
            Ok(entities) => entities
                .iter()
                .map(|e| {
                    let uid = e.uid();
                    let closure = std::iter::once(e.clone())
                        .chain(
                            entities
                                .ancestors(&uid)
                                .into_iter()
                                .flatten()
                                .filter_map(|a| entities.get(a).cloned()),
                        )
                        .collect();
                    (uid, closure)
                })
                .collect(),
            Err(e) => {
                errors.push(ConfigError::new(
                    &schema_file.name,
                    None,
                    format!("action hierarchy: {e}"),
                ));
                HashMap::new()
            }
        };
        let mut actions = HashMap::new();
        for uid in schema.actions() {
            actions.insert(uid.id().unescaped().to_string(), uid.clone());
        }

        let mut model_entities = HashMap::new();
        for m in models {
            let parents: HashSet<EntityUid> = m
                .groups
                .iter()
                .map(|g| EntityTypes::uid(&types.model_group, g))
                .collect();
            let attrs = HashMap::from([
                (
                    "provider".to_string(),
                    RestrictedExpression::new_string(m.provider.to_string()),
                ),
                (
                    "kind".to_string(),
                    RestrictedExpression::new_string(m.kind.to_string()),
                ),
            ]);
            match Entity::new(EntityTypes::uid(&types.model, m.alias), attrs, parents) {
                Ok(e) => {
                    model_entities.insert(m.alias.to_string(), e);
                }
                Err(e) => errors.push(ConfigError::new(
                    crate::config::MODELS_FILE,
                    None,
                    format!("model `{}`: {e}", m.alias),
                )),
            }
        }
        // The model entities must conform to the schema (attribute names and types).
        if let Err(e) = Entities::from_entities(model_entities.values().cloned(), Some(&schema)) {
            errors.push(ConfigError::new(
                &schema_file.name,
                None,
                format!("model entities do not match the schema: {e}"),
            ));
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let by_action = policies_by_action(&policies, &action_entities);
        Ok(Self {
            schema,
            policies,
            authorizer: Authorizer::new(),
            types,
            actions,
            action_entities,
            by_action,
            models: model_entities,
            decisions: DecisionCache::default(),
        })
    }

    /// The action uid for a schema action name, if declared.
    pub fn action(&self, name: &str) -> Option<&EntityUid> {
        self.actions.get(name)
    }

    /// Checks at load time that `action` applies to a principal `User` and a resource of
    /// `resource_type` with the standard context.
    pub fn check_action_applies(
        &self,
        action: &EntityUid,
        resource_type: &EntityTypeName,
    ) -> Result<(), String> {
        let context =
            Self::context("api_key", &RequestFacts::default()).map_err(|e| e.to_string())?;
        Request::new(
            EntityTypes::uid(&self.types.user, "check"),
            action.clone(),
            EntityTypes::uid(resource_type, "check"),
            context,
            Some(&self.schema),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Authorizes `principal` to do `action` on `Api::"<route>"`.
    pub fn authorize_api(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        route: &str,
        facts: &RequestFacts,
    ) -> Verdict {
        self.authorize_cached(principal, action, Subject::Api(route), facts, || {
            Ok((EntityTypes::uid(&self.types.api, route), None))
        })
    }

    /// Authorizes `principal` to do `action` on `Model::"<alias>"` (which must be configured).
    pub fn authorize_model(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        alias: &str,
        facts: &RequestFacts,
    ) -> Verdict {
        let Some(entity) = self.models.get(alias) else {
            return Verdict {
                allowed: false,
                reasons: Vec::new(),
                errors: vec![format!("model `{alias}` is not configured")],
            };
        };
        self.authorize_cached(principal, action, Subject::Model(alias), facts, || {
            Ok((entity.uid(), Some(entity.clone())))
        })
    }

    /// Authorizes `principal` to do `action` on `Tool::"<tool>"` in `ToolServer::"<server>"`.
    pub fn authorize_tool(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        tool: &str,
        server: &str,
        facts: &RequestFacts,
    ) -> Verdict {
        self.authorize_cached(
            principal,
            action,
            Subject::Tool(tool, server),
            facts,
            || {
                let uid = EntityTypes::uid(&self.types.tool, tool);
                let parents = HashSet::from([EntityTypes::uid(&self.types.tool_server, server)]);
                let entity = Entity::new(uid.clone(), HashMap::new(), parents);
                entity.map(|e| (uid, Some(e))).map_err(|e| e.to_string())
            },
        )
    }

    /// Authorizes `principal` to do `action` on a `Key` or `UserAccount` (`resource.owner` in
    /// policies).
    pub fn authorize_owned(
        &self,
        principal: &PrincipalInfo<'_>,
        action: &EntityUid,
        resource: &Owned<'_>,
        facts: &RequestFacts,
    ) -> Verdict {
        let mut attrs = HashMap::from([(
            "owner".to_string(),
            RestrictedExpression::new_entity_uid(EntityTypes::uid(
                &self.types.user,
                resource.owner_id,
            )),
        )]);
        if let Some(name) = resource.name {
            attrs.insert(
                "name".to_string(),
                RestrictedExpression::new_string(name.to_string()),
            );
        }
        let uid = EntityTypes::uid(resource.kind, resource.id);
        let entities = Entity::new(uid.clone(), attrs, HashSet::new())
            .map_err(|e| e.to_string())
            .and_then(|entity| self.entities(principal, action, Some(entity)));
        match entities {
            Ok(entities) => self.decide(principal, action, uid, &entities, facts),
            Err(e) => deny(e),
        }
    }
}

/// For each action (with its ancestor groups in `closure`), the policies whose action scope
/// can match it. Empty when the set has templates (then every request evaluates the whole
/// set).
fn policies_by_action(
    policies: &PolicySet,
    closure: &HashMap<EntityUid, Vec<Entity>>,
) -> HashMap<EntityUid, PolicySet> {
    if policies.templates().next().is_some() {
        return HashMap::new();
    }
    let mut out = HashMap::new();
    'actions: for (action, entities) in closure {
        let mut set = PolicySet::new();
        for p in policies.policies() {
            let applies = match p.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => a == *action,
                ActionConstraint::In(list) => list
                    .iter()
                    .any(|a| a == action || entities.iter().any(|e| e.uid() == *a)),
            };
            if applies && set.add(p.clone()).is_err() {
                continue 'actions;
            }
        }
        out.insert(action.clone(), set);
    }
    out
}
