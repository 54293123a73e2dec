//! Group configs in etcd: `groupconfigs/<group>` holds one group's overrides (JSON),
//! so a change made on any broker applies on every broker (whichever coordinates
//! the group now or later). Each change is one etcd transaction guarded by the
//! key's revision; every broker follows `groupconfigs/` with a watch into its own
//! [`GroupConfigs`], and the broker that made a change answers once it applied it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::{ClusterError, Entry, Etcd};
use super::quotas::QuotaChangeError;
use crate::coordinator::group::GroupCoordinator;

pub const GROUP_CONFIGS: &str = "groupconfigs/";

/// One group's overrides by key.
pub type Configs = BTreeMap<String, String>;

fn parse(key: &str, value: &[u8]) -> Result<(String, Configs), ClusterError> {
    let group = key.strip_prefix(GROUP_CONFIGS).unwrap_or(key).to_string();
    let configs = serde_json::from_slice(value)
        .map_err(|e| ClusterError::BadValue { key: key.to_string(), message: e.to_string() })?;
    Ok((group, configs))
}

/// Changes group configs in etcd and tells when this broker applied them.
#[derive(Debug, Clone)]
pub struct ClusterGroupConfigs {
    etcd: Etcd,
    applied: watch::Receiver<i64>,
}

impl ClusterGroupConfigs {
    pub fn new(etcd: Etcd, applied: watch::Receiver<i64>) -> ClusterGroupConfigs {
        ClusterGroupConfigs { etcd, applied }
    }

    /// Replaces a group's overrides by `f` of the current ones (empty removes them),
    /// retried while another broker changes the same group; with `validate_only`
    /// nothing is written.
    pub async fn alter(
        &self,
        group: &str,
        validate_only: bool,
        f: impl Fn(Configs) -> Result<Configs, String>,
    ) -> Result<(), QuotaChangeError> {
        let key = format!("{GROUP_CONFIGS}{group}");
        let full = self.etcd.full(&key);
        loop {
            let current = self.etcd.get(&key).await?;
            let configs = match &current {
                Some(e) => parse(&e.key, &e.value)?.1,
                None => Configs::new(),
            };
            let configs = f(configs).map_err(QuotaChangeError::Invalid)?;
            if validate_only {
                return Ok(());
            }
            let guard = match &current {
                Some(e) => Compare::mod_revision(full.clone(), CompareOp::Equal, e.mod_revision),
                None => Compare::create_revision(full.clone(), CompareOp::Equal, 0),
            };
            let op = if configs.is_empty() {
                TxnOp::delete(full.clone(), None)
            } else {
                TxnOp::put(full.clone(), serde_json::to_vec(&configs).expect("configs serialise"), None)
            };
            let response = self.etcd.txn("alter group configs", Txn::new().when([guard]).and_then([op])).await?;
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
}

/// Keeps the group coordinator's configs equal to what etcd holds: reads
/// `groupconfigs/` whole, then follows its changes; publishes the revision applied.
pub async fn follow(
    etcd: Etcd,
    groups: Arc<GroupCoordinator>,
    applied: watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    super::etcd::follow(&etcd, GROUP_CONFIGS, Following(groups), applied, shutdown).await
}

struct Following(Arc<GroupCoordinator>);

impl super::etcd::Follower for Following {
    const WHAT: &'static str = "group configs";

    async fn listed(&mut self, entries: Vec<Entry>) -> bool {
        self.0.configs.replace_all(entries.iter().filter_map(|e| report(parse(&e.key, &e.value))).collect());
        true
    }

    async fn changed(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        match value {
            Some(v) => {
                if let Some((group, configs)) = report(parse(key, v)) {
                    self.0.configs.set(&group, configs);
                }
            }
            None => self.0.configs.set(key.strip_prefix(GROUP_CONFIGS).unwrap_or(key), Configs::new()),
        }
        true
    }
}

fn report<T>(parsed: Result<T, ClusterError>) -> Option<T> {
    parsed.map_err(|e| tracing::warn!(error = %e, "ignoring a group config entry")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_survives_its_key() {
        let (group, configs) = parse("groupconfigs/a/b c", br#"{"consumer.session.timeout.ms":"50000"}"#).unwrap();
        assert_eq!(group, "a/b c");
        assert_eq!(configs.get("consumer.session.timeout.ms").map(String::as_str), Some("50000"));
        assert!(parse("groupconfigs/x", b"nonsense").is_err());
    }
}
