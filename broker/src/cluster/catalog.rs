//! The topic catalog in etcd: `topics/<name>` holds a topic's id, partition count and
//! config overrides (a few hundred bytes a topic, nothing per record). Every change
//! is one etcd transaction made by whichever broker took the request; every broker
//! follows `topics/` with a watch and applies it to its own storage, so a
//! CreateTopics, DeleteTopics, CreatePartitions or AlterConfigs made anywhere is seen
//! everywhere. The broker that made a change answers once its own storage applied it.
//!
//! Internal topics (`__consumer_offsets`, `__transaction_state`) are not in the
//! catalog: every broker creates them with the partition counts of its
//! configuration, and the controller places their partitions like any other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::etcd::{ClusterError, Entry, Etcd};
use crate::storage::{Storage, StorageError};

pub const TOPICS: &str = "topics/";
pub const ASSIGNMENTS: &str = "assignments/";

/// One topic as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    pub id: Uuid,
    pub partitions: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
}

/// Why a catalog change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error(transparent)]
    Etcd(#[from] ClusterError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("the change was written to etcd but this broker has not applied it within {0:?}")]
    NotApplied(Duration),
}

/// Reads and changes `topics/` and tells when this broker's storage caught up.
#[derive(Debug, Clone)]
pub struct Catalog {
    etcd: Etcd,
    /// The etcd revision up to which this broker applied the catalog.
    applied: watch::Receiver<i64>,
}

fn parse(e: &Entry) -> Result<TopicEntry, ClusterError> {
    serde_json::from_slice(&e.value)
        .map_err(|err| ClusterError::BadValue { key: e.key.clone(), message: err.to_string() })
}

impl Catalog {
    pub fn new(etcd: Etcd, applied: watch::Receiver<i64>) -> Catalog {
        Catalog { etcd, applied }
    }

    /// Waits until this broker applied the catalog up to `revision`.
    async fn applied(&self, revision: i64) -> Result<(), CatalogError> {
        let limit = Duration::from_secs(10);
        match super::etcd::caught_up(&self.applied, revision, limit).await {
            true => Ok(()),
            false => Err(CatalogError::NotApplied(limit)),
        }
    }

    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), CatalogError> {
        let entry = TopicEntry { id: Uuid::new_v4(), partitions, configs };
        let value = serde_json::to_vec(&entry).expect("a topic entry serialises");
        let key = format!("{TOPICS}{name}");
        let full = self.etcd.full(&key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value, None)]);
        let response = self.etcd.txn("create topic", txn).await?;
        if !response.succeeded() {
            return Err(CatalogError::Exists(name.to_string()));
        }
        self.applied(response.header().map(|h| h.revision()).unwrap_or(0)).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), CatalogError> {
        let txn = Txn::new()
            .when([Compare::create_revision(self.etcd.full(&format!("{TOPICS}{name}")), CompareOp::Greater, 0)])
            .and_then([
                TxnOp::delete(self.etcd.full(&format!("{TOPICS}{name}")), None),
                TxnOp::delete(self.etcd.full(&format!("{ASSIGNMENTS}{name}")), None),
                // The partitions' histories, `history/<name>/<10 digits>`: a range
                // of digits only, so deleting `acme` leaves scope acme's topics
                // (`history/acme/orders/...`) alone.
                TxnOp::delete(
                    self.etcd.full(&format!("{}{name}/0", super::handover::HISTORY)),
                    Some(
                        etcd_client::DeleteOptions::new()
                            .with_range(self.etcd.full(&format!("{}{name}/:", super::handover::HISTORY))),
                    ),
                ),
            ]);
        let response = self.etcd.txn("delete topic", txn).await?;
        if !response.succeeded() {
            return Err(CatalogError::Unknown(name.to_string()));
        }
        self.applied(response.header().map(|h| h.revision()).unwrap_or(0)).await
    }

    /// Changes a topic by `f` with a compare on its revision (retried on a race).
    async fn update(&self, name: &str, f: impl Fn(&mut TopicEntry)) -> Result<(), CatalogError> {
        let key = format!("{TOPICS}{name}");
        loop {
            let current = self.etcd.get(&key).await?.ok_or_else(|| CatalogError::Unknown(name.to_string()))?;
            let mut entry = parse(&current)?;
            f(&mut entry);
            let full = self.etcd.full(&key);
            let txn = Txn::new()
                .when([Compare::mod_revision(full.clone(), CompareOp::Equal, current.mod_revision)])
                .and_then([TxnOp::put(full, serde_json::to_vec(&entry).expect("serialises"), None)]);
            let response = self.etcd.txn("update topic", txn).await?;
            if response.succeeded() {
                return self.applied(response.header().map(|h| h.revision()).unwrap_or(0)).await;
            }
        }
    }

    pub async fn add_partitions(&self, name: &str, count: i32) -> Result<(), CatalogError> {
        self.update(name, |e| e.partitions = e.partitions.max(count)).await
    }

    pub async fn set_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), CatalogError> {
        self.update(name, |e| e.configs = configs.clone()).await
    }

    /// Every topic in the catalog and the revision read at.
    pub async fn list(etcd: &Etcd) -> Result<(Vec<(String, TopicEntry)>, i64), ClusterError> {
        let (entries, revision) = etcd.list(TOPICS).await?;
        let mut topics = Vec::new();
        for e in entries {
            match parse(&e) {
                Ok(t) => topics.push((e.key[TOPICS.len()..].to_string(), t)),
                Err(err) => tracing::warn!(error = %err, "ignoring a topic entry"),
            }
        }
        Ok((topics, revision))
    }
}

/// Makes this broker's storage hold what the catalog holds: lists it, applies it
/// (creating, growing, reconfiguring, and deleting what etcd no longer has), then
/// follows every change. Publishes the revision applied.
pub async fn follow(etcd: Etcd, storage: Arc<Storage>, applied: watch::Sender<i64>, shutdown: CancellationToken) {
    super::etcd::follow(&etcd, TOPICS, Topics { storage }, applied, shutdown).await
}

/// The catalog as this broker's storage holds it.
struct Topics {
    storage: Arc<Storage>,
}

impl super::etcd::Follower for Topics {
    const WHAT: &'static str = "topic catalog";

    async fn listed(&mut self, entries: Vec<Entry>) -> bool {
        let storage = &self.storage;
        let mut topics = Vec::new();
        for e in entries {
            match parse(&e) {
                Ok(t) => topics.push((e.key[TOPICS.len()..].to_string(), t)),
                Err(err) => tracing::warn!(error = %err, "ignoring a topic entry"),
            }
        }
        let mut ok = true;
        for t in storage.topics() {
            if !crate::coordinator::is_internal_topic(&t.name)
                && !topics.iter().any(|(n, e)| *n == *t.name && e.id == t.id)
            {
                ok &= report(storage.delete_topic(t.id).await.map(|_| ()), &t.name);
            }
        }
        for (name, entry) in &topics {
            ok &= report(apply(storage, name, entry).await, name);
        }
        ok
    }

    async fn changed(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        let Some(name) = key.strip_prefix(TOPICS) else { return true };
        match value {
            Some(v) => match serde_json::from_slice::<TopicEntry>(v) {
                Ok(entry) => report(apply(&self.storage, name, &entry).await, name),
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "ignoring a topic entry");
                    true
                }
            },
            None => match self.storage.topic(name) {
                Some(t) => report(self.storage.delete_topic(t.id).await.map(|_| ()), name),
                None => true,
            },
        }
    }
}

fn report(result: Result<(), StorageError>, topic: &str) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(topic, error = %e, "cannot apply a catalog change to storage; retrying");
            false
        }
    }
}

async fn apply(storage: &Arc<Storage>, name: &str, entry: &TopicEntry) -> Result<(), StorageError> {
    let topic = match storage.topic(name) {
        Some(t) if t.id == entry.id => t,
        Some(t) => {
            storage.delete_topic(t.id).await?;
            storage.create_topic_as(name, entry.id, entry.partitions, entry.configs.clone()).await?;
            return Ok(());
        }
        None => {
            storage.create_topic_as(name, entry.id, entry.partitions, entry.configs.clone()).await?;
            return Ok(());
        }
    };
    if (topic.partitions.len() as i32) < entry.partitions {
        storage.add_partitions(name, entry.partitions).await?;
    }
    if topic.config().overrides != entry.configs {
        let topic = storage.topic(name).ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        storage.set_topic_configs(&topic, entry.configs.clone()).await?;
    }
    Ok(())
}
