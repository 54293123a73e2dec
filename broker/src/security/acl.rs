//! ACLs with Kafka's authorizer semantics (StandardAuthorizer): an ACL allows or
//! denies a principal (or `User:*`) from a host (or `*`) an operation on the
//! resources a pattern names (LITERAL name, `*` for all, or PREFIXED). A DENY
//! that matches wins over any ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE,
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL matches every operation. Super users
//! may do anything; a resource no ACL names is allowed to everyone only with
//! `allow_everyone_if_no_acl_found`.
//!
//! ACLs are kept by resource pattern (`<type>/<pattern>/<name>`), durable in the
//! metadata log (single node) or etcd (`acls/`, cluster mode). A check costs a
//! few hash lookups: the literal name, `*`, and each prefix of the name.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Kafka's resource type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ];

    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| *t as i8 == code)
    }

    /// The operations ACLs of this type may name (Kafka's AclEntry.supportedOperations).
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[Read, Write, Create, Describe, Delete, Alter, DescribeConfigs, AlterConfigs],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => {
                &[Create, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, Alter, Describe]
            }
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }

    fn key(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
            ResourceType::TransactionalId => "transactional_id",
            ResourceType::DelegationToken => "delegation_token",
            ResourceType::User => "user",
        }
    }
}

/// Kafka's operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
    TwoPhaseCommit = 15,
}

impl Operation {
    const ALL_OPS: [Operation; 14] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
        Operation::TwoPhaseCommit,
    ];

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::ALL_OPS.into_iter().find(|o| *o as i8 == code)
    }

    /// Whether an ALLOW of `self` allows `wanted`.
    fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }
}

/// LITERAL or PREFIXED (the stored kinds; MATCH and ANY exist only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// The resources an ACL applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub pattern: PatternType,
    pub name: String,
}

impl ResourcePattern {
    /// The key it is stored under: `<type>/<literal|prefixed>/<name>`.
    pub fn key(&self) -> String {
        let pattern = match self.pattern {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        };
        format!("{}/{pattern}/{}", self.resource_type.key(), self.name)
    }

    pub fn from_key(key: &str) -> Option<ResourcePattern> {
        let (t, rest) = key.split_once('/')?;
        let (p, name) = rest.split_once('/')?;
        let resource_type = ResourceType::ALL.into_iter().find(|r| r.key() == t)?;
        let pattern = match p {
            "literal" => PatternType::Literal,
            "prefixed" => PatternType::Prefixed,
            _ => return None,
        };
        Some(ResourcePattern { resource_type, pattern, name: name.to_string() })
    }
}

/// Who may (or may not) do what, on the resources of its pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// The ACLs of one resource pattern.
pub type Entries = BTreeSet<AclEntry>;

/// A filter of Describe/DeleteAcls; `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    /// None: ANY; Some(None): MATCH; Some(Some(p)): that pattern type.
    pub pattern: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, pattern: &ResourcePattern, entry: &AclEntry) -> bool {
        let resource = self.resource_type.is_none_or(|t| t == pattern.resource_type)
            && match (&self.pattern, &self.name) {
                // MATCH: the patterns that would apply to a resource of this name.
                (Some(None), Some(name)) => match pattern.pattern {
                    PatternType::Literal => pattern.name == *name || pattern.name == "*",
                    PatternType::Prefixed => name.starts_with(&pattern.name),
                },
                (Some(None), None) => true,
                (Some(Some(p)), name) => *p == pattern.pattern && name.as_ref().is_none_or(|n| *n == pattern.name),
                (None, name) => name.as_ref().is_none_or(|n| *n == pattern.name),
            };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == entry.principal)
            && self.host.as_ref().is_none_or(|h| *h == entry.host)
            && self.operation.is_none_or(|o| o == entry.operation)
            && self.permission.is_none_or(|p| p == entry.permission)
    }
}

/// Every ACL, by resource pattern.
#[derive(Debug, Default)]
pub struct Acls {
    map: RwLock<HashMap<ResourcePattern, Entries>>,
}

impl Acls {
    pub fn new(all: impl IntoIterator<Item = (String, Entries)>) -> Acls {
        let acls = Acls::default();
        acls.replace_all(all);
        acls
    }

    pub fn get(&self, key: &str) -> Entries {
        ResourcePattern::from_key(key).and_then(|p| self.map.read().get(&p).cloned()).unwrap_or_default()
    }

    /// Replaces one pattern's ACLs (empty removes them).
    pub fn set(&self, key: &str, entries: Entries) {
        let Some(pattern) = ResourcePattern::from_key(key) else {
            tracing::warn!(key, "ignoring ACLs under a key that names no resource pattern");
            return;
        };
        let mut map = self.map.write();
        if entries.is_empty() {
            map.remove(&pattern);
        } else {
            map.insert(pattern, entries);
        }
    }

    pub fn replace_all(&self, all: impl IntoIterator<Item = (String, Entries)>) {
        let mut map = HashMap::new();
        for (key, entries) in all {
            if let (Some(p), false) = (ResourcePattern::from_key(&key), entries.is_empty()) {
                map.insert(p, entries);
            }
        }
        *self.map.write() = map;
    }

    /// Every ACL a filter matches.
    pub fn matching(&self, filter: &AclFilter) -> BTreeMap<ResourcePattern, Vec<AclEntry>> {
        let map = self.map.read();
        let mut out = BTreeMap::new();
        for (pattern, entries) in map.iter() {
            let hits: Vec<AclEntry> = entries.iter().filter(|e| filter.matches(pattern, e)).cloned().collect();
            if !hits.is_empty() {
                out.insert(pattern.clone(), hits);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.map.read().values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.read().is_empty()
    }

    /// The ACL decision for `principal` at `host` doing `op` on `name`: `Some(true)`
    /// allowed, `Some(false)` denied, `None` when no ACL names the resource at all.
    fn decide(&self, principal: &str, host: &str, op: Operation, rt: ResourceType, name: &str) -> Option<bool> {
        let map = self.map.read();
        let mut named = false;
        let mut allowed = false;
        let mut check = |entries: &Entries| {
            named = true;
            for e in entries {
                if (e.principal != principal && e.principal != "User:*") || (e.host != host && e.host != "*") {
                    continue;
                }
                match e.permission {
                    Permission::Deny if e.operation == op || e.operation == Operation::All => return true,
                    Permission::Allow if e.operation.allows(op) => allowed = true,
                    _ => {}
                }
            }
            false
        };
        let mut key = ResourcePattern { resource_type: rt, pattern: PatternType::Literal, name: name.to_string() };
        if let Some(e) = map.get(&key) {
            if check(e) {
                return Some(false);
            }
        }
        if name != "*" {
            key.name = "*".into();
            if let Some(e) = map.get(&key) {
                if check(e) {
                    return Some(false);
                }
            }
        }
        key.pattern = PatternType::Prefixed;
        for (i, _) in name.char_indices().skip(1).chain(std::iter::once((name.len(), ' '))) {
            key.name.clear();
            key.name.push_str(&name[..i]);
            if let Some(e) = map.get(&key) {
                if check(e) {
                    return Some(false);
                }
            }
        }
        named.then_some(allowed)
    }
}

/// The authorizer: ACLs plus the super users and the rule for resources no ACL
/// names. Off (no `security.authorizer`), everything is allowed.
#[derive(Debug)]
pub struct Authorizer {
    pub enabled: bool,
    pub acls: std::sync::Arc<Acls>,
    super_users: BTreeSet<String>,
    allow_if_no_acl: bool,
}

impl Authorizer {
    pub fn new(enabled: bool, super_users: &[String], allow_if_no_acl: bool, acls: std::sync::Arc<Acls>) -> Self {
        Authorizer { enabled, acls, super_users: super_users.iter().cloned().collect(), allow_if_no_acl }
    }

    /// Whether `principal` (as ACLs name it: `User:alice`) at `host` may do `op`.
    pub fn authorize(&self, principal: &str, host: &str, op: Operation, rt: ResourceType, name: &str) -> bool {
        if !self.enabled || self.super_users.contains(principal) {
            return true;
        }
        self.acls.decide(principal, host, op, rt, name).unwrap_or(self.allow_if_no_acl)
    }

    /// Whether the principal may do `op` on some resource of type `rt`: an ALLOW
    /// names it there and no DENY covers every resource of the type (`*` or the
    /// empty prefix). A super user may; with no ACL of the type at all, the
    /// no-ACL rule decides.
    pub fn authorize_by_type(&self, principal: &str, host: &str, op: Operation, rt: ResourceType) -> bool {
        if !self.enabled || self.super_users.contains(principal) {
            return true;
        }
        let who = principal;
        let map = self.acls.map.read();
        let applies =
            |e: &AclEntry| (e.principal == who || e.principal == "User:*") && (e.host == host || e.host == "*");
        let mut any_of_type = false;
        let mut allowed = false;
        for (pattern, entries) in map.iter().filter(|(p, _)| p.resource_type == rt) {
            any_of_type = true;
            let covers_all = match pattern.pattern {
                PatternType::Literal => pattern.name == "*",
                PatternType::Prefixed => pattern.name.is_empty(),
            };
            for e in entries.iter().filter(|e| applies(e)) {
                match e.permission {
                    Permission::Deny if covers_all && (e.operation == op || e.operation == Operation::All) => {
                        return false
                    }
                    Permission::Allow if e.operation.allows(op) => allowed = true,
                    _ => {}
                }
            }
        }
        if any_of_type {
            allowed
        } else {
            self.allow_if_no_acl
        }
    }

    /// The operations of `rt` the principal may do on `name`, as Kafka's bit field.
    pub fn operations(&self, principal: &str, host: &str, rt: ResourceType, name: &str) -> i32 {
        // Without an authorizer Kafka grants every operation the type supports.
        rt.operations()
            .iter()
            .filter(|op| self.authorize(principal, host, **op, rt, name))
            .fold(0, |bits, op| bits | 1 << (*op as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: &str, op: Operation, permission: Permission) -> AclEntry {
        AclEntry { principal: principal.into(), host: "*".into(), operation: op, permission }
    }

    fn authorizer(acls: Vec<(&str, Vec<AclEntry>)>, allow_if_none: bool) -> Authorizer {
        let acls = Acls::new(acls.into_iter().map(|(k, e)| (k.to_string(), e.into_iter().collect())));
        Authorizer::new(true, &["User:root".to_string()], allow_if_none, std::sync::Arc::new(acls))
    }

    #[test]
    fn literal_wildcard_and_prefixed_patterns_apply() {
        let a = authorizer(
            vec![
                ("topic/literal/orders", vec![entry("User:alice", Operation::Read, Permission::Allow)]),
                ("topic/literal/*", vec![entry("User:bob", Operation::Write, Permission::Allow)]),
                ("topic/prefixed/pay", vec![entry("User:*", Operation::All, Permission::Allow)]),
            ],
            false,
        );
        let (alice, bob, carol) = ("User:alice", "User:bob", "User:carol");
        let t = ResourceType::Topic;
        assert!(a.authorize(alice, "1.2.3.4", Operation::Read, t, "orders"));
        assert!(a.authorize(alice, "1.2.3.4", Operation::Describe, t, "orders"), "READ implies DESCRIBE");
        assert!(!a.authorize(alice, "1.2.3.4", Operation::Write, t, "orders"));
        assert!(a.authorize(bob, "h", Operation::Write, t, "anything"));
        assert!(a.authorize(carol, "h", Operation::Delete, t, "payments"));
        assert!(a.authorize(carol, "h", Operation::Delete, t, "pay"));
        assert!(!a.authorize(carol, "h", Operation::Delete, t, "pa"));
        assert!(!a.authorize(carol, "h", Operation::Read, t, "unnamed"), "no ACL: denied by default");
        assert!(a.authorize("User:root", "h", Operation::Alter, ResourceType::Cluster, "kafka-cluster"));
    }

    #[test]
    fn deny_wins_and_no_acl_follows_the_setting() {
        let acls = vec![(
            "group/prefixed/team-",
            vec![
                entry("User:alice", Operation::All, Permission::Allow),
                entry("User:alice", Operation::Delete, Permission::Deny),
            ],
        )];
        let a = authorizer(acls.clone(), true);
        let alice = "User:alice";
        let g = ResourceType::Group;
        assert!(a.authorize(alice, "h", Operation::Read, g, "team-a"));
        assert!(!a.authorize(alice, "h", Operation::Delete, g, "team-a"));
        assert!(!a.authorize("User:bob", "h", Operation::Read, g, "team-a"), "named, not allowed");
        assert!(a.authorize("User:bob", "h", Operation::Read, g, "other"), "no ACL names it");
        assert_eq!(a.operations(alice, "h", g, "team-b"), (1 << 3) | (1 << 8));
    }

    #[test]
    fn hosts_and_filters() {
        let mut e = entry("User:alice", Operation::Write, Permission::Allow);
        e.host = "10.0.0.1".into();
        let a = authorizer(vec![("topic/literal/t", vec![e])], false);
        let alice = "User:alice";
        assert!(a.authorize(alice, "10.0.0.1", Operation::Write, ResourceType::Topic, "t"));
        assert!(!a.authorize(alice, "10.0.0.2", Operation::Write, ResourceType::Topic, "t"));
        let filter = AclFilter { name: Some("t".into()), pattern: Some(None), ..Default::default() };
        assert_eq!(a.acls.matching(&filter).len(), 1);
        let filter = AclFilter { principal: Some("User:bob".into()), ..Default::default() };
        assert!(a.acls.matching(&filter).is_empty());
    }

    #[test]
    fn keys_round_trip() {
        let p = ResourcePattern {
            resource_type: ResourceType::TransactionalId,
            pattern: PatternType::Prefixed,
            name: "a/b".into(),
        };
        assert_eq!(ResourcePattern::from_key(&p.key()), Some(p));
        assert_eq!(ResourcePattern::from_key("nope"), None);
    }
}
