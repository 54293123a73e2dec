//! Taking partitions over and handing them on. A partition's data is the journal
//! objects of its successive owners; which part of whose objects is recorded in its
//! history (`history/<topic>/<partition>` in etcd, a few tenures of ~80 bytes): each
//! tenure names the owner (broker, lease), its leader epoch, the first offset it
//! wrote, the first object of its stream that can hold its entries, and once it
//! handed the partition on, the end of what it wrote.
//!
//! # Taking over
//! When the controller assigns a partition here, this broker waits until the
//! previous owner is done with it: it closed its tenure (a clean hand-over), or its
//! lease is gone (it died or was cut off; by then it acknowledges nothing more, see
//! [`super::wal`]). It then empties its local copy, reads every tenure's entries
//! from that owner's objects (from the tenure's start, up to the tenure's end or the
//! next tenure's start, or for a dead owner the contiguous prefix of its objects),
//! appends them to its own journal with their offsets, writes its own tenure (an etcd
//! transaction guarded by the history's revision and this broker's lease) and serves.
//!
//! # Handing on
//! When a partition is assigned elsewhere, this broker fences it (the journal refuses
//! new appends), waits until what it took is answered, and closes its tenure at its
//! log end, so the successor starts at once without waiting out the lease.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use opendal::Operator;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_protocol::batch::BatchHeader;
use uuid::Uuid;

use super::etcd::{ClusterError, Etcd};
use super::membership::{broker_key, Lease};
use super::wal::{self, WalShipper};
use super::Cluster;
use crate::storage::{PartitionLog, Storage};

pub const HISTORY: &str = "history/";

/// At most this many journal objects to read makes a takeover quick (done before
/// the others of its round).
const QUICK_OBJECTS: u64 = 256;

pub fn history_key(topic: &str, partition: i32) -> String {
    format!("{HISTORY}{topic}/{partition:010}")
}

/// One owner's time with a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenure {
    pub epoch: i32,
    pub broker: i32,
    pub lease: i64,
    /// The first offset it wrote (everything before came from earlier tenures).
    pub start: i64,
    /// The first object of its stream that may hold its entries.
    pub from_seq: u64,
    /// Where it stopped, when it handed the partition on cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// The sequence past its last object that can hold the partition's entries,
    /// when it handed the partition on cleanly (a takeover reads no further).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seq: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub topic_id: Uuid,
    pub chain: Vec<Tenure>,
    /// The partition's latest manifest (sealed segments and state), if it sealed any:
    /// a takeover starts from it and reads journal objects only from `end` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPointer>,
}

/// Where a partition's manifest is, and its sealed end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPointer {
    pub key: String,
    pub end: i64,
}

impl History {
    /// Drops the tenures that ended at or below `end` (the last one always stays).
    pub fn prune_below(&mut self, end: i64) {
        while self.chain.len() > 1 {
            let first_end = self.chain[0].end.unwrap_or(self.chain[1].start);
            if first_end > end {
                break;
            }
            self.chain.remove(0);
        }
    }
}

/// A partition by topic name and index.
pub type PartitionKey = (Arc<str>, i32);

/// Partitions this broker serves: (topic, partition) -> (leader epoch, lease).
pub type Ready = Arc<DashMap<PartitionKey, (i32, i64)>>;

/// A batch found in a stream: ((broker, lease), object sequence, batch).
type StreamBatch = ((i32, i64), u64, Bytes);

/// What else must follow a partition's owner (the group coordinator, for the
/// partitions of `__consumer_offsets`).
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// The partition was rebuilt here; called before it is served.
    fn acquired<'a>(&'a self, topic: &'a str, partition: i32) -> BoxedFuture<'a>;
    /// The partition is no longer served here.
    fn released(&self, topic: &str, partition: i32);
}

/// What [`Hooks::acquired`] returns: done, or why the state did not load.
pub type BoxedFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Keeps what this broker serves equal to what it is assigned, until `shutdown`.
pub async fn run(ctx: Ctx, shutdown: CancellationToken) {
    let cluster = ctx.cluster.clone();
    let mut view = cluster.view.subscribe();
    let mut lease = cluster.lease.clone();
    // When each wanted partition was first seen (for the takeover time).
    let mut seen: HashMap<(Arc<str>, i32, i32), Instant> = HashMap::new();
    loop {
        let t = cluster.topology();
        let held = *lease.borrow_and_update();
        view.borrow_and_update();
        // Hand on what is no longer ours (or no longer ours under this lease).
        let stale: Vec<(PartitionKey, (i32, i64))> = cluster
            .ready
            .iter()
            .filter(|e| {
                let (topic, p) = e.key();
                let (epoch, l) = *e.value();
                !(t.owner(topic, *p).is_some_and(|o| o.broker == t.this && o.epoch == epoch) && l == held.id)
            })
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        for (key, (epoch, l)) in stale {
            ctx.release(&key.0, key.1, epoch, l, held).await;
        }
        let mut deferred = false;
        if held.live(Instant::now()) && t.live {
            let mut wanted = Vec::new();
            for (topic, owners) in &t.assignments {
                for (p, o) in owners.iter().enumerate() {
                    let Some(o) = o else { continue };
                    if o.broker != t.this {
                        continue;
                    }
                    let p = p as i32;
                    if cluster.ready.get(&(topic.clone(), p)).is_some_and(|r| *r == (o.epoch, held.id)) {
                        continue;
                    }
                    seen.entry((topic.clone(), p, o.epoch)).or_insert_with(Instant::now);
                    wanted.push((topic.clone(), p, o.epoch));
                }
            }
            if !wanted.is_empty() {
                match ctx.acquire_round(wanted, held, &seen).await {
                    Ok(left) => deferred = left > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "taking partitions over failed; retrying");
                        deferred = true;
                    }
                }
            }
        }
        ctx.metrics.partitions_led.set(cluster.ready.len() as i64);
        seen.retain(|(topic, p, epoch), _| cluster.ready.get(&(topic.clone(), *p)).is_none_or(|r| r.0 != *epoch));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = view.changed() => if r.is_err() { return },
            r = lease.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(if deferred { 100 } else { 1000 })) => {}
        }
    }
}

/// What the hand-over task works with.
#[derive(Debug)]
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    pub storage: Arc<Storage>,
    pub op: Operator,
    pub shipper: Arc<WalShipper>,
    pub hooks: Arc<std::sync::OnceLock<Arc<dyn Hooks>>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A partition ready to be rebuilt in this round.
struct Takeover {
    topic: Arc<str>,
    partition: i32,
    epoch: i32,
    log: Arc<PartitionLog>,
    history: History,
    /// The history key's mod revision (0: absent), for the guarded write.
    revision: i64,
}

impl Ctx {
    fn etcd(&self) -> &Etcd {
        &self.cluster.etcd
    }

    async fn read_history(&self, topic: &str, partition: i32, topic_id: Uuid) -> Result<(History, i64), ClusterError> {
        let entry = self.etcd().get(&history_key(topic, partition)).await?;
        let (history, revision) = match entry {
            Some(e) => (serde_json::from_slice::<History>(&e.value).unwrap_or_default(), e.mod_revision),
            None => (History::default(), 0),
        };
        if history.topic_id != topic_id {
            // Absent, or left from a deleted topic of the same name.
            return Ok((History { topic_id, chain: Vec::new(), sealed: None }, revision));
        }
        Ok((history, revision))
    }

    /// Whether the owner of a tenure still holds the lease it wrote under.
    async fn holds(&self, broker: i32, lease: i64) -> Result<bool, ClusterError> {
        Ok(self.etcd().get(&broker_key(broker)).await?.is_some_and(|e| e.lease == lease))
    }

    /// Rebuilds what it can of `wanted` now; returns how many must wait (their
    /// previous owner is still on them, or the catalog has not got the topic yet).
    async fn acquire_round(
        &self,
        wanted: Vec<(Arc<str>, i32, i32)>,
        held: Lease,
        seen: &HashMap<(Arc<str>, i32, i32), Instant>,
    ) -> Result<usize, ClusterError> {
        let me = self.cluster.node_id;
        let mut left = 0;
        let mut ready_now = Vec::new();
        let mut alive: HashMap<(i32, i64), bool> = HashMap::new();
        for (topic, partition, epoch) in wanted {
            let Some(local) = self.storage.topic(&topic) else {
                left += 1;
                continue;
            };
            let Some(log) = local.partition(partition).cloned() else {
                left += 1;
                continue;
            };
            let (history, revision) = self.read_history(&topic, partition, local.id).await?;
            if let Some(last) = history.chain.last() {
                let mine = last.broker == me && last.lease == held.id;
                if last.end.is_none() && !mine {
                    let key = (last.broker, last.lease);
                    let holding = match alive.get(&key) {
                        Some(h) => *h,
                        None => {
                            let h = self.holds(last.broker, last.lease).await?;
                            alive.insert(key, h);
                            h
                        }
                    };
                    if holding {
                        left += 1;
                        continue;
                    }
                }
            }
            ready_now.push(Takeover { topic, partition, epoch, log, history, revision });
        }
        if ready_now.is_empty() {
            return Ok(left);
        }
        // Partitions handed over cleanly with few objects to read go first, so a
        // quick hand-over never waits for a long replay from a dead owner's stream.
        let (quick, slow): (Vec<Takeover>, Vec<Takeover>) = ready_now.into_iter().partition(|t| {
            t.history
                .chain
                .iter()
                .all(|x| x.end.is_some() && x.end_seq.is_some_and(|e| e.saturating_sub(x.from_seq) <= QUICK_OBJECTS))
        });
        for group in [quick, slow] {
            if !group.is_empty() {
                left += self.take_over(group, held, seen).await?;
            }
        }
        Ok(left)
    }

    /// Fences, drains and rebuilds `ready_now` from their streams (each read once)
    /// and serves them; returns how many must be tried again.
    async fn take_over(
        &self,
        ready_now: Vec<Takeover>,
        held: Lease,
        seen: &HashMap<(Arc<str>, i32, i32), Instant>,
    ) -> Result<usize, ClusterError> {
        let me = self.cluster.node_id;
        let mut left = 0;
        // Fence and drain the local copies, then read every stream needed once.
        for t in &ready_now {
            t.log.set_fenced(true);
        }
        let drained = Instant::now() + Duration::from_secs(10);
        while ready_now.iter().any(|t| t.log.unpublished() > 0) && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(partitions = ready_now.len(), "taking partitions over: drained");
        // Per stream: from the first object any tenure needs, up to the last (to the
        // stream's end where a tenure is open).
        // An open tenure of another stream (its owner died or was cut off holding
        // the partition) needs nothing below that stream's floor.
        let mut floors: HashMap<(i32, i64), u64> = HashMap::new();
        for t in &ready_now {
            for tenure in t.history.chain.iter().filter(|x| x.end.is_none() && (x.broker, x.lease) != (me, held.id)) {
                if let std::collections::hash_map::Entry::Vacant(v) = floors.entry((tenure.broker, tenure.lease)) {
                    let floor = wal::read_floor(&self.op, tenure.broker, tenure.lease)
                        .await
                        .map_err(|e| ClusterError::Etcd { op: "read a journal stream's floor", message: e })?;
                    v.insert(floor);
                }
            }
        }
        let mut streams: HashMap<(i32, i64), (u64, Option<u64>)> = HashMap::new();
        for t in &ready_now {
            for tenure in &t.history.chain {
                let stream = (tenure.broker, tenure.lease);
                let from = match (tenure.end, floors.get(&stream)) {
                    (None, Some(&floor)) => tenure.from_seq.max(floor),
                    _ => tenure.from_seq,
                };
                let range = streams.entry(stream).or_insert((from, tenure.end_seq));
                range.0 = range.0.min(from);
                range.1 = range.1.zip(tenure.end_seq).map(|(a, b)| a.max(b));
            }
        }
        let reading = Instant::now();
        let mut objects_read = 0;
        let mut found: HashMap<(Uuid, i32), Vec<StreamBatch>> = HashMap::new();
        let wanted_ids: HashSet<(Uuid, i32)> = ready_now.iter().map(|t| (t.history.topic_id, t.partition)).collect();
        for ((broker, lease), (from, until)) in &streams {
            let objects = wal::read_stream(&self.op, *broker, *lease, *from, *until)
                .await
                .map_err(|e| ClusterError::Etcd { op: "read journal objects", message: e })?;
            objects_read += objects.len();
            for (header, batches) in objects {
                for b in batches {
                    if wanted_ids.contains(&(b.topic, b.partition)) {
                        found.entry((b.topic, b.partition)).or_default().push(((*broker, *lease), header.seq, b.batch));
                    }
                }
            }
        }
        tracing::info!(
            partitions = ready_now.len(),
            streams = streams.len(),
            objects = objects_read,
            batches = found.values().map(Vec::len).sum::<usize>(),
            ms = reading.elapsed().as_millis() as u64,
            "journal objects read for the takeover"
        );
        for t in ready_now {
            if t.log.unpublished() > 0 {
                tracing::warn!(topic = %t.topic, partition = t.partition, "appends of the previous copy still pending; retrying the takeover");
                left += 1;
                continue;
            }
            let manifest = match &t.history.sealed {
                None => None,
                Some(p) => match read_manifest(&self.op, &p.key).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(topic = %t.topic, partition = t.partition, error = %e, "cannot read the partition's manifest; retrying");
                        left += 1;
                        continue;
                    }
                },
            };
            // Held until the tenure naming it is written (or this takeover gives up).
            let pin = self.shipper.pin(held.id);
            let from_seq = pin.seq;
            self.storage.reset_partition(&t.log, manifest.as_ref());
            let sealed_end = manifest.as_ref().map_or(0, |m| m.sealed_end());
            let entries = found.remove(&(t.history.topic_id, t.partition)).unwrap_or_default();
            let batches = match rebuild(&t.history, &entries, sealed_end) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(topic = %t.topic, partition = t.partition, error = %e, "cannot rebuild the partition from its journal objects");
                    left += 1;
                    continue;
                }
            };
            let count = batches.len();
            let start = match self.append_recovered(&t.log, batches).await {
                Ok(end) => end,
                Err(e) => {
                    tracing::warn!(topic = %t.topic, partition = t.partition, error = %e, "cannot append the recovered batches; retrying");
                    left += 1;
                    continue;
                }
            };
            let mut history = t.history.clone();
            if let Some(last) = history.chain.last_mut() {
                last.end.get_or_insert(start);
            }
            history.chain.push(Tenure {
                epoch: t.epoch,
                broker: me,
                lease: held.id,
                start,
                from_seq,
                end: None,
                end_seq: None,
            });
            let key = self.etcd().full(&history_key(&t.topic, t.partition));
            let guard = if t.revision == 0 {
                Compare::create_revision(key.clone(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(key.clone(), CompareOp::Equal, t.revision)
            };
            let mine = Compare::lease(self.etcd().full(&broker_key(me)), CompareOp::Equal, held.id);
            let value = serde_json::to_vec(&history).expect("history serialises");
            let txn = Txn::new().when([guard, mine]).and_then([TxnOp::put(key, value, None)]);
            if !self.etcd().txn("write partition history", txn).await?.succeeded() {
                left += 1;
                continue;
            }
            t.log.set_leader_epochs(history.chain.iter().map(|x| (x.epoch, x.start)).collect());
            if let Some(h) = self.hooks.get() {
                if let Err(e) = h.acquired(&t.topic, t.partition).await {
                    tracing::warn!(topic = %t.topic, partition = t.partition, error = %e, "taken over but its state did not load; retrying");
                    left += 1;
                    continue;
                }
            }
            t.log.set_fenced(false);
            self.cluster.ready.insert((t.topic.clone(), t.partition), (t.epoch, held.id));
            // A manifest now lets the earlier tenures go (even with nothing sealed
            // since), so their owners' journal objects can be swept.
            if let Some(hook) = self.storage.seal_hook.get() {
                hook.sealed(&t.log);
            }
            self.metrics.partitions_recovered.inc();
            if let Some(first) = seen.get(&(t.topic.clone(), t.partition, t.epoch)) {
                self.metrics.recovery_seconds.observe(first.elapsed().as_secs_f64());
            }
            tracing::info!(topic = %t.topic, partition = t.partition, epoch = t.epoch, sealed_end, start, batches = count, "partition taken over");
        }
        Ok(left)
    }

    /// Appends recovered batches (in order, a bounded amount at a time) and returns
    /// the log end after them.
    async fn append_recovered(&self, log: &Arc<PartitionLog>, batches: Vec<Bytes>) -> Result<i64, String> {
        let mut chunk: Vec<(BatchHeader, Bytes)> = Vec::new();
        let mut bytes = 0;
        let mut pending = Vec::new();
        let flush = |chunk: Vec<(BatchHeader, Bytes)>| self.storage.submit_recovered(log, chunk);
        for b in batches {
            let h = BatchHeader::parse(&b).map_err(|e| e.to_string())?;
            bytes += b.len();
            chunk.push((h, b));
            if bytes >= 1 << 20 {
                pending.push(flush(std::mem::take(&mut chunk)).await.map_err(|e| e.to_string())?);
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            pending.push(flush(chunk).await.map_err(|e| e.to_string())?);
        }
        for p in pending {
            p.await.map_err(|_| "journal closed".to_string())?.map_err(|e| e.to_string())?;
        }
        Ok(log.state.lock().next_offset)
    }

    /// Hands a partition on: fence, let what was taken be answered, close the tenure.
    async fn release(&self, topic: &Arc<str>, partition: i32, epoch: i32, lease: i64, held: Lease) {
        self.cluster.ready.remove(&(topic.clone(), partition));
        let Some(log) = self.storage.topic(topic).and_then(|t| t.partition(partition).cloned()) else {
            return;
        };
        log.set_fenced(true);
        if let Some(h) = self.hooks.get() {
            h.released(topic, partition);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.unpublished() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if log.unpublished() > 0 || lease != held.id || !held.live(Instant::now()) {
            // Not cleanly: the successor waits for the lease to go instead.
            tracing::info!(%topic, partition, "partition left without a hand-over");
            if log.unpublished() == 0 {
                self.storage.reset_partition(&log, None);
            }
            return;
        }
        let end = log.state.lock().next_offset;
        let Some(local) = self.storage.topic(topic) else { return };
        for _ in 0..5 {
            let Ok((mut history, revision)) = self.read_history(topic, partition, local.id).await else {
                continue;
            };
            let Some(last) = history.chain.last_mut() else { return };
            if last.broker != self.cluster.node_id || last.lease != lease || last.epoch != epoch {
                return;
            }
            last.end = Some(end);
            // Every object with this partition's entries is numbered below the next
            // (nothing of it is unanswered, and an object is numbered before any of
            // its appends is answered), and none before the first holding a batch
            // past both the tenure's start and the sealed end pointed at.
            let next = self.shipper.next_seq(lease);
            let needed = history.sealed.as_ref().map_or(last.start, |p| p.end.max(last.start));
            last.from_seq = last.from_seq.max(log.first_object_from(lease, needed, next));
            last.end_seq = Some(next);
            let key = self.etcd().full(&history_key(topic, partition));
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
                .and_then([TxnOp::put(key, serde_json::to_vec(&history).expect("history serialises"), None)]);
            match self.etcd().txn("close partition tenure", txn).await {
                Ok(r) if r.succeeded() => {
                    self.metrics.partitions_handed_over.inc();
                    tracing::info!(%topic, partition, epoch, end, "partition handed over");
                    // The local copy is the successor's now: drop it, so the local
                    // journal can be trimmed past it.
                    self.storage.reset_partition(&log, None);
                    return;
                }
                _ => continue,
            }
        }
    }
}

async fn read_manifest(op: &Operator, key: &str) -> Result<crate::storage::Manifest, String> {
    let data = op.read(key).await.map_err(|e| format!("reading {key}: {e}"))?;
    serde_json::from_slice(&data.to_bytes()).map_err(|e| format!("{key}: {e}"))
}

/// The partition's batches from `sealed_end` on, in offset order, from its tenures' entries (each with
/// the stream and sequence it was found in).
fn rebuild(history: &History, entries: &[StreamBatch], sealed_end: i64) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut expected = sealed_end;
    for (k, tenure) in history.chain.iter().enumerate() {
        let end = tenure.end.or(history.chain.get(k + 1).map(|n| n.start));
        if end.is_some_and(|e| e <= expected) {
            // Wholly below the sealed end.
            continue;
        }
        if expected < tenure.start {
            return Err(format!(
                "tenure of broker {} (epoch {}) starts at {} but the log before it ends at {expected}",
                tenure.broker, tenure.epoch, tenure.start
            ));
        }
        for (stream, seq, batch) in entries {
            if *stream != (tenure.broker, tenure.lease) || *seq < tenure.from_seq {
                continue;
            }
            if end.is_some_and(|e| expected >= e) {
                break;
            }
            let h = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
            if h.base_offset < expected {
                continue;
            }
            if h.base_offset > expected {
                break;
            }
            expected = h.last_offset() + 1;
            out.push(batch.clone());
        }
        if end.is_some_and(|e| expected < e) {
            return Err(format!(
                "tenure of broker {} (epoch {}) ends at {} but its objects end at {expected}",
                tenure.broker,
                tenure.epoch,
                end.unwrap_or_default()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, count: i32) -> Bytes {
        use tributary_protocol::build::{build, BatchSpec};
        let records: Vec<_> = (0..count).map(|i| (None, Some(Bytes::from(format!("v{i}"))))).collect();
        let mut b = build(&BatchSpec::plain(0), &records).unwrap().to_vec();
        tributary_protocol::batch::set_base_offset(&mut b, base);
        Bytes::from(b)
    }

    fn tenure(broker: i32, lease: i64, start: i64, from_seq: u64, end: Option<i64>) -> Tenure {
        Tenure { epoch: broker, broker, lease, start, from_seq, end, end_seq: None }
    }

    #[test]
    fn a_log_is_rebuilt_from_its_tenures_only() {
        // Broker 1 wrote 0..4 and handed on at 4; broker 2 re-shipped 0..4 while
        // taking over, wrote 4..6 and died; broker 1 (same lease) took it back at 6,
        // and its stream holds a stale unacknowledged batch at 4 before from_seq.
        let history = History {
            topic_id: Uuid::nil(),
            chain: vec![tenure(1, 10, 0, 0, Some(4)), tenure(2, 20, 4, 0, None), tenure(1, 10, 6, 5, None)],
            sealed: None,
        };
        let entries = vec![
            ((1, 10), 0, batch(0, 2)),
            ((1, 10), 1, batch(2, 2)),
            ((2, 20), 0, batch(0, 2)),
            ((2, 20), 0, batch(2, 2)),
            ((2, 20), 1, batch(4, 2)),
            ((2, 20), 2, batch(6, 3)),
            ((1, 10), 3, batch(4, 9)),
            ((1, 10), 5, batch(0, 2)),
            ((1, 10), 6, batch(6, 1)),
        ];
        let out = rebuild(&history, &entries, 0).unwrap();
        let bases: Vec<i64> = out.iter().map(|b| BatchHeader::parse(b).unwrap().base_offset).collect();
        // Broker 2's batch at 6 was written after broker 1 took over at 6 (its
        // tenure ends at the next tenure's start), so it is not part of the log.
        assert_eq!(bases, vec![0, 2, 4, 6]);
        // From a manifest sealed to 4: only what follows it.
        let out = rebuild(&history, &entries, 4).unwrap();
        let bases: Vec<i64> = out.iter().map(|b| BatchHeader::parse(b).unwrap().base_offset).collect();
        assert_eq!(bases, vec![4, 6]);
        let mut pruned = history.clone();
        pruned.prune_below(4);
        assert_eq!(pruned.chain.len(), 2, "the tenure that ended at 4 is no longer needed");
        pruned.prune_below(100);
        assert_eq!(pruned.chain.len(), 1, "the last tenure always stays");
    }

    #[test]
    fn a_missing_part_is_an_error_not_a_gap() {
        let history = History { topic_id: Uuid::nil(), chain: vec![tenure(1, 10, 0, 0, Some(6))], sealed: None };
        let entries = vec![((1, 10), 0, batch(0, 2))];
        assert!(rebuild(&history, &entries, 0).is_err());
        let history = History { topic_id: Uuid::nil(), chain: vec![tenure(1, 10, 3, 0, None)], sealed: None };
        assert!(rebuild(&history, &[], 0).is_err());
    }
}
