//! Objects of the `fs` segment store written by the broker itself, bypassing the
//! page cache: `O_DIRECT` writes of [`IO_BYTES`] each, one in flight while the next
//! is filled, so that sealing never leaves tens of megabytes dirty for one final
//! `fsync` to push through the disk at once (the journal's own writes and fsyncs
//! queued behind that burst were the produce tail), and never evicts the pages the
//! journal's readers need. Reads still go through OpenDAL: the file is at the path
//! its fs service maps the key to.
//!
//! On a file system that refuses `O_DIRECT` (tmpfs) the same writes are buffered;
//! either way `close` makes the file and its directory entry durable before the
//! object counts as written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Bytes per write: large enough for the disk's full sequential speed, small enough
/// that a journal write queued behind one waits about a millisecond.
pub(crate) const IO_BYTES: usize = 1 << 20;

/// Alignment of direct I/O buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// Bytes freed per step by [`remove_gradually`], and the pause after each step.
const REMOVE_STEP: u64 = 4 << 20;
const REMOVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Deletes a large file a few megabytes at a time (truncating it from the end, with
/// a short pause after each step) before unlinking what is left. Unlinking a 256 MiB
/// file at once frees (and, on a file system mounted with `discard`, trims) all its
/// blocks in one go, which held a concurrent journal `fdatasync` up for 50 ms here;
/// in 4 MiB steps the longest was 4.5 ms. Blocking; a file already gone is fine.
pub fn remove_gradually(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(file) => {
            let mut len = file.metadata()?.len();
            while len > REMOVE_STEP {
                len -= REMOVE_STEP;
                file.set_len(len)?;
                std::thread::sleep(REMOVE_PAUSE);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An object being written to a local file.
#[derive(Debug)]
pub(crate) struct LocalWriter {
    path: PathBuf,
    file: Arc<File>,
    direct: bool,
    /// Being filled; `IO_BYTES` aligned.
    buf: BytesMut,
    /// The write in flight (it hands its buffer back).
    pending: Option<tokio::task::JoinHandle<std::io::Result<BytesMut>>>,
    /// File offset of `buf`'s first byte.
    at: u64,
}

/// An empty buffer of at least `capacity` bytes whose start is 4 KiB-aligned, for
/// direct I/O (the journal's group commits too).
pub fn aligned_buffer(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity + ALIGN);
    let skip = buf.as_ptr().align_offset(ALIGN);
    buf.resize(skip, 0);
    let _ = buf.split_to(skip);
    buf
}

/// Opens `path` with `options` and `O_DIRECT` where the file system allows it;
/// buffered where it refuses (tmpfs answers `EINVAL`). Returns whether it is direct.
pub fn open_direct(options: &OpenOptions, path: &Path) -> std::io::Result<(File, bool)> {
    match options.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

impl LocalWriter {
    /// Creates (or truncates) the file for `key` under `root`, with its directories.
    pub(crate) async fn create(root: &Path, key: &str) -> std::io::Result<Self> {
        let path = root.join(key);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open_direct(OpenOptions::new().create(true).write(true).truncate(true), &path)
            })
            .await
            .map_err(std::io::Error::other)?
        };
        let (file, direct) = opened?;
        Ok(LocalWriter { path, file: Arc::new(file), direct, buf: aligned_buffer(IO_BYTES), pending: None, at: 0 })
    }

    pub(crate) async fn write(&mut self, mut bytes: Bytes) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let take = (IO_BYTES - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes.split_to(take));
            if self.buf.len() == IO_BYTES {
                self.submit().await?;
            }
        }
        Ok(())
    }

    /// Waits for the write in flight, if any; returns its buffer, emptied.
    async fn wait(&mut self) -> std::io::Result<Option<BytesMut>> {
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        let mut buf = pending.await.map_err(std::io::Error::other)??;
        buf.clear();
        Ok(Some(buf))
    }

    /// Starts writing the full buffer; the next one is filled meanwhile.
    async fn submit(&mut self) -> std::io::Result<()> {
        let next = match self.wait().await? {
            Some(buf) => buf,
            None => aligned_buffer(IO_BYTES),
        };
        let full = std::mem::replace(&mut self.buf, next);
        let (file, at) = (self.file.clone(), self.at);
        self.at += full.len() as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(&full, at)?;
            Ok(full)
        }));
        Ok(())
    }

    /// Writes what is left, makes the file durable at its exact length and its
    /// directory entry durable.
    pub(crate) async fn close(mut self) -> std::io::Result<()> {
        self.wait().await?;
        let mut tail = std::mem::take(&mut self.buf);
        let (file, at, direct, path) = (self.file.clone(), self.at, self.direct, self.path.clone());
        tokio::task::spawn_blocking(move || {
            let len = at + tail.len() as u64;
            let padded = direct && !tail.len().is_multiple_of(ALIGN);
            if padded {
                // Direct I/O writes whole blocks: pad, then cut the file back.
                tail.resize(tail.len().next_multiple_of(ALIGN), 0);
            }
            file.write_all_at(&tail, at)?;
            if padded {
                file.set_len(len)?;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Gives the object up: removes what was written.
    pub(crate) async fn abort(mut self) {
        let _ = self.wait().await;
        let path = self.path.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_of_any_length_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, ALIGN - 1, ALIGN, IO_BYTES - 3, IO_BYTES, 2 * IO_BYTES + 4097, 5 * IO_BYTES / 2] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let key = format!("a/b/{len}.seg");
            let mut w = LocalWriter::create(dir.path(), &key).await.unwrap();
            // Uneven pieces, as batches come.
            for piece in data.chunks(70_001) {
                w.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            w.close().await.unwrap();
            assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn a_large_file_is_removed_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, vec![1u8; (REMOVE_STEP * 3 + 10) as usize]).unwrap();
        remove_gradually(&path).unwrap();
        assert!(!path.exists());
        remove_gradually(&path).unwrap();
    }

    #[tokio::test]
    async fn an_aborted_object_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LocalWriter::create(dir.path(), "x.seg").await.unwrap();
        w.write(Bytes::from(vec![7u8; IO_BYTES + 5])).await.unwrap();
        w.abort().await;
        assert!(!dir.path().join("x.seg").exists());
    }
}
