//! Partition manifests: after the owner seals, compacts or drops segments of a
//! partition, it writes the
//! partition's manifest (sealed segments, log start, producer and transaction state)
//! as an object `manifests/<topic id>/<partition>/<lease>-<n>` and points the
//! partition's history at it, dropping the tenures that ended below the sealed end.
//! A takeover then starts from the manifest and reads journal objects only from the
//! sealed end on, so its cost follows the unsealed tail, not the partition's size:
//! the owner's tenure moves its first object up to the first that holds a batch
//! past the sealed end (tracked per partition as objects are shipped).
//!
//! The pointer is written only by the owner whose tenure is the history's last, in
//! an etcd transaction guarded by the history's revision and the owner's lease; a
//! manifest object nobody points at is deleted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use opendal::Operator;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handover::{history_key, History, SealedPointer};
use super::membership::broker_key;
use super::wal::WalShipper;
use super::Cluster;
use crate::storage::{PartitionLog, SealHook, Storage};

/// Takes seals from the flusher (never blocks it).
#[derive(Debug)]
pub struct Sealed {
    tx: mpsc::UnboundedSender<(Arc<str>, i32)>,
}

impl SealHook for Sealed {
    fn sealed(&self, partition: &Arc<PartitionLog>) {
        let _ = self.tx.send((partition.topic.clone(), partition.index));
    }
}

pub fn start(
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    shipper: Arc<WalShipper>,
    op: Operator,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) -> (Arc<Sealed>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(cluster, storage, shipper, op, rx, metrics, shutdown));
    (Arc::new(Sealed { tx }), task)
}

async fn run(
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    shipper: Arc<WalShipper>,
    op: Operator,
    mut rx: mpsc::UnboundedReceiver<(Arc<str>, i32)>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let counter = AtomicU64::new(0);
    // Partitions whose manifest could not be published: tried again shortly, so a
    // sealed segment is named by a manifest well within the sweeper's grace time.
    let mut failed: HashSet<(Arc<str>, i32)> = HashSet::new();
    loop {
        let mut due: HashSet<(Arc<str>, i32)> = std::mem::take(&mut failed);
        let retrying = !due.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next { Some(n) => { due.insert(n); } None => return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if retrying => {}
        }
        // Several seals of one partition waiting: one manifest.
        while let Ok(next) = rx.try_recv() {
            due.insert(next);
        }
        for (topic, partition) in due {
            match publish(&cluster, &storage, &shipper, &op, &topic, partition, &counter).await {
                Ok(true) => metrics.manifests_published.inc(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, "cannot publish the partition manifest; retrying");
                    failed.insert((topic, partition));
                }
            }
        }
    }
}

async fn publish(
    cluster: &Cluster,
    storage: &Storage,
    shipper: &WalShipper,
    op: &Operator,
    topic: &Arc<str>,
    partition: i32,
    counter: &AtomicU64,
) -> Result<bool, String> {
    let t = cluster.topology();
    let Some((epoch, lease)) = cluster.ready.get(&(topic.clone(), partition)).map(|r| *r) else {
        return Ok(false); // not led here (any more)
    };
    if lease != t.lease || !t.live {
        return Ok(false);
    }
    let Some(local) = storage.topic(topic) else { return Ok(false) };
    let Some(log) = local.partition(partition) else { return Ok(false) };
    let manifest = log.manifest();
    let end = manifest.sealed_end();
    // The first of this owner's objects a takeover still needs (read the shipper's
    // next sequence first: see PartitionLog::first_object_from).
    let next = shipper.next_seq(lease);
    let from_seq = log.first_object_from(lease, end, next);
    let etcd = &cluster.etcd;
    let hkey = history_key(topic, partition);
    let Some(entry) = etcd.get(&hkey).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let current: History = serde_json::from_slice(&entry.value).map_err(|e| e.to_string())?;
    let mine = current.topic_id == local.id
        && current.chain.last().is_some_and(|l| l.broker == cluster.node_id && l.lease == lease && l.epoch == epoch);
    // An equal sealed end is published too: compaction and retention change the
    // segments (and the log start) but not the end.
    if !mine || current.sealed.as_ref().is_some_and(|s| s.end > end) {
        return Ok(false);
    }
    let mut history = current.clone();
    history.prune_below(end);
    if let Some(last) = history.chain.last_mut() {
        last.from_seq = last.from_seq.max(from_seq);
    }
    // Nothing sealed yet (an empty partition, or one whose tail is still unsealed):
    // published only where it lets earlier tenures go or moves the first object up,
    // so an idle partition never keeps old journal objects (cluster::sweep).
    if manifest.segments.is_empty() && current.sealed.is_none() && history == current {
        return Ok(false);
    }
    let key = format!(
        "manifests/{}/{partition}/{lease:016x}-{:020}",
        local.id.simple(),
        counter.fetch_add(1, Ordering::Relaxed)
    );
    let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    op.write(&key, body).await.map_err(|e| format!("writing {key}: {e}"))?;
    let previous = history.sealed.replace(SealedPointer { key: key.clone(), end }).map(|p| p.key);
    let full = etcd.full(&hkey);
    let txn = Txn::new()
        .when([
            Compare::mod_revision(full.clone(), CompareOp::Equal, entry.mod_revision),
            Compare::lease(etcd.full(&broker_key(cluster.node_id)), CompareOp::Equal, lease),
        ])
        .and_then([TxnOp::put(full, serde_json::to_vec(&history).map_err(|e| e.to_string())?, None)]);
    let written = etcd.txn("point at the partition manifest", txn).await.map_err(|e| e.to_string())?.succeeded();
    if !written {
        let _ = op.delete(&key).await;
        return Ok(false);
    }
    log.forget_shipped_below(lease, end);
    if let Some(old) = previous {
        let _ = op.delete(&old).await;
    }
    tracing::debug!(%topic, partition, end, segments = manifest.segments.len(), "partition manifest published");
    Ok(true)
}
