//! Transactions as one partition sees them: which producers have a transaction open
//! here (and from which offset), and which transactions were aborted (producer id,
//! first and last offset), so that Fetch with `read_committed` stops at the last
//! stable offset and lists the aborted transactions in the range it returns.
//!
//! Built from batch headers and control records (commit / abort markers) as batches
//! become durable, and rebuilt the same way when the journal is replayed.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::records;

/// What a batch means for transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnMark {
    /// A transactional data batch of this producer.
    Data { producer_id: i64 },
    /// A commit or abort marker (control batch) of this producer.
    End { producer_id: i64, commit: bool },
}

/// A transaction that was aborted in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// The transaction index of one partition; absent (a `None` in the partition) until
/// a transactional producer writes there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TxnIndex {
    /// Producer id -> first offset of its open transaction.
    ongoing: HashMap<i64, i64>,
    /// Aborted transactions in marker order.
    aborted: Vec<AbortedTxn>,
}

/// Control record type of a marker: the key is (i16 version, i16 type).
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// The transactional meaning of a batch, if any.
pub(crate) fn mark_of(header: &BatchHeader, batch: &Bytes) -> Option<TxnMark> {
    if !header.is_transactional() || header.producer_id < 0 {
        return None;
    }
    let producer_id = header.producer_id;
    if !header.is_control() {
        return Some(TxnMark::Data { producer_id });
    }
    let first = records::read(header, batch).ok()?.into_iter().next()?;
    let key = first.key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        COMMIT => Some(TxnMark::End { producer_id, commit: true }),
        ABORT => Some(TxnMark::End { producer_id, commit: false }),
        _ => None,
    }
}

/// The coordinator epoch a marker (control batch) carries in its value: (i16
/// version, i32 coordinator epoch).
pub(crate) fn coordinator_epoch_of(header: &BatchHeader, batch: &Bytes) -> Option<i32> {
    if !header.is_control() {
        return None;
    }
    let value = records::read(header, batch).ok()?.into_iter().next()?.value?;
    (value.len() >= 6).then(|| i32::from_be_bytes([value[2], value[3], value[4], value[5]]))
}

/// The key and value of a marker record (control record v0).
pub(crate) fn marker_record(commit: bool, coordinator_epoch: i32) -> (Bytes, Bytes) {
    let kind = if commit { COMMIT } else { ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    (Bytes::from(key), Bytes::from(value))
}

impl TxnIndex {
    /// Applies a durable batch at `[base_offset, last_offset]`.
    pub(crate) fn apply(&mut self, mark: TxnMark, base_offset: i64, last_offset: i64) {
        match mark {
            TxnMark::Data { producer_id } => {
                self.ongoing.entry(producer_id).or_insert(base_offset);
            }
            TxnMark::End { producer_id, commit } => {
                if let Some(first_offset) = self.ongoing.remove(&producer_id) {
                    if !commit {
                        self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset });
                    }
                }
            }
        }
    }

    /// Forgets aborted transactions wholly below `offset` (the log start).
    pub(crate) fn prune_below(&mut self, offset: i64) {
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    /// The first offset of the oldest open transaction.
    pub(crate) fn first_unstable(&self) -> Option<i64> {
        self.ongoing.values().copied().min()
    }

    /// Aborted transactions that overlap `[from, to]`.
    pub(crate) fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted.iter().filter(|a| a.last_offset >= from && a.first_offset <= to).copied().collect()
    }

    /// Producers with an open transaction here, with its first offset.
    pub(crate) fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(p, o)| (*p, *o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_protocol::build::{build, BatchSpec};

    fn marker(producer_id: i64, commit: bool) -> (BatchHeader, Bytes) {
        let (k, v) = marker_record(commit, 0);
        let spec =
            BatchSpec { producer_id, producer_epoch: 0, transactional: true, control: true, ..BatchSpec::plain(1) };
        let b = build(&spec, &[(Some(k), Some(v))]).unwrap();
        (BatchHeader::parse(&b).unwrap(), b)
    }

    #[test]
    fn markers_are_recognised() {
        let (h, b) = marker(7, true);
        assert_eq!(mark_of(&h, &b), Some(TxnMark::End { producer_id: 7, commit: true }));
        let (h, b) = marker(7, false);
        assert_eq!(mark_of(&h, &b), Some(TxnMark::End { producer_id: 7, commit: false }));
        let plain = build(&BatchSpec::plain(1), &[(None, Some(Bytes::from_static(b"v")))]).unwrap();
        assert_eq!(mark_of(&BatchHeader::parse(&plain).unwrap(), &plain), None);
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let mut idx = TxnIndex::default();
        idx.apply(TxnMark::Data { producer_id: 1 }, 10, 12);
        idx.apply(TxnMark::Data { producer_id: 2 }, 13, 13);
        idx.apply(TxnMark::Data { producer_id: 1 }, 14, 15);
        assert_eq!(idx.first_unstable(), Some(10));
        idx.apply(TxnMark::End { producer_id: 1, commit: false }, 16, 16);
        assert_eq!(idx.first_unstable(), Some(13));
        idx.apply(TxnMark::End { producer_id: 2, commit: true }, 17, 17);
        assert_eq!(idx.first_unstable(), None);
        assert_eq!(idx.aborted_in(0, 100), vec![AbortedTxn { producer_id: 1, first_offset: 10, last_offset: 16 }]);
        assert!(idx.aborted_in(17, 30).is_empty());
        // A marker for a producer with nothing open changes nothing.
        idx.apply(TxnMark::End { producer_id: 9, commit: false }, 18, 18);
        assert_eq!(idx.aborted_in(0, 100).len(), 1);
    }
}
