//! Start-up: load the metadata (snapshot + log) and the journal checkpoint, rebuild
//! every partition's index of journal-resident batches (those after its sealed
//! segments) and its producer and transaction state (from the batches at or after
//! its checkpoint) by scanning the journal from its first file, and cut the journal
//! at the first torn or corrupt entry. Everything before that entry was written completely, which includes
//! every acknowledged append; what follows it was never acknowledged (a torn tail) or
//! is unreadable (a corrupt entry, logged loudly).

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

/// What the journal scan found.
#[derive(Debug)]
pub(crate) struct JournalState {
    pub(crate) start: StartPoint,
    pub(crate) batches: u64,
    pub(crate) bytes: u64,
}

/// Replays the journal into the partitions' indexes. `through` holds, per partition
/// with a checkpoint, the offset from which batches still count for producer and
/// transaction state.
pub(crate) fn replay_journal(
    files: &JournalFiles,
    partitions: &HashMap<u64, Arc<PartitionLog>>,
    through: &HashMap<u64, i64>,
) -> Result<JournalState, StorageError> {
    let now = crate::clock::now_ms();
    let starts = files.list().map_err(StorageError::io("listing journal files"))?;
    let mut state = JournalState { start: StartPoint { file_start: 0, position: 0 }, batches: 0, bytes: 0 };
    let mut cut = false;
    for (n, &start) in starts.iter().enumerate() {
        if cut {
            tracing::error!(file = start, "journal file after a corrupt entry: removing it");
            files.remove(start).map_err(StorageError::io("removing journal file"))?;
            continue;
        }
        let path = files.path(start);
        let data = Bytes::from(fs::read(&path).map_err(StorageError::io(format!("reading {}", path.display())))?);
        let (entries, valid) = entry::scan(&data);
        for e in entries.iter().filter(|e| e.kind == KIND_BATCH) {
            let Some(partition) = partitions.get(&e.partition) else {
                continue;
            };
            let position = start + (e.at + HEADER_LEN) as u64;
            let header = BatchHeader::parse(&e.payload)
                .map_err(|err| StorageError::Corrupt { position, reason: err.to_string() })?;
            let mut st = partition.state.lock();
            if header.base_offset >= through.get(&e.partition).copied().unwrap_or(i64::MIN) {
                st.record_producer(&header, header.base_offset);
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
                tracing::warn!(
                    topic = %partition.topic,
                    partition = partition.index,
                    expected = st.next_offset,
                    found = header.base_offset,
                    "offset gap in journal replay"
                );
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
        if valid < data.len() {
            let last = n + 1 == starts.len();
            if last {
                tracing::warn!(file = start, at = valid, len = data.len(), "cutting torn journal tail");
            } else {
                tracing::error!(file = start, at = valid, "corrupt journal entry before the last file; cutting");
            }
            let f = OpenOptions::new().write(true).open(&path).map_err(StorageError::io("opening journal file"))?;
            f.set_len(valid as u64).map_err(StorageError::io("truncating journal file"))?;
            f.sync_all().map_err(StorageError::io("syncing journal file"))?;
            cut = true;
        } else {
            // Make what the previous process wrote (maybe unsynced) durable before
            // it becomes visible.
            let f = fs::File::open(&path).map_err(StorageError::io("opening journal file"))?;
            f.sync_all().map_err(StorageError::io("syncing journal file"))?;
        }
        files.register(start).map_err(StorageError::io("opening journal file"))?;
        state.start = StartPoint { file_start: start, position: start + valid as u64 };
    }
    Ok(state)
}
