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

use bytes::Bytes;
use parking_lot::RwLock;

use super::entry::BLOCK;
use crate::buffers::BufferPool;

/// Bytes of other entries a direct read for sealing reads through rather than
/// starting another read.
const RUN_GAP: u64 = 256 * 1024;

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
    /// The aligned buffers of group commits and sealing reads, reused.
    pub(crate) buffers: Arc<BufferPool>,
}

impl JournalFiles {
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(JournalFiles {
            dir: dir.to_path_buf(),
            files: RwLock::new(BTreeMap::new()),
            end: AtomicU64::new(0),
            published: AtomicU64::new(0),
            buffers: Arc::new(BufferPool::new(JOURNAL_BUFFERS, JOURNAL_BUFFER_BYTES)),
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

    /// Reads the journal ranges `(position, len)`, in position order, for sealing:
    /// each run of ranges close together in one file with direct I/O (the blocks
    /// around it into one aligned buffer), so that data the page cache does not hold
    /// (the journal is written with `O_DIRECT`) is neither pulled into it, evicting
    /// what consumers read, nor copied out of it. A run that would read mostly other
    /// partitions' bytes, or a file system without direct I/O, is read buffered.
    /// Returns one buffer per range. Blocking.
    pub(crate) fn read_ranges(&self, ranges: &[(u64, usize)]) -> io::Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        let mut i = 0;
        while i < ranges.len() {
            let (start, file) = self.file_at(ranges[i].0)?;
            let next_start = self.files.read().range(start + 1..).next().map_or(u64::MAX, |(s, _)| *s);
            // A run: ranges in the same file with at most RUN_GAP bytes between them,
            // while at least half of the blocks read are theirs.
            let block = BLOCK as u64;
            let from = (ranges[i].0 - start) / block * block;
            let span = |end: u64| (end - start).next_multiple_of(block) - from;
            let mut j = i + 1;
            let mut end = ranges[i].0 + ranges[i].1 as u64;
            let mut useful = ranges[i].1 as u64;
            while j < ranges.len() {
                let (p, l) = (ranges[j].0, ranges[j].1 as u64);
                if p < end || p - end > RUN_GAP || p + l > next_start || (useful + l) * 2 < span(p + l) {
                    break;
                }
                end = p + l;
                useful += l;
                j += 1;
            }
            let to = from + span(end);
            let direct = if useful * 2 >= to - from {
                let (direct, is_direct) =
                    tributary_tiering::open_direct(OpenOptions::new().read(true), &self.path(start))?;
                is_direct.then_some(direct)
            } else {
                None
            };
            let read = direct.map(|direct| {
                let mut buf = self.buffers.take_filled((to - from) as usize);
                direct.read_exact_at(&mut buf, from).map(|()| self.buffers.share(buf))
            });
            match read {
                Some(Ok(buf)) => {
                    for &(p, l) in &ranges[i..j] {
                        let at = (p - start - from) as usize;
                        out.push(buf.slice(at..at + l));
                    }
                }
                Some(Err(e)) if e.kind() != io::ErrorKind::UnexpectedEof => return Err(e),
                // No direct I/O here, or a file that ends inside a block (its torn tail
                // was cut at recovery): buffered, exactly the ranges.
                _ => {
                    for &(p, l) in &ranges[i..j] {
                        let mut buf = vec![0u8; l];
                        file.read_exact_at(&mut buf, p - start)?;
                        out.push(Bytes::from(buf));
                    }
                }
            }
            i = j;
        }
        Ok(out)
    }

    /// The file holding `position`: its start and its read handle.
    fn file_at(&self, position: u64) -> io::Result<(u64, Arc<File>)> {
        let files = self.files.read();
        let (start, file) = files.range(..=position).next_back().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no journal file holds position {position}"))
        })?;
        Ok((*start, file.clone()))
    }

    /// Fills `buf` from journal position `position`. Blocking.
    pub(crate) fn read_into(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        let (start, file) = self.file_at(position)?;
        file.read_exact_at(buf, position - start)
    }
}

/// The journal's buffer pool keeps at most this many buffers and bytes (group
/// commits are up to `group_commit_bytes`, 8 MiB by default; sealing reads a part
/// of a segment, about 1 MiB, per partition at a time).
const JOURNAL_BUFFERS: usize = 16;
const JOURNAL_BUFFER_BYTES: usize = 64 << 20;

/// Makes a file creation or rename durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two journal files of known bytes, the second ending inside a block (a torn
    /// tail cut at recovery); returns the files and the bytes by position.
    fn journal(dir: &Path, first_len: usize, second_len: usize) -> (JournalFiles, Vec<u8>) {
        let files = JournalFiles::new(dir).unwrap();
        let bytes: Vec<u8> = (0..first_len + second_len).map(|i| (i * 7 + i / 4096) as u8).collect();
        fs::write(files.path(0), &bytes[..first_len]).unwrap();
        fs::write(files.path(first_len as u64), &bytes[first_len..]).unwrap();
        files.register(0).unwrap();
        files.register(first_len as u64).unwrap();
        (files, bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the ranges (dense or sparse, tiny or large, across the file
        /// boundary, up to a file end inside a block), sealing's reads return exactly
        /// the bytes at those positions.
        #[test]
        fn ranges_read_for_sealing_are_the_bytes_at_those_positions(
            steps in proptest::collection::vec((0usize..300_000, 1usize..200_000), 1..12),
            second_len in 1usize..600_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let first_len = 64 * BLOCK;
            let (files, bytes) = journal(dir.path(), first_len, second_len);
            let mut ranges = Vec::new();
            let mut at = 0usize;
            for (gap, len) in steps {
                let p = at + gap;
                // A range never spans two files (a journal entry never does).
                let file_end = if p < first_len { first_len } else { bytes.len() };
                if p >= bytes.len() {
                    break;
                }
                let l = len.min(file_end - p);
                ranges.push((p as u64, l));
                at = p + l;
            }
            let read = files.read_ranges(&ranges).unwrap();
            prop_assert_eq!(read.len(), ranges.len());
            for (&(p, l), got) in ranges.iter().zip(&read) {
                prop_assert_eq!(&got[..], &bytes[p as usize..p as usize + l]);
            }
        }
    }
}
