//! One partition's log as the engine sees it: its offsets, its sealed segments (the
//! manifest, in the segment store), the index of its journal-resident batches after
//! them, and the tail of those batches cached in memory.
//!
//! Promises: offsets only grow (dense, except where compaction removed records);
//! the index holds only durable batches, so the high watermark is the end of the
//! index; a read never returns a batch at or past the high watermark; sealed
//! segments end where the journal-resident batches begin. Memory of an idle
//! partition is a few hundred bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use tributary_protocol::batch::BatchHeader;
use tributary_tiering::store::SegmentLocation;

use super::producer_state::{Producers, Verdict};
use super::txn_index::{coordinator_epoch_of, AbortedTxn, TxnIndex, TxnMark};
use super::StorageError;

/// Where one durable batch lives in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLocation {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) position: u64,
    pub(crate) len: u32,
}

/// A sealed segment of the partition, in the segment store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) loc: SegmentLocation,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch that holds `max_timestamp`.
    pub(crate) max_timestamp_batch: i64,
}

impl Sealed {
    pub(crate) fn data_len(&self) -> u64 {
        self.loc.data_len()
    }
}

/// A partition's log.
#[derive(Debug)]
pub struct PartitionLog {
    /// Journal id: unique for the life of the data directory, never reused.
    pub(crate) id: u64,
    pub topic: Arc<str>,
    pub index: i32,
    deleted: AtomicBool,
    /// Cluster mode: set while this broker does not lead the partition; the journal
    /// then refuses appends (NOT_LEADER_OR_FOLLOWER), except recovered ones.
    fenced: AtomicBool,
    /// Cluster mode: the leader epoch written into new batches.
    leader_epoch: AtomicI32,
    /// Cluster mode: the epochs this partition's owners led it in, oldest first,
    /// with the first offset each wrote (from its history in etcd, at takeover).
    epochs: Mutex<Arc<[(i32, i64)]>>,
    /// Cluster mode: the journal objects holding this partition's batches, as
    /// (lease, first sequence, last offset in them), oldest first and coarsened to a
    /// bounded number; tells from which object a takeover must read past a seal.
    shipped: Mutex<std::collections::VecDeque<(i64, u64, i64)>>,
    /// Bumped when the log is rebuilt (cluster mode, on taking the partition over):
    /// work planned on the log before (a flush, a group commit) is dropped.
    generation: AtomicU64,
    /// Appends committed by the journal writer and not yet published or refused.
    unpublished: AtomicUsize,
    /// Bytes clients produced here (taken for the journal), ever: the cluster's
    /// placement measures each partition's rate from it. One relaxed add per batch.
    produced_bytes: AtomicU64,
    produced_records: AtomicU64,
    pub(crate) state: Mutex<LogState>,
}

/// The mutable part, behind the partition's lock (never held across an await).
#[derive(Debug, Default)]
pub(crate) struct LogState {
    pub(crate) log_start_offset: i64,
    /// Log end offset: the next offset to assign (written, maybe not yet durable).
    pub(crate) next_offset: i64,
    /// End of what is durable and visible to consumers.
    pub(crate) high_watermark: i64,
    /// Sealed segments in offset order, all before `batches`.
    pub(crate) sealed: Vec<Sealed>,
    /// Durable batches still only in the journal, in offset order.
    pub(crate) batches: VecDeque<BatchLocation>,
    /// Bytes of `batches`.
    pub(crate) unsealed_bytes: u64,
    /// When the oldest of `batches` became durable (ms since the epoch; 0: none).
    pub(crate) unsealed_since_ms: i64,
    /// Bytes of the last `cache.len()` batches of `batches`.
    pub(crate) cache: VecDeque<Bytes>,
    pub(crate) cache_bytes: u64,
    /// Idempotent producers that wrote here; absent until the first one does, so an
    /// idle partition pays one pointer.
    pub(crate) producers: Option<Box<Producers>>,
    /// Transactions open or aborted here; absent until a transactional producer
    /// writes, so an idle partition pays one pointer.
    pub(crate) txns: Option<Box<TxnIndex>>,
    /// Cluster mode, while a partition is rebuilt: recovered batches below this
    /// offset are already in the restored producer and transaction state.
    pub(crate) state_through: i64,
}

impl LogState {
    /// Indexes a durable batch at the end of the journal-resident ones.
    pub(crate) fn push_batch(&mut self, location: BatchLocation, now_ms: i64) {
        if self.batches.is_empty() {
            self.unsealed_since_ms = now_ms;
        }
        self.unsealed_bytes += location.len as u64;
        self.batches.push_back(location);
    }

    /// The first `count` journal-resident batches are now in `segment`: drop them
    /// from the index (and from the cache, if cached). Returns the cache bytes freed.
    pub(crate) fn seal_front(&mut self, count: usize, segment: Sealed, now_ms: i64) -> u64 {
        let count = count.min(self.batches.len());
        for b in self.batches.drain(..count) {
            self.unsealed_bytes -= b.len as u64;
        }
        let mut freed = 0;
        while self.cache.len() > self.batches.len() {
            if let Some(b) = self.cache.pop_front() {
                freed += b.len() as u64;
            }
        }
        self.cache_bytes -= freed;
        self.unsealed_since_ms = if self.batches.is_empty() { 0 } else { now_ms };
        self.sealed.push(segment);
        freed
    }

    /// Decides whether a batch may be appended (idempotence).
    pub(crate) fn check_producer(&self, h: &BatchHeader, batch: &Bytes) -> Result<Verdict, StorageError> {
        let coordinator_epoch = coordinator_epoch_of(h, batch);
        match &self.producers {
            Some(p) => p.check(h, coordinator_epoch),
            None => Producers::default().check(h, coordinator_epoch),
        }
    }

    /// Remembers an appended batch of an idempotent producer (or a marker), appended
    /// (or replayed) at `now_ms`.
    pub(crate) fn record_producer(&mut self, h: &BatchHeader, batch: &Bytes, base_offset: i64, now_ms: i64) {
        if h.producer_id >= 0 {
            let coordinator_epoch = coordinator_epoch_of(h, batch);
            self.producers.get_or_insert_with(Default::default).record(h, base_offset, coordinator_epoch, now_ms);
        }
    }

    /// Forgets producers idle here for `expiration_ms` with no transaction open here
    /// (`producer.id.expiration.ms`). Returns how many went.
    pub(crate) fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let Some(producers) = self.producers.as_mut() else { return 0 };
        let open: std::collections::HashSet<i64> =
            self.txns.as_ref().map(|t| t.ongoing().map(|(pid, _)| pid).collect()).unwrap_or_default();
        let gone = producers.expire(now_ms, expiration_ms, |pid| open.contains(&pid));
        if producers.is_empty() {
            self.producers = None;
        }
        gone
    }

    /// Notes a durable transactional batch or marker.
    pub(crate) fn apply_txn(&mut self, mark: TxnMark, base_offset: i64, last_offset: i64) {
        self.txns.get_or_insert_with(Default::default).apply(mark, base_offset, last_offset);
    }

    /// The end of what `read_committed` consumers may see: the high watermark, or
    /// the first offset of the oldest open transaction if that is lower.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        match self.txns.as_ref().and_then(|t| t.first_unstable()) {
            Some(first) => first.min(self.high_watermark),
            None => self.high_watermark,
        }
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
            last_stable_offset: self.last_stable_offset(),
            log_end_offset: self.next_offset,
        }
    }

    /// Base offset of the oldest cached batch.
    pub(crate) fn first_cached_base(&self) -> Option<i64> {
        if self.cache.is_empty() {
            return None;
        }
        Some(self.batches[self.batches.len() - self.cache.len()].base_offset)
    }
}

/// A partition's offsets at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

/// A piece of a read: bytes at hand, a range still to read from the journal, or
/// batches to read from a sealed segment.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    Cached(Bytes),
    Journal {
        position: u64,
        len: u32,
    },
    /// Batches of `segment` from the one holding `offset`, below `end`, up to
    /// `max_bytes` (at least one if `at_least_one`).
    Sealed {
        segment: Sealed,
        offset: i64,
        end: i64,
        max_bytes: usize,
        at_least_one: bool,
    },
    /// The first batch of `segment` with a timestamp at or after `timestamp`.
    SealedAtTime {
        segment: Sealed,
        timestamp: i64,
    },
}

impl PartitionLog {
    pub(crate) fn new(id: u64, topic: Arc<str>, index: i32, log_start_offset: i64) -> Self {
        PartitionLog {
            id,
            topic,
            index,
            deleted: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(0),
            epochs: Mutex::new(Arc::from(Vec::new())),
            shipped: Mutex::new(std::collections::VecDeque::new()),
            generation: AtomicU64::new(0),
            produced_bytes: AtomicU64::new(0),
            produced_records: AtomicU64::new(0),
            unpublished: AtomicUsize::new(0),
            state: Mutex::new(LogState {
                log_start_offset,
                next_offset: log_start_offset,
                high_watermark: log_start_offset,
                ..Default::default()
            }),
        }
    }

    /// A partition as the metadata describes it: its log start and sealed segments;
    /// the journal replay appends what follows them.
    pub(crate) fn restored(id: u64, topic: Arc<str>, index: i32, log_start_offset: i64, sealed: Vec<Sealed>) -> Self {
        let p = PartitionLog::new(id, topic, index, log_start_offset);
        {
            let mut st = p.state.lock();
            if let Some(end) = sealed.last().map(|s| s.last_offset + 1) {
                st.next_offset = st.next_offset.max(end);
                st.high_watermark = st.next_offset;
            }
            st.sealed = sealed;
        }
        p
    }

    pub fn offsets(&self) -> PartitionOffsets {
        self.state.lock().offsets()
    }

    /// Bytes of the batches at or above the log start offset, sealed or not.
    pub fn size_bytes(&self) -> u64 {
        let st = self.state.lock();
        let sealed: u64 = st.sealed.iter().filter(|s| s.last_offset >= st.log_start_offset).map(|s| s.data_len()).sum();
        let journal: u64 =
            st.batches.iter().filter(|b| b.last_offset >= st.log_start_offset).map(|b| b.len as u64).sum();
        sealed + journal
    }

    /// (sealed segments, their bytes, journal-resident bytes, age in ms of the oldest
    /// journal-resident batch) for metrics.
    pub(crate) fn tier_stats(&self, now_ms: i64) -> (u64, u64, u64, i64) {
        let st = self.state.lock();
        let sealed_bytes = st.sealed.iter().map(|s| s.data_len()).sum();
        let age = if st.unsealed_since_ms > 0 { (now_ms - st.unsealed_since_ms).max(0) } else { 0 };
        (st.sealed.len() as u64, sealed_bytes, st.unsealed_bytes, age)
    }

    /// Aborted transactions overlapping `[from, to]`.
    pub(crate) fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.state.lock().txns.as_ref().map(|t| t.aborted_in(from, to)).unwrap_or_default()
    }

    /// Producers that wrote here: (producer id, epoch, last sequence, first offset of
    /// its open transaction or -1), for DescribeProducers.
    pub fn producers(&self) -> Vec<(i64, i16, i32, i64)> {
        let st = self.state.lock();
        let open: std::collections::HashMap<i64, i64> =
            st.txns.as_ref().map(|t| t.ongoing().collect()).unwrap_or_default();
        st.producers
            .as_ref()
            .map(|p| p.snapshot())
            .unwrap_or_default()
            .into_iter()
            .map(|(pid, epoch, seq)| (pid, epoch, seq, open.get(&pid).copied().unwrap_or(-1)))
            .collect()
    }

    /// Whether `producer_id` has a transaction open here at `epoch` (durable data,
    /// no marker yet): its coordinator holds this partition and will end it here.
    pub fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        let st = self.state.lock();
        st.txns.as_ref().is_some_and(|t| t.ongoing().any(|(pid, _)| pid == producer_id))
            && st.producers.as_ref().is_some_and(|p| p.epoch_of(producer_id) == Some(epoch))
    }

    /// Producers with an open transaction here, with its first offset.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.state.lock().txns.as_ref().map(|t| t.ongoing().collect()).unwrap_or_default()
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Cluster mode: refuse (`true`) or take (`false`) new appends.
    pub fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Leads from now on in the last of `epochs` ((epoch, first offset written in
    /// it), oldest first), which are what OffsetForLeaderEpoch answers from.
    pub fn set_leader_epochs(&self, epochs: Vec<(i32, i64)>) {
        let current = epochs.last().map_or(0, |e| e.0);
        *self.epochs.lock() = Arc::from(epochs);
        self.leader_epoch.store(current, Ordering::Release);
    }

    /// Cluster mode: journal object `seq` of `lease` holds batches of this partition
    /// up to `last_offset`. Called in sequence order, before the shipper publishes
    /// `seq + 1` as its next sequence.
    pub fn note_shipped(&self, lease: i64, seq: u64, last_offset: i64) {
        let mut shipped = self.shipped.lock();
        match shipped.back_mut() {
            Some(b) if b.0 != lease => shipped.clear(),
            Some(b) if b.1 == seq => {
                b.2 = b.2.max(last_offset);
                return;
            }
            _ => {}
        }
        shipped.push_back((lease, seq, last_offset));
        if shipped.len() > SHIPPED_KEPT {
            // Merge neighbours: each entry then starts at its first object and ends at
            // its second's last offset, which only ever makes a takeover read more.
            let merged: std::collections::VecDeque<_> =
                shipped.make_contiguous().chunks(2).map(|c| (c[0].0, c[0].1, c[c.len() - 1].2)).collect();
            *shipped = merged;
        }
    }

    /// Cluster mode: the first object of `lease` that may hold a batch of this
    /// partition at or past `offset` (`next_seq`, the shipper's next sequence read
    /// before this call, when none shipped yet does).
    pub fn first_object_from(&self, lease: i64, offset: i64, next_seq: u64) -> u64 {
        let shipped = self.shipped.lock();
        shipped.iter().find(|&&(l, _, last)| l == lease && last >= offset).map_or(next_seq, |&(_, seq, _)| seq)
    }

    /// Counts what a client produced here.
    pub fn note_produced(&self, bytes: u64, records: u64) {
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.produced_records.fetch_add(records, Ordering::Relaxed);
    }

    /// Records clients produced here since this broker started.
    pub fn produced_records(&self) -> u64 {
        self.produced_records.load(Ordering::Relaxed)
    }

    /// Bytes clients produced here since this broker started.
    pub fn produced_bytes(&self) -> u64 {
        self.produced_bytes.load(Ordering::Relaxed)
    }

    /// Cluster mode: the first object of `lease` a takeover of this partition
    /// would still read (its oldest entry not yet forgotten), if it has any.
    pub fn first_needed_object(&self, lease: i64) -> Option<u64> {
        self.shipped.lock().iter().find(|e| e.0 == lease).map(|e| e.1)
    }

    /// Cluster mode: forgets the objects a takeover no longer reads (all below
    /// `offset`, now sealed and pointed at).
    pub fn forget_shipped_below(&self, lease: i64, offset: i64) {
        let mut shipped = self.shipped.lock();
        while shipped.front().is_some_and(|&(l, _, last)| l != lease || last < offset) {
            shipped.pop_front();
        }
    }

    /// The largest epoch at most `requested` and the offset where it ended (the
    /// first offset of the next epoch, or `end` for the current one), as Kafka's
    /// leader epoch cache answers OffsetForLeaderEpoch; `None` for an epoch newer
    /// than the current one. A log without an epoch history (single node) was all
    /// written in its current epoch.
    pub fn end_offset_for_epoch(&self, requested: i32, end: i64) -> Option<(i32, i64)> {
        let epochs = self.epochs.lock().clone();
        end_offset_for_epoch(&epochs, self.leader_epoch(), requested, end)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Appends the journal took for this partition and has not answered yet.
    pub fn unpublished(&self) -> usize {
        self.unpublished.load(Ordering::Acquire)
    }

    pub(crate) fn add_unpublished(&self, n: usize) {
        self.unpublished.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn sub_unpublished(&self, n: usize) {
        self.unpublished.fetch_sub(n, Ordering::AcqRel);
    }

    /// Empties the log (cluster mode, before rebuilding it from the object store)
    /// and puts `manifest` in place if there is one: a new generation, its sealed
    /// segments and state, nothing cached, offsets from its sealed end (or 0).
    /// Returns the cache bytes freed.
    pub(crate) fn reset(&self, manifest: Option<&Manifest>) -> u64 {
        self.shipped.lock().clear();
        let mut st = self.state.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let freed = st.cache_bytes;
        *st = LogState::default();
        if let Some(m) = manifest {
            st.log_start_offset = m.log_start_offset;
            st.sealed = m.segments.iter().map(ManifestSegment::sealed).collect();
            let end = m.sealed_end();
            st.next_offset = end.max(m.log_start_offset);
            st.high_watermark = st.next_offset;
            st.producers = m.producers.clone().map(Box::new);
            st.txns = m.txns.clone().map(Box::new);
            st.state_through = m.through;
        }
        freed
    }

    /// Cluster mode: what another broker needs to take this partition over without
    /// its journal objects below the sealed end: the sealed segments, the log start,
    /// and the producer and transaction state as of the high watermark (`through`).
    pub fn manifest(&self) -> Manifest {
        let st = self.state.lock();
        let through = st.high_watermark;
        Manifest {
            log_start_offset: st.log_start_offset,
            segments: st.sealed.iter().map(ManifestSegment::of).collect(),
            through,
            producers: st.producers.as_ref().map(|p| p.durable_before(through)),
            txns: st.txns.as_deref().cloned(),
        }
    }

    /// Marks the partition deleted and drops its cached batches; returns the bytes freed.
    pub(crate) fn mark_deleted(&self) -> u64 {
        self.deleted.store(true, Ordering::Release);
        let mut st = self.state.lock();
        st.cache.clear();
        std::mem::take(&mut st.cache_bytes)
    }

    /// Plans a read of whole batches from the one containing `offset`, up to
    /// `max_bytes` (but at least one batch when `at_least_one`, as KIP-74 requires),
    /// and below the last stable offset when `committed` (read_committed).
    pub(crate) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        committed: bool,
    ) -> Result<(Vec<Chunk>, PartitionOffsets), StorageError> {
        let st = self.state.lock();
        let offsets = st.offsets();
        let end = if committed { offsets.last_stable_offset } else { offsets.high_watermark };
        if offset < st.log_start_offset || offset > st.high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: st.log_start_offset,
                high_watermark: st.high_watermark,
            });
        }
        let journal_from = st.batches.front().map_or(st.next_offset, |b| b.base_offset);
        if offset < journal_from {
            let i = st.sealed.partition_point(|s| s.last_offset < offset);
            if let Some(segment) = st.sealed.get(i) {
                let chunk = Chunk::Sealed { segment: segment.clone(), offset, end, max_bytes, at_least_one };
                return Ok((vec![chunk], offsets));
            }
        }
        let first = st.batches.partition_point(|b| b.last_offset < offset);
        let cached_from = st.batches.len() - st.cache.len();
        let mut chunks = Vec::new();
        let mut total = 0usize;
        for i in first..st.batches.len() {
            let b = st.batches[i];
            if b.base_offset >= end {
                break;
            }
            let len = b.len as usize;
            if total + len > max_bytes && !(at_least_one && chunks.is_empty()) {
                break;
            }
            chunks.push(if i >= cached_from {
                Chunk::Cached(st.cache[i - cached_from].clone())
            } else {
                Chunk::Journal { position: b.position, len: b.len }
            });
            total += len;
        }
        Ok((chunks, offsets))
    }

    /// The first batch whose max timestamp is at or after `timestamp`.
    pub(crate) fn locate_timestamp(&self, timestamp: i64) -> Option<Chunk> {
        let st = self.state.lock();
        let live = |last: i64| last >= st.log_start_offset;
        if let Some(s) = st.sealed.iter().find(|s| s.max_timestamp >= timestamp && live(s.last_offset)) {
            return Some(Chunk::SealedAtTime { segment: s.clone(), timestamp });
        }
        let i = st.batches.iter().position(|b| b.max_timestamp >= timestamp && live(b.last_offset))?;
        Some(Self::chunk(&st, i))
    }

    /// The batch holding the largest timestamp (the latest such batch on ties).
    pub(crate) fn locate_max_timestamp(&self) -> Option<Chunk> {
        let st = self.state.lock();
        let mut best_sealed: Option<&Sealed> = None;
        for s in st.sealed.iter().filter(|s| s.last_offset >= st.log_start_offset) {
            if best_sealed.is_none_or(|b| s.max_timestamp >= b.max_timestamp) {
                best_sealed = Some(s);
            }
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, b) in st.batches.iter().enumerate() {
            if b.last_offset >= st.log_start_offset && best.is_none_or(|(_, ts)| b.max_timestamp >= ts) {
                best = Some((i, b.max_timestamp));
            }
        }
        match (best_sealed, best) {
            (Some(s), b) if b.is_none_or(|(_, ts)| s.max_timestamp > ts) => Some(Chunk::Sealed {
                segment: s.clone(),
                offset: s.max_timestamp_batch.max(st.log_start_offset),
                end: st.high_watermark,
                max_bytes: 1,
                at_least_one: true,
            }),
            (_, b) => b.map(|(i, _)| Self::chunk(&st, i)),
        }
    }

    fn chunk(st: &LogState, i: usize) -> Chunk {
        let cached_from = st.batches.len() - st.cache.len();
        if i >= cached_from {
            Chunk::Cached(st.cache[i - cached_from].clone())
        } else {
            let b = st.batches[i];
            Chunk::Journal { position: b.position, len: b.len }
        }
    }
}

/// A partition's sealed part as another broker rebuilds it (cluster mode; stored as
/// an object, pointed at from the partition's history in etcd).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub log_start_offset: i64,
    pub segments: Vec<ManifestSegment>,
    /// Producer and transaction state are as of this offset (the high watermark
    /// when the manifest was taken): batches below it are not applied to them again.
    pub through: i64,
    producers: Option<Producers>,
    txns: Option<TxnIndex>,
}

impl Manifest {
    /// The first offset after the sealed segments (0 without any).
    pub fn sealed_end(&self) -> i64 {
        self.segments.last().map_or(self.log_start_offset, |s| s.last_offset + 1)
    }
}

/// One sealed segment in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestSegment {
    pub key: String,
    pub start: u64,
    pub len: u64,
    pub footer_len: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub max_timestamp_batch: i64,
}

impl ManifestSegment {
    fn of(s: &Sealed) -> Self {
        ManifestSegment {
            key: s.loc.key.to_string(),
            start: s.loc.start,
            len: s.loc.len,
            footer_len: s.loc.footer_len,
            base_offset: s.base_offset,
            last_offset: s.last_offset,
            max_timestamp: s.max_timestamp,
            max_timestamp_batch: s.max_timestamp_batch,
        }
    }

    fn sealed(&self) -> Sealed {
        Sealed {
            loc: SegmentLocation {
                key: self.key.as_str().into(),
                start: self.start,
                len: self.len,
                footer_len: self.footer_len,
            },
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            max_timestamp_batch: self.max_timestamp_batch,
        }
    }
}

/// Entries kept by [`PartitionLog::note_shipped`] before neighbours are merged.
const SHIPPED_KEPT: usize = 64;

/// See [`PartitionLog::end_offset_for_epoch`].
fn end_offset_for_epoch(epochs: &[(i32, i64)], current: i32, requested: i32, end: i64) -> Option<(i32, i64)> {
    if requested > current || requested < 0 {
        return None;
    }
    if requested == current {
        return Some((current, end));
    }
    match epochs.iter().position(|&(e, _)| e > requested) {
        // Every epoch kept is at most the requested one: it ran to the end.
        None => Some((requested.min(current), end)),
        Some(0) => Some((requested, epochs[0].1)),
        Some(i) => Some((epochs[i - 1].0, epochs[i].1)),
    }
}

#[cfg(test)]
mod epoch_tests {
    use super::end_offset_for_epoch;

    #[test]
    fn an_epoch_ends_where_the_next_one_starts() {
        let epochs = [(2, 0), (5, 40), (6, 40), (9, 100)];
        let at = |r| end_offset_for_epoch(&epochs, 9, r, 130);
        assert_eq!(at(9), Some((9, 130)));
        assert_eq!(at(6), Some((6, 100)));
        assert_eq!(at(5), Some((5, 40)));
        // An epoch no owner led answers the last one before it.
        assert_eq!(at(7), Some((6, 100)));
        assert_eq!(at(3), Some((2, 40)));
        // Older than every epoch kept: it ended where the oldest kept began.
        assert_eq!(at(1), Some((1, 0)));
        assert_eq!(at(10), None);
        assert_eq!(at(-1), None);
    }

    #[test]
    fn the_first_object_past_a_seal_is_never_later_than_the_true_one() {
        let log = super::PartitionLog::new(1, "t".into(), 0, 0);
        // Object n holds offsets up to 10 n + 9 (two shipments in object 3).
        for seq in 0..500u64 {
            log.note_shipped(7, seq, seq as i64 * 10 + 9);
            if seq == 3 {
                log.note_shipped(7, seq, 35);
            }
        }
        assert!(log.shipped.lock().len() <= super::SHIPPED_KEPT);
        let mut last = 0;
        for offset in [0i64, 39, 40, 41, 1234, 4999] {
            let from = log.first_object_from(7, offset, 500);
            let exact = (offset / 10) as u64;
            assert!(from <= exact, "offset {offset}: from {from}, holder {exact}");
            assert!(from >= last, "sealed ends only grow, so does the answer");
            // Forgetting below a published seal changes no later answer.
            log.forget_shipped_below(7, offset);
            assert_eq!(log.first_object_from(7, offset, 500), from);
            last = from;
        }
        // Past everything shipped: the next object. Another lease starts afresh.
        assert_eq!(log.first_object_from(7, 5000, 500), 500);
        log.note_shipped(8, 0, 9);
        assert_eq!(log.first_object_from(8, 0, 1), 0);
        assert_eq!(log.first_object_from(7, 0, 3), 3);
        log.forget_shipped_below(7, 0);
        assert!(log.shipped.lock().is_empty());
    }

    #[test]
    fn without_a_history_the_log_is_all_in_its_current_epoch() {
        assert_eq!(end_offset_for_epoch(&[], 0, 0, 17), Some((0, 17)));
        assert_eq!(end_offset_for_epoch(&[], 3, 1, 17), Some((1, 17)));
        assert_eq!(end_offset_for_epoch(&[], 3, 4, 17), None);
    }
}
