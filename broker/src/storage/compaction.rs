//! Compaction (`cleanup.policy=compact`): a partition's sealed segments are rewritten
//! keeping, per key, only the latest value; a tombstone (null value) that is the
//! latest of its key is kept for `delete.retention.ms` after its timestamp, then
//! removed too. The journal-resident tail is never touched.
//!
//! Transactional and control batches are kept whole and do not supersede older
//! values: whether their records count depends on a marker, and keeping a record
//! is always safe while dropping a wrong one is not. Records without a key are kept.
//!
//! The rewritten segments keep the offset range of those they replace (offsets are
//! never reused; reads skip the holes), go into one new object, and replace the old
//! ones in the manifest in one metadata record once the object is durable; the old
//! objects become garbage. Only the sealed segments whose records are all older than
//! `min.compaction.lag.ms` are rewritten (a prefix of the partition: segments are in
//! offset order). A partition is compacted when the bytes sealed since its last
//! compaction reach `min.cleanable.dirty.ratio` of those bytes, when dirty data is
//! older than `max.compaction.lag.ms`, or when a tombstone may have expired since.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::{build, records};
use tributary_tiering::segment::SegmentBuilder;
use tributary_tiering::store::SegmentLocation;
use uuid::Uuid;

use super::metadata_log::{MetaRecord, SegmentMeta};
use super::partition::{PartitionLog, Sealed};
use super::{segments, Storage, StorageError, Topic};

/// What the flusher remembers of a partition's compactions (not persisted: after a
/// restart a partition is compacted once more, which changes nothing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CleanState {
    /// Sealed data below this offset has been compacted.
    cleaned_through: i64,
    /// When it last ran (ms since the epoch).
    last_run_ms: i64,
}

impl Storage {
    /// Compacts every partition of a compacted topic that is due.
    pub(crate) async fn compact_due(self: &Arc<Self>) -> Result<(), StorageError> {
        let now = crate::clock::now_ms();
        for topic in self.topics() {
            let cfg = topic.config();
            if !cfg.compact {
                continue;
            }
            for partition in &topic.partitions {
                if partition.is_fenced() {
                    continue;
                }
                let state = self.compaction.lock().get(&partition.id).copied().unwrap_or_default();
                // Only segments whose every record is older than min.compaction.lag.ms
                // may be rewritten.
                let cleanable_before = now.saturating_sub(cfg.min_compaction_lag_ms);
                let due = {
                    let st = partition.state.lock();
                    let cleanable = || st.sealed.iter().take_while(|s| s.max_timestamp <= cleanable_before);
                    let total: u64 = cleanable().map(|s| s.data_len()).sum();
                    let dirty = || cleanable().filter(|s| s.last_offset >= state.cleaned_through);
                    let dirty_bytes: u64 = dirty().map(|s| s.data_len()).sum();
                    let ratio = if total == 0 { 0.0 } else { dirty_bytes as f64 / total as f64 };
                    let overdue = dirty().any(|s| s.max_timestamp < now.saturating_sub(cfg.max_compaction_lag_ms));
                    let tombstones_due = state.last_run_ms > 0 && now - state.last_run_ms >= cfg.delete_retention_ms;
                    total > 0
                        && ((dirty_bytes > 0 && (ratio >= cfg.min_cleanable_dirty_ratio || overdue)) || tombstones_due)
                };
                if due {
                    let through = self
                        .compact(&topic, partition, now, cleanable_before, cfg.delete_retention_ms, cfg.segment_bytes)
                        .await?;
                    self.compaction
                        .lock()
                        .insert(partition.id, CleanState { cleaned_through: through, last_run_ms: now });
                }
            }
        }
        Ok(())
    }

    /// Rewrites a partition's sealed segments from the first up to the last whose
    /// records are all at or before `cleanable_before`; returns the offset compacted
    /// through.
    async fn compact(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        partition: &Arc<PartitionLog>,
        now: i64,
        cleanable_before: i64,
        delete_retention_ms: i64,
        segment_bytes: u64,
    ) -> Result<i64, StorageError> {
        let old: Vec<Sealed> =
            partition.state.lock().sealed.iter().take_while(|s| s.max_timestamp <= cleanable_before).cloned().collect();
        let (Some(first), Some(last)) = (old.first(), old.last()) else {
            return Ok(0);
        };
        let (from, to, end) = (first.base_offset, last.base_offset, last.last_offset);
        // Pass 1: the latest offset of every key.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        let mut failure = None;
        for s in &old {
            segments::read_all(&self.store, s, |h, batch| {
                if h.is_control() || h.is_transactional() {
                    return;
                }
                match records::read(h, &batch) {
                    Ok(recs) => {
                        for r in recs {
                            if let Some(k) = r.key {
                                latest.insert(k, r.offset);
                            }
                        }
                    }
                    Err(e) => failure = Some(e.to_string()),
                }
            })
            .await?;
        }
        if let Some(e) = failure {
            return Err(StorageError::SegmentStore(format!("compacting {}-{}: {e}", topic.name, partition.index)));
        }
        // Pass 2: the batches with only the records that stay.
        let horizon = now - delete_retention_ms;
        let mut kept: Vec<(BatchHeader, Bytes)> = Vec::new();
        for s in &old {
            let mut batches = Vec::new();
            segments::read_all(&self.store, s, |h, b| batches.push((*h, b))).await?;
            for (h, batch) in batches {
                if h.is_control() || h.is_transactional() {
                    kept.push((h, batch));
                    continue;
                }
                let recs = records::read(&h, &batch).map_err(|e| StorageError::SegmentStore(e.to_string()))?;
                let keep: HashMap<i64, bool> = recs
                    .iter()
                    .map(|r| {
                        let stays = match &r.key {
                            None => true,
                            Some(k) => {
                                latest.get(k) == Some(&r.offset) && (r.value.is_some() || r.timestamp >= horizon)
                            }
                        };
                        (r.offset, stays)
                    })
                    .collect();
                let rewritten = build::retain(&batch, |o| keep.get(&o).copied().unwrap_or(true))
                    .map_err(|e| StorageError::SegmentStore(e.to_string()))?;
                if let Some(b) = rewritten {
                    let h = BatchHeader::parse(&b).map_err(|e| StorageError::SegmentStore(e.to_string()))?;
                    kept.push((h, b));
                }
            }
        }
        let before: u64 = old.iter().map(|s| s.data_len()).sum();
        // The new segments keep the old offset range: the first starts at `from`,
        // each ends where the next begins, the last at `end`.
        let mut object = Vec::new();
        let mut metas: Vec<SegmentMeta> = Vec::new();
        let mut builder = SegmentBuilder::new();
        let mut max_ts = (i64::MIN, from);
        let mut seg_base = from;
        let flush = |builder: SegmentBuilder, object: &mut Vec<u8>, base: i64, last: i64, max_ts: (i64, i64)| {
            let built = builder.finish();
            let meta = SegmentMeta {
                start: object.len() as u64,
                len: built.bytes.len() as u64,
                footer_len: built.footer_len,
                base_offset: base,
                last_offset: last,
                max_timestamp: built.max_timestamp,
                max_timestamp_batch: max_ts.1,
            };
            object.extend_from_slice(&built.bytes);
            meta
        };
        for (h, b) in &kept {
            if !builder.is_empty() && builder.data_len() as u64 + b.len() as u64 > segment_bytes {
                let done = std::mem::replace(&mut builder, SegmentBuilder::new());
                metas.push(flush(done, &mut object, seg_base, h.base_offset - 1, max_ts));
                seg_base = h.base_offset;
                max_ts = (i64::MIN, seg_base);
            }
            builder.push(b, h.base_offset, h.last_offset(), h.max_timestamp);
            if h.max_timestamp >= max_ts.0 {
                max_ts = (h.max_timestamp, h.base_offset);
            }
        }
        metas.push(flush(builder, &mut object, seg_base, end, max_ts));
        let key = tributary_tiering::segment_key(
            "default",
            &topic.name,
            partition.index,
            from,
            &Uuid::new_v4().simple().to_string(),
        );
        self.record(MetaRecord::UploadStarted { key: key.clone() }).await?;
        let after = object.len();
        if let Err(e) = self.store.put(&key, Bytes::from(object)).await {
            self.record(MetaRecord::UploadAbandoned { key: key.clone() }).await?;
            return Err(StorageError::SegmentStore(format!("uploading compacted {key}: {e}")));
        }
        self.record(MetaRecord::SegmentsReplaced {
            id: topic.id,
            partition: partition.index,
            from,
            to,
            key: key.clone(),
            with: metas.clone(),
        })
        .await?;
        let key: Arc<str> = Arc::from(key.as_str());
        let new: Vec<Sealed> = metas
            .iter()
            .map(|m| Sealed {
                loc: SegmentLocation { key: key.clone(), start: m.start, len: m.len, footer_len: m.footer_len },
                base_offset: m.base_offset,
                last_offset: m.last_offset,
                max_timestamp: m.max_timestamp,
                max_timestamp_batch: m.max_timestamp_batch,
            })
            .collect();
        {
            let mut st = partition.state.lock();
            let lo = st.sealed.partition_point(|s| s.base_offset < from);
            let hi = st.sealed.partition_point(|s| s.base_offset <= to);
            st.sealed.splice(lo..hi, new);
        }
        if let Some(hook) = self.seal_hook.get() {
            hook.sealed(partition);
        }
        tracing::info!(
            topic = %topic.name,
            partition = partition.index,
            segments = old.len(),
            bytes_before = before,
            bytes_after = after,
            "compacted"
        );
        Ok(end + 1)
    }
}
