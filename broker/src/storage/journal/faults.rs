//! Fault injection for the journal writer: tests pass a [`Faults`] hook to
//! [`Storage::open_with_faults`](crate::storage::Storage::open_with_faults) and the
//! writer asks it before every write and fsync, so a seeded test can fail them
//! (ENOSPC, EIO) or tear them (a short write of some blocks, then an error) and
//! check what recovery and the retry path promise. Without a hook this costs one
//! `Option` check per group commit.

use std::io;
use std::sync::Arc;

/// The operation the writer is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOp {
    /// A group commit's write of this many bytes.
    Write(usize),
    /// The fsync after it.
    Sync,
}

/// What the hook makes of it.
#[derive(Debug)]
pub enum Injected {
    /// The operation fails with this error, having done nothing.
    Fail(io::Error),
    /// A write puts only its first blocks (this many bytes, rounded down to the
    /// journal's block) on disk, then fails with this error.
    Short(usize, io::Error),
}

/// The hook: `None` lets the operation run.
#[derive(Clone)]
pub struct Faults(pub Arc<dyn Fn(JournalOp) -> Option<Injected> + Send + Sync>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults(..)")
    }
}
