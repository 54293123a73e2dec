//! Client quotas in etcd: `quotas/<entity>` holds one entity's byte rates (the
//! entity as JSON in the key, its values as JSON), so an AlterClientQuotas made on
//! any broker applies on every broker. Each change is one etcd transaction guarded
//! by the entity's revision (two brokers altering the same entity never lose an
//! operation); every broker follows `quotas/` with a watch into its own
//! [`Quotas`], and the broker that made a change answers once it applied it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::{ClusterError, Entry, Etcd};
use crate::quotas::{QuotaEntity, Quotas};

pub const QUOTAS: &str = "quotas/";

/// One entity's quotas by key.
pub type Values = BTreeMap<String, f64>;

/// Why a quota change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaChangeError {
    /// The operations themselves were refused (nothing written).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Etcd(#[from] ClusterError),
    #[error("the change was written to etcd but this broker has not applied it within {0:?}")]
    NotApplied(Duration),
    /// Single node: the metadata log refused the change (its Kafka error code).
    #[error("{1}")]
    Storage(i16, String),
}

fn key_of(entity: &QuotaEntity) -> String {
    format!("{QUOTAS}{}", serde_json::to_string(entity).expect("a quota entity serialises"))
}

fn parse(key: &str, value: &[u8]) -> Result<(QuotaEntity, Values), ClusterError> {
    let bad = |message: String| ClusterError::BadValue { key: key.to_string(), message };
    let entity = serde_json::from_str(key.strip_prefix(QUOTAS).unwrap_or(key)).map_err(|e| bad(e.to_string()))?;
    let values = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
    Ok((entity, values))
}

/// Changes client quotas in etcd and tells when this broker applied them.
#[derive(Debug, Clone)]
pub struct ClientQuotas {
    etcd: Etcd,
    applied: watch::Receiver<i64>,
}

impl ClientQuotas {
    pub fn new(etcd: Etcd, applied: watch::Receiver<i64>) -> ClientQuotas {
        ClientQuotas { etcd, applied }
    }

    /// Replaces an entity's quotas by `f` of the current ones (empty removes the
    /// entity), retried while another broker changes the same entity; with
    /// `validate_only` nothing is written.
    pub async fn alter(
        &self,
        entity: &QuotaEntity,
        validate_only: bool,
        f: impl Fn(Values) -> Result<Values, String>,
    ) -> Result<(), QuotaChangeError> {
        let key = key_of(entity);
        let full = self.etcd.full(&key);
        loop {
            let current = self.etcd.get(&key).await?;
            let values = match &current {
                Some(e) => parse(&e.key, &e.value)?.1,
                None => Values::new(),
            };
            let values = f(values).map_err(QuotaChangeError::Invalid)?;
            if validate_only {
                return Ok(());
            }
            let guard = match &current {
                Some(e) => Compare::mod_revision(full.clone(), CompareOp::Equal, e.mod_revision),
                None => Compare::create_revision(full.clone(), CompareOp::Equal, 0),
            };
            let op = if values.is_empty() {
                TxnOp::delete(full.clone(), None)
            } else {
                TxnOp::put(full.clone(), serde_json::to_vec(&values).expect("quota values serialise"), None)
            };
            let response = self.etcd.txn("alter client quotas", Txn::new().when([guard]).and_then([op])).await?;
            if response.succeeded() {
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                return self.applied(revision).await;
            }
        }
    }

    async fn applied(&self, revision: i64) -> Result<(), QuotaChangeError> {
        let limit = Duration::from_secs(10);
        match super::etcd::caught_up(&self.applied, revision, limit).await {
            true => Ok(()),
            false => Err(QuotaChangeError::NotApplied(limit)),
        }
    }
}

/// Keeps `quotas` equal to what etcd holds: reads `quotas/` whole, then follows its
/// changes; publishes the revision applied.
pub async fn follow(etcd: Etcd, quotas: Arc<Quotas>, applied: watch::Sender<i64>, shutdown: CancellationToken) {
    super::etcd::follow(&etcd, QUOTAS, Following(quotas), applied, shutdown).await
}

struct Following(Arc<Quotas>);

impl super::etcd::Follower for Following {
    const WHAT: &'static str = "client quotas";

    async fn listed(&mut self, entries: Vec<Entry>) -> bool {
        self.0.replace_all(entries.iter().filter_map(|e| report(parse(&e.key, &e.value))).collect());
        true
    }

    async fn changed(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        match value {
            Some(v) => {
                if let Some((entity, values)) = report(parse(key, v)) {
                    self.0.set(entity, values);
                }
            }
            None => {
                if let Ok(entity) = serde_json::from_str(key.strip_prefix(QUOTAS).unwrap_or(key)) {
                    self.0.set(entity, Values::new());
                }
            }
        }
        true
    }
}

fn report<T>(parsed: Result<T, ClusterError>) -> Option<T> {
    parsed.map_err(|e| tracing::warn!(error = %e, "ignoring a client quota entry")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::EntityName;

    #[test]
    fn an_entity_survives_its_key() {
        let entity = QuotaEntity {
            user: Some(EntityName::Named("alice/bob \"x\"".into())),
            client_id: Some(EntityName::Default),
        };
        let values = Values::from([("producer_byte_rate".to_string(), 1024.0)]);
        let key = key_of(&entity);
        assert!(key.starts_with(QUOTAS));
        let (e, v) = parse(&key, &serde_json::to_vec(&values).unwrap()).unwrap();
        assert_eq!((e, v), (entity, values));
        assert!(parse("quotas/nonsense", b"{}").is_err());
    }
}
