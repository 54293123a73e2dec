//! The shared journal (tier 1): every accepted batch of every partition is appended
//! here first, by one writer thread with group commit (see [`writer`]). The journal
//! promises that an append is acknowledged only once it is durable under the
//! configured policy, and that recovery ([`entry::scan`]) finds every acknowledged
//! entry. It never interprets payloads beyond the batch header.

pub(crate) mod entry;
pub mod faults;
pub(crate) mod files;
pub(crate) mod writer;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tributary_config::Durability;

pub(crate) use writer::Append;
pub(crate) use writer::WriterHealth;
pub use writer::{Appended, Shipment, Shipper};
use writer::{Writer, WriterSettings};

use crate::metrics::Metrics;
use crate::storage::cache::CacheBudget;
use crate::storage::StorageError;
use files::JournalFiles;

/// Handle to the journal writer.
#[derive(Debug)]
pub(crate) struct Journal {
    tx: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub(crate) files: Arc<JournalFiles>,
    pub(crate) health: Arc<WriterHealth>,
}

/// Where the writer starts after recovery.
#[derive(Debug)]
pub(crate) struct StartPoint {
    pub(crate) file_start: u64,
    pub(crate) position: u64,
}

impl Journal {
    /// Starts the writer thread appending at `start`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        files: Arc<JournalFiles>,
        start: StartPoint,
        settings: WriterSettings,
        fsync_interval: Duration,
        queue_depth: usize,
        cache: CacheBudget,
        durable: watch::Sender<u64>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        // Group commits are block-aligned; an end that is not (a torn tail was cut,
        // or an older journal) continues in a new file at the next block.
        let start = if !start.position.is_multiple_of(entry::BLOCK as u64) {
            let aligned = start.position.next_multiple_of(entry::BLOCK as u64);
            StartPoint { file_start: aligned, position: aligned }
        } else {
            start
        };
        let health = Arc::new(WriterHealth::default());
        metrics.journal_writable.set(1);
        let file = match files.open_for_writing(start.file_start) {
            Ok((file, direct)) => {
                tracing::info!(direct, position = start.position, "journal open for writing");
                Some(file)
            }
            // A full disk: start all the same (reads are served); the writer creates
            // the file once there is room, and refuses appends until then.
            Err(e) if crate::storage::metadata_log::is_no_space(&e) => {
                tracing::error!(error = %e, position = start.position, "no room for the journal file; starting read-only");
                None
            }
            Err(e) => return Err(e),
        };
        files.set_end(start.position);
        files.set_published(start.position);
        let current = Arc::new(Mutex::new(file));
        if settings.durability == Durability::Interval {
            let weak = Arc::downgrade(&current);
            let m = metrics.clone();
            std::thread::Builder::new()
                .name("journal-fsync".into())
                .spawn(move || writer::run_interval_sync(weak, fsync_interval, m))?;
        }
        let writer = Writer::new(
            settings,
            files.clone(),
            current,
            start.file_start,
            start.position,
            cache,
            durable,
            metrics,
            health.clone(),
        )?;
        let (tx, rx) = mpsc::channel(queue_depth);
        let handle = std::thread::Builder::new().name("journal-writer".into()).spawn(move || writer.run(rx))?;
        Ok(Journal { tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(handle)), files, health })
    }

    /// Queues an append. Returns once the writer has room for it (the queue is the
    /// backpressure); the returned receiver answers once the append is durable.
    pub(crate) async fn submit(
        &self,
        append: impl FnOnce(oneshot::Sender<Result<Appended, StorageError>>) -> Append,
    ) -> Result<oneshot::Receiver<Result<Appended, StorageError>>, StorageError> {
        let tx = self.tx.lock().clone().ok_or(StorageError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        tx.send(append(reply)).await.map_err(|_| StorageError::ShuttingDown)?;
        Ok(rx)
    }

    /// Stops accepting appends, lets the writer finish what is queued, fsync and exit.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("journal writer thread panicked");
            }
        }
    }
}
