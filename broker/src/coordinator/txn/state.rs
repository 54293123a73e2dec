//! One transactional.id's state and its record in `__transaction_state`: the key is
//! Kafka's (i16 version 0, string transactional.id); the value is our own JSON
//! (versioned by its fields), since only this coordinator reads it.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's admin APIs use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// A transactional.id's producer and transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TxnMeta {
    pub(crate) producer_id: i64,
    /// -1 until the first InitProducerId has bumped it to 0.
    pub(crate) producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets are part of the transaction.
    pub(crate) groups: BTreeSet<String>,
    pub(crate) started_at: i64,
    pub(crate) updated_at: i64,
    /// Transactions v2 (KIP-890), while a transaction that used up the epoch space
    /// ends: its markers carry the old producer id at epoch `i16::MAX`, and the
    /// producer goes on with this id at epoch 0 once it is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next_producer_id: Option<i64>,
    /// Transactions v2: the producer id the last transaction ended with when it was
    /// replaced by a fresh one, so a retried EndTxn of that producer is recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prev_producer_id: Option<i64>,
}

impl TxnMeta {
    pub(crate) fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMeta {
            producer_id,
            producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            started_at: now,
            updated_at: now,
            next_producer_id: None,
            prev_producer_id: None,
        }
    }

    /// Next epoch; when the epoch space is used up, `fresh` becomes the producer id
    /// at epoch 0.
    pub(crate) fn bump_epoch(&mut self, fresh: i64) {
        if self.producer_epoch >= i16::MAX - 1 {
            self.producer_id = fresh;
            self.producer_epoch = 0;
        } else {
            self.producer_epoch += 1;
        }
    }
}

pub(crate) fn encode_key(id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + id.len());
    b.put_i16(0);
    b.put_i16(id.len().min(i16::MAX as usize) as i16);
    b.put_slice(&id.as_bytes()[..id.len().min(i16::MAX as usize)]);
    b.freeze()
}

pub(crate) fn decode_key(mut b: Bytes) -> Option<String> {
    if b.remaining() < 4 || b.get_i16() != 0 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 || b.remaining() < len as usize {
        return None;
    }
    String::from_utf8(b.split_to(len as usize).to_vec()).ok()
}

pub(crate) fn encode_value(meta: &TxnMeta) -> Bytes {
    Bytes::from(serde_json::to_vec(meta).expect("invariant: the state serializes"))
}

pub(crate) fn decode_value(b: Bytes) -> Option<TxnMeta> {
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        assert_eq!(decode_key(encode_key("tx-1")).as_deref(), Some("tx-1"));
        let mut m = TxnMeta::new(42, 60_000, 5);
        m.state = TxnState::Ongoing;
        m.partitions.insert(("t".into(), 3));
        m.groups.insert("g".into());
        assert_eq!(decode_value(encode_value(&m)), Some(m));
    }

    #[test]
    fn epoch_exhaustion_moves_to_a_fresh_producer_id() {
        let mut m = TxnMeta::new(1, 1000, 0);
        m.bump_epoch(99);
        assert_eq!((m.producer_id, m.producer_epoch), (1, 0));
        m.producer_epoch = i16::MAX - 1;
        m.bump_epoch(99);
        assert_eq!((m.producer_id, m.producer_epoch), (99, 0));
    }
}
