//! A map of names to JSON values under one etcd prefix (`<prefix><name>`), kept
//! equal on every broker: a change made on any broker is one etcd transaction
//! guarded by the key's revision (two brokers changing the same name never lose an
//! operation); every broker follows the prefix with a watch into its own copy, and
//! the broker that made a change answers once it applied it. Group configs
//! (`groupconfigs/`), SASL users (`users/`), ACLs (`acls/`), client-metrics
//! subscriptions (`clientmetrics/`) and dynamic broker configs (`brokerconfigs/`)
//! are such maps.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::{ClusterError, Entry, Etcd};
use super::quotas::QuotaChangeError;

/// The local copy a [`KeyedMap`] keeps current, and what its values are.
pub trait Keyed: Send + Sync + 'static {
    type Value: Serialize + DeserializeOwned + Default + Send + Sync;
    /// The etcd prefix, below the cluster's (ends with `/`).
    const PREFIX: &'static str;
    /// What the map holds, for the logs.
    const WHAT: &'static str;
    /// An empty value is no entry: setting it deletes the key.
    fn is_empty(value: &Self::Value) -> bool;
    fn get(&self, name: &str) -> Self::Value;
    fn set(&self, name: &str, value: Self::Value);
    fn replace_all(&self, all: Vec<(String, Self::Value)>);
}

/// Changes one map in etcd and follows it into the local copy.
#[derive(Debug)]
pub struct KeyedMap<K> {
    etcd: Etcd,
    applied: watch::Receiver<i64>,
    sender: parking_lot::Mutex<Option<watch::Sender<i64>>>,
    _keyed: PhantomData<fn() -> K>,
}

impl<K: Keyed> KeyedMap<K> {
    pub fn new(etcd: Etcd) -> KeyedMap<K> {
        let (tx, applied) = watch::channel(0i64);
        KeyedMap { etcd, applied, sender: parking_lot::Mutex::new(Some(tx)), _keyed: PhantomData }
    }

    /// Replaces a name's value by `f` of the current one (empty removes it),
    /// retried while another broker changes the same name; with `validate_only`
    /// nothing is written.
    pub async fn alter(
        &self,
        name: &str,
        validate_only: bool,
        f: impl Fn(K::Value) -> Result<K::Value, String>,
    ) -> Result<(), QuotaChangeError> {
        let key = format!("{}{name}", K::PREFIX);
        let full = self.etcd.full(&key);
        loop {
            let current = self.etcd.get(&key).await?;
            let value = match &current {
                Some(e) => parse::<K>(&e.key, &e.value)?.1,
                None => K::Value::default(),
            };
            let value = f(value).map_err(QuotaChangeError::Invalid)?;
            if validate_only {
                return Ok(());
            }
            let guard = match &current {
                Some(e) => Compare::mod_revision(full.clone(), CompareOp::Equal, e.mod_revision),
                None => Compare::create_revision(full.clone(), CompareOp::Equal, 0),
            };
            let op = if K::is_empty(&value) {
                TxnOp::delete(full.clone(), None)
            } else {
                TxnOp::put(full.clone(), serde_json::to_vec(&value).expect("invariant: values serialise"), None)
            };
            let response = self.etcd.txn(K::WHAT, Txn::new().when([guard]).and_then([op])).await?;
            if response.succeeded() {
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                let limit = Duration::from_secs(10);
                return match super::etcd::caught_up(&self.applied, revision, limit).await {
                    true => Ok(()),
                    false => Err(QuotaChangeError::NotApplied(limit)),
                };
            }
        }
    }

    /// Keeps `local` equal to what etcd holds until `shutdown`: reads the prefix
    /// whole, then follows its changes. Started once; later calls return `None`.
    pub fn follow(&self, local: Arc<K>, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let applied = self.sender.lock().take()?;
        let etcd = self.etcd.clone();
        Some(tokio::spawn(
            async move { super::etcd::follow(&etcd, K::PREFIX, Following(local), applied, shutdown).await },
        ))
    }
}

fn parse<K: Keyed>(key: &str, value: &[u8]) -> Result<(String, K::Value), ClusterError> {
    let name = key.strip_prefix(K::PREFIX).unwrap_or(key).to_string();
    let value = serde_json::from_slice(value)
        .map_err(|e| ClusterError::BadValue { key: key.to_string(), message: e.to_string() })?;
    Ok((name, value))
}

struct Following<K>(Arc<K>);

impl<K: Keyed> super::etcd::Follower for Following<K> {
    const WHAT: &'static str = K::WHAT;

    async fn listed(&mut self, entries: Vec<Entry>) -> bool {
        self.0.replace_all(entries.iter().filter_map(|e| report::<K>(parse::<K>(&e.key, &e.value))).collect());
        true
    }

    async fn changed(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        match value {
            Some(v) => {
                if let Some((name, value)) = report::<K>(parse::<K>(key, v)) {
                    self.0.set(&name, value);
                }
            }
            None => self.0.set(key.strip_prefix(K::PREFIX).unwrap_or(key), K::Value::default()),
        }
        true
    }
}

fn report<K: Keyed>(parsed: Result<(String, K::Value), ClusterError>) -> Option<(String, K::Value)> {
    parsed.map_err(|e| tracing::warn!(error = %e, what = K::WHAT, "ignoring an entry")).ok()
}

/// A [`Keyed`] local copy whose `get`, `set` and `replace_all` are its own.
macro_rules! keyed {
    ($(#[$doc:meta])* $local:ty, $value:ty, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        impl Keyed for $local {
            type Value = $value;
            const PREFIX: &'static str = $prefix;
            const WHAT: &'static str = $what;

            fn is_empty(value: &Self::Value) -> bool {
                value.is_empty()
            }
            fn get(&self, name: &str) -> Self::Value {
                <$local>::get(self, name)
            }
            fn set(&self, name: &str, value: Self::Value) {
                <$local>::set(self, name, value)
            }
            fn replace_all(&self, all: Vec<(String, Self::Value)>) {
                <$local>::replace_all(self, all)
            }
        }
    };
}

keyed!(
    /// Group configs: `groupconfigs/<group>`, a group's overrides.
    crate::coordinator::group::configs::GroupConfigs,
    std::collections::BTreeMap<String, String>,
    "groupconfigs/",
    "group configs"
);
keyed!(
    /// SASL users: `users/<name>`, a user's SCRAM credentials by mechanism.
    crate::security::users::Users,
    crate::security::users::Credentials,
    "users/",
    "SASL users"
);
keyed!(
    /// Client-metrics resources (KIP-714 subscriptions): `clientmetrics/<name>`.
    crate::telemetry::ClientMetricsConfigs,
    std::collections::BTreeMap<String, String>,
    "clientmetrics/",
    "client-metrics subscriptions"
);
keyed!(
    /// Dynamic broker configs: `brokerconfigs/<name>` (`brokerconfigs/` itself: the
    /// cluster-wide default; `brokerconfigs/<id>`: one broker's).
    crate::broker_configs::BrokerConfigs,
    std::collections::BTreeMap<String, String>,
    "brokerconfigs/",
    "dynamic broker configs"
);
keyed!(
    /// ACLs: `acls/<type>/<pattern>/<name>`, one resource pattern's ACLs.
    crate::security::acl::Acls,
    crate::security::acl::Entries,
    "acls/",
    "ACLs"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::group::configs::GroupConfigs;

    #[test]
    fn a_name_survives_its_key() {
        let (group, configs) =
            parse::<GroupConfigs>("groupconfigs/a/b c", br#"{"consumer.session.timeout.ms":"50000"}"#).unwrap();
        assert_eq!(group, "a/b c");
        assert_eq!(configs.get("consumer.session.timeout.ms").map(String::as_str), Some("50000"));
        assert!(parse::<GroupConfigs>("groupconfigs/x", b"nonsense").is_err());
    }
}
