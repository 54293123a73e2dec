//! Scopes (tenants, Pravega's word): with `[security.scopes] enabled`, every
//! principal belongs to one scope and sees only that scope's streams, groups and
//! transactional ids, under their plain names. Inside, a scoped name is
//! `<scope>/<name>`: Kafka names cannot hold `/`, so two scopes' `orders` are two
//! streams and no plain name can reach into a scope. Principals without a scope
//! are in the default scope (names without `/`, as before scopes existed);
//! operators (and super users) see everything under the inner names.
//!
//! The boundary is enforced in two places that fail closed: requests are rewritten
//! into the scope at the edge (and answers back), and every authorization check
//! refuses a resource outside the principal's scope, so listings leave other
//! scopes out and nothing else can name them.

use std::sync::Arc;

use tributary_config::ScopesConfig;

use super::Principal;

/// Which names a principal sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every name as stored (no scopes configured, or an operator).
    All,
    /// Names without a scope.
    Default,
    /// One scope; the prefix is `<scope>/`.
    Named(Arc<str>),
}

/// The kinds of names a scope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topic,
    /// Group ids and transactional ids: any string, so the default scope's own ids
    /// that contain `/` are kept apart by a leading `/`.
    Id,
}

impl Scope {
    pub fn name(&self) -> Option<&str> {
        match self {
            Scope::Named(prefix) => prefix.strip_suffix('/'),
            _ => None,
        }
    }

    /// The stored name of a name the client gave (topic or id alike): in the default
    /// scope a name with `/` gets a leading `/`, so it can neither be a scope's
    /// name nor (for topics, which cannot hold `/`) exist.
    pub fn inner(&self, name: &str) -> String {
        match self {
            Scope::All => name.to_string(),
            Scope::Named(prefix) => format!("{prefix}{name}"),
            Scope::Default if name.contains('/') => format!("/{name}"),
            Scope::Default => name.to_string(),
        }
    }

    /// The name the client sees of a stored one (the same when not of this scope).
    pub fn outer<'a>(&self, name: &'a str) -> &'a str {
        match self {
            Scope::All => name,
            Scope::Named(prefix) => name.strip_prefix(&**prefix).unwrap_or(name),
            Scope::Default => name.strip_prefix('/').unwrap_or(name),
        }
    }

    /// Whether a stored name belongs to this scope.
    pub fn holds(&self, kind: Kind, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Named(prefix) => name.starts_with(&**prefix),
            Scope::Default => match kind {
                Kind::Topic => !name.contains('/'),
                Kind::Id => !name.contains('/') || name.starts_with('/'),
            },
        }
    }
}

/// How principals get their scope, and what each scope uses of its limits.
#[derive(Debug)]
pub struct Scopes {
    config: ScopesConfig,
    operators: std::collections::BTreeSet<String>,
    /// Stored bytes per scope, summed every `usage_interval_ms`.
    stored: dashmap::DashMap<String, u64>,
    /// Open connections per scope.
    connections: dashmap::DashMap<String, u32>,
}

/// One connection counted against its scope's limit, until dropped.
#[derive(Debug)]
pub struct Counted {
    scopes: Arc<Scopes>,
    scope: String,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(mut n) = self.scopes.connections.get_mut(&self.scope) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Scopes {
    pub fn new(config: &ScopesConfig, super_users: &[String]) -> Scopes {
        let operators = config.operators.iter().chain(super_users).cloned().collect();
        Scopes { config: config.clone(), operators, stored: Default::default(), connections: Default::default() }
    }

    /// Counts one more connection of `scope`; `Err` names the limit it would pass.
    pub fn connect(self: &Arc<Self>, scope: &Scope) -> Result<Option<Counted>, String> {
        let Some(name) = scope.name() else { return Ok(None) };
        let limit = self.config.max_connections;
        let mut n = self.connections.entry(name.to_string()).or_insert(0);
        if limit > 0 && *n >= limit {
            return Err(format!("scope {name} has {} connections, its limit", *n));
        }
        *n += 1;
        Ok(Some(Counted { scopes: self.clone(), scope: name.to_string() }))
    }

    /// Open connections of a scope.
    pub fn connections(&self, scope: &str) -> u32 {
        self.connections.get(scope).map_or(0, |n| *n)
    }

    /// Why a scope may not store more, if it is at its limit.
    pub fn over_storage(&self, scope: &Scope) -> Option<String> {
        let limit = self.config.max_stored_bytes;
        let name = scope.name()?;
        let stored = self.stored.get(name).map_or(0, |b| *b);
        (limit > 0 && stored >= limit)
            .then(|| format!("scope {name} stores {stored} bytes, at or over its limit of {limit}"))
    }

    /// Replaces the stored bytes of every scope.
    pub fn set_stored(&self, per_scope: std::collections::HashMap<String, u64>) {
        self.stored.retain(|k, _| per_scope.contains_key(k));
        for (k, v) in per_scope {
            self.stored.insert(k, v);
        }
    }

    /// How often stored bytes are summed; `None` when nothing limits them.
    pub fn usage_interval(&self) -> Option<std::time::Duration> {
        (self.config.enabled && self.config.max_stored_bytes > 0)
            .then(|| std::time::Duration::from_millis(self.config.usage_interval_ms))
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn max_partitions(&self) -> u32 {
        self.config.max_partitions
    }

    /// The scope of `principal`; `claimed` is what its credential says (a JWT
    /// claim), which wins.
    pub fn scope_of(&self, principal: &Principal, claimed: Option<&str>) -> Scope {
        if !self.config.enabled || self.operators.contains(&principal.to_string()) {
            return Scope::All;
        }
        let named = |s: &str| {
            if tributary_config::valid_scope(s) {
                Scope::Named(format!("{s}/").into())
            } else {
                tracing::warn!(%principal, scope = s, "not a valid scope name; the principal stays in the default scope");
                Scope::Default
            }
        };
        if let Some(s) = claimed.filter(|s| !s.is_empty()) {
            return named(s);
        }
        if let Some(s) = self.config.principals.get(&principal.to_string()) {
            return named(s);
        }
        if !self.config.tls_field.is_empty() {
            let field = format!("{}=", self.config.tls_field);
            if let Some(v) = principal.name.split(',').find_map(|part| part.trim().strip_prefix(&field)) {
                return named(v);
            }
        }
        let sep = &self.config.user_separator;
        if !sep.is_empty() {
            if let Some((_, scope)) = principal.name.rsplit_once(sep.as_str()) {
                return named(scope);
            }
        }
        Scope::Default
    }
}

/// Sums each scope's stored bytes every `every` until `shutdown`, for the storage
/// limit (kept off the produce path, which only reads the sums).
pub async fn measure_usage(
    broker: Arc<crate::broker::Broker>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let mut per: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for t in broker.storage.topics() {
            if let Some((scope, _)) = t.name.split_once('/') {
                *per.entry(scope.to_string()).or_default() += t.partitions.iter().map(|p| p.size_bytes()).sum::<u64>();
            }
        }
        broker.security.scopes.set_stored(per);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(f: impl FnOnce(&mut ScopesConfig)) -> Scopes {
        let mut c = ScopesConfig { enabled: true, ..ScopesConfig::default() };
        f(&mut c);
        Scopes::new(&c, &["User:admin".to_string()])
    }

    #[test]
    fn principals_get_their_scope_by_claim_mapping_certificate_or_name() {
        let s = scopes(|c| {
            c.principals.insert("User:bob".into(), "beta".into());
            c.tls_field = "O".into();
        });
        let named = |n: &str| Scope::Named(format!("{n}/").into());
        assert_eq!(s.scope_of(&Principal::user("alice@acme"), None), named("acme"));
        assert_eq!(s.scope_of(&Principal::user("bob"), None), named("beta"));
        assert_eq!(s.scope_of(&Principal::user("CN=carol,O=gamma"), None), named("gamma"));
        assert_eq!(s.scope_of(&Principal::user("svc"), Some("delta")), named("delta"));
        assert_eq!(s.scope_of(&Principal::user("plain"), None), Scope::Default);
        assert_eq!(s.scope_of(&Principal::user("admin"), None), Scope::All, "operators see everything");
        assert_eq!(s.scope_of(&Principal::user("x@bad/scope"), None), Scope::Default);
        let off = Scopes::new(&ScopesConfig::default(), &[]);
        assert_eq!(off.scope_of(&Principal::user("alice@acme"), None), Scope::All);
    }

    #[test]
    fn names_map_into_and_out_of_a_scope_without_reaching_others() {
        let acme = Scope::Named("acme/".into());
        assert_eq!(acme.inner("orders"), "acme/orders");
        assert_eq!(acme.outer("acme/orders"), "orders");
        assert!(acme.holds(Kind::Topic, "acme/orders"));
        assert!(!acme.holds(Kind::Topic, "beta/orders"));
        assert!(!acme.holds(Kind::Topic, "orders"));
        // A plain name with a slash cannot climb into another scope.
        assert_eq!(acme.inner("beta/orders"), "acme/beta/orders");
        let default = Scope::Default;
        assert_eq!(default.inner("acme/orders"), "/acme/orders");
        assert!(!default.holds(Kind::Topic, "acme/orders"));
        assert_eq!(default.inner("team/g"), "/team/g");
        assert!(default.holds(Kind::Id, "/team/g"));
        assert!(!default.holds(Kind::Id, "acme/g"));
        assert_eq!(default.outer("/team/g"), "team/g");
    }
}
