//! The journal checkpoint: producer state and transaction indexes of every
//! partition that has any, written before journal files are deleted, so that what
//! those files taught recovery is not lost with them.
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
use super::partition::PartitionLog;
use super::producer_state::Producers;
use super::txn_index::TxnIndex;

const FILE: &str = "checkpoint.json";

/// One partition's state as of `through`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionCheckpoint {
    /// The partition's journal id.
    pub(crate) id: u64,
    pub(crate) through: i64,
    pub(crate) producers: Option<Producers>,
    pub(crate) txns: Option<TxnIndex>,
}

/// The whole checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) partitions: Vec<PartitionCheckpoint>,
}

impl PartitionLog {
    /// This partition's entry, or `None` if it has neither producers nor
    /// transactions.
    pub(crate) fn checkpoint(&self) -> Option<PartitionCheckpoint> {
        let mut st = self.state.lock();
        if st.producers.is_none() && st.txns.is_none() {
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
        })
    }
}

impl Checkpoint {
    /// Captures every partition given.
    pub(crate) fn capture<'a>(partitions: impl Iterator<Item = &'a Arc<PartitionLog>>) -> Self {
        Checkpoint { partitions: partitions.filter(|p| !p.is_deleted()).filter_map(|p| p.checkpoint()).collect() }
    }

    /// Writes the checkpoint durably in `dir`, replacing the previous one.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(|e| io::Error::other(format!("encoding checkpoint: {e}")))?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))?;
        sync_dir(dir)
    }

    /// The checkpoint in `dir`, if any.
    pub(crate) fn read(dir: &Path) -> io::Result<Option<Self>> {
        match fs::read(dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("journal checkpoint: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Puts each entry's state into its partition; returns each partition's
    /// `through`, below which journal batches must not be applied again.
    pub(crate) fn restore(self, partitions: &HashMap<u64, Arc<PartitionLog>>) -> HashMap<u64, i64> {
        let mut through = HashMap::with_capacity(self.partitions.len());
        for c in self.partitions {
            if let Some(p) = partitions.get(&c.id) {
                let mut st = p.state.lock();
                st.producers = c.producers.map(Box::new);
                st.txns = c.txns.map(Box::new);
                through.insert(c.id, c.through);
            }
        }
        through
    }
}
