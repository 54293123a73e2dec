//! The sealed segment format: a partition's record batches back to back, exactly as
//! the journal held them, then a footer with a sparse offset and time index.
//!
//! ```text
//! batches      v2 record batches in offset order, from byte 0
//! index        n × (i64 base offset, u32 position, i64 max timestamp before it)
//! u32          n
//! i64 × 3      first offset, last offset, max timestamp of the segment
//! u32          bytes of batches
//! u32          CRC-32C of the footer up to here
//! u32          footer length (all of it, this field and the magic included)
//! [u8; 8]      magic "TRBSEG\0\x01"
//! ```
//! An index entry is written for the first batch and then whenever at least
//! [`INDEX_INTERVAL`] bytes of batches went by since the last one. Its third field
//! is the largest timestamp of every batch before it, which never decreases along
//! the index: the offset index and the time index are one table, searched on either
//! column. Several segments may share one object (a pack); each keeps its own byte
//! range and footer, so readers never need to know.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of batches between two index entries, at least.
pub const INDEX_INTERVAL: u32 = 64 * 1024;
const MAGIC: &[u8; 8] = b"TRBSEG\0\x01";
const ENTRY_LEN: usize = 8 + 4 + 8;
/// Footer bytes besides its entries.
const FIXED_LEN: usize = 4 + 8 * 3 + 4 + 4 + 4 + MAGIC.len();

/// Why a footer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("segment footer is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("segment footer has a bad magic number")]
    BadMagic,
    #[error("segment footer checksum mismatch")]
    BadChecksum,
}

/// One entry of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub base_offset: i64,
    pub position: u32,
    /// The largest timestamp of the batches before `position`; `i64::MIN` for none.
    pub max_timestamp_before: i64,
}

/// A parsed footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub entries: Vec<IndexEntry>,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub data_len: u32,
}

impl Footer {
    /// Reads a footer (the last `footer_len` bytes of a segment).
    pub fn parse(b: &[u8]) -> Result<Self, SegmentError> {
        if b.len() < FIXED_LEN {
            return Err(SegmentError::Truncated(b.len()));
        }
        if &b[b.len() - MAGIC.len()..] != MAGIC {
            return Err(SegmentError::BadMagic);
        }
        let tail = b.len() - MAGIC.len() - 8;
        let crc = u32_at(b, tail);
        let len = u32_at(b, tail + 4) as usize;
        if len != b.len() {
            return Err(SegmentError::Truncated(b.len()));
        }
        if crc32c::crc32c(&b[..tail]) != crc {
            return Err(SegmentError::BadChecksum);
        }
        // n, first offset, last offset, max timestamp, data length: 32 bytes.
        let fixed = tail - 32;
        let n = u32_at(b, fixed) as usize;
        if n * ENTRY_LEN + FIXED_LEN != b.len() {
            return Err(SegmentError::Truncated(b.len()));
        }
        let entries = (0..n)
            .map(|i| {
                let at = i * ENTRY_LEN;
                IndexEntry {
                    base_offset: i64_at(b, at),
                    position: u32_at(b, at + 8),
                    max_timestamp_before: i64_at(b, at + 12),
                }
            })
            .collect();
        Ok(Footer {
            entries,
            base_offset: i64_at(b, fixed + 4),
            last_offset: i64_at(b, fixed + 12),
            max_timestamp: i64_at(b, fixed + 20),
            data_len: u32_at(b, fixed + 28),
        })
    }

    /// Where to start reading for the batch holding `offset`: the position of the
    /// last indexed batch at or before it.
    pub fn position_for_offset(&self, offset: i64) -> u32 {
        let i = self.entries.partition_point(|e| e.base_offset <= offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Where to start reading for the first batch with a timestamp at or after
    /// `timestamp`: every batch before the returned position is older.
    pub fn position_for_timestamp(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|e| e.max_timestamp_before < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }
}

/// The index of one segment being written, built from batches given in offset
/// order; the batches themselves go wherever the caller writes them (an upload in
/// parts), so a segment of any size is sealed in bounded memory.
#[derive(Debug)]
pub struct SegmentIndex {
    data_len: u64,
    entries: Vec<IndexEntry>,
    last_indexed: Option<u32>,
    base_offset: Option<i64>,
    last_offset: i64,
    max_timestamp: i64,
}

impl Default for SegmentIndex {
    fn default() -> Self {
        SegmentIndex {
            data_len: 0,
            entries: Vec::new(),
            last_indexed: None,
            base_offset: None,
            last_offset: 0,
            max_timestamp: i64::MIN,
        }
    }
}

/// A finished footer and what a manifest records of the segment.
#[derive(Debug, Clone)]
pub struct FinishedFooter {
    pub footer: Bytes,
    pub footer_len: u32,
    pub data_len: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl SegmentIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of batches so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    pub fn is_empty(&self) -> bool {
        self.base_offset.is_none()
    }

    /// Counts a batch of `len` bytes, written right after the previous one.
    pub fn push(&mut self, len: usize, base_offset: i64, last_offset: i64, max_timestamp: i64) {
        let position = self.data_len as u32;
        if self.last_indexed.is_none_or(|last| position - last >= INDEX_INTERVAL) {
            self.entries.push(IndexEntry { base_offset, position, max_timestamp_before: self.max_timestamp });
            self.last_indexed = Some(position);
        }
        self.base_offset.get_or_insert(base_offset);
        self.last_offset = last_offset;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        self.data_len += len as u64;
    }

    /// The footer that follows the batches.
    pub fn finish(self) -> FinishedFooter {
        let base_offset = self.base_offset.unwrap_or(0);
        let mut out = BytesMut::with_capacity(self.entries.len() * ENTRY_LEN + FIXED_LEN);
        for e in &self.entries {
            out.put_i64(e.base_offset);
            out.put_u32(e.position);
            out.put_i64(e.max_timestamp_before);
        }
        out.put_u32(self.entries.len() as u32);
        out.put_i64(base_offset);
        out.put_i64(self.last_offset);
        out.put_i64(self.max_timestamp);
        out.put_u32(self.data_len as u32);
        let crc = crc32c::crc32c(&out);
        let footer_len = (out.len() + 4 + 4 + MAGIC.len()) as u32;
        out.put_u32(crc);
        out.put_u32(footer_len);
        out.put_slice(MAGIC);
        FinishedFooter {
            footer: out.freeze(),
            footer_len,
            data_len: self.data_len,
            base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
        }
    }
}

/// Builds one segment in memory (compaction's rewrites, tests).
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    data: BytesMut,
    index: SegmentIndex,
}

/// A finished segment: its bytes and what a manifest records of it.
#[derive(Debug, Clone)]
pub struct BuiltSegment {
    pub bytes: Bytes,
    pub footer_len: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl SegmentBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of batches so far.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Appends a batch with its base and last offset and max timestamp.
    pub fn push(&mut self, batch: &[u8], base_offset: i64, last_offset: i64, max_timestamp: i64) {
        self.index.push(batch.len(), base_offset, last_offset, max_timestamp);
        self.data.put_slice(batch);
    }

    /// Appends the footer; returns the whole segment.
    pub fn finish(self) -> BuiltSegment {
        let f = self.index.finish();
        let mut out = self.data;
        out.put_slice(&f.footer);
        BuiltSegment {
            bytes: out.freeze(),
            footer_len: f.footer_len,
            base_offset: f.base_offset,
            last_offset: f.last_offset,
            max_timestamp: f.max_timestamp,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("invariant: 4 bytes in range"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("invariant: 8 bytes in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(batches: usize, batch_len: usize) -> BuiltSegment {
        let mut b = SegmentBuilder::new();
        for i in 0..batches as i64 {
            b.push(&vec![i as u8; batch_len], 100 + i * 10, 109 + i * 10, 1000 + i);
        }
        b.finish()
    }

    #[test]
    fn footer_round_trips_and_indexes_sparsely() {
        let seg = built(100, 10_000);
        let len = seg.bytes.len();
        let footer = Footer::parse(&seg.bytes[len - seg.footer_len as usize..]).unwrap();
        assert_eq!(footer.base_offset, 100);
        assert_eq!(footer.last_offset, 1099);
        assert_eq!(footer.max_timestamp, 1099);
        assert_eq!(footer.data_len, 1_000_000);
        // One entry per 7 batches of 10 KB (>= 64 KiB apart), plus the first.
        assert_eq!(footer.entries.len(), 15);
        assert_eq!(footer.entries[0], IndexEntry { base_offset: 100, position: 0, max_timestamp_before: i64::MIN });
        assert_eq!(footer.entries[1], IndexEntry { base_offset: 170, position: 70_000, max_timestamp_before: 1006 });
        // Offset lookups land on an indexed batch at or before the target.
        assert_eq!(footer.position_for_offset(100), 0);
        assert_eq!(footer.position_for_offset(175), 70_000);
        assert_eq!(footer.position_for_offset(169), 0);
        assert_eq!(footer.position_for_offset(5_000), footer.entries.last().unwrap().position);
        // Time lookups: every batch before the position is older than the target.
        assert_eq!(footer.position_for_timestamp(0), 0);
        assert_eq!(footer.position_for_timestamp(1007), 70_000);
        assert_eq!(footer.position_for_timestamp(1006), 0);
    }

    #[test]
    fn damaged_footers_are_refused() {
        let seg = built(3, 100);
        let len = seg.bytes.len();
        let footer = seg.bytes[len - seg.footer_len as usize..].to_vec();
        assert!(Footer::parse(&footer).is_ok());
        let mut bad = footer.clone();
        bad[0] ^= 1;
        assert_eq!(Footer::parse(&bad), Err(SegmentError::BadChecksum));
        let mut bad = footer.clone();
        *bad.last_mut().unwrap() = 0;
        assert_eq!(Footer::parse(&bad), Err(SegmentError::BadMagic));
        assert!(matches!(Footer::parse(&footer[1..]), Err(SegmentError::Truncated(_))));
        assert!(matches!(Footer::parse(&footer[..5]), Err(SegmentError::Truncated(_))));
    }
}
