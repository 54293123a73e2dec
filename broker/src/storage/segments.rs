//! Reading sealed segments: from the footer's index to the first batch wanted, then
//! whole batches through the segment store's block cache.

use bytes::Bytes;
use tributary_protocol::batch::BatchHeader;
use tributary_tiering::segment::INDEX_INTERVAL;
use tributary_tiering::store::SegmentStore;

use super::partition::Sealed;
use super::StorageError;

/// Bytes before a batch's size is known: base offset (8) and length (4).
const LENGTH_PREFIX: usize = 12;
/// Bytes read at least per store read.
const MIN_WINDOW: u64 = 256 * 1024;
/// Bytes read at most per store read (a larger batch is read whole, alone).
const MAX_WINDOW: u64 = 16 * 1024 * 1024;

fn store_error(e: tributary_tiering::TieringError) -> StorageError {
    StorageError::SegmentStore(e.to_string())
}

fn corrupt(segment: &Sealed, position: u64, reason: impl std::fmt::Display) -> StorageError {
    StorageError::SegmentStore(format!(
        "segment {} at {} is corrupt at byte {position}: {reason}",
        segment.loc.key, segment.loc.start
    ))
}

/// Calls `visit` with every batch of `segment` from byte `position` on, in order,
/// until it returns false or the segment ends. `window` is how many bytes to read
/// ahead per store read.
async fn scan(
    store: &SegmentStore,
    segment: &Sealed,
    mut position: u64,
    window: u64,
    mut visit: impl FnMut(&BatchHeader, Bytes) -> bool,
) -> Result<(), StorageError> {
    let data_len = segment.data_len();
    let window = window.clamp(MIN_WINDOW, MAX_WINDOW);
    while position < data_len {
        let mut want = window;
        let bytes = loop {
            let bytes = store.read(&segment.loc, position, position + want).await.map_err(store_error)?;
            if bytes.len() < LENGTH_PREFIX {
                return Err(corrupt(segment, position, "truncated batch"));
            }
            let size = batch_size(&bytes);
            if size > bytes.len() && position + (bytes.len() as u64) < data_len {
                // The first batch is larger than the window: read it whole.
                want = size as u64;
                continue;
            }
            break bytes;
        };
        let mut at = 0usize;
        while at + LENGTH_PREFIX <= bytes.len() {
            let size = batch_size(&bytes[at..]);
            if size <= LENGTH_PREFIX || at + size > bytes.len() {
                break;
            }
            let batch = bytes.slice(at..at + size);
            let header = BatchHeader::parse(&batch).map_err(|e| corrupt(segment, position + at as u64, e))?;
            if !visit(&header, batch) {
                return Ok(());
            }
            at += size;
        }
        if at == 0 {
            return Err(corrupt(segment, position, "batch runs past the segment's end"));
        }
        position += at as u64;
    }
    Ok(())
}

fn batch_size(b: &[u8]) -> usize {
    let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    LENGTH_PREFIX + len.max(0) as usize
}

/// A read of one sealed segment.
#[derive(Debug)]
pub(crate) struct SealedRead {
    pub(crate) batches: Vec<Bytes>,
    /// The read went through the end of the segment without stopping at the byte
    /// limit or the end offset: nothing at or after the offset is in this segment
    /// (compaction removed it), and a reader may go on with the next one.
    pub(crate) passed_end: bool,
}

/// Whole batches of `segment` from the one holding `offset`, below `end`, up to
/// `max_bytes` (at least one when `at_least_one`).
pub(crate) async fn read(
    store: &SegmentStore,
    segment: &Sealed,
    offset: i64,
    end: i64,
    max_bytes: usize,
    at_least_one: bool,
) -> Result<SealedRead, StorageError> {
    let footer = store.footer(&segment.loc).await.map_err(store_error)?;
    let position = footer.position_for_offset(offset) as u64;
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut stopped = false;
    let window = max_bytes as u64 + INDEX_INTERVAL as u64;
    scan(store, segment, position, window, |h, batch| {
        if h.last_offset() < offset {
            return true;
        }
        if h.base_offset >= end || (total + batch.len() > max_bytes && !(at_least_one && out.is_empty())) {
            stopped = true;
            return false;
        }
        total += batch.len();
        out.push(batch);
        true
    })
    .await?;
    Ok(SealedRead { passed_end: !stopped, batches: out })
}

/// The first batch of `segment` with a timestamp at or after `timestamp`.
pub(crate) async fn batch_at_time(
    store: &SegmentStore,
    segment: &Sealed,
    timestamp: i64,
) -> Result<Option<Bytes>, StorageError> {
    let footer = store.footer(&segment.loc).await.map_err(store_error)?;
    let position = footer.position_for_timestamp(timestamp) as u64;
    let mut found = None;
    scan(store, segment, position, MIN_WINDOW, |h, batch| {
        if h.max_timestamp >= timestamp {
            found = Some(batch);
            return false;
        }
        true
    })
    .await?;
    Ok(found)
}

/// Every batch of `segment`, in order (compaction).
pub(crate) async fn read_all(
    store: &SegmentStore,
    segment: &Sealed,
    mut visit: impl FnMut(&BatchHeader, Bytes),
) -> Result<(), StorageError> {
    scan(store, segment, 0, MAX_WINDOW, |h, b| {
        visit(h, b);
        true
    })
    .await
}
