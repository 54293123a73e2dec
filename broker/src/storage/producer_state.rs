//! Idempotent producer state of one partition: per producer id, its epoch and the
//! sequence ranges and offsets of its last five batches (what a producer may have in
//! flight). The journal writer checks every batch here before assigning offsets, so
//! a retried batch is answered with its original offsets instead of being written
//! twice, a gap in sequences is refused, and an older epoch is fenced.
//!
//! The state is rebuilt from batch headers when the journal is replayed, so it
//! survives restarts and crashes exactly as the batches do.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use tributary_protocol::batch::BatchHeader;

use super::StorageError;

/// How many batches per producer are remembered (Kafka's in-flight limit).
pub(crate) const TRACKED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    /// The coordinator epoch of the last transaction marker (the leader epoch of the
    /// coordinator's `__transaction_state` partition): a marker from an older
    /// coordinator, one that lost its partition, is fenced.
    #[serde(default)]
    coordinator_epoch: i32,
    /// When the broker last appended for this producer here (ms since the epoch; a
    /// batch replayed at start counts as appended then): what
    /// `producer.id.expiration.ms` measures.
    #[serde(default)]
    last_write_ms: i64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// All idempotent producers that wrote to one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Producers {
    map: HashMap<i64, Entry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl Producers {
    /// Decides whether `h` may be appended; `coordinator_epoch` is a marker's.
    pub(crate) fn check(&self, h: &BatchHeader, coordinator_epoch: Option<i32>) -> Result<Verdict, StorageError> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let out_of_order = |expected: i32| StorageError::OutOfOrderSequence {
            producer_id: h.producer_id,
            expected,
            got: h.base_sequence,
        };
        let entry = self.map.get(&h.producer_id);
        if h.is_control() || (h.is_transactional() && h.base_sequence < 0) {
            // A transaction marker, or transactional offsets, written by a
            // coordinator: no sequence, only fencing.
            return match (entry, coordinator_epoch) {
                (Some(e), _) if h.producer_epoch < e.epoch => Err(StorageError::InvalidProducerEpoch {
                    producer_id: h.producer_id,
                    current: e.epoch,
                    got: h.producer_epoch,
                }),
                (Some(e), Some(c)) if c < e.coordinator_epoch => Err(StorageError::CoordinatorFenced {
                    producer_id: h.producer_id,
                    current: e.coordinator_epoch,
                    got: c,
                }),
                _ => Ok(Verdict::Append),
            };
        }
        let Some(entry) = entry else {
            return if h.base_sequence == 0 { Ok(Verdict::Append) } else { Err(out_of_order(0)) };
        };
        if h.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 { Ok(Verdict::Append) } else { Err(out_of_order(0)) };
        }
        if let Some(b) =
            entry.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return Ok(Verdict::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence == expected {
            Ok(Verdict::Append)
        } else {
            Err(out_of_order(expected))
        }
    }

    /// The current epoch of `producer_id` here, if it wrote here.
    pub(crate) fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.map.get(&producer_id).map(|e| e.epoch)
    }

    /// (producer id, epoch, last sequence) of every producer known here.
    pub(crate) fn snapshot(&self) -> Vec<(i64, i16, i32)> {
        let mut out: Vec<_> =
            self.map.iter().map(|(pid, e)| (*pid, e.epoch, e.batches.back().map_or(-1, |b| b.last_seq))).collect();
        out.sort();
        out
    }

    /// The state as of the durable batches only (those below `high_watermark`):
    /// what a checkpoint may promise after a crash.
    pub(crate) fn durable_before(&self, high_watermark: i64) -> Producers {
        let mut out = self.clone();
        for e in out.map.values_mut() {
            e.batches.retain(|b| b.last_offset < high_watermark);
        }
        out
    }

    /// Forgets the producers that wrote nothing here for `expiration_ms` (as of
    /// `now_ms`) and have no transaction open here (`open`), as Kafka expires producer
    /// ids. Returns how many went.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64, open: impl Fn(i64) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|pid, e| {
            if e.last_write_ms == 0 {
                // Restored from a checkpoint written before the time was kept: its
                // idle time starts now.
                e.last_write_ms = now_ms;
            }
            open(*pid) || now_ms.saturating_sub(e.last_write_ms) < expiration_ms
        });
        before - self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remembers a batch appended at `base_offset` at `now_ms` (`coordinator_epoch`:
    /// a marker's).
    pub(crate) fn record(&mut self, h: &BatchHeader, base_offset: i64, coordinator_epoch: Option<i32>, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry =
            self.map.entry(h.producer_id).or_insert_with(|| Entry { epoch: h.producer_epoch, ..Default::default() });
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if let Some(c) = coordinator_epoch.filter(|_| h.is_control()) {
            entry.coordinator_epoch = entry.coordinator_epoch.max(c);
        }
        if h.is_control() || h.base_sequence < 0 {
            // Markers and coordinator writes carry no sequence; the producer's
            // sequence continues after them.
            return;
        }
        if entry.batches.len() == TRACKED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            size: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates_with_original_offsets() {
        let mut p = Producers::default();
        let b0 = batch(7, 0, 0, 3);
        assert_eq!(p.check(&b0, None).unwrap(), Verdict::Append);
        p.record(&b0, 100, None, 0);
        let b1 = batch(7, 0, 3, 2);
        assert_eq!(p.check(&b1, None).unwrap(), Verdict::Append);
        p.record(&b1, 103, None, 0);
        assert_eq!(p.check(&b0, None).unwrap(), Verdict::Duplicate { base_offset: 100, last_offset: 102 });
        assert_eq!(p.check(&b1, None).unwrap(), Verdict::Duplicate { base_offset: 103, last_offset: 104 });
    }

    #[test]
    fn gaps_are_out_of_order_and_old_epochs_are_fenced() {
        let mut p = Producers::default();
        assert!(matches!(p.check(&batch(7, 0, 5, 1), None), Err(StorageError::OutOfOrderSequence { expected: 0, .. })));
        p.record(&batch(7, 1, 0, 1), 0, None, 0);
        assert!(matches!(p.check(&batch(7, 1, 2, 1), None), Err(StorageError::OutOfOrderSequence { expected: 1, .. })));
        assert!(matches!(
            p.check(&batch(7, 0, 1, 1), None),
            Err(StorageError::InvalidProducerEpoch { current: 1, .. })
        ));
        // a bumped epoch starts again at sequence 0
        assert_eq!(p.check(&batch(7, 2, 0, 1), None).unwrap(), Verdict::Append);
        assert!(p.check(&batch(7, 2, 1, 1), None).is_err());
        // non-idempotent batches are never checked
        assert_eq!(p.check(&batch(-1, -1, -1, 4), None).unwrap(), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut p = Producers::default();
        for i in 0..6 {
            p.record(&batch(1, 0, i, 1), i as i64, None, 0);
        }
        assert!(p.check(&batch(1, 0, 0, 1), None).is_err(), "the sixth-last batch is forgotten");
        assert_eq!(p.check(&batch(1, 0, 1, 1), None).unwrap(), Verdict::Duplicate { base_offset: 1, last_offset: 1 });
        let mut p = Producers::default();
        p.record(&batch(2, 0, i32::MAX - 1, 2), 0, None, 0);
        assert_eq!(p.check(&batch(2, 0, 0, 1), None).unwrap(), Verdict::Append);
    }

    #[test]
    fn producers_idle_past_the_expiration_go_unless_a_transaction_is_open() {
        let mut p = Producers::default();
        p.record(&batch(1, 0, 0, 1), 0, None, 1_000);
        p.record(&batch(2, 0, 0, 1), 1, None, 1_000);
        p.record(&batch(3, 0, 0, 1), 2, None, 5_000);
        assert_eq!(p.expire(5_999, 5_000, |_| false), 0, "not idle long enough yet");
        assert_eq!(p.expire(6_000, 5_000, |pid| pid == 2), 1, "producer 2 has a transaction open");
        assert_eq!(p.snapshot().iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3]);
        // An expired producer starts again at sequence 0; its next batch is out of order.
        assert_eq!(p.check(&batch(1, 0, 0, 1), None).unwrap(), Verdict::Append);
        assert!(p.check(&batch(1, 0, 1, 1), None).is_err());
        assert_eq!(p.expire(20_000, 5_000, |_| false), 2);
        assert!(p.is_empty());
    }

    #[test]
    fn a_marker_from_an_older_coordinator_is_fenced() {
        let mut p = Producers::default();
        let mut data = batch(9, 0, 0, 1);
        data.attributes = 1 << 4; // transactional
        p.record(&data, 0, None, 0);
        let mut marker = batch(9, 0, -1, 1);
        marker.attributes = (1 << 4) | (1 << 5); // transactional control
        assert_eq!(p.check(&marker, Some(3)).unwrap(), Verdict::Append);
        p.record(&marker, 1, Some(3), 0);
        assert_eq!(p.check(&marker, Some(3)).unwrap(), Verdict::Append, "the same coordinator again");
        assert!(matches!(p.check(&marker, Some(2)), Err(StorageError::CoordinatorFenced { current: 3, got: 2, .. })));
        assert_eq!(p.check(&marker, Some(4)).unwrap(), Verdict::Append);
    }
}
