//! The journal checkpoint: what a replay of the journal rebuilds — each
//! partition's index of journal-resident batches, its producer state and its
//! transaction index — as of a journal position. It is written before journal files
//! are deleted, so that what those files taught recovery is not lost with them, and
//! every `journal.checkpoint_bytes` of journal, so that a start scans only the
//! journal after the checkpoint's position: restart time is bounded by that, not by
//! what the journal holds.
//!
//! The position is the end of the group commits published (high watermarks moved)
//! before the capture began, so every batch a capture misses lies after it, and
//! replay from there applies what the capture missed. A batch both captured and
//! after the position is applied once: below `through` it counts for neither the
//! index nor producer or transaction state.
//!
//! Each partition's entry covers its batches below `through` (its high watermark
//! when the checkpoint was taken; producer state is cut to the durable batches, so
//! nothing not yet durable is ever promised). Recovery loads it and then applies
//! only the journal batches at or after `through`, so a batch is never counted
//! twice, whether or not the files before the checkpoint are still there.
//!
//! The file is replaced atomically (write, fsync, rename, fsync of the directory):
//! a crash leaves the old checkpoint or the new one, and files are deleted only
//! after the new one is durable.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::journal::files::sync_dir;
use super::partition::{BatchLocation, PartitionLog};
use super::producer_state::Producers;
use super::txn_index::TxnIndex;

/// The checkpoint: JSON of the producer and transaction state, then the batch
/// indexes in binary, then a CRC-32C of everything before it.
const FILE: &str = "checkpoint.bin";
/// The checkpoint of earlier versions (JSON, no batch indexes, no position): read
/// once, then replaced.
const LEGACY_FILE: &str = "checkpoint.json";
const MAGIC: &[u8; 8] = b"TRBCKPT\x01";
/// Bytes of one batch location: base, last, max timestamp, position, length.
const LOCATION_LEN: usize = 8 * 4 + 4;

/// One partition's state as of `through`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionCheckpoint {
    /// The partition's journal id.
    pub(crate) id: u64,
    pub(crate) through: i64,
    pub(crate) producers: Option<Producers>,
    pub(crate) txns: Option<TxnIndex>,
    /// The journal-resident batches below `through` (in the binary section).
    #[serde(skip)]
    pub(crate) batches: Vec<BatchLocation>,
}

/// The whole checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Where a replay of the journal starts (0: at its first file).
    #[serde(default)]
    pub(crate) position: u64,
    pub(crate) partitions: Vec<PartitionCheckpoint>,
}

impl PartitionLog {
    /// This partition's entry, or `None` if it has neither producers nor
    /// transactions.
    pub(crate) fn checkpoint(&self) -> Option<PartitionCheckpoint> {
        let mut st = self.state.lock();
        if st.producers.is_none() && st.txns.is_none() && st.batches.is_empty() {
            return None;
        }
        let through = st.high_watermark;
        let log_start = st.log_start_offset;
        if let Some(t) = st.txns.as_mut() {
            t.prune_below(log_start);
        }
        Some(PartitionCheckpoint {
            id: self.id,
            through,
            producers: st.producers.as_ref().map(|p| p.durable_before(through)),
            txns: st.txns.as_deref().cloned(),
            batches: st.batches.iter().copied().collect(),
        })
    }
}

impl Checkpoint {
    /// Captures every partition given, as of journal position `position` (read
    /// before the capture: see the module's note).
    pub(crate) fn capture<'a>(position: u64, partitions: impl Iterator<Item = &'a Arc<PartitionLog>>) -> Self {
        Checkpoint {
            position,
            partitions: partitions.filter(|p| !p.is_deleted()).filter_map(|p| p.checkpoint()).collect(),
        }
    }

    /// Encodes the checkpoint.
    pub(crate) fn encode(&self) -> io::Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| io::Error::other(format!("encoding checkpoint: {e}")))?;
        let with_batches: Vec<&PartitionCheckpoint> =
            self.partitions.iter().filter(|p| !p.batches.is_empty()).collect();
        let batches: usize = with_batches.iter().map(|p| p.batches.len()).sum();
        let mut out = Vec::with_capacity(json.len() + batches * LOCATION_LEN + with_batches.len() * 12 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(with_batches.len() as u32).to_be_bytes());
        for p in with_batches {
            out.extend_from_slice(&p.id.to_be_bytes());
            out.extend_from_slice(&(p.batches.len() as u32).to_be_bytes());
            for b in &p.batches {
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
                out.extend_from_slice(&b.position.to_be_bytes());
                out.extend_from_slice(&b.len.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Reads a checkpoint's bytes (either format).
    pub(crate) fn decode(bytes: &[u8]) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("journal checkpoint: {what}"));
        if !bytes.starts_with(MAGIC) {
            return serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()));
        }
        if bytes.len() < MAGIC.len() + 8 {
            return Err(bad("truncated"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().expect("invariant: 4 bytes")) {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader { b: body, at: MAGIC.len() };
        let json_len = r.u32()? as usize;
        let json = r.take(json_len)?;
        let mut checkpoint: Checkpoint = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
        let by_id: std::collections::HashMap<u64, usize> =
            checkpoint.partitions.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        for _ in 0..r.u32()? {
            let id = r.u64()?;
            let n = r.u32()? as usize;
            if n > r.left() / LOCATION_LEN {
                return Err(bad("batch count past the end"));
            }
            let mut batches = Vec::with_capacity(n);
            for _ in 0..n {
                batches.push(BatchLocation {
                    base_offset: r.u64()? as i64,
                    last_offset: r.u64()? as i64,
                    max_timestamp: r.u64()? as i64,
                    position: r.u64()?,
                    len: r.u32()?,
                });
            }
            let i = *by_id.get(&id).ok_or_else(|| bad("batches of a partition it does not list"))?;
            checkpoint.partitions[i].batches = batches;
        }
        if r.left() != 0 {
            return Err(bad("bytes after the batch indexes"));
        }
        Ok(checkpoint)
    }

    /// Writes the checkpoint durably in `dir`, replacing the previous one.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = self.encode()?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))?;
        sync_dir(dir)?;
        match fs::remove_file(dir.join(LEGACY_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The checkpoint in `dir`, if any.
    pub(crate) fn read(dir: &Path) -> io::Result<Option<Self>> {
        for name in [FILE, LEGACY_FILE] {
            match fs::read(dir.join(name)) {
                Ok(bytes) => return Self::decode(&bytes).map(Some),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Puts each entry's state into its partition; returns each partition's
    /// `through`, below which journal batches must not be applied again. Batches a
    /// partition sealed since (below its sealed end) are left out.
    pub(crate) fn restore(self, partitions: &HashMap<u64, Arc<PartitionLog>>, now_ms: i64) -> HashMap<u64, i64> {
        let mut through = HashMap::with_capacity(self.partitions.len());
        for c in self.partitions {
            if let Some(p) = partitions.get(&c.id) {
                let mut st = p.state.lock();
                st.producers = c.producers.map(Box::new);
                st.txns = c.txns.map(Box::new);
                for b in c.batches {
                    if b.last_offset >= st.next_offset {
                        st.push_batch(b, now_ms);
                        st.next_offset = b.last_offset + 1;
                    }
                }
                st.next_offset = st.next_offset.max(c.through);
                st.high_watermark = st.next_offset;
                through.insert(c.id, c.through);
            }
        }
        through
    }
}

/// Reads big-endian fields off a checkpoint, failing at its end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if n > self.left() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "journal checkpoint: truncated"));
        }
        self.at += n;
        Ok(&self.b[self.at - n..self.at])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("invariant: 4 bytes")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("invariant: 8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(base: i64) -> BatchLocation {
        BatchLocation { base_offset: base, last_offset: base + 9, max_timestamp: 1000 + base, position: 4096, len: 700 }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let c = Checkpoint {
            position: 1 << 33,
            partitions: vec![
                PartitionCheckpoint {
                    id: 3,
                    through: 20,
                    producers: None,
                    txns: None,
                    batches: vec![location(0), location(10)],
                },
                PartitionCheckpoint { id: 9, through: 5, producers: None, txns: None, batches: vec![] },
            ],
        };
        let bytes = c.encode().unwrap();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(Checkpoint::decode(&bad).is_err(), "flip at {at}");
        }
        assert!(Checkpoint::decode(&bytes[..bytes.len() - 3]).is_err());
        // The JSON of earlier versions still reads, as a checkpoint at position 0.
        let legacy = br#"{"partitions":[{"id":3,"through":20,"producers":null,"txns":null}]}"#;
        let old = Checkpoint::decode(legacy).unwrap();
        assert_eq!((old.position, old.partitions.len()), (0, 1));
    }
}
