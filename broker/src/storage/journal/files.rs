//! The journal's files: `<first position>.journal` in the journal directory, where a
//! position is a byte offset in the journal as a whole. Reads by position go to the
//! file that holds it; only the writer thread creates or grows files.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

/// The set of journal files, for reading by position.
#[derive(Debug)]
pub(crate) struct JournalFiles {
    dir: PathBuf,
    files: RwLock<BTreeMap<u64, Arc<File>>>,
    /// The writer's position: the end of what is written.
    end: AtomicU64,
    /// The end of the group commits whose batches are published (indexed, high
    /// watermarks moved): a checkpoint taken after reading it covers everything
    /// before it.
    published: AtomicU64,
}

impl JournalFiles {
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(JournalFiles {
            dir: dir.to_path_buf(),
            files: RwLock::new(BTreeMap::new()),
            end: AtomicU64::new(0),
            published: AtomicU64::new(0),
        })
    }

    pub(crate) fn path(&self, start: u64) -> PathBuf {
        self.dir.join(format!("{start:020}.journal"))
    }

    /// Start positions of the files on disk, in order.
    pub(crate) fn list(&self) -> io::Result<Vec<u64>> {
        let mut starts = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(start) = name.strip_suffix(".journal").and_then(|s| s.parse::<u64>().ok()) {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        Ok(starts)
    }

    /// Opens (creating if needed) the file starting at `start` for the writer, with
    /// `O_DIRECT` where the file system allows it, and registers a separate buffered
    /// handle for reads (a direct handle would demand aligned reads). Returns the
    /// writer's handle and whether it is direct.
    pub(crate) fn open_for_writing(&self, start: u64) -> io::Result<(File, bool)> {
        let path = self.path(start);
        let created = !path.exists();
        // tmpfs and some others refuse O_DIRECT: buffered writes plus fdatasync give
        // the same durability, at the cost of a page-cache copy.
        let (file, direct) = tributary_tiering::open_direct(OpenOptions::new().create(true).write(true), &path)?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.files.write().insert(start, Arc::new(File::open(&path)?));
        Ok((file, direct))
    }

    /// Registers an existing file for reads (recovery).
    pub(crate) fn register(&self, start: u64) -> io::Result<()> {
        let file = File::open(self.path(start))?;
        self.files.write().insert(start, Arc::new(file));
        Ok(())
    }

    /// Deletes a file: one found past a corrupt entry at recovery, or one whose
    /// entries are all sealed.
    pub(crate) fn remove(&self, start: u64) -> io::Result<()> {
        let held = self.files.write().remove(&start);
        // Freed a few megabytes at a time so that the writer's fsyncs do not wait
        // behind the whole file's blocks; but a reader still holding the file gets
        // it whole (an unlinked file lives on while open).
        if held.is_none_or(|f| Arc::strong_count(&f) == 1) {
            tributary_tiering::remove_gradually(&self.path(start))?;
        } else {
            fs::remove_file(self.path(start))?;
        }
        sync_dir(&self.dir)
    }

    /// Start positions of the files open for reading, in order (the last one is the
    /// file being written).
    pub(crate) fn starts(&self) -> Vec<u64> {
        self.files.read().keys().copied().collect()
    }

    /// Records the writer's position (the end of the journal).
    pub(crate) fn set_end(&self, position: u64) {
        self.end.store(position, Ordering::Release);
    }

    /// Records that every group commit before `position` is published.
    pub(crate) fn set_published(&self, position: u64) {
        self.published.store(position, Ordering::Release);
    }

    /// The end of the published group commits.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Bytes of the journal from its first file to the writer's position.
    pub(crate) fn total_bytes(&self) -> u64 {
        let first = self.files.read().keys().next().copied().unwrap_or(0);
        self.end.load(Ordering::Acquire).saturating_sub(first)
    }

    /// Fills `buf` from journal position `position`. Blocking.
    pub(crate) fn read_into(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        let (start, file) = {
            let files = self.files.read();
            let (start, file) = files.range(..=position).next_back().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no journal file holds position {position}"))
            })?;
            (*start, file.clone())
        };
        file.read_exact_at(buf, position - start)
    }
}

/// Makes a file creation or rename durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
