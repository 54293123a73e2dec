//! The transaction coordinator (DESIGN §6): transactional.id -> producer id and
//! epoch, the partitions and groups of the open transaction, and its two-phase end.
//!
//! ```text
//!   Empty ──AddPartitions/AddOffsets──▶ Ongoing ──EndTxn──▶ PrepareCommit|PrepareAbort
//!     ▲                                    │ timeout,          │ markers written to every
//!     │                                    │ InitProducerId    │ partition (durable)
//!     └──────── CompleteCommit|CompleteAbort ◀─────────────────┘
//! ```
//! Every state change is a record of the internal `__transaction_state` topic,
//! durable before it is acted on or answered; at start the topic is replayed and a
//! transaction found in a Prepare state is completed (its markers written again: a
//! marker for a producer with nothing open changes nothing). An open transaction
//! past its timeout, or one whose transactional.id is initialised again (a new
//! producer instance), is aborted with a bumped epoch, which fences the old producer
//! in every partition it wrote to.

mod markers;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::build::{build, BatchSpec};

pub use markers::{BoxedFuture, Marker, Routes};

use crate::clock::Clock;
use crate::coordinator::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::errors::{self, Error};
use crate::storage::{PartitionLog, Storage};
pub(crate) use state::{TxnMeta, TxnState};

/// Name of the internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Partitions of the transaction state topic.
pub const TXN_PARTITIONS: i32 = 8;

/// The `__transaction_state` partition holding transactional id `id` (the topic
/// always has [`TXN_PARTITIONS`]).
pub fn partition_index(id: &str) -> i32 {
    (crc32c::crc32c(id.as_bytes()) % TXN_PARTITIONS as u32) as i32
}

/// The coordinator.
#[derive(Debug)]
pub struct TxnCoordinator {
    storage: Arc<Storage>,
    groups: Arc<GroupCoordinator>,
    txns: DashMap<String, Arc<Mutex<Option<TxnMeta>>>>,
    clock: Arc<dyn Clock>,
    loaded: AtomicBool,
    /// Cluster mode: where partitions are led and the other brokers.
    routes: markers::RoutesCell,
    /// Cluster mode: `__transaction_state` partitions whose ids are loaded here.
    partitions_loaded: DashMap<i32, ()>,
    /// Longest transaction timeout a producer may ask for (transaction.max.timeout.ms).
    max_timeout_ms: i32,
    /// transactional.id.expiration.ms, and how often ids are checked against it.
    id_expiration: parking_lot::Mutex<(i64, Duration)>,
}

impl TxnCoordinator {
    pub fn new(
        storage: Arc<Storage>,
        groups: Arc<GroupCoordinator>,
        clock: Arc<dyn Clock>,
        max_timeout_ms: i32,
    ) -> Arc<Self> {
        Arc::new(TxnCoordinator {
            max_timeout_ms,
            storage,
            groups,
            txns: DashMap::new(),
            clock,
            loaded: AtomicBool::new(false),
            routes: Default::default(),
            partitions_loaded: DashMap::new(),
            id_expiration: parking_lot::Mutex::new((7 * 24 * 3600 * 1000, Duration::from_secs(3600))),
        })
    }

    /// `transactional.id.expiration.ms` and how often ids are checked against it
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub fn set_id_expiration(&self, expiration_ms: i64, every: Duration) {
        *self.id_expiration.lock() = (expiration_ms, every);
    }

    /// Cluster mode: a transactional id is coordinated where its
    /// `__transaction_state` partition is led, and markers go to other brokers.
    pub fn set_routes(&self, routes: Arc<dyn Routes>) {
        let _ = self.routes.set(routes);
    }

    /// The `__transaction_state` partition holding `id`.
    pub(crate) fn partition_of(&self, id: &str) -> i32 {
        partition_index(id)
    }

    /// Loaded, and the coordinator of `id`: its coordinator epoch (the leader epoch
    /// of its `__transaction_state` partition; 0 on a single node). Otherwise
    /// NOT_COORDINATOR (ask FindCoordinator again) or COORDINATOR_LOAD_IN_PROGRESS.
    pub(crate) fn serves(&self, id: &str) -> Result<i32, Error> {
        self.ready()?;
        let Some(routes) = self.routes.get() else { return Ok(0) };
        let partition = self.partition_of(id);
        match routes.coordinates(partition) {
            Some(epoch) if self.partitions_loaded.contains_key(&partition) => Ok(epoch),
            Some(_) => Err(Error::CoordinatorLoadInProgress),
            None => Err(Error::NotCoordinator),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn ready(&self) -> Result<(), Error> {
        if self.is_loaded() {
            Ok(())
        } else {
            Err(Error::CoordinatorLoadInProgress)
        }
    }

    fn entry(&self, id: &str) -> Arc<Mutex<Option<TxnMeta>>> {
        self.txns.entry(id.to_string()).or_insert_with(|| Arc::new(Mutex::new(None))).clone()
    }

    /// Replays `__transaction_state` (creating it on first start) and completes
    /// transactions that were ending when the broker stopped. (Cluster mode: the
    /// local copy starts empty; each partition is loaded as it is taken over.)
    pub async fn load(&self) -> anyhow::Result<()> {
        let topic = self.storage.internal_topic(TXN_TOPIC, TXN_PARTITIONS).await?;
        let mut latest = BTreeMap::new();
        for partition in &topic.partitions {
            self.replay_into(partition, &mut latest).await?;
        }
        for (id, meta) in latest.into_iter().filter(|(_, m)| m.is_some()) {
            self.txns.insert(id, Arc::new(Mutex::new(meta)));
        }
        self.loaded.store(true, Ordering::Release);
        self.finish_ending().await;
        tracing::info!(transactions = self.txns.len(), "transaction coordinator loaded");
        Ok(())
    }

    /// The latest state of every transactional id in one partition.
    async fn replay_into(
        &self,
        partition: &Arc<PartitionLog>,
        latest: &mut BTreeMap<String, Option<TxnMeta>>,
    ) -> anyhow::Result<()> {
        self.storage
            .replay_records(partition, |_, _, r| {
                if let Some(id) = r.key.and_then(state::decode_key) {
                    latest.insert(id, r.value.and_then(state::decode_value));
                }
            })
            .await?;
        Ok(())
    }

    /// Cluster mode: this broker now owns `__transaction_state` partition `index`
    /// (rebuilt from the object store): its transactional ids are coordinated here.
    /// Transactions found ending are finished by the timer. Returns the ids loaded.
    pub async fn load_partition(&self, index: i32) -> anyhow::Result<usize> {
        self.unload_partition(index);
        let topic = self.storage.topic(TXN_TOPIC).ok_or_else(|| anyhow::anyhow!("{TXN_TOPIC} missing"))?;
        let partition = topic.partition(index).ok_or_else(|| anyhow::anyhow!("{TXN_TOPIC}-{index} missing"))?;
        let mut latest = BTreeMap::new();
        self.replay_into(partition, &mut latest).await?;
        latest.retain(|_, m| m.is_some());
        let n = latest.len();
        for (id, meta) in latest {
            self.txns.insert(id, Arc::new(Mutex::new(meta)));
        }
        self.partitions_loaded.insert(index, ());
        Ok(n)
    }

    /// Cluster mode: `__transaction_state` partition `index` went to another broker.
    pub fn unload_partition(&self, index: i32) {
        self.partitions_loaded.remove(&index);
        self.txns.retain(|id, _| self.partition_of(id) != index);
    }

    /// Completes transactions left in a Prepare state (found at load or takeover,
    /// or whose markers at other brokers took longer than EndTxn waits), skipping
    /// those a request is working on.
    async fn finish_ending(&self) {
        let ids: Vec<String> = self.txns.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            let Ok(coordinator_epoch) = self.serves(&id) else { continue };
            let Some(entry) = self.txns.get(&id).map(|e| e.clone()) else { continue };
            let Ok(mut guard) = entry.try_lock() else { continue };
            let Some(meta) = guard.as_mut() else { continue };
            if !matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                continue;
            }
            let commit = meta.state == TxnState::PrepareCommit;
            tracing::info!(transactional_id = %id, commit, "completing a transaction that was ending");
            if let Err(e) = self.complete(&id, meta, commit, coordinator_epoch).await {
                tracing::warn!(transactional_id = %id, error = ?e, "cannot complete transaction yet");
            }
        }
    }

    /// Writes one state record for `id` and waits until it is durable.
    async fn persist(&self, id: &str, meta: &TxnMeta) -> Result<(), Error> {
        let topic = self.storage.topic(TXN_TOPIC).ok_or(Error::CoordinatorNotAvailable)?;
        let partition = topic.partition(self.partition_of(id)).ok_or(Error::CoordinatorNotAvailable)?;
        let record = (Some(state::encode_key(id)), Some(state::encode_value(meta)));
        self.append_batch(partition, &BatchSpec::plain(self.clock.now_ms()), &[record]).await
    }

    async fn append_batch(
        &self,
        partition: &Arc<crate::storage::PartitionLog>,
        spec: &BatchSpec,
        records: &[(Option<Bytes>, Option<Bytes>)],
    ) -> Result<(), Error> {
        let batch = build(spec, records).map_err(|_| Error::UnknownServerError)?;
        let header = BatchHeader::parse(&batch).map_err(|_| Error::UnknownServerError)?;
        let pending =
            self.storage.submit(partition, vec![(header, batch)], false).await.map_err(|e| errors::coordinator(&e))?;
        pending.await.map_err(|_| Error::CoordinatorNotAvailable)?.map_err(|e| errors::coordinator(&e))?;
        Ok(())
    }

    // ---- the APIs ---------------------------------------------------------------

    /// InitProducerId with a transactional.id: a producer id and a bumped epoch;
    /// an open transaction of an earlier instance is aborted first (fencing it).
    pub(crate) async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), Error> {
        if id.is_empty() {
            return Err(Error::InvalidRequest);
        }
        let coordinator_epoch = self.serves(id)?;
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(Error::InvalidTransactionTimeout);
        }
        let entry = self.entry(id);
        let mut guard = entry.lock().await;
        let now = self.clock.now_ms();
        let mut meta = match guard.take() {
            Some(m) => m,
            None => {
                let pid = self.storage.allocate_producer_id().await.map_err(|e| errors::coordinator(&e))?;
                TxnMeta::new(pid, timeout_ms, now)
            }
        };
        if let Some((pid, epoch)) = expected {
            // KIP-360: a producer recovering from a fatal error names its id and epoch.
            if pid != meta.producer_id || (epoch != meta.producer_epoch && meta.producer_epoch >= 0) {
                *guard = Some(meta);
                return Err(Error::ProducerFenced);
            }
        }
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            // Markers of the last transaction are still being written (Kafka answers
            // the same); the client retries.
            *guard = Some(meta);
            return Err(Error::ConcurrentTransactions);
        }
        if meta.state == TxnState::Ongoing {
            // A new instance of this transactional.id: abort what the old one left
            // open, with a bumped epoch that fences it.
            meta.bump_epoch(self.storage.allocate_producer_id().await.map_err(|e| errors::coordinator(&e))?);
            meta.state = TxnState::PrepareAbort;
            if let Err(e) = self.persist(id, &meta).await {
                *guard = Some(meta);
                return Err(e);
            }
            let completed = self.complete(id, &mut meta, false, coordinator_epoch).await;
            let still_ending = meta.state == TxnState::PrepareAbort;
            *guard = Some(meta);
            completed?;
            if still_ending {
                return Err(Error::ConcurrentTransactions);
            }
            meta = guard.take().expect("just put back");
        }
        meta.bump_epoch(self.storage.allocate_producer_id().await.map_err(|e| errors::coordinator(&e))?);
        meta.prev_producer_id = None;
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.groups.clear();
        meta.updated_at = now;
        let result = self.persist(id, &meta).await.map(|_| (meta.producer_id, meta.producer_epoch));
        *guard = Some(meta);
        result
    }

    fn check_producer(meta: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), Error> {
        if producer_id != meta.producer_id {
            return Err(Error::InvalidProducerIdMapping);
        }
        if epoch != meta.producer_epoch {
            return Err(Error::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn: every partition, or none (with the reason per partition).
    pub(crate) async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Vec<((String, i32), Result<(), Error>)> {
        let all = |e: Error, ps: Vec<(String, i32)>| ps.into_iter().map(|p| (p, Err(e))).collect();
        if let Err(e) = self.serves(id) {
            return all(e, partitions);
        }
        let unknown: Vec<bool> = partitions
            .iter()
            .map(|(t, p)| self.storage.topic(t).and_then(|topic| topic.partition(*p).cloned()).is_none())
            .collect();
        if unknown.iter().any(|u| *u) {
            return partitions
                .into_iter()
                .zip(unknown)
                .map(|(p, u)| (p, Err(if u { Error::UnknownTopicOrPartition } else { Error::OperationNotAttempted })))
                .collect();
        }
        match self.add(id, producer_id, epoch, partitions.clone(), None).await {
            Ok(()) => partitions.into_iter().map(|p| (p, Ok(()))).collect(),
            Err(e) => all(e, partitions),
        }
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    pub(crate) async fn add_offsets(&self, id: &str, producer_id: i64, epoch: i16, group: &str) -> Result<(), Error> {
        self.serves(id)?;
        let partition = self.groups.offsets_partition_index(group)?;
        self.add(id, producer_id, epoch, vec![(OFFSETS_TOPIC.to_string(), partition)], Some(group.to_string())).await
    }

    async fn add(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        group: Option<String>,
    ) -> Result<(), Error> {
        let entry = self.txns.get(id).map(|e| e.clone()).ok_or(Error::InvalidProducerIdMapping)?;
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().ok_or(Error::InvalidProducerIdMapping)?;
        Self::check_producer(meta, producer_id, epoch)?;
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(Error::ConcurrentTransactions);
        }
        let ongoing = meta.state == TxnState::Ongoing;
        let already = |p: &(String, i32)| ongoing && meta.partitions.contains(p);
        let new: BTreeSet<(String, i32)> = partitions.into_iter().filter(|p| !already(p)).collect();
        let new_group = group.filter(|g| !(ongoing && meta.groups.contains(g)));
        if ongoing && new.is_empty() && new_group.is_none() {
            return Ok(());
        }
        let mut next = meta.clone();
        if !ongoing {
            // The first partition of a new transaction.
            next.state = TxnState::Ongoing;
            next.started_at = self.clock.now_ms();
            next.partitions.clear();
            next.groups.clear();
        }
        next.partitions.extend(new);
        next.groups.extend(new_group);
        next.updated_at = self.clock.now_ms();
        self.persist(id, &next).await?;
        *meta = next;
        Ok(())
    }

    /// Whether `producer_id`/`epoch` is the current producer of `id` in a
    /// transaction that includes `group` (for TxnOffsetCommit).
    pub(crate) async fn check_offsets_in_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), Error> {
        match (self.serves(id), self.routes.get()) {
            (Err(Error::NotCoordinator), Some(routes)) => {
                // Coordinated elsewhere: its open transaction must hold the group's
                // offsets partition (what AddOffsetsToTxn added).
                let partition = (OFFSETS_TOPIC.to_string(), self.groups.offsets_partition_index(group)?);
                return routes.verify(id.to_string(), producer_id, epoch, vec![partition], true).await;
            }
            (r, _) => r?,
        };
        let entry = self.txns.get(id).map(|e| e.clone()).ok_or(Error::InvalidProducerIdMapping)?;
        let guard = entry.lock().await;
        let meta = guard.as_ref().ok_or(Error::InvalidProducerIdMapping)?;
        Self::check_producer(meta, producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(Error::InvalidTxnState);
        }
        Ok(())
    }

    /// Whether a transactional batch may be written into `partition` (the Produce
    /// check): asked of this coordinator, or (cluster mode) of the broker that
    /// coordinates `id`, unless the producer already has a transaction open in the
    /// partition at this epoch, which its coordinator will end there.
    pub(crate) async fn verify_write(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: &PartitionLog,
    ) -> Result<(), Error> {
        let index = partition.index;
        match (self.serves(id), self.routes.get()) {
            (Err(Error::NotCoordinator), Some(routes)) => {
                if partition.has_open_transaction(producer_id, epoch) {
                    return Ok(());
                }
                retry_later(
                    routes.verify(id.to_string(), producer_id, epoch, vec![(topic.to_string(), index)], true).await,
                )
            }
            (Err(e), _) => Err(e),
            (Ok(_), _) => self.verify(id, producer_id, epoch, topic, index).await,
        }
    }

    /// Whether a transactional batch of `producer_id`/`epoch` may go to a partition:
    /// the producer is current and its open transaction holds the partition.
    pub(crate) async fn verify(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), Error> {
        let entry = self.txns.get(id).map(|e| e.clone()).ok_or(Error::InvalidProducerIdMapping)?;
        let guard = entry.lock().await;
        let meta = guard.as_ref().ok_or(Error::InvalidProducerIdMapping)?;
        Self::check_producer(meta, producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&(topic.to_string(), partition)) {
            return Err(Error::InvalidTxnState);
        }
        Ok(())
    }

    /// EndTxn: commit or abort, answered once every marker is durable.
    pub(crate) async fn end(&self, id: &str, producer_id: i64, epoch: i16, commit: bool) -> Result<(), Error> {
        let coordinator_epoch = self.serves(id)?;
        let entry = self.txns.get(id).map(|e| e.clone()).ok_or(Error::InvalidProducerIdMapping)?;
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().ok_or(Error::InvalidProducerIdMapping)?;
        Self::check_producer(meta, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retried EndTxn whose first answer was lost. With nothing begun (Empty)
            // the answer is Kafka's INVALID_TXN_STATE (clients end an empty
            // transaction without asking).
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {}
            _ => return Err(Error::InvalidTxnState),
        }
        let mut next = meta.clone();
        next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        next.updated_at = self.clock.now_ms();
        self.persist(id, &next).await?;
        *meta = next;
        self.complete(id, meta, commit, coordinator_epoch).await
    }

    /// Writes the markers of a transaction in a Prepare state, then completes it.
    /// Cluster mode: when markers at other brokers take longer than a moment, the
    /// transaction stays in its Prepare state (its outcome durable) and the timer
    /// finishes it.
    async fn complete(&self, id: &str, meta: &mut TxnMeta, commit: bool, coordinator_epoch: i32) -> Result<(), Error> {
        let marker =
            Marker { producer_id: meta.producer_id, producer_epoch: meta.producer_epoch, commit, coordinator_epoch };
        if !self.write_markers(marker, &meta.partitions).await? {
            return Ok(());
        }
        let mut next = meta.clone();
        next.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        next.updated_at = self.clock.now_ms();
        if let Some(fresh) = next.next_producer_id.take() {
            // Transactions v2 with the epoch space used up: the markers carried the
            // old id at the last epoch; the producer goes on with a fresh id.
            next.prev_producer_id = Some(next.producer_id);
            next.producer_id = fresh;
            next.producer_epoch = 0;
        }
        self.persist(id, &next).await?;
        *meta = next;
        Ok(())
    }

    // ---- transactions v2 (KIP-890 part 2) ------------------------------------------

    /// Produce v12: a transactional batch joins its producer's transaction in
    /// `partition` by itself (no AddPartitionsToTxn), added here or (cluster mode) by
    /// the broker that coordinates `id`. Errors the producer retries on (the
    /// coordinator moving, the last transaction's markers still being written) come
    /// back as NOT_ENOUGH_REPLICAS, as Kafka answers a write it cannot add yet.
    pub(crate) async fn add_write(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: &PartitionLog,
    ) -> Result<(), Error> {
        let index = partition.index;
        let added = match (self.serves(id), self.routes.get()) {
            (Err(Error::NotCoordinator), Some(routes)) => {
                if partition.has_open_transaction(producer_id, epoch) {
                    return Ok(());
                }
                routes.verify(id.to_string(), producer_id, epoch, vec![(topic.to_string(), index)], false).await
            }
            (Err(e), _) => Err(e),
            (Ok(_), _) => self.add(id, producer_id, epoch, vec![(topic.to_string(), index)], None).await,
        };
        retry_later(added)
    }

    /// TxnOffsetCommit v5: the group's offsets partition joins the producer's
    /// transaction by itself (no AddOffsetsToTxn). The last transaction's markers
    /// still being written comes back as COORDINATOR_LOAD_IN_PROGRESS, which the
    /// producer retries on.
    pub(crate) async fn add_offsets_implicitly(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), Error> {
        let partition = (OFFSETS_TOPIC.to_string(), self.groups.offsets_partition_index(group)?);
        let added = match (self.serves(id), self.routes.get()) {
            (Err(Error::NotCoordinator), Some(routes)) => {
                routes.verify(id.to_string(), producer_id, epoch, vec![partition], false).await
            }
            (Err(e), _) => Err(e),
            (Ok(_), _) => self.add(id, producer_id, epoch, vec![partition], Some(group.to_string())).await,
        };
        match added {
            Err(Error::ConcurrentTransactions) => Err(Error::CoordinatorLoadInProgress),
            other => other,
        }
    }

    /// EndTxn v5: commit or abort with the epoch bumped, so that nothing the
    /// producer sent at its old epoch can land after the markers (they carry the new
    /// one); answers the producer id and epoch to go on with: the same id at the
    /// next epoch, or, when the epoch space is used up, the markers carry the last
    /// epoch and the producer goes on with a fresh id at epoch 0. Ending a
    /// transaction that holds nothing bumps the epoch too (the producer starts its
    /// sequences again after every end). A retry whose first answer was lost (the
    /// epoch one below, the same outcome) gets the same answer.
    pub(crate) async fn end_v2(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(i64, i16), Error> {
        let coordinator_epoch = self.serves(id)?;
        let entry = self.txns.get(id).map(|e| e.clone()).ok_or(Error::InvalidProducerIdMapping)?;
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().ok_or(Error::InvalidProducerIdMapping)?;
        let same_outcome = matches!(
            (meta.state, commit),
            (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
                | (TxnState::PrepareAbort | TxnState::CompleteAbort, false)
        );
        let retried = same_outcome
            && ((producer_id == meta.producer_id && epoch.checked_add(1) == Some(meta.producer_epoch))
                || (meta.prev_producer_id == Some(producer_id) && epoch == i16::MAX - 1 && meta.producer_epoch == 0));
        if retried {
            if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                self.complete(id, meta, commit, coordinator_epoch).await?;
            }
            return Ok(Self::continues_as(meta));
        }
        Self::check_producer(meta, producer_id, epoch)?;
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(Error::ConcurrentTransactions);
        }
        let mut next = meta.clone();
        if meta.state != TxnState::Ongoing {
            // Nothing was added since the last end: no marker to write.
            next.partitions.clear();
            next.groups.clear();
        }
        if next.producer_epoch >= i16::MAX - 1 {
            next.next_producer_id =
                Some(self.storage.allocate_producer_id().await.map_err(|e| errors::coordinator(&e))?);
            next.producer_epoch = i16::MAX;
        } else {
            next.producer_epoch += 1;
        }
        next.prev_producer_id = None;
        next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        next.updated_at = self.clock.now_ms();
        self.persist(id, &next).await?;
        *meta = next;
        self.complete(id, meta, commit, coordinator_epoch).await?;
        Ok(Self::continues_as(meta))
    }

    /// The producer id and epoch a producer goes on with after its transaction ended.
    fn continues_as(meta: &TxnMeta) -> (i64, i16) {
        match meta.next_producer_id {
            Some(fresh) => (fresh, 0),
            None => (meta.producer_id, meta.producer_epoch),
        }
    }

    /// Every transactional.id with its state (DescribeTransactions, ListTransactions).
    pub(crate) async fn snapshot(&self, ids: Option<&[String]>) -> Result<Vec<(String, Option<TxnMeta>)>, Error> {
        self.ready()?;
        let wanted: Vec<String> = match ids {
            Some(ids) => ids.to_vec(),
            None => {
                let mut all: Vec<String> = self.txns.iter().map(|e| e.key().clone()).collect();
                all.sort();
                all
            }
        };
        let mut out = Vec::with_capacity(wanted.len());
        for id in wanted {
            let meta = match self.txns.get(&id).map(|e| e.clone()) {
                Some(entry) => entry.lock().await.clone(),
                None => None,
            };
            out.push((id, meta));
        }
        Ok(out)
    }

    /// Aborts open transactions past their timeout, with a bumped epoch.
    pub(crate) async fn abort_expired(&self) {
        let now = self.clock.now_ms();
        let ids: Vec<String> = self.txns.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            let Ok(coordinator_epoch) = self.serves(&id) else { continue };
            let Some(entry) = self.txns.get(&id).map(|e| e.clone()) else { continue };
            let mut guard = entry.lock().await;
            let Some(meta) = guard.as_mut() else { continue };
            if meta.state != TxnState::Ongoing || meta.started_at + meta.timeout_ms as i64 > now {
                continue;
            }
            tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
            let mut next = meta.clone();
            match self.storage.allocate_producer_id().await {
                Ok(fresh) => next.bump_epoch(fresh),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot abort timed-out transaction yet");
                    continue;
                }
            }
            next.state = TxnState::PrepareAbort;
            if self.persist(&id, &next).await.is_err() {
                continue;
            }
            *meta = next;
            if let Err(e) = self.complete(&id, meta, false, coordinator_epoch).await {
                tracing::warn!(transactional_id = %id, error = ?e, "cannot complete timed-out abort yet");
            }
        }
    }

    /// Forgets the transactional ids coordinated here that have no transaction open
    /// or ending and were last used `transactional.id.expiration.ms` ago: a tombstone
    /// in `__transaction_state` (durable before the id goes from memory, so a restart
    /// does not bring it back), as Kafka expires them. Returns how many went.
    pub(crate) async fn remove_expired_ids(&self) -> usize {
        let now = self.clock.now_ms();
        let expiration_ms = self.id_expiration.lock().0;
        let ids: Vec<String> = self.txns.iter().map(|e| e.key().clone()).collect();
        let mut gone = 0;
        for id in ids {
            if self.serves(&id).is_err() {
                continue;
            }
            let Some(entry) = self.txns.get(&id).map(|e| e.clone()) else { continue };
            let mut guard = entry.lock().await;
            let expired = guard.as_ref().is_some_and(|m| {
                matches!(m.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
                    && now.saturating_sub(m.updated_at) >= expiration_ms
            });
            if !expired {
                continue;
            }
            if let Err(e) = self.persist_tombstone(&id).await {
                tracing::warn!(transactional_id = %id, error = ?e, "cannot expire the transactional id yet");
                continue;
            }
            *guard = None;
            drop(guard);
            // Out of the map unless a request holds the entry (it then sees no
            // state, as for an id never seen, and the entry stays).
            self.txns.remove_if(&id, |_, e| Arc::ptr_eq(e, &entry) && Arc::strong_count(e) == 2);
            gone += 1;
        }
        gone
    }

    /// Writes the tombstone of `id` (a record with no value) and waits until it is
    /// durable.
    async fn persist_tombstone(&self, id: &str) -> Result<(), Error> {
        let topic = self.storage.topic(TXN_TOPIC).ok_or(Error::CoordinatorNotAvailable)?;
        let partition = topic.partition(self.partition_of(id)).ok_or(Error::CoordinatorNotAvailable)?;
        let record = (Some(state::encode_key(id)), None);
        self.append_batch(partition, &BatchSpec::plain(self.clock.now_ms()), &[record]).await
    }

    /// Aborts timed-out transactions and finishes ending ones every `period`, and
    /// expires idle transactional ids at their own interval, until shutdown.
    pub async fn run_timers(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(period);
        let mut last_removal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if self.is_loaded() {
                self.abort_expired().await;
                self.finish_ending().await;
                let every = self.id_expiration.lock().1;
                if last_removal.elapsed() >= every {
                    last_removal = tokio::time::Instant::now();
                    let gone = self.remove_expired_ids().await;
                    if gone > 0 {
                        tracing::info!(transactional_ids = gone, "expired idle transactional ids");
                    }
                }
            }
        }
    }
}

/// What a producer retries a Produce on, as Kafka answers a write whose
/// transaction cannot be verified or joined now (the coordinator moving or loading,
/// the last transaction's markers still being written): NOT_ENOUGH_REPLICAS.
fn retry_later(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(
            Error::NotCoordinator
            | Error::CoordinatorNotAvailable
            | Error::CoordinatorLoadInProgress
            | Error::ConcurrentTransactions,
        ) => Err(Error::NotEnoughReplicas),
        other => other,
    }
}

#[cfg(test)]
mod tests;
