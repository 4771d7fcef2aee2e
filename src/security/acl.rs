//! ACLs and `--authorizer standard` (issue 18; docs/security.md), with the semantics of Kafka's
//! StandardAuthorizer: super users may do everything; a DENY that matches wins over any ALLOW;
//! an ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows
//! DESCRIBE_CONFIGS; a resource that no ACL names at all is open only with
//! `--allow-everyone-if-no-acl-found`.
//!
//! The ACLs live in the log's metadata store as dynamic configs, one scope per resource pattern
//! (`acl/TOPIC/LITERAL/orders`) with one key per ACL (`["User:alice","*","READ","ALLOW"]`): they
//! are durable, and shared through PostgreSQL in a cluster as every dynamic config is. The
//! authorizer keeps an index of them that it rebuilds when the dynamic configs change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::{Log, LogError};
use crate::service::authorizer::{Authorizer, AuthorizerCounts, CLUSTER_RESOURCE_NAME, Operation, Resource};
use crate::service::session::Session;

/// The prefix of the ACLs' scopes among the dynamic configs.
const SCOPE_PREFIX: &str = "acl/";

/// Kafka's resource types, with their codes (`ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    const EVERY: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ];

    pub const fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::EVERY.into_iter().find(|t| t.code() == code)
    }

    pub const fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
            ResourceType::DelegationToken => "DELEGATION_TOKEN",
            ResourceType::User => "USER",
        }
    }

    fn from_name(name: &str) -> Option<ResourceType> {
        ResourceType::EVERY.into_iter().find(|t| t.name() == name)
    }

    /// The type of a resource the broker asks about.
    pub fn of(resource: &Resource<'_>) -> ResourceType {
        match resource {
            Resource::Topic(_) => ResourceType::Topic,
            Resource::Group(_) => ResourceType::Group,
            Resource::Cluster => ResourceType::Cluster,
            Resource::TransactionalId(_) => ResourceType::TransactionalId,
        }
    }
}

/// How an ACL's resource name matches: the name itself (`*` for every name), or every name
/// that starts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub const fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    fn from_name(name: &str) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed].into_iter().find(|p| p.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub const fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Permission> {
        [Permission::Deny, Permission::Allow].into_iter().find(|p| p.code() == code)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }

    fn from_name(name: &str) -> Option<Permission> {
        [Permission::Deny, Permission::Allow].into_iter().find(|p| p.name() == name)
    }
}

/// The wildcard resource name of a LITERAL ACL, the wildcard principal and the wildcard host.
pub const WILDCARD: &str = "*";
const WILDCARD_PRINCIPAL: &str = "User:*";

/// One ACL: who (principal, host) may or may not (permission) do what (operation) on which
/// resources (type, name, pattern type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why an ACL cannot be created: Kafka answers INVALID_REQUEST with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

impl AclBinding {
    /// An ACL from CreateAcls' codes, checked as Kafka's controller checks a new ACL.
    pub fn from_codes(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, InvalidAcl> {
        let invalid = |why: &str| InvalidAcl(why.to_string());
        let resource_type = ResourceType::from_code(resource_type).ok_or_else(|| invalid("Invalid resourceType"))?;
        let pattern_type = match pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            _ => return Err(invalid("Invalid patternType")),
        };
        let operation = Operation::from_code(operation).ok_or_else(|| invalid("Invalid operation type"))?;
        let permission = Permission::from_code(permission).ok_or_else(|| invalid("Invalid permission type"))?;
        if resource_name.is_empty() {
            return Err(invalid("Resource name should not be empty"));
        }
        if resource_type == ResourceType::Cluster
            && (pattern_type != PatternType::Literal || resource_name != CLUSTER_RESOURCE_NAME)
        {
            return Err(invalid("The only valid name for the CLUSTER resource is kafka-cluster"));
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(InvalidAcl(format!(
                    "Could not parse principal from `{principal}` (no colon is present separating the principal type from the principal name)"
                )));
            }
        }
        if host.is_empty() {
            return Err(invalid("Invalid host: the host must not be empty (use * for every host)"));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    fn scope(&self) -> String {
        format!("{SCOPE_PREFIX}{}/{}/{}", self.resource_type.name(), self.pattern_type.name(), self.resource_name)
    }

    fn key(&self) -> String {
        serde_json::json!([self.principal, self.host, self.operation.name(), self.permission.name()]).to_string()
    }

    /// The ACL a stored scope and key describe; `None` for anything else.
    fn parse(scope: &str, key: &str) -> Option<AclBinding> {
        let mut parts = scope.strip_prefix(SCOPE_PREFIX)?.splitn(3, '/');
        let resource_type = ResourceType::from_name(parts.next()?)?;
        let pattern_type = PatternType::from_name(parts.next()?)?;
        let resource_name = parts.next()?.to_string();
        let [principal, host, operation, permission]: [String; 4] = serde_json::from_str(key).ok()?;
        Some(AclBinding {
            resource_type,
            resource_name,
            pattern_type,
            principal,
            host,
            operation: Operation::from_name(&operation)?,
            permission: Permission::from_name(&permission)?,
        })
    }

    /// Whether it applies to `principal` connecting from `host`.
    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == WILDCARD || self.host == host)
    }
}

/// Which resource patterns a filter selects (`PatternTypeFilter` with ANY and MATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Every pattern type, the name compared as it is.
    Any,
    /// The patterns that would apply to the name: literal ones naming it or `*`, prefixed ones
    /// it starts with.
    Match,
    Exactly(PatternType),
}

/// DescribeAcls' and DeleteAcls' filter; `None` is Kafka's ANY (or a null string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// A filter from the request's codes; ANY is 1, and UNKNOWN (0) or a code Kafka does not
    /// define is an invalid filter.
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, InvalidAcl> {
        let invalid = |what: &str| InvalidAcl(format!("The filter's {what} is unknown"));
        let resource_type = match resource_type {
            1 => None,
            code => Some(ResourceType::from_code(code).ok_or_else(|| invalid("resource type"))?),
        };
        let pattern = match pattern_type {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Exactly(PatternType::Literal),
            4 => PatternFilter::Exactly(PatternType::Prefixed),
            _ => return Err(invalid("pattern type")),
        };
        let operation = match operation {
            1 => None,
            code => Some(Operation::from_code(code).ok_or_else(|| invalid("operation"))?),
        };
        let permission = match permission {
            1 => None,
            code => Some(Permission::from_code(code).ok_or_else(|| invalid("permission type"))?),
        };
        Ok(AclFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation,
            permission,
        })
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        let name_matches = match (&self.pattern, &self.resource_name) {
            (PatternFilter::Any, None) | (PatternFilter::Match, None) => true,
            (PatternFilter::Any, Some(name)) => *name == acl.resource_name,
            (PatternFilter::Exactly(pattern), name) => {
                *pattern == acl.pattern_type && name.as_ref().is_none_or(|n| *n == acl.resource_name)
            }
            (PatternFilter::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
            },
        };
        name_matches
            && self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// The ACLs, stored as dynamic configs of the log (see the module's documentation).
#[derive(Clone)]
pub struct AclStore {
    log: Log,
}

impl std::fmt::Debug for AclStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclStore").finish_non_exhaustive()
    }
}

impl AclStore {
    pub fn new(log: Log) -> AclStore {
        AclStore { log }
    }

    /// Every ACL, sorted.
    pub fn all(&self) -> Vec<AclBinding> {
        let mut all = BTreeSet::new();
        for (scope, configs) in self.log.dynamic_configs_under(SCOPE_PREFIX) {
            all.extend(configs.keys().filter_map(|key| AclBinding::parse(&scope, key)));
        }
        all.into_iter().collect()
    }

    /// Adds `acls` (those that exist already stay as they are), durably.
    pub async fn create(&self, acls: &[AclBinding]) -> Result<(), LogError> {
        self.change(acls, true).await
    }

    /// Removes `acls`, durably.
    pub async fn delete(&self, acls: &[AclBinding]) -> Result<(), LogError> {
        self.change(acls, false).await
    }

    /// Adds (`present`) or removes `acls`, one write per resource pattern that changes.
    async fn change(&self, acls: &[AclBinding], present: bool) -> Result<(), LogError> {
        let mut by_scope: BTreeMap<String, Vec<&AclBinding>> = BTreeMap::new();
        for acl in acls {
            by_scope.entry(acl.scope()).or_default().push(acl);
        }
        for (scope, acls) in by_scope {
            let mut configs = self.log.dynamic_configs(&scope);
            let before = configs.clone();
            for acl in acls {
                match present {
                    true => configs.insert(acl.key(), String::new()),
                    false => configs.remove(&acl.key()),
                };
            }
            if configs != before {
                self.log.set_dynamic_configs(&scope, configs).await?;
            }
        }
        Ok(())
    }
}

/// The ACLs by resource pattern, for the checks every request makes.
#[derive(Debug, Default)]
struct AclIndex {
    literal: HashMap<(ResourceType, String), Vec<AclBinding>>,
    prefixed: Vec<AclBinding>,
    /// Whether any ACL names a resource of each type (for `authorize_any_topic`).
    any_of_type: HashSet<ResourceType>,
}

impl AclIndex {
    fn build(acls: Vec<AclBinding>) -> AclIndex {
        let mut index = AclIndex::default();
        for acl in acls {
            index.any_of_type.insert(acl.resource_type);
            match acl.pattern_type {
                PatternType::Literal => {
                    index.literal.entry((acl.resource_type, acl.resource_name.clone())).or_default().push(acl)
                }
                PatternType::Prefixed => index.prefixed.push(acl),
            }
        }
        index
    }

    /// The ACLs that apply to a resource, whoever asks.
    fn on(&self, resource_type: ResourceType, name: &str) -> impl Iterator<Item = &AclBinding> {
        let exact = self.literal.get(&(resource_type, name.to_string())).into_iter().flatten();
        let wildcard = self.literal.get(&(resource_type, WILDCARD.to_string())).into_iter().flatten();
        let prefixed = self
            .prefixed
            .iter()
            .filter(move |a| a.resource_type == resource_type && name.starts_with(&a.resource_name));
        exact.chain(wildcard).chain(prefixed)
    }
}

/// What the ACLs say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    Denied,
    /// No ACL names the resource at all: `--allow-everyone-if-no-acl-found` decides.
    NoAcls,
}

impl AclIndex {
    fn decide(&self, principal: &str, host: &str, operation: Operation, resource: Resource<'_>) -> Decision {
        let mut named = false;
        let mut allowed = false;
        for acl in self.on(ResourceType::of(&resource), resource.name()) {
            named = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                // Only a DENY of the operation itself (or ALL) denies: denying READ leaves DESCRIBE.
                Permission::Deny if acl.operation == Operation::All || acl.operation == operation => {
                    return Decision::Denied;
                }
                Permission::Deny => {}
                Permission::Allow => allowed |= acl.operation.implies(operation),
            }
        }
        match (allowed, named) {
            (true, _) => Decision::Allowed,
            (false, true) => Decision::Denied,
            (false, false) => Decision::NoAcls,
        }
    }
}

/// Kafka's StandardAuthorizer over the ACLs in the metadata store.
#[derive(Debug)]
pub struct StandardAuthorizer {
    acls: AclStore,
    /// `--super-users` and the bootstrap admin, as principals (`User:NAME`).
    super_users: HashSet<String>,
    allow_everyone_if_no_acl_found: bool,
    /// The index, and the dynamic configs' generation it was built from.
    index: super::DerivedFromConfigs<AclIndex>,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl StandardAuthorizer {
    pub fn new(log: Log, super_users: HashSet<String>, allow_everyone_if_no_acl_found: bool) -> StandardAuthorizer {
        StandardAuthorizer {
            acls: AclStore::new(log),
            super_users,
            allow_everyone_if_no_acl_found,
            index: super::DerivedFromConfigs::new(),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    fn counted(&self, allowed: bool) -> bool {
        let counter = if allowed { &self.allowed } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
        allowed
    }

    fn index(&self) -> Arc<AclIndex> {
        self.index.get(&self.acls.log, || AclIndex::build(self.acls.all()))
    }
}

/// The host as ACLs name it: Kafka's `/127.0.0.1` without the slash.
fn acl_host(session: &Session) -> &str {
    session.client_host.trim_start_matches('/')
}

impl Authorizer for StandardAuthorizer {
    fn authorize(&self, session: &Session, operation: Operation, resource: Resource<'_>) -> bool {
        let principal = session.principal.to_string();
        if self.super_users.contains(&principal) {
            return self.counted(true);
        }
        let index = self.index();
        self.counted(match index.decide(&principal, acl_host(session), operation, resource) {
            Decision::Allowed => true,
            Decision::Denied => false,
            Decision::NoAcls => self.allow_everyone_if_no_acl_found,
        })
    }

    fn counts(&self) -> AuthorizerCounts {
        let index = self.index();
        let acls = index.literal.values().map(Vec::len).sum::<usize>() + index.prefixed.len();
        AuthorizerCounts {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            acls: acls as u64,
        }
    }

    fn authorize_any_topic(&self, session: &Session, operation: Operation) -> bool {
        let allowed = self.authorize_any_topic_uncounted(session, operation);
        self.counted(allowed)
    }

    fn enabled(&self) -> bool {
        true
    }
}

impl StandardAuthorizer {
    fn authorize_any_topic_uncounted(&self, session: &Session, operation: Operation) -> bool {
        let principal = session.principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        let host = acl_host(session);
        let index = self.index();
        if !index.any_of_type.contains(&ResourceType::Topic) {
            return self.allow_everyone_if_no_acl_found;
        }
        let topic_acls = index.literal.values().flatten().chain(&index.prefixed);
        let topic_acls =
            topic_acls.filter(|a| a.resource_type == ResourceType::Topic && a.applies_to(&principal, host));
        let mut allowed = false;
        for acl in topic_acls {
            let denies_every_topic = acl.permission == Permission::Deny
                && (acl.operation == Operation::All || acl.operation == operation)
                && ((acl.pattern_type == PatternType::Literal && acl.resource_name == WILDCARD)
                    || (acl.pattern_type == PatternType::Prefixed && acl.resource_name.is_empty()));
            if denies_every_topic {
                return false;
            }
            allowed |= acl.permission == Permission::Allow && acl.operation.implies(operation);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource: (ResourceType, &str, PatternType),
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: resource.0,
            resource_name: resource.1.to_string(),
            pattern_type: resource.2,
            principal: principal.to_string(),
            host: WILDCARD.to_string(),
            operation,
            permission,
        }
    }

    fn decide(acls: Vec<AclBinding>, user: &str, operation: Operation, resource: Resource<'_>, open: bool) -> bool {
        match AclIndex::build(acls).decide(&format!("User:{user}"), "127.0.0.1", operation, resource) {
            Decision::Allowed => true,
            Decision::Denied => false,
            Decision::NoAcls => open,
        }
    }

    #[test]
    fn deny_wins_and_read_implies_describe() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        let topic = (ResourceType::Topic, "orders", Literal);
        let acls = vec![acl(topic, "User:alice", Read, Allow)];
        assert!(decide(acls.clone(), "alice", Read, Resource::Topic("orders"), false));
        assert!(decide(acls.clone(), "alice", Describe, Resource::Topic("orders"), false));
        assert!(!decide(acls.clone(), "alice", Write, Resource::Topic("orders"), false));
        assert!(
            !decide(acls.clone(), "bob", Read, Resource::Topic("orders"), true),
            "named resource is closed to others"
        );
        assert!(decide(acls.clone(), "bob", Read, Resource::Topic("other"), true), "unnamed resource with the flag");
        assert!(!decide(acls.clone(), "bob", Read, Resource::Topic("other"), false));
        let mut denied = acls.clone();
        denied.push(acl((ResourceType::Topic, "ord", Prefixed), "User:*", Read, Deny));
        assert!(!decide(denied.clone(), "alice", Read, Resource::Topic("orders"), false));
        assert!(decide(denied, "alice", Describe, Resource::Topic("orders"), false), "denying READ leaves DESCRIBE");
        let wildcard = vec![acl((ResourceType::Topic, "*", Literal), "User:*", All, Allow)];
        assert!(decide(wildcard, "carol", AlterConfigs, Resource::Topic("anything"), false));
    }

    #[test]
    fn bindings_round_trip_through_their_stored_form() {
        let binding = AclBinding::from_codes(3, "group/with/slashes", 4, "User:alice", "10.0.0.1", 3, 3).unwrap();
        assert_eq!(AclBinding::parse(&binding.scope(), &binding.key()), Some(binding));
        assert!(
            AclBinding::from_codes(4, "other", 3, "User:alice", "*", 3, 3).is_err(),
            "cluster must be kafka-cluster"
        );
        assert!(AclBinding::from_codes(2, "t", 1, "User:alice", "*", 3, 3).is_err(), "ANY is not a pattern type");
        assert!(AclBinding::from_codes(2, "t", 3, "alice", "*", 3, 3).is_err(), "principal without a type");
        assert!(AclBinding::from_codes(2, "t", 3, "User:alice", "*", 1, 3).is_err(), "ANY is not an operation");
    }

    #[test]
    fn match_filters_find_the_acls_that_apply_to_a_name() {
        let literal = AclBinding::from_codes(2, "orders", 3, "User:a", "*", 3, 3).unwrap();
        let wildcard = AclBinding::from_codes(2, "*", 3, "User:a", "*", 3, 3).unwrap();
        let prefixed = AclBinding::from_codes(2, "ord", 4, "User:a", "*", 3, 3).unwrap();
        let other = AclBinding::from_codes(2, "payments", 3, "User:a", "*", 3, 3).unwrap();
        let filter = AclFilter::from_codes(2, Some("orders"), 2, None, None, 1, 1).unwrap();
        let found: Vec<_> =
            [&literal, &wildcard, &prefixed, &other].into_iter().filter(|a| filter.matches(a)).collect();
        assert_eq!(found, vec![&literal, &wildcard, &prefixed]);
        let any = AclFilter::from_codes(1, Some("ord"), 1, None, None, 1, 1).unwrap();
        assert!(any.matches(&prefixed) && !any.matches(&literal));
        assert!(AclFilter::from_codes(0, None, 1, None, None, 1, 1).is_err());
    }
}
