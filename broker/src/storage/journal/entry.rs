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
//! [`scan`] stops at the first entry that is incomplete or whose CRC does not match:
//! that is the torn tail of a crash, and everything before it is intact.
//! [`scan_resync`] goes on past such an entry when an intact one follows it (the
//! next entry by the bad one's length, or the next intact entry at a block
//! boundary, where every group commit starts): a bad entry with intact data after it
//! is damage at rest, not a torn tail, and the data after it is kept.

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
pub(crate) use tributary_tiering::aligned_buffer;
const _: () = assert!(tributary_tiering::ALIGN == BLOCK, "journal blocks are direct I/O blocks");

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

/// Appends one pad entry of exactly [`BLOCK`] bytes.
pub(crate) fn pad_block(buf: &mut BytesMut) {
    encode(buf, KIND_PAD, 0, &[0u8; BLOCK - HEADER_LEN]);
}

/// Appends one entry to `buf` and returns the payload's range inside `buf`.
pub(crate) fn encode(buf: &mut BytesMut, kind: u8, partition: u64, payload: &[u8]) -> std::ops::Range<usize> {
    let range = append_unsealed(buf, kind, partition, payload);
    seal(buf, range.start - HEADER_LEN);
    range
}

/// Appends one entry without its CRC (to be [`seal`]ed once the payload is final)
/// and returns the payload's range inside `buf`.
pub(crate) fn append_unsealed(buf: &mut BytesMut, kind: u8, partition: u64, payload: &[u8]) -> std::ops::Range<usize> {
    let start = buf.len();
    let len = (4 + 1 + 8 + payload.len()) as u32;
    buf.put_u32(len);
    buf.put_u32(0);
    buf.put_u8(kind);
    buf.put_u64(partition);
    buf.put_slice(payload);
    start + HEADER_LEN..buf.len()
}

/// Recomputes the CRC of the entry starting at `start` (after its payload changed).
pub(crate) fn seal(buf: &mut [u8], start: usize) {
    let len = u32::from_be_bytes(buf[start..start + 4].try_into().expect("invariant: 4 bytes")) as usize;
    let end = start + 4 + len;
    let crc = crc32c::crc32c(&buf[start + 8..end]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Where a record batch keeps its own CRC, and where the bytes it covers begin
/// (attributes to the end: the base offset, length, leader epoch and magic before it
/// are not covered).
const BATCH_CRC: std::ops::Range<usize> = 17..21;

/// [`seal`] for a record-batch entry whose batch CRC is right (checked on produce,
/// computed when the broker built or rewrote the batch): the entry's CRC is the CRC
/// of the bytes up to the batch CRC combined with the batch CRC, which already is the
/// CRC of the rest, so the payload is not read again. The same value as [`seal`]; the
/// journal writer paid two full passes over every batch for it before (a sixth of
/// its CPU at 1 KiB records).
pub(crate) fn seal_batch(buf: &mut [u8], start: usize) {
    let len = u32::from_be_bytes(buf[start..start + 4].try_into().expect("invariant: 4 bytes")) as usize;
    let end = start + 4 + len;
    let covered = start + HEADER_LEN + BATCH_CRC.end;
    if covered > end {
        return seal(buf, start);
    }
    let head = crc32c::crc32c(&buf[start + 8..covered]);
    let at = start + HEADER_LEN + BATCH_CRC.start;
    let body = u32::from_be_bytes(buf[at..at + 4].try_into().expect("invariant: 4 bytes"));
    let crc = crc32c::crc32c_combine(head, body, end - covered);
    debug_assert_eq!(crc, crc32c::crc32c(&buf[start + 8..end]), "a batch with a wrong CRC reached the journal");
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

/// The entry at `at`, if one is intact there.
pub(crate) fn entry_at(data: &Bytes, at: usize) -> Option<Scanned> {
    let rest = data.get(at..)?;
    if rest.len() < HEADER_LEN {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().expect("invariant: 4 bytes")) as usize;
    if len < HEADER_LEN - 4 || rest.len() < 4 + len {
        return None;
    }
    let stored = u32::from_be_bytes(rest[4..8].try_into().expect("invariant: 4 bytes"));
    if crc32c::crc32c(&rest[8..4 + len]) != stored {
        return None;
    }
    Some(Scanned {
        at,
        kind: rest[8],
        partition: u64::from_be_bytes(rest[9..17].try_into().expect("invariant: 8 bytes")),
        payload: data.slice(at + HEADER_LEN..at + 4 + len),
    })
}

/// What [`scan_resync`] found.
#[derive(Debug, Default)]
pub(crate) struct Resynced {
    pub(crate) entries: Vec<Scanned>,
    /// Byte ranges skipped because no intact entry was there, each followed by an
    /// intact entry (damage, not a torn tail).
    pub(crate) damaged: Vec<std::ops::Range<usize>>,
    /// End of the last intact entry: where a torn tail (if any) begins.
    pub(crate) intact_end: usize,
}

/// Reads every intact entry of `data`, stepping over damaged ones: after a bad
/// entry, the scan resumes at the next intact entry, found either right after the
/// bad one (its length field survived) or at a later block boundary.
pub(crate) fn scan_resync(data: &Bytes) -> Resynced {
    let mut out = Resynced::default();
    let mut at = 0;
    while at < data.len() {
        if let Some(e) = entry_at(data, at) {
            at += HEADER_LEN + e.payload.len();
            out.intact_end = at;
            out.entries.push(e);
            continue;
        }
        let Some(next) = next_intact(data, at) else {
            break;
        };
        out.damaged.push(at..next);
        at = next;
    }
    out
}

/// The position of the nearest intact entry after a bad one at `bad`: the one its
/// length field points at, or an earlier one at a block boundary (a flipped bit in
/// the length must not make the scan jump over intact entries).
fn next_intact(data: &Bytes, bad: usize) -> Option<usize> {
    let by_length = data.get(bad..bad + 4).and_then(|len| {
        let next = bad + 4 + u32::from_be_bytes(len.try_into().expect("invariant: 4 bytes")) as usize;
        (next > bad + HEADER_LEN && entry_at(data, next).is_some()).then_some(next)
    });
    let limit = by_length.unwrap_or(data.len());
    let mut block = (bad / BLOCK + 1) * BLOCK;
    while block < limit && block + HEADER_LEN <= data.len() {
        if entry_at(data, block).is_some() {
            return Some(block);
        }
        block += BLOCK;
    }
    by_length
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

    proptest! {
        /// The combined CRC of a batch entry is the CRC a full pass computes, for any
        /// payload whose bytes 17..21 hold the CRC of the bytes from 21 on (a record
        /// batch's own CRC), with whatever is before it.
        #[test]
        fn sealing_a_batch_from_its_own_crc_equals_a_full_pass(
            mut payload in proptest::collection::vec(any::<u8>(), 0..3000),
            partition in any::<u64>(),
            before in 0usize..100,
        ) {
            if payload.len() >= BATCH_CRC.end {
                let crc = crc32c::crc32c(&payload[BATCH_CRC.end..]);
                payload[BATCH_CRC].copy_from_slice(&crc.to_be_bytes());
            }
            let mut full = BytesMut::new();
            full.put_slice(&vec![9u8; before]);
            encode(&mut full, KIND_BATCH, partition, &payload);
            let mut combined = BytesMut::new();
            combined.put_slice(&vec![9u8; before]);
            let range = append_unsealed(&mut combined, KIND_BATCH, partition, &payload);
            seal_batch(&mut combined, range.start - HEADER_LEN);
            prop_assert_eq!(&full[..], &combined[..]);
            prop_assert_eq!(scan(&full.freeze().slice(before..)).0.len(), 1);
        }
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

    fn blocks(groups: &[&[&[u8]]]) -> (Bytes, Vec<usize>) {
        let mut buf = BytesMut::new();
        let mut starts = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            starts.push(buf.len());
            for p in group.iter() {
                encode(&mut buf, KIND_BATCH, g as u64, p);
            }
            pad(&mut buf);
        }
        (buf.freeze(), starts)
    }

    #[test]
    fn resync_steps_over_a_bad_payload_by_its_length() {
        let (mut buf, ends) = journal(&[b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()]);
        buf[ends[0] + HEADER_LEN] ^= 0x01;
        let r = scan_resync(&buf.freeze());
        let got: Vec<_> = r.entries.iter().map(|e| e.payload.to_vec()).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(r.damaged, vec![ends[0]..ends[1]]);
        assert_eq!(r.intact_end, ends[2]);
    }

    #[test]
    fn resync_finds_the_next_group_commit_after_a_bad_length() {
        let (data, starts) = blocks(&[&[b"one", b"two"], &[b"three"], &[b"four", b"five"]]);
        let mut bytes = data.to_vec();
        bytes[starts[1]] ^= 0x80; // the length of the second group's first entry
        let r = scan_resync(&Bytes::from(bytes));
        let got: Vec<_> = r.entries.iter().filter(|e| e.kind == KIND_BATCH).map(|e| e.payload.to_vec()).collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"four".to_vec(), b"five".to_vec()]);
        assert_eq!(r.damaged, vec![starts[1]..starts[2]]);
        assert_eq!(r.intact_end, data.len());
    }

    #[test]
    fn resync_leaves_a_torn_tail_as_the_end() {
        let (data, starts) = blocks(&[&[b"one"], &[b"two"]]);
        let cut = data.slice(..starts[1] + 10);
        let r = scan_resync(&cut);
        assert!(r.damaged.is_empty());
        assert_eq!(r.intact_end, starts[1]);
        assert_eq!(r.entries.iter().filter(|e| e.kind == KIND_BATCH).count(), 1);
    }

    proptest! {
        /// A bit flipped anywhere loses at most the group commit it is in: every
        /// entry of every other group is found.
        #[test]
        fn a_flipped_bit_loses_at_most_its_group(
            groups in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..4), 1..6),
            bit_frac in 0.0f64..1.0,
        ) {
            let refs: Vec<Vec<&[u8]>> = groups.iter().map(|g| g.iter().map(|p| p.as_slice()).collect()).collect();
            let slices: Vec<&[&[u8]]> = refs.iter().map(|g| g.as_slice()).collect();
            let (data, starts) = blocks(&slices);
            let bit = ((data.len() * 8) as f64 * bit_frac) as usize;
            let mut bytes = data.to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let hit = starts.iter().rposition(|&s| s <= bit / 8).unwrap();
            let r = scan_resync(&Bytes::from(bytes));
            for (g, group) in groups.iter().enumerate() {
                let found: Vec<_> = r.entries.iter()
                    .filter(|e| e.kind == KIND_BATCH && e.partition == g as u64)
                    .map(|e| e.payload.to_vec()).collect();
                if g != hit {
                    prop_assert_eq!(&found, group);
                } else {
                    prop_assert!(found.iter().all(|f| group.contains(f)));
                }
            }
        }

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
