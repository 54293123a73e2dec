//! The journal's entry format and the scan that recovery uses.
//!
//! ```text
//! u32 length   bytes after this field (kind + partition + payload + 4 for the crc)
//! u32 crc      CRC-32C of kind, partition and payload
//! u8  kind     1 = record batch
//! u64 partition  the partition's journal id (never reused)
//! ..  payload  the record batch, base offset already assigned
//! ```
//! Each group commit is padded to [`BLOCK`] bytes with a pad entry (kind 3), so the
//! writer can use `O_DIRECT` and never rewrites a block holding acknowledged data.
//! A scan stops at the first entry that is incomplete or whose CRC does not match:
//! that is the torn tail of a crash, and everything before it is intact.

use bytes::{BufMut, Bytes, BytesMut};

/// Fixed bytes before the payload.
pub(crate) const HEADER_LEN: usize = 4 + 4 + 1 + 8;
/// Entry kind of a record batch.
pub(crate) const KIND_BATCH: u8 = 1;
/// Entry kind of padding up to the next block boundary.
pub(crate) const KIND_PAD: u8 = 3;
/// Alignment of group commits: file offsets, lengths and buffers (`O_DIRECT`).
pub(crate) const BLOCK: usize = 4096;

/// An empty buffer of at least `capacity` bytes whose start is `BLOCK`-aligned.
pub(crate) fn aligned_buffer(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity + BLOCK);
    let skip = buf.as_ptr().align_offset(BLOCK);
    buf.resize(skip, 0);
    let _ = buf.split_to(skip);
    buf
}

/// Appends a pad entry so that `buf.len()` becomes a multiple of `BLOCK`.
pub(crate) fn pad(buf: &mut BytesMut) {
    let mut gap = (BLOCK - buf.len() % BLOCK) % BLOCK;
    if gap == 0 {
        return;
    }
    if gap < HEADER_LEN {
        gap += BLOCK;
    }
    let start = buf.len();
    buf.put_u32((gap - 4) as u32);
    buf.put_u32(0);
    buf.put_u8(KIND_PAD);
    buf.put_u64(0);
    buf.resize(start + gap, 0);
    seal(buf, start);
}

/// Appends one entry to `buf` and returns the payload's range inside `buf`.
pub(crate) fn encode(buf: &mut BytesMut, kind: u8, partition: u64, payload: &[u8]) -> std::ops::Range<usize> {
    let start = buf.len();
    let len = (4 + 1 + 8 + payload.len()) as u32;
    buf.put_u32(len);
    buf.put_u32(0);
    buf.put_u8(kind);
    buf.put_u64(partition);
    buf.put_slice(payload);
    let payload_start = start + HEADER_LEN;
    seal(buf, start);
    payload_start..buf.len()
}

/// Recomputes the CRC of the entry starting at `start` (after its payload changed).
pub(crate) fn seal(buf: &mut [u8], start: usize) {
    let len = u32::from_be_bytes(buf[start..start + 4].try_into().expect("invariant: 4 bytes")) as usize;
    let end = start + 4 + len;
    let crc = crc32c::crc32c(&buf[start + 8..end]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// One intact entry found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Position of the entry's first byte within the scanned bytes.
    pub(crate) at: usize,
    pub(crate) kind: u8,
    pub(crate) partition: u64,
    pub(crate) payload: Bytes,
}

/// Reads entries from the start of `data` and returns the intact ones and the length
/// of the intact prefix: where a torn or corrupt tail begins, if any.
pub(crate) fn scan(data: &Bytes) -> (Vec<Scanned>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        if rest.len() < HEADER_LEN {
            break;
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("invariant: 4 bytes")) as usize;
        if len < HEADER_LEN - 4 || rest.len() < 4 + len {
            break;
        }
        let stored = u32::from_be_bytes(rest[4..8].try_into().expect("invariant: 4 bytes"));
        if crc32c::crc32c(&rest[8..4 + len]) != stored {
            break;
        }
        out.push(Scanned {
            at,
            kind: rest[8],
            partition: u64::from_be_bytes(rest[9..17].try_into().expect("invariant: 8 bytes")),
            payload: data.slice(at + HEADER_LEN..at + 4 + len),
        });
        at += 4 + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn journal(payloads: &[Vec<u8>]) -> (BytesMut, Vec<usize>) {
        let mut buf = BytesMut::new();
        let mut ends = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(&mut buf, KIND_BATCH, i as u64, p);
            ends.push(buf.len());
        }
        (buf, ends)
    }

    #[test]
    fn round_trips_entries() {
        let (buf, _) = journal(&[b"one".to_vec(), vec![], b"three".to_vec()]);
        let (entries, valid) = scan(&buf.freeze());
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].partition, 2);
        assert_eq!(&entries[2].payload[..], b"three");
        assert_eq!(valid, 3 * HEADER_LEN + 8);
    }

    #[test]
    fn padding_fills_to_the_block_and_scans_as_an_entry() {
        for payload in [0usize, 1, BLOCK - 2 * HEADER_LEN, BLOCK - HEADER_LEN - 5, BLOCK - HEADER_LEN, 5000] {
            let mut buf = aligned_buffer(payload + 2 * BLOCK);
            assert_eq!(buf.as_ptr().align_offset(BLOCK), 0);
            encode(&mut buf, KIND_BATCH, 7, &vec![1u8; payload]);
            pad(&mut buf);
            assert_eq!(buf.len() % BLOCK, 0, "payload {payload}");
            let (entries, valid) = scan(&buf.freeze());
            assert_eq!(valid % BLOCK, 0);
            assert_eq!(entries[0].payload.len(), payload);
            assert!(entries.len() <= 2 && entries[1..].iter().all(|e| e.kind == KIND_PAD));
        }
    }

    #[test]
    fn torn_tail_at_every_byte_of_the_last_entry_recovers_the_prefix() {
        let payloads = vec![b"alpha".to_vec(), b"beta".to_vec(), vec![7u8; 40]];
        let (buf, ends) = journal(&payloads);
        for cut in ends[1]..buf.len() {
            let (entries, valid) = scan(&Bytes::copy_from_slice(&buf[..cut]));
            assert_eq!(entries.len(), 2, "cut at {cut}");
            assert_eq!(valid, ends[1], "cut at {cut}");
        }
        let (entries, _) = scan(&buf.clone().freeze());
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn a_flipped_bit_ends_the_scan_at_that_entry() {
        let (mut buf, ends) = journal(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        buf[ends[0] + HEADER_LEN] ^= 0x40;
        let (entries, valid) = scan(&buf.freeze());
        assert_eq!(entries.len(), 1);
        assert_eq!(valid, ends[0]);
    }

    proptest! {
        /// Any sequence of appends cut at any byte recovers exactly the entries that
        /// were complete before the cut.
        #[test]
        fn any_cut_recovers_every_complete_entry(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..12),
            cut_frac in 0.0f64..=1.0,
        ) {
            let (buf, ends) = journal(&payloads);
            let cut = (buf.len() as f64 * cut_frac) as usize;
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let (entries, valid) = scan(&Bytes::copy_from_slice(&buf[..cut]));
            prop_assert_eq!(entries.len(), complete);
            for (i, e) in entries.iter().enumerate() {
                prop_assert_eq!(&e.payload[..], &payloads[i][..]);
            }
            prop_assert_eq!(valid, if complete == 0 { 0 } else { ends[complete - 1] });
        }
    }
}
