//! The segment flusher (DESIGN §4): one task that, every `storage.flush_interval_ms`,
//!
//! 1. seals journal-resident data into segment objects: a partition's data once it
//!    reaches `segment.bytes`, ages past `segment.ms`, has all expired under its
//!    retention, or holds the oldest journal file while the journal nears
//!    `journal.max_bytes`. A partition with less than `storage.pack_threshold_bytes`
//!    to seal shares a pack object with others (each keeps its own byte range), so
//!    that many quiet streams do not become many tiny objects;
//! 2. deletes journal files whose every entry is sealed, after writing the journal
//!    checkpoint (producer and transaction state) that replaces what they held;
//! 3. applies retention (whole sealed segments, by time and size, and those below a
//!    log start moved by DeleteRecords) and compaction (see [`super::compaction`]);
//! 4. deletes objects no manifest refers to any more.
//!
//! Objects are streamed to the store in parts (a multipart upload on S3) of
//! `storage.upload_part_bytes`, read from the journal a part at a time, so sealing
//! takes about `(upload_concurrency + 1) × upload_part_bytes` of memory whatever
//! `segment.bytes` is.
//!
//! Every object is durable before the metadata log records it (an `UploadStarted`
//! record before the upload, `SegmentsSealed` after), so a crash leaves the old
//! manifest or the new one; an interrupted upload is recorded as garbage at start and
//! its object deleted. When the store fails, the journal keeps taking appends until
//! `journal.max_bytes`, then producers get a retriable error until uploads succeed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_protocol::batch::BatchHeader;
use tributary_tiering::segment::SegmentIndex;
use tributary_tiering::store::{ObjectWriter, SegmentLocation};
use uuid::Uuid;

use super::checkpoint::Checkpoint;
use super::metadata_log::{MetaRecord, SealedRecord, SegmentMeta};
use super::partition::{Chunk, PartitionLog, Sealed};
use super::{Storage, StorageError, Topic};

/// The flusher's settings, from `[storage]` and `[journal]`.
#[derive(Debug, Clone)]
pub struct FlushSettings {
    pub interval: Duration,
    pub pack_threshold_bytes: u64,
    pub pack_bytes: u64,
    pub journal_max_bytes: u64,
    /// Bytes read from the journal and written to the store at a time (an upload
    /// part), and how many parts are in flight: the memory an upload takes.
    pub upload_part_bytes: usize,
    pub upload_concurrency: usize,
}

impl FlushSettings {
    pub fn from_config(config: &tributary_config::Config) -> Self {
        FlushSettings {
            interval: Duration::from_millis(config.storage.flush_interval_ms),
            pack_threshold_bytes: config.storage.pack_threshold_bytes,
            pack_bytes: config.storage.pack_bytes,
            journal_max_bytes: config.journal.max_bytes,
            upload_part_bytes: config.storage.upload_part_bytes as usize,
            // A local file is written in order, one part at a time; parts in flight
            // only pay off against an object store's per-request latency (and
            // OpenDAL's fs writer holds every part it was given until the end).
            upload_concurrency: if config.storage.backend == "fs" { 1 } else { config.storage.upload_concurrency },
        }
    }
}

/// Runs rounds until `shutdown`.
pub async fn run(storage: Arc<Storage>, settings: FlushSettings, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match storage.flush_round(&settings).await {
            Ok(()) if failures > 0 => {
                tracing::info!(failed_rounds = failures, "segment store works again");
                failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "segment flush failed; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, "segment flush failed again");
                }
                failures += 1;
                // Back off (up to 5 s) so an unreachable store is not hammered.
                let pause = settings.interval.saturating_mul(1 << failures.min(6)).min(Duration::from_secs(5));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Why a partition's journal-resident data is sealed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Full,
    Aged,
    Expired,
    JournalPressure,
}

/// A partition to seal: its first `count` journal-resident batches.
struct Candidate {
    topic: Arc<Topic>,
    partition: Arc<PartitionLog>,
    count: usize,
    bytes: u64,
    segment_bytes: u64,
    reason: Reason,
}

/// One part of an object being built: a partition's batches `[0, count)` sealed
/// into `segment`.
struct Part {
    topic: Arc<Topic>,
    partition: Arc<PartitionLog>,
    /// The log's generation when its batches were read: a log rebuilt since
    /// (cluster mode) keeps its own batches, this segment is not sealed into it.
    generation: u64,
    count: usize,
    meta: SegmentMeta,
}

impl Storage {
    /// One round of the flusher. Stops at the first store failure (the next round
    /// tries again); everything recorded before it stands.
    pub async fn flush_round(self: &Arc<Self>, settings: &FlushSettings) -> Result<(), StorageError> {
        let result = self.seal_due(settings).await;
        // Trimming, retention and garbage collection go on even if an upload failed:
        // they free what is already safe to free.
        self.trim_journal().await?;
        self.checkpoint_if_due().await?;
        let total = self.journal.files.total_bytes();
        let full = total > settings.journal_max_bytes;
        if full != self.journal_full.swap(full, Ordering::Relaxed) {
            if full {
                tracing::warn!(bytes = total, limit = settings.journal_max_bytes, "journal full: refusing appends");
            } else {
                tracing::info!(bytes = total, "journal below its bound again: taking appends");
            }
        }
        self.metrics.journal_disk_bytes.set(total as i64);
        self.apply_retention().await?;
        self.compact_due().await?;
        self.collect_garbage().await?;
        result
    }

    fn flush_candidates(&self, settings: &FlushSettings) -> Vec<Candidate> {
        let now = crate::clock::now_ms();
        let starts = self.journal.files.starts();
        let pressure = self.journal.files.total_bytes() > settings.journal_max_bytes / 4 * 3;
        // Under pressure, whatever holds the oldest file is sealed so it can go.
        let trim_below = if pressure && starts.len() > 1 { starts[1] } else { 0 };
        let mut out = Vec::new();
        for topic in self.topics() {
            let cfg = topic.config();
            for partition in &topic.partitions {
                if partition.is_fenced() {
                    continue;
                }
                let st = partition.state.lock();
                let Some(front) = st.batches.front() else {
                    continue;
                };
                let age = now - st.unsealed_since_ms;
                let expired = || {
                    cfg.delete
                        && cfg.retention_ms >= 0
                        && age >= cfg.retention_ms
                        && st.batches.iter().all(|b| b.max_timestamp < now - cfg.retention_ms)
                };
                // Aged first: data past segment.ms is sealed whole, the remainder of a
                // full segment included (as Kafka rolls on segment.ms).
                let reason = if age >= cfg.segment_ms {
                    Reason::Aged
                } else if st.unsealed_bytes >= cfg.segment_bytes {
                    Reason::Full
                } else if front.position < trim_below {
                    Reason::JournalPressure
                } else if expired() {
                    Reason::Expired
                } else {
                    continue;
                };
                out.push(Candidate {
                    topic: topic.clone(),
                    partition: partition.clone(),
                    count: st.batches.len(),
                    bytes: st.unsealed_bytes,
                    segment_bytes: cfg.segment_bytes,
                    reason,
                });
            }
        }
        out
    }

    async fn seal_due(self: &Arc<Self>, settings: &FlushSettings) -> Result<(), StorageError> {
        let candidates = self.flush_candidates(settings);
        let (own, small): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.reason == Reason::Full || c.bytes >= settings.pack_threshold_bytes);
        for c in own {
            // A backlog larger than a segment becomes several segments; a partition
            // sealed for being full keeps its remainder in the journal until that is
            // full too.
            let (mut count, mut bytes) = (c.count, c.bytes);
            while count > 0 && (c.reason != Reason::Full || bytes >= c.segment_bytes) {
                let Some(base) = c.partition.state.lock().batches.front().map(|b| b.base_offset) else {
                    break;
                };
                let key = tributary_tiering::segment_key(
                    "default",
                    &c.topic.name,
                    c.partition.index,
                    base,
                    &Uuid::new_v4().simple().to_string(),
                );
                let parts = self.upload(key, &[(&c, count, c.segment_bytes)], settings).await?;
                let part = &parts[0];
                count -= part.count;
                bytes = bytes.saturating_sub(part.meta.len - part.meta.footer_len as u64);
            }
        }
        // Small partitions share pack objects of about `pack_bytes`.
        let mut pack: Vec<(&Candidate, usize, u64)> = Vec::new();
        let mut pack_len = 0u64;
        for c in &small {
            pack.push((c, c.count, u64::MAX));
            pack_len += c.bytes;
            if pack_len >= settings.pack_bytes {
                let key = tributary_tiering::pack_key(&Uuid::new_v4().simple().to_string());
                self.upload(key, &std::mem::take(&mut pack), settings).await?;
                pack_len = 0;
            }
        }
        if !pack.is_empty() {
            let key = tributary_tiering::pack_key(&Uuid::new_v4().simple().to_string());
            self.upload(key, &pack, settings).await?;
        }
        Ok(())
    }

    /// Writes the first of `c`'s journal-resident batches (at most `count` of them
    /// and about `limit` bytes) as one segment at the writer's position: read and
    /// written `upload_part_bytes` at a time, so memory stays bounded whatever the
    /// segment's size.
    async fn write_part(
        &self,
        writer: &mut ObjectWriter,
        c: &Candidate,
        count: usize,
        limit: u64,
        settings: &FlushSettings,
    ) -> Result<Part, StorageError> {
        let (chunks, locations, generation) = {
            let st = c.partition.state.lock();
            let generation = c.partition.generation();
            let cached_from = st.batches.len() - st.cache.len();
            let mut chunks = Vec::new();
            let mut locations = Vec::new();
            let mut bytes = 0u64;
            for i in 0..count.min(st.batches.len()) {
                let b = st.batches[i];
                if bytes >= limit {
                    break;
                }
                bytes += b.len as u64;
                chunks.push(if i >= cached_from {
                    Chunk::Cached(st.cache[i - cached_from].clone())
                } else {
                    Chunk::Journal { position: b.position, len: b.len }
                });
                locations.push(b);
            }
            (chunks, locations, generation)
        };
        let at = writer.written();
        let store_err = |e: tributary_tiering::TieringError| StorageError::SegmentStore(e.to_string());
        let mut index = SegmentIndex::new();
        let mut max_ts = (i64::MIN, 0);
        let mut chunks = chunks.into_iter();
        let mut locs = locations.iter();
        loop {
            // The next run of batches of about one upload part.
            let mut run = Vec::new();
            let mut run_bytes = 0u64;
            for chunk in chunks.by_ref() {
                run_bytes += match &chunk {
                    Chunk::Journal { len, .. } => *len as u64,
                    Chunk::Cached(b) => b.len() as u64,
                    _ => 0,
                };
                run.push(chunk);
                if run_bytes >= settings.upload_part_bytes as u64 {
                    break;
                }
            }
            if run.is_empty() {
                break;
            }
            for b in self.load_for_sealing(run).await? {
                let loc = locs.next().ok_or_else(|| StorageError::SegmentStore("batch without a location".into()))?;
                // Log-append-time batches carry the broker's time in the bytes; the
                // index entry has the same value.
                let header = BatchHeader::parse(&b)
                    .map_err(|e| StorageError::Corrupt { position: loc.position, reason: e.to_string() })?;
                index.push(b.len(), header.base_offset, header.last_offset(), loc.max_timestamp);
                if loc.max_timestamp >= max_ts.0 {
                    max_ts = (loc.max_timestamp, loc.base_offset);
                }
                writer.write(b).await.map_err(store_err)?;
            }
        }
        let f = index.finish();
        writer.write(f.footer).await.map_err(store_err)?;
        let meta = SegmentMeta {
            start: at,
            len: f.data_len + f.footer_len as u64,
            footer_len: f.footer_len,
            base_offset: f.base_offset,
            last_offset: f.last_offset,
            max_timestamp: f.max_timestamp,
            max_timestamp_batch: max_ts.1,
        };
        Ok(Part { topic: c.topic.clone(), partition: c.partition.clone(), generation, count: locations.len(), meta })
    }

    /// Uploads one object holding a segment of each item (candidate, at most that
    /// many batches, about that many bytes) and, once it is durable, records and
    /// applies its parts. Returns them.
    async fn upload(
        self: &Arc<Self>,
        key: String,
        items: &[(&Candidate, usize, u64)],
        settings: &FlushSettings,
    ) -> Result<Vec<Part>, StorageError> {
        self.record(MetaRecord::UploadStarted { key: key.clone() }).await?;
        failpoint("before-upload");
        let written = async {
            let mut writer = self
                .store
                .writer(&key, settings.upload_part_bytes, settings.upload_concurrency)
                .await
                .map_err(|e| StorageError::SegmentStore(e.to_string()))?;
            let mut parts = Vec::with_capacity(items.len());
            for &(c, count, limit) in items {
                match self.write_part(&mut writer, c, count, limit, settings).await {
                    Ok(part) => parts.push(part),
                    Err(e) => {
                        writer.abort().await;
                        return Err(e);
                    }
                }
            }
            let len = writer.written();
            let took = writer.close().await.map_err(|e| StorageError::SegmentStore(e.to_string()))?;
            Ok::<_, StorageError>((parts, len, took))
        }
        .await;
        let (parts, len) = match written {
            Ok((parts, len, took)) => {
                self.metrics.segment_upload_seconds.observe(took.as_secs_f64());
                (parts, len)
            }
            Err(e) => {
                self.record(MetaRecord::UploadAbandoned { key: key.clone() }).await?;
                return Err(StorageError::SegmentStore(format!("uploading {key}: {e}")));
            }
        };
        failpoint("after-upload");
        let segments = parts
            .iter()
            .map(|p| SealedRecord { topic: p.topic.id, partition: p.partition.index, segment: p.meta.clone() })
            .collect();
        self.record(MetaRecord::SegmentsSealed { key: key.clone(), segments }).await?;
        failpoint("after-seal");
        let shared: Arc<str> = Arc::from(key.as_str());
        let now = crate::clock::now_ms();
        for p in &parts {
            let m = &p.meta;
            let sealed = Sealed {
                loc: SegmentLocation { key: shared.clone(), start: m.start, len: m.len, footer_len: m.footer_len },
                base_offset: m.base_offset,
                last_offset: m.last_offset,
                max_timestamp: m.max_timestamp,
                max_timestamp_batch: m.max_timestamp_batch,
            };
            let mut st = p.partition.state.lock();
            if p.partition.generation() != p.generation {
                continue;
            }
            let freed = st.seal_front(p.count, sealed, now);
            drop(st);
            self.cache_total.fetch_sub(freed, Ordering::Relaxed);
            if let Some(hook) = self.seal_hook.get() {
                hook.sealed(&p.partition);
            }
        }
        tracing::debug!(%key, bytes = len, "sealed");
        Ok(parts)
    }

    /// Appends a record to the metadata log (blocking work, off the runtime).
    pub(crate) async fn record(self: &Arc<Self>, record: MetaRecord) -> Result<(), StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.meta.lock().append(record).map_err(StorageError::io("writing metadata log"))
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Deletes the journal files whose every entry is sealed (or belongs to a deleted
    /// partition), after a checkpoint that covers them.
    async fn trim_journal(self: &Arc<Self>) -> Result<(), StorageError> {
        // Only a file with a later one after it can go: with one file (an idle
        // broker) there is nothing to walk the partitions for.
        let starts = self.journal.files.starts();
        if starts.len() < 2 {
            return Ok(());
        }
        let topics = self.topics();
        let flushed = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.state.lock().batches.front().map(|b| b.position))
            .min()
            .unwrap_or(u64::MAX);
        let deletable: Vec<u64> = starts.windows(2).take_while(|w| w[1] <= flushed).map(|w| w[0]).collect();
        if deletable.is_empty() {
            return Ok(());
        }
        let partitions: Vec<Arc<PartitionLog>> = topics.iter().flat_map(|t| t.partitions.iter().cloned()).collect();
        let files = self.journal.files.clone();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.write_checkpoint(&partitions)?;
            failpoint("after-checkpoint");
            for start in &deletable {
                files.remove(*start).map_err(StorageError::io(format!("deleting journal file {start}")))?;
            }
            tracing::debug!(files = deletable.len(), "journal trimmed");
            Ok(())
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Captures and writes the journal checkpoint as of the published end of the
    /// journal (read first: every batch the capture misses lies after it). Blocking.
    fn write_checkpoint(&self, partitions: &[Arc<PartitionLog>]) -> Result<(), StorageError> {
        let position = self.journal.files.published();
        Checkpoint::capture(position, partitions.iter())
            .write(&self.journal_dir)
            .map_err(StorageError::io("writing journal checkpoint"))?;
        self.checkpointed.store(position, Ordering::Release);
        Ok(())
    }

    /// Every `journal.checkpoint_bytes` of journal, a checkpoint, so that a start
    /// replays only what came after it.
    async fn checkpoint_if_due(self: &Arc<Self>) -> Result<(), StorageError> {
        let grown = self.journal.files.published().saturating_sub(self.checkpointed.load(Ordering::Acquire));
        if grown < self.checkpoint_bytes {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let partitions: Vec<Arc<PartitionLog>> =
                this.topics().iter().flat_map(|t| t.partitions.iter().cloned()).collect();
            let started = std::time::Instant::now();
            this.write_checkpoint(&partitions)?;
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "journal checkpoint written");
            Ok(())
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Drops whole sealed segments that retention (time, size) or a moved log start
    /// no longer keeps, and moves the log start past them.
    async fn apply_retention(self: &Arc<Self>) -> Result<(), StorageError> {
        let now = crate::clock::now_ms();
        for topic in self.topics() {
            let cfg = topic.config();
            for partition in &topic.partitions {
                // Cluster mode: a partition led elsewhere is that owner's to trim.
                if partition.is_fenced() {
                    continue;
                }
                let below = {
                    let st = partition.state.lock();
                    if st.sealed.is_empty() {
                        continue;
                    }
                    let mut below = st.log_start_offset;
                    if cfg.delete {
                        let mut size: u64 = st.sealed.iter().map(|s| s.data_len()).sum::<u64>() + st.unsealed_bytes;
                        for s in &st.sealed {
                            let by_time = cfg.retention_ms >= 0 && s.max_timestamp < now - cfg.retention_ms;
                            let by_size = cfg.retention_bytes >= 0 && size - s.data_len() >= cfg.retention_bytes as u64;
                            if !(by_time || by_size) {
                                break;
                            }
                            size -= s.data_len();
                            below = below.max(s.last_offset + 1);
                        }
                    }
                    if st.sealed[0].last_offset >= below {
                        continue;
                    }
                    below
                };
                self.drop_segments(&topic, partition, below).await?;
            }
        }
        Ok(())
    }

    /// Drops a partition's sealed segments ending below `below`; the log start moves
    /// to at least `below`.
    async fn drop_segments(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        partition: &Arc<PartitionLog>,
        below: i64,
    ) -> Result<(), StorageError> {
        let log_start = partition.offsets().log_start_offset.max(below);
        self.record(MetaRecord::SegmentsDropped { id: topic.id, partition: partition.index, below, log_start }).await?;
        let mut st = partition.state.lock();
        st.sealed.retain(|s| s.last_offset >= below);
        st.log_start_offset = st.log_start_offset.max(log_start);
        drop(st);
        if let Some(hook) = self.seal_hook.get() {
            hook.sealed(partition);
        }
        Ok(())
    }

    /// Deletes objects no manifest refers to any more.
    async fn collect_garbage(self: &Arc<Self>) -> Result<(), StorageError> {
        let garbage: Vec<String> = self.meta.lock().state.garbage.iter().take(1000).cloned().collect();
        if garbage.is_empty() {
            return Ok(());
        }
        if self.shipper.is_some() {
            // Cluster mode: a partition manifest another broker may take over from
            // can still name a segment this broker compacted or dropped, so this
            // broker forgets them and the controller's sweeper deletes them once no
            // current manifest names them (cluster::sweep).
            return self.record(MetaRecord::ObjectsDeleted { keys: garbage }).await;
        }
        let mut deleted = Vec::with_capacity(garbage.len());
        let mut failure = None;
        for key in garbage {
            match self.store.delete(&key).await {
                Ok(()) => deleted.push(key),
                Err(e) => {
                    failure = Some(StorageError::SegmentStore(format!("deleting {key}: {e}")));
                    break;
                }
            }
        }
        if !deleted.is_empty() {
            self.record(MetaRecord::ObjectsDeleted { keys: deleted }).await?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Objects waiting to be deleted from the store.
    pub(crate) fn garbage_objects(&self) -> usize {
        self.meta.lock().state.garbage.len()
    }

    /// Sealed segments and journal-resident bytes per topic, for metrics:
    /// topic -> (segments, sealed bytes, journal bytes, oldest journal age in ms).
    pub(crate) fn tier_stats(&self) -> HashMap<Arc<str>, (u64, u64, u64, i64)> {
        let now = crate::clock::now_ms();
        let mut out = HashMap::new();
        for t in self.topics() {
            let e: &mut (u64, u64, u64, i64) = out.entry(t.name.clone()).or_default();
            for p in &t.partitions {
                let (n, sealed, journal, age) = p.tier_stats(now);
                e.0 += n;
                e.1 += sealed;
                e.2 += journal;
                e.3 = e.3.max(age);
            }
        }
        out
    }
}

/// Crash tests stop the process at a named point of the flusher: with
/// `TRB_FAILPOINT=<name>` in the environment (not `TRIBUTARY_*`, which is config) the process aborts there, as a
/// power cut or SIGKILL would stop it. Unset, this is one comparison.
pub(crate) fn failpoint(name: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if ARMED.get_or_init(|| std::env::var("TRB_FAILPOINT").ok()).as_deref() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
