//! The journal writer: one thread owns the current journal file. It drains every
//! append that is waiting, assigns offsets (the sequencer of every partition), writes
//! them in one `write`, and in `fsync` durability makes them durable with one
//! `fdatasync` before any of them is acknowledged: group commit falls out of draining
//! the queue while the previous fsync ran. A second thread publishes each durable
//! group (high watermarks, the cache, the answers) in journal order while the writer
//! goes on with the next one; in cluster mode the shipper publishes instead.
//!
//! Written and durable are kept apart: a partition's high watermark moves only to
//! what is durable under the configured policy, and only then do consumers see it.
//!
//! A failed write or fsync (a full disk, an I/O error) answers that group with a
//! retriable error, but the group keeps its offsets: its bytes may be on disk in
//! part, so they are never replaced by other data. The writer retries exactly those
//! bytes at the same position, with backoff, refusing every other append
//! meanwhile (retriable too), and once they are durable it publishes them (high
//! watermark, cache) and takes appends again: writes resume by themselves when space
//! returns. A producer that retries gets its original offsets (idempotence) or a
//! second copy (at-least-once), never a gap. After an fsync error the kernel may
//! have dropped the dirty pages, which is why the retry rewrites the whole buffer
//! before fsyncing again.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tributary_config::Durability;
use tributary_protocol::batch::{self, BatchHeader};

use super::entry::{self, BLOCK, HEADER_LEN, KIND_BATCH};
use super::files::JournalFiles;
use crate::metrics::Metrics;
use crate::storage::cache::CacheBudget;
use crate::storage::partition::{BatchLocation, PartitionLog};
use crate::storage::producer_state::Verdict;
use crate::storage::txn_index::{mark_of, TxnMark};
use crate::storage::StorageError;

/// What the producer is told about its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time written into the batches, or -1 for create-time topics.
    pub log_append_time: i64,
    /// When the append became durable and was answered (latency stages).
    pub durable_at: Option<std::time::Instant>,
}

/// One request to the writer: batches for one partition, already validated.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) partition: Arc<PartitionLog>,
    pub(crate) batches: Vec<(BatchHeader, Bytes)>,
    pub(crate) log_append_time: bool,
    /// Batches recovered from the object store (cluster mode, taking a partition
    /// over): their offsets and leader epochs are kept, they are taken on a fenced
    /// partition, and producers are recorded, never checked.
    pub(crate) recovered: bool,
    pub(crate) reply: oneshot::Sender<Result<Appended, StorageError>>,
    /// When it was queued for the writer.
    pub(crate) queued_at: std::time::Instant,
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub(crate) struct WriterSettings {
    pub(crate) durability: Durability,
    pub(crate) file_bytes: u64,
    pub(crate) group_commit_bytes: u64,
    /// Injected faults (tests only).
    pub(crate) faults: Option<super::faults::Faults>,
    /// Cluster mode: where written group commits go before they are published (the
    /// journal objects); until one is set, appends are refused.
    pub(crate) shipper: Option<Arc<std::sync::OnceLock<Arc<dyn Shipper>>>>,
}

/// Cluster mode: takes each locally written group commit, makes it durable in the
/// object store and then publishes it ([`Shipment::publish`]), strictly in the order
/// shipped; or refuses it (never acknowledged).
pub trait Shipper: Send + Sync + std::fmt::Debug {
    /// Takes the next group commit; may block while too many are in flight.
    fn ship(&self, shipment: Shipment);
    /// Why new appends are refused now (the object store is failing), if they are.
    fn refusal(&self) -> Option<StorageError>;
}

/// A group commit written to the local journal, not yet published.
pub struct Shipment {
    written: Written,
    publisher: Arc<Publisher>,
}

impl std::fmt::Debug for Shipment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipment").field("bytes", &self.written.data.len()).finish()
    }
}

impl Shipment {
    /// The group's journal entries (framed as in the local journal, trailing
    /// padding left out).
    pub fn data(&self) -> Bytes {
        let end = self.written.placed.iter().flat_map(|p| p.batches.iter().map(|(_, r, _)| r.end)).max().unwrap_or(0);
        self.written.data.slice(..end)
    }

    /// The partitions with entries in it: (journal id, topic, partition).
    pub fn partitions(&self) -> Vec<(u64, Arc<str>, i32)> {
        let mut out: Vec<(u64, Arc<str>, i32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in &self.written.placed {
            if !p.batches.is_empty() && seen.insert(p.partition.id) {
                out.push((p.partition.id, p.partition.topic.clone(), p.partition.index));
            }
        }
        out
    }

    /// Each partition with entries in it and the last offset they reach.
    pub fn partition_ends(&self) -> Vec<(Arc<PartitionLog>, i64)> {
        let mut out: Vec<(Arc<PartitionLog>, i64)> = Vec::new();
        for p in self.written.placed.iter().filter(|p| !p.batches.is_empty()) {
            match out.iter_mut().find(|(log, _)| log.id == p.partition.id) {
                Some((_, last)) => *last = (*last).max(p.outcome.last_offset),
                None => out.push((p.partition.clone(), p.outcome.last_offset)),
            }
        }
        out
    }

    /// Durable: make it visible and answer its appends.
    pub fn publish(self) {
        self.publisher.publish(self.written);
    }

    /// Never to be acknowledged: answer its appends with `error`.
    pub fn refuse(self, error: impl Fn() -> StorageError) {
        self.publisher.refuse(self.written, error);
    }
}

/// A group commit written locally, waiting to be published.
struct Written {
    base_position: u64,
    data: Bytes,
    /// The capacity of the buffer `data` is in (all of it pinned by any slice).
    capacity: usize,
    placed: Vec<Placed>,
    now: i64,
}

/// Publishes written group commits: high watermarks, the cache, the answers.
pub(crate) struct Publisher {
    files: Arc<JournalFiles>,
    cache: Mutex<CacheBudget>,
    durable: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

/// Batches of one append placed in the group's buffer, waiting for the write.
struct Placed {
    partition: Arc<PartitionLog>,
    /// The partition's generation when placed: a log rebuilt since drops it.
    generation: u64,
    /// Taken once the append is answered (with an error while its write is retried).
    reply: Option<oneshot::Sender<Result<Appended, StorageError>>>,
    outcome: Appended,
    /// (location without position, payload range in the buffer, transaction mark)
    batches: Vec<(BatchLocation, std::ops::Range<usize>, Option<TxnMark>)>,
}

/// A group commit whose write failed, kept to be written again as it is.
struct Unwritten {
    buf: bytes::BytesMut,
    placed: Vec<Placed>,
    now: i64,
}

/// Whether the writer takes appends, shared with readiness and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct WriterHealth {
    /// 0: taking appends; 1: the disk is full; 2: another I/O error.
    state: std::sync::atomic::AtomicU8,
    reason: Mutex<String>,
}

impl WriterHealth {
    pub(crate) fn writable(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::Acquire) == 0
    }
    pub(crate) fn disk_full(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::Acquire) == 1
    }
    /// Why appends are refused, while they are.
    pub(crate) fn refusal(&self) -> Option<StorageError> {
        (!self.writable()).then(|| StorageError::JournalFailed(self.reason.lock().clone()))
    }
    fn set(&self, failure: Option<(&std::io::Error, String)>, metrics: &Metrics) {
        let state = match &failure {
            None => 0,
            Some((e, _)) if crate::storage::metadata_log::is_no_space(e) => 1,
            Some(_) => 2,
        };
        if let Some((_, reason)) = failure {
            *self.reason.lock() = reason;
        }
        self.state.store(state, std::sync::atomic::Ordering::Release);
        metrics.journal_writable.set((state == 0) as i64);
    }
}

pub(crate) struct Writer {
    pub(crate) settings: WriterSettings,
    pub(crate) files: Arc<JournalFiles>,
    /// The file being appended to, shared with the interval fsync thread; `None`
    /// while a new file could not be created (a full disk).
    pub(crate) current: Arc<Mutex<Option<File>>>,
    pub(crate) file_start: u64,
    pub(crate) position: u64,
    publisher: Arc<Publisher>,
    /// Single node: the thread that publishes written groups, in order, while this
    /// one writes the next (copies into the cache and answers off the write path).
    publishing: Option<(std::sync::mpsc::SyncSender<Written>, std::thread::JoinHandle<()>)>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Arc<WriterHealth>,
    unwritten: Option<Unwritten>,
}

/// Written groups waiting for the publishing thread at most: past that the writer
/// waits for it (each holds a group commit's buffer).
const PUBLISH_QUEUE: usize = 4;

/// Backoff between retries of a failed write: first, and at most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: WriterSettings,
        files: Arc<JournalFiles>,
        current: Arc<Mutex<Option<File>>>,
        file_start: u64,
        position: u64,
        cache: CacheBudget,
        durable: watch::Sender<u64>,
        metrics: Arc<Metrics>,
        health: Arc<WriterHealth>,
    ) -> std::io::Result<Self> {
        let publisher =
            Arc::new(Publisher { files: files.clone(), cache: Mutex::new(cache), durable, metrics: metrics.clone() });
        let publishing = match &settings.shipper {
            // Cluster mode: the shipper publishes, once the object store has the group.
            Some(_) => None,
            None => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Written>(PUBLISH_QUEUE);
                let p = publisher.clone();
                let handle = std::thread::Builder::new().name("journal-publish".into()).spawn(move || {
                    for written in rx {
                        p.publish(written);
                    }
                })?;
                Some((tx, handle))
            }
        };
        Ok(Writer {
            settings,
            files,
            current,
            file_start,
            position,
            publisher,
            publishing,
            metrics,
            health,
            unwritten: None,
        })
    }

    /// Runs until every sender is gone, then syncs the file one last time.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        self.probe();
        let mut backoff = RETRY_FIRST;
        loop {
            if self.unwritten.is_some() || self.current.lock().is_none() {
                // Refuse what waits (retriably) while the failed write is retried.
                let mut closed = false;
                loop {
                    match rx.try_recv() {
                        Ok(a) => self.refuse(a),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if self.retry() {
                    backoff = RETRY_FIRST;
                } else if closed {
                    tracing::error!("journal closing with a group commit it could not write (never acknowledged)");
                    return;
                } else {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                continue;
            }
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut bytes = size(&first);
            let mut group = vec![first];
            while bytes < self.settings.group_commit_bytes {
                match rx.try_recv() {
                    Ok(next) => {
                        bytes += size(&next);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group, bytes as usize);
        }
        if let Some(file) = self.current.lock().as_ref() {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "final journal fsync failed");
            }
        }
        if let Some((tx, handle)) = self.publishing.take() {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("journal publishing thread panicked");
            }
        }
    }

    /// Writes one block of padding at the start, so that a disk with no room is
    /// known before the first append (readiness says so at once); on failure the
    /// block is retried like any failed group commit.
    fn probe(&mut self) {
        if self.current.lock().is_none() {
            return;
        }
        let mut buf = entry::aligned_buffer(BLOCK);
        entry::pad_block(&mut buf);
        self.persist(Unwritten { buf, placed: Vec::new(), now: 0 });
    }

    fn refuse(&self, a: Append) {
        let err = self.health.refusal().unwrap_or_else(|| StorageError::JournalFailed("journal not writable".into()));
        let _ = a.reply.send(Err(err));
    }

    /// Tries the failed part again: the new file that could not be created, then the
    /// group commit that could not be written. Returns whether the writer is back.
    fn retry(&mut self) -> bool {
        if self.current.lock().is_none() {
            match self.files.open_for_writing(self.file_start) {
                Ok((file, _)) => *self.current.lock() = Some(file),
                Err(e) => {
                    self.failure(&e, format!("cannot create journal file at position {}: {e}", self.file_start));
                    return false;
                }
            }
        }
        let Some(unwritten) = self.unwritten.take() else {
            self.recovered();
            return true;
        };
        match self.write(&unwritten.buf) {
            Ok(()) => {
                tracing::info!(position = self.position, "journal write retried successfully");
                self.written(unwritten);
                self.recovered();
                true
            }
            Err(e) => {
                self.failure(&e, format!("journal write at position {} failed: {e}", self.position));
                self.unwritten = Some(unwritten);
                false
            }
        }
    }

    fn failure(&self, e: &std::io::Error, reason: String) {
        let no_space = crate::storage::metadata_log::is_no_space(e);
        self.metrics.journal_write_errors.with_label_values(&[if no_space { "no_space" } else { "io" }]).inc();
        if self.health.writable() {
            tracing::error!("{reason}; refusing appends (retriably) and retrying until it succeeds");
        }
        self.health.set(Some((e, reason)), &self.metrics);
    }

    fn recovered(&self) {
        if !self.health.writable() {
            tracing::info!("journal writable again");
        }
        self.health.set(None, &self.metrics);
    }

    fn commit(&mut self, group: Vec<Append>, bytes: usize) {
        let mut buf = self.files.buffers.take(bytes + group.len() * HEADER_LEN + BLOCK + HEADER_LEN);
        buf.clear();
        let now = crate::clock::now_ms();
        let mut placed = Vec::with_capacity(group.len());
        let shipper = self.settings.shipper.as_ref().map(|s| s.get().cloned());
        let refusal = match &shipper {
            None => None,
            Some(None) => Some(StorageError::NotLeader),
            Some(Some(s)) => s.refusal(),
        };
        let started = std::time::Instant::now();
        for a in group {
            self.metrics.journal_queue_seconds.observe(started.saturating_duration_since(a.queued_at).as_secs_f64());
            if a.partition.is_deleted() {
                let _ = a.reply.send(Err(StorageError::UnknownPartition));
                continue;
            }
            if !a.recovered && a.partition.is_fenced() {
                let _ = a.reply.send(Err(StorageError::NotLeader));
                continue;
            }
            let mut st = a.partition.state.lock();
            let generation = a.partition.generation();
            if let (Some(e), false) = (&refusal, a.recovered) {
                // A retry of a batch already taken is still answered with its offsets
                // once that is durable (never refused: the client would take it for
                // not written); anything new is refused while the store fails.
                let duplicate = match a.batches.as_slice() {
                    [(header, bytes)] => matches!(st.check_producer(header, bytes), Ok(Verdict::Duplicate { .. })),
                    _ => false,
                };
                if !duplicate {
                    drop(st);
                    let _ = a.reply.send(Err(match e {
                        StorageError::NotLeader => StorageError::NotLeader,
                        other => StorageError::JournalFailed(other.to_string()),
                    }));
                    continue;
                }
            }
            // Produce carries one batch per partition (v3+), the only kind an idempotent
            // producer sends; larger appends are never idempotent.
            let verdict = match a.batches.as_slice() {
                _ if a.recovered => match a.batches.first() {
                    Some((h, _)) if h.base_offset != st.next_offset => Err(StorageError::Corrupt {
                        position: 0,
                        reason: format!(
                            "recovered batch at offset {} does not follow the log end {}",
                            h.base_offset, st.next_offset
                        ),
                    }),
                    _ => Ok(Verdict::Append),
                },
                [(header, bytes)] => st.check_producer(header, bytes),
                _ => Ok(Verdict::Append),
            };
            match verdict {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                    drop(st);
                    // Answered with the original offsets once this group is durable,
                    // which also covers an original still in this group.
                    a.partition.add_unpublished(1);
                    placed.push(Placed {
                        partition: a.partition,
                        generation,
                        reply: Some(a.reply),
                        outcome: Appended { base_offset, last_offset, log_append_time: -1, durable_at: None },
                        batches: Vec::new(),
                    });
                    continue;
                }
                Err(e) => {
                    drop(st);
                    let _ = a.reply.send(Err(e));
                    continue;
                }
            }
            let mut batches = Vec::with_capacity(a.batches.len());
            let first_offset = st.next_offset;
            for (header, bytes) in &a.batches {
                let base = if a.recovered { header.base_offset } else { st.next_offset };
                let range = entry::append_unsealed(&mut buf, KIND_BATCH, a.partition.id, bytes);
                let payload = &mut buf[range.clone()];
                if !a.recovered {
                    batch::set_base_offset(payload, base);
                    batch::set_partition_leader_epoch(payload, a.partition.leader_epoch());
                }
                let mut max_timestamp = header.max_timestamp;
                if a.log_append_time && !a.recovered {
                    batch::set_log_append_time(payload, now);
                    max_timestamp = now;
                }
                if a.recovered {
                    // Read back from the object store: its batch CRC is not vouched for.
                    entry::seal(&mut buf, range.start - HEADER_LEN);
                } else {
                    entry::seal_batch(&mut buf, range.start - HEADER_LEN);
                }
                if !(a.recovered && base < st.state_through) {
                    st.record_producer(header, bytes, base, now);
                }
                let last = base + header.last_offset_delta as i64;
                st.next_offset = last + 1;
                let location = BatchLocation {
                    base_offset: base,
                    last_offset: last,
                    max_timestamp,
                    position: 0,
                    len: header.size as u32,
                };
                batches.push((location, range, mark_of(header, bytes)));
            }
            let last_offset = st.next_offset - 1;
            drop(st);
            a.partition.add_unpublished(1);
            placed.push(Placed {
                partition: a.partition,
                generation,
                reply: Some(a.reply),
                outcome: Appended {
                    base_offset: first_offset,
                    last_offset,
                    log_append_time: if a.log_append_time { now } else { -1 },
                    durable_at: None,
                },
                batches,
            });
        }
        if buf.is_empty() && shipper.is_none() {
            for p in placed {
                if let Some(reply) = p.reply {
                    p.partition.sub_unpublished(1);
                    let _ = reply.send(Ok(Appended { durable_at: Some(std::time::Instant::now()), ..p.outcome }));
                }
            }
            return;
        }
        entry::pad(&mut buf);
        if buf.as_ptr().align_offset(BLOCK) != 0 {
            // The capacity estimate fell short and the buffer moved: realign.
            let mut aligned = self.files.buffers.take(buf.len());
            aligned.clear();
            aligned.extend_from_slice(&buf);
            buf = aligned;
        }
        self.persist(Unwritten { buf, placed, now });
    }

    /// Writes a group commit and publishes it; on failure answers its appends
    /// (retriably) and keeps its bytes to be written again at this position.
    fn persist(&mut self, mut group: Unwritten) {
        if group.buf.is_empty() {
            // Only duplicates: nothing to write, answered in order with the rest.
            self.written(group);
            return;
        }
        match self.write(&group.buf) {
            Ok(()) => self.written(group),
            Err(e) => {
                let reason = format!("journal write at position {} failed: {e}", self.position);
                self.failure(&e, reason.clone());
                for p in &mut group.placed {
                    if let Some(reply) = p.reply.take() {
                        p.partition.sub_unpublished(1);
                        let _ = reply.send(Err(StorageError::JournalFailed(reason.clone())));
                    }
                }
                self.unwritten = Some(group);
            }
        }
    }

    /// A group is on the local disk: move the journal's end past it, then publish it
    /// (single node) or ship it to the object store, which publishes it (cluster).
    fn written(&mut self, group: Unwritten) {
        let Unwritten { buf, placed, now } = group;
        let base_position = self.position;
        self.position += buf.len() as u64;
        self.files.set_end(self.position);
        self.metrics.journal_bytes.inc_by(buf.len() as u64);
        self.metrics.journal_commits.inc();
        // Back to the pool once published and every cached slice of it is gone.
        let capacity = buf.capacity();
        let written = Written { base_position, data: self.files.buffers.share(buf), capacity, placed, now };
        match self.settings.shipper.as_ref().and_then(|s| s.get()) {
            Some(shipper) => shipper.ship(Shipment { written, publisher: self.publisher.clone() }),
            None => match &self.publishing {
                Some((tx, _)) => {
                    if let Err(std::sync::mpsc::SendError(written)) = tx.send(written) {
                        // The publishing thread is gone (it panicked): publish here.
                        self.publisher.publish(written);
                    }
                }
                None => self.publisher.publish(written),
            },
        }
        if self.position - self.file_start >= self.settings.file_bytes {
            if let Err(e) = self.roll() {
                let reason = format!("cannot start a new journal file at position {}: {e}", self.position);
                self.failure(&e, reason);
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let guard = self.current.lock();
        let file = guard.as_ref().ok_or_else(|| std::io::Error::other("no journal file open"))?;
        let at = self.position - self.file_start;
        let inject = |op| self.settings.faults.as_ref().and_then(|f| (f.0)(op));
        match inject(super::faults::JournalOp::Write(buf.len())) {
            None => {}
            Some(super::faults::Injected::Fail(e)) => return Err(e),
            Some(super::faults::Injected::Short(n, e)) => {
                let n = (n.min(buf.len()) / BLOCK) * BLOCK;
                file.write_all_at(&buf[..n], at)?;
                return Err(e);
            }
        }
        let started = Instant::now();
        file.write_all_at(buf, at)?;
        self.metrics.journal_write_seconds.observe(started.elapsed().as_secs_f64());
        if self.settings.durability == Durability::Fsync {
            if let Some(super::faults::Injected::Fail(e) | super::faults::Injected::Short(_, e)) =
                inject(super::faults::JournalOp::Sync)
            {
                return Err(e);
            }
            let started = Instant::now();
            file.sync_data()?;
            let took = started.elapsed();
            self.metrics.fsync_seconds.observe(took.as_secs_f64());
            if took > SLOW_FSYNC {
                tracing::warn!(
                    ms = took.as_millis() as u64,
                    bytes = buf.len(),
                    position = self.position,
                    "slow journal fsync"
                );
            }
        }
        Ok(())
    }

    /// Closes the current file (durably) and starts the next one at the current
    /// position. When the new file cannot be created, the writer has no file until
    /// [`retry`](Self::retry) creates it.
    fn roll(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let mut current = self.current.lock();
        if let Some(file) = current.as_ref() {
            file.sync_data()?;
        }
        *current = None;
        self.file_start = self.position;
        let (next, _) = self.files.open_for_writing(self.position)?;
        *current = Some(next);
        tracing::info!(ms = started.elapsed().as_millis() as u64, position = self.position, "journal file rolled");
        Ok(())
    }
}

impl Publisher {
    /// Makes a written group visible: high watermarks, the cache, the answers to its
    /// appends (those not answered already). Groups are published in journal order.
    fn publish(&self, written: Written) {
        let Written { base_position, data, capacity, placed, now } = written;
        let durable_at = std::time::Instant::now();
        // A cached batch that slices the group buffer keeps all of it alive. Share the
        // buffer (its whole capacity) only with a partition that owns at least half of it, so memory pinned
        // by the cache stays within twice what the cache budget counts; copy the
        // batches of partitions that had a small part of the group.
        let mut owned: HashMap<u64, usize> = HashMap::with_capacity(placed.len());
        for p in &placed {
            *owned.entry(p.partition.id).or_default() += p.batches.iter().map(|(_, r, _)| r.len()).sum::<usize>();
        }
        let mut cache = self.cache.lock();
        for p in placed {
            let share = owned.get(&p.partition.id).is_some_and(|&n| n * 2 >= capacity);
            let mut st = p.partition.state.lock();
            if p.generation != p.partition.generation() {
                // The log was rebuilt after this was placed (cluster mode): not ours.
                drop(st);
                if let Some(reply) = p.reply {
                    p.partition.sub_unpublished(1);
                    let _ = reply.send(Err(StorageError::NotLeader));
                }
                continue;
            }
            for (mut location, range, mark) in p.batches {
                location.position = base_position + range.start as u64;
                st.high_watermark = location.last_offset + 1;
                if let Some(mark) = mark {
                    if location.base_offset >= st.state_through {
                        st.apply_txn(mark, location.base_offset, location.last_offset);
                    }
                }
                st.push_batch(location, now);
                let cached = if share { data.slice(range) } else { Bytes::copy_from_slice(&data[range]) };
                cache.admit(&p.partition, &mut st, cached);
            }
            drop(st);
            self.metrics.journal_appends.inc();
            if let Some(reply) = p.reply {
                p.partition.sub_unpublished(1);
                let _ = reply.send(Ok(Appended { durable_at: Some(durable_at), ..p.outcome }));
            }
        }
        cache.enforce();
        drop(cache);
        self.files.set_published(base_position + data.len() as u64);
        self.durable.send_modify(|v| *v += 1);
    }

    /// A written group that will never be acknowledged (cluster mode: this broker
    /// lost its lease before the group was durable in the object store).
    fn refuse(&self, written: Written, error: impl Fn() -> StorageError) {
        for p in written.placed {
            if let Some(reply) = p.reply {
                p.partition.sub_unpublished(1);
                let _ = reply.send(Err(error()));
            }
        }
    }
}

/// An fsync slower than this is logged: the disk is struggling.
const SLOW_FSYNC: Duration = Duration::from_millis(50);

fn size(a: &Append) -> u64 {
    a.batches.iter().map(|(h, _)| (h.size + HEADER_LEN) as u64).sum()
}

/// With `durability = "interval"`: fsyncs the current file every `interval` until the
/// writer is gone.
pub(crate) fn run_interval_sync(
    current: std::sync::Weak<Mutex<Option<File>>>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    loop {
        std::thread::sleep(interval);
        let Some(current) = current.upgrade() else {
            return;
        };
        // Sync a clone of the handle so that appends are not blocked during the fsync.
        let file = match current.lock().as_ref().map(File::try_clone) {
            None => continue,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot clone journal file handle for fsync");
                continue;
            }
        };
        drop(current);
        let started = Instant::now();
        match file.sync_data() {
            Ok(()) => metrics.fsync_seconds.observe(started.elapsed().as_secs_f64()),
            Err(e) => tracing::error!(error = %e, "interval journal fsync failed"),
        }
    }
}
