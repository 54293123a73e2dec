//! Start-up: load the metadata (snapshot + log) and the journal checkpoint, rebuild
//! every partition's index of journal-resident batches (those after its sealed
//! segments) and its producer and transaction state (from the batches at or after
//! its checkpoint) by scanning the journal from its first file.
//!
//! A torn tail can only be at the end of the newest file: a crash cut the last
//! group commit, which was never acknowledged, and it is cut off. Anything else that
//! does not check out (a bad entry with intact entries after it, in any file, or the
//! end of an older file) is damage at rest: it is stepped over, logged with its
//! place and size, and counted in `/metrics`, with the offsets the partitions lost
//! with it; every intact entry, before and after, is kept. Nothing is ever deleted
//! or truncated for damage.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::sync::Arc;

use bytes::Bytes;
use tributary_protocol::batch::BatchHeader;

use super::journal::entry::{self, HEADER_LEN, KIND_BATCH};
use super::journal::files::JournalFiles;
use super::journal::StartPoint;
use super::partition::{BatchLocation, PartitionLog};
use super::txn_index::mark_of;
use super::StorageError;
use crate::metrics::Metrics;

/// What the journal scan found.
#[derive(Debug)]
pub(crate) struct JournalState {
    pub(crate) start: StartPoint,
    pub(crate) batches: u64,
    pub(crate) bytes: u64,
    /// Bytes stepped over as damaged, and in how many regions.
    pub(crate) damaged_bytes: u64,
    pub(crate) damaged_regions: u64,
    /// Offsets missing between the batches of a partition (lost with damage).
    pub(crate) missing_offsets: u64,
    /// Bytes of journal read (those after the checkpoint's position).
    pub(crate) scanned_bytes: u64,
}

/// Replays the journal from position `from` (a checkpoint's; the files before it
/// are only opened for reads) into the partitions' indexes. `through` holds, per
/// partition with a checkpoint, the offset from which batches still count.
pub(crate) fn replay_journal(
    files: &JournalFiles,
    partitions: &HashMap<u64, Arc<PartitionLog>>,
    through: &HashMap<u64, i64>,
    from: u64,
    metrics: &Metrics,
) -> Result<JournalState, StorageError> {
    let now = crate::clock::now_ms();
    let starts = files.list().map_err(StorageError::io("listing journal files"))?;
    let mut state = JournalState {
        start: StartPoint { file_start: 0, position: 0 },
        batches: 0,
        bytes: 0,
        damaged_bytes: 0,
        damaged_regions: 0,
        missing_offsets: 0,
        scanned_bytes: 0,
    };
    for (n, &start) in starts.iter().enumerate() {
        let path = files.path(start);
        let last = n + 1 == starts.len();
        if !last && starts[n + 1] <= from {
            // Wholly before the checkpoint: what it holds is in the checkpoint.
            files.register(start).map_err(StorageError::io("opening journal file"))?;
            continue;
        }
        let whole = Bytes::from(fs::read(&path).map_err(StorageError::io(format!("reading {}", path.display())))?);
        // A checkpoint's position is the end of a group commit, where entries start.
        let skip = (from.saturating_sub(start) as usize).min(whole.len());
        let data = whole.slice(skip..);
        state.scanned_bytes += data.len() as u64;
        let scanned = entry::scan_resync(&data);
        for range in &scanned.damaged {
            tracing::error!(
                file = %path.display(),
                from = skip + range.start,
                to = skip + range.end,
                "damaged journal entries (bad checksum or framing, intact entries after them): stepped over; \
                 the records in them are lost, the partitions missing them are logged next"
            );
            state.damaged_regions += 1;
            state.damaged_bytes += range.len() as u64;
        }
        for e in scanned.entries.iter().filter(|e| e.kind == KIND_BATCH) {
            let Some(partition) = partitions.get(&e.partition) else {
                continue;
            };
            let position = start + (skip + e.at + HEADER_LEN) as u64;
            let header = match BatchHeader::parse(&e.payload) {
                Ok(h) => h,
                Err(err) => {
                    // Intact framing around a batch that does not parse: not written
                    // by this broker as it is; count it with the damage.
                    tracing::error!(position, error = %err, "journal entry with an unreadable batch: stepped over");
                    state.damaged_regions += 1;
                    state.damaged_bytes += e.payload.len() as u64;
                    continue;
                }
            };
            let mut st = partition.state.lock();
            if header.base_offset >= through.get(&e.partition).copied().unwrap_or(i64::MIN) {
                st.record_producer(&header, &e.payload, header.base_offset, crate::clock::now_ms());
                if let Some(mark) = mark_of(&header, &e.payload) {
                    st.apply_txn(mark, header.base_offset, header.last_offset());
                }
            }
            if header.last_offset() < st.next_offset {
                // Sealed already, wholly below the log start (DeleteRecords), or
                // indexed. A batch holding the log start is kept: readers start
                // inside it.
                continue;
            }
            if header.base_offset > st.next_offset {
                tracing::error!(
                    topic = %partition.topic,
                    partition = partition.index,
                    missing_from = st.next_offset,
                    missing_to = header.base_offset - 1,
                    "offsets missing from the journal (lost with damaged entries)"
                );
                state.missing_offsets += (header.base_offset - st.next_offset) as u64;
            }
            let location = BatchLocation {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
                position,
                len: header.size as u32,
            };
            st.push_batch(location, now);
            st.next_offset = header.last_offset() + 1;
            st.high_watermark = st.next_offset;
            state.batches += 1;
            state.bytes += header.size as u64;
        }
        let valid = skip + scanned.intact_end;
        let data = whole;
        if valid < data.len() && last {
            tracing::warn!(file = start, at = valid, len = data.len(), "cutting torn journal tail");
            let f = OpenOptions::new().write(true).open(&path).map_err(StorageError::io("opening journal file"))?;
            f.set_len(valid as u64).map_err(StorageError::io("truncating journal file"))?;
            f.sync_all().map_err(StorageError::io("syncing journal file"))?;
        } else {
            if valid < data.len() {
                // An older file is never written again, so its end was complete
                // once: what does not check out there is damage, kept as it is.
                tracing::error!(
                    file = %path.display(),
                    from = valid,
                    to = data.len(),
                    "damaged end of an older journal file: stepped over"
                );
                state.damaged_regions += 1;
                state.damaged_bytes += (data.len() - valid) as u64;
            }
            // Make what the previous process wrote (maybe unsynced) durable before
            // it becomes visible.
            let f = fs::File::open(&path).map_err(StorageError::io("opening journal file"))?;
            f.sync_all().map_err(StorageError::io("syncing journal file"))?;
        }
        files.register(start).map_err(StorageError::io("opening journal file"))?;
        state.start = StartPoint { file_start: start, position: start + valid as u64 };
    }
    metrics.journal_damaged_bytes.inc_by(state.damaged_bytes);
    metrics.journal_damaged_regions.inc_by(state.damaged_regions);
    metrics.journal_missing_offsets.inc_by(state.missing_offsets);
    if state.damaged_regions > 0 {
        tracing::error!(
            regions = state.damaged_regions,
            bytes = state.damaged_bytes,
            missing_offsets = state.missing_offsets,
            "the journal had damage; every intact entry was kept"
        );
    }
    Ok(state)
}
