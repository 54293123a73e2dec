//! The segment store as the broker uses it: whole-object writes, ranged reads
//! through a bounded block cache with read-ahead, footers parsed once and cached,
//! idempotent deletes. The operator under it retries with backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use opendal::{ErrorKind, Operator};
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::segment::Footer;
use crate::TieringError;

/// Where a sealed segment lives: an object and the byte range inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLocation {
    pub key: Arc<str>,
    /// First byte of the segment in the object (non-zero inside a pack).
    pub start: u64,
    /// Bytes of the segment, footer included.
    pub len: u64,
    pub footer_len: u32,
}

impl SegmentLocation {
    /// Bytes of batches (the segment without its footer).
    pub fn data_len(&self) -> u64 {
        self.len - self.footer_len as u64
    }
}

/// Counters a metrics collector reads at scrape time.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub block_hits: AtomicU64,
    pub block_misses: AtomicU64,
    pub bytes_read: AtomicU64,
    pub read_errors: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub upload_errors: AtomicU64,
    pub deletes: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    key: Arc<str>,
    segment_start: u64,
    block: u64,
}

#[derive(Debug, Clone)]
struct ByteWeighter;

impl Weighter<BlockKey, Bytes> for ByteWeighter {
    fn weight(&self, _key: &BlockKey, value: &Bytes) -> u64 {
        value.len().max(1) as u64
    }
}

/// An object being written in parts; [`close`](Self::close) makes it durable and
/// visible, [`abort`](Self::abort) (or a failed write) leaves nothing or garbage.
pub struct ObjectWriter {
    inner: Sink,
    store: Arc<Inner>,
    started: Instant,
    written: u64,
}

/// Where an object's bytes go: through OpenDAL, or straight to a local file
/// ([`crate::local`]) when the store is a local directory.
enum Sink {
    Opendal(opendal::Writer),
    Local(crate::local::LocalWriter),
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter").field("written", &self.written).finish_non_exhaustive()
    }
}

impl ObjectWriter {
    /// Bytes written so far (the position of the next write in the object).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, bytes: Bytes) -> Result<(), TieringError> {
        let len = bytes.len() as u64;
        let written = match &mut self.inner {
            Sink::Opendal(w) => w.write(bytes).await.map_err(TieringError::from),
            Sink::Local(w) => w.write(bytes).await.map_err(|e| local_error(e, "writing")),
        };
        written.inspect_err(|_| {
            self.store.stats.upload_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        self.written += len;
        Ok(())
    }

    /// Completes the object; returns how long the whole upload took.
    pub async fn close(self) -> Result<Duration, TieringError> {
        let closed = match self.inner {
            Sink::Opendal(mut w) => w.close().await.map(|_| ()).map_err(TieringError::from),
            Sink::Local(w) => w.close().await.map_err(|e| local_error(e, "closing")),
        };
        closed.inspect_err(|_| {
            self.store.stats.upload_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        self.store.stats.uploads.fetch_add(1, Ordering::Relaxed);
        self.store.stats.upload_bytes.fetch_add(self.written, Ordering::Relaxed);
        Ok(self.started.elapsed())
    }

    /// Gives up the object (parts already uploaded are discarded where the service
    /// allows; what is left is garbage the flusher deletes).
    pub async fn abort(self) {
        // Best effort: what an abort leaves behind is garbage the flusher deletes.
        match self.inner {
            Sink::Opendal(mut w) => {
                let _ = w.abort().await;
            }
            Sink::Local(w) => w.abort().await,
        }
    }
}

fn local_error(e: std::io::Error, doing: &str) -> TieringError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Unexpected };
    TieringError::Store(opendal::Error::new(kind, format!("{doing} a local segment object")).set_source(e))
}

/// Bytes `[from, to)` of a local file, fewer if it ends before `to`. Blocking.
fn read_exact_range(path: &std::path::Path, from: u64, to: u64) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    // Read into the buffer's spare capacity: no zeroing of a block about to be
    // overwritten (a short file gives a short buffer, as a ranged read would).
    let mut buf = Vec::with_capacity((to - from) as usize);
    file.take(to - from).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// The segment store.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    op: Operator,
    /// The directory of a local (`fs`) store: objects are written there directly.
    local_root: Option<std::path::PathBuf>,
    block_bytes: u64,
    /// Blocks fetched ahead of a sequential reader.
    read_ahead: u64,
    blocks: Cache<BlockKey, Bytes, ByteWeighter>,
    footers: Cache<(Arc<str>, u64), Arc<Footer>>,
    stats: StoreStats,
}

impl SegmentStore {
    /// A store over `op` with a block cache of `cache_bytes` in blocks of
    /// `block_bytes`, reading `read_ahead` blocks ahead of sequential readers.
    pub fn new(op: Operator, cache_bytes: u64, block_bytes: u64, read_ahead: u64) -> Self {
        let block_bytes = block_bytes.max(4096);
        let blocks_estimate = (cache_bytes / block_bytes).max(16) as usize;
        SegmentStore {
            inner: Arc::new(Inner {
                op,
                local_root: None,
                block_bytes,
                read_ahead,
                blocks: Cache::with_weighter(blocks_estimate, cache_bytes.max(block_bytes), ByteWeighter),
                footers: Cache::new(16_384),
                stats: StoreStats::default(),
            }),
        }
    }

    /// Objects written in parts ([`writer`](Self::writer)) go straight to files under
    /// `root`, the directory the operator's `fs` service maps keys into.
    pub fn with_local_writes(mut self, root: std::path::PathBuf) -> Self {
        Arc::get_mut(&mut self.inner).expect("set before the store is shared").local_root = Some(root);
        self
    }

    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// The operator, for listing and probing.
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// Writes a whole object; returns how long the upload took. Writing the same key
    /// twice with the same bytes is harmless (uploads are retried).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<Duration, TieringError> {
        let started = Instant::now();
        let len = bytes.len() as u64;
        match self.inner.op.write(key, bytes).await {
            Ok(_) => {
                self.inner.stats.uploads.fetch_add(1, Ordering::Relaxed);
                self.inner.stats.upload_bytes.fetch_add(len, Ordering::Relaxed);
                Ok(started.elapsed())
            }
            Err(e) => {
                self.inner.stats.upload_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Starts writing an object in parts of `part_bytes` (a multipart upload where
    /// the service has one), `concurrent` parts in flight: memory stays about
    /// `(concurrent + 1) × part_bytes` whatever the object's size.
    pub async fn writer(&self, key: &str, part_bytes: usize, concurrent: usize) -> Result<ObjectWriter, TieringError> {
        let inner = match &self.inner.local_root {
            Some(root) => crate::local::LocalWriter::create(root, key)
                .await
                .map(Sink::Local)
                .map_err(|e| local_error(e, "creating")),
            None => self
                .inner
                .op
                .writer_with(key)
                .chunk(part_bytes)
                .concurrent(concurrent.max(1))
                .await
                .map(Sink::Opendal)
                .map_err(TieringError::from),
        }
        .inspect_err(|_| {
            self.inner.stats.upload_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(ObjectWriter { inner, store: self.inner.clone(), started: Instant::now(), written: 0 })
    }

    /// Deletes an object; one that is already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<(), TieringError> {
        if let Some(root) = &self.inner.local_root {
            // A local object goes a few megabytes at a time (see remove_gradually).
            let path = root.join(key);
            tokio::task::spawn_blocking(move || crate::local::remove_gradually(&path))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| local_error(e, "deleting"))?;
            self.inner.stats.deletes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match self.inner.op.delete(key).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.stats.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the store answers at all (a cheap probe).
    pub async fn reachable(&self) -> bool {
        match self.inner.op.stat("tributary-probe").await {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::NotFound,
        }
    }

    /// The footer of a segment, parsed once.
    pub async fn footer(&self, loc: &SegmentLocation) -> Result<Arc<Footer>, TieringError> {
        let cache_key = (loc.key.clone(), loc.start);
        if let Some(f) = self.inner.footers.get(&cache_key) {
            return Ok(f);
        }
        let from = loc.start + loc.data_len();
        let bytes = self.raw_read(&loc.key, from, loc.start + loc.len).await?;
        let footer = Arc::new(Footer::parse(&bytes).map_err(|e| TieringError::Segment(loc.key.to_string(), e))?);
        self.inner.footers.insert(cache_key, footer.clone());
        Ok(footer)
    }

    /// Bytes `[from, to)` of a segment's batches (positions relative to the segment),
    /// through the block cache. The blocks of the range are fetched concurrently (an
    /// object store answers one request at a time slowly, many at a time quickly),
    /// and the `read_ahead` blocks after it are fetched in the background so that a
    /// sequential reader finds them cached.
    pub async fn read(&self, loc: &SegmentLocation, from: u64, to: u64) -> Result<Bytes, TieringError> {
        let to = to.min(loc.data_len());
        if from >= to {
            return Ok(Bytes::new());
        }
        let bs = self.inner.block_bytes;
        let (first, last) = (from / bs, (to - 1) / bs);
        let blocks = futures::future::try_join_all((first..=last).map(|b| self.block(loc, b))).await?;
        // Sized once: growing by doubling copied a multi-block range over and over.
        let mut out = BytesMut::with_capacity(if first == last { 0 } else { (to - from) as usize });
        let mut single = None;
        for (block, data) in (first..=last).zip(blocks) {
            let block_start = block * bs;
            let lo = from.max(block_start) - block_start;
            let hi = to.min(block_start + data.len() as u64) - block_start;
            if lo >= hi {
                break;
            }
            if first == last {
                single = Some(data.slice(lo as usize..hi as usize));
            } else {
                out.extend_from_slice(&data[lo as usize..hi as usize]);
            }
        }
        for next in (last + 1)..=(last + self.inner.read_ahead) {
            if next * bs >= loc.data_len() {
                break;
            }
            let key = BlockKey { key: loc.key.clone(), segment_start: loc.start, block: next };
            if self.inner.blocks.contains_key(&key) {
                continue;
            }
            let this = self.clone();
            let loc = loc.clone();
            tokio::spawn(async move {
                let _ = this.block(&loc, next).await;
            });
        }
        Ok(single.unwrap_or_else(|| out.freeze()))
    }

    /// One block of a segment's batches, from the cache or the store (concurrent
    /// misses of the same block share one fetch).
    async fn block(&self, loc: &SegmentLocation, block: u64) -> Result<Bytes, TieringError> {
        let key = BlockKey { key: loc.key.clone(), segment_start: loc.start, block };
        let guard = match self.inner.blocks.get_value_or_guard_async(&key).await {
            Ok(hit) => {
                self.inner.stats.block_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            Err(guard) => guard,
        };
        self.inner.stats.block_misses.fetch_add(1, Ordering::Relaxed);
        let bs = self.inner.block_bytes;
        let from = loc.start + block * bs;
        let to = loc.start + ((block + 1) * bs).min(loc.data_len());
        let data = self.raw_read(&loc.key, from, to).await?;
        let _ = guard.insert(data.clone());
        Ok(data)
    }

    async fn raw_read(&self, key: &str, from: u64, to: u64) -> Result<Bytes, TieringError> {
        let read = match &self.inner.local_root {
            // A local object is read into a buffer of exactly the range: OpenDAL's fs
            // reader hands out 1 MiB blocks that pin 2 MiB buffers each (so a block
            // cache of 256 MiB held 512), after a copy through tokio's file buffer.
            Some(root) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || read_exact_range(&path, from, to))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| local_error(e, "reading"))
            }
            None => self.inner.op.read_with(key).range(from..to).await.map(|buf| buf.to_bytes()).map_err(Into::into),
        };
        match read {
            Ok(bytes) => {
                self.inner.stats.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if bytes.len() as u64 != to - from {
                    return Err(TieringError::ShortRead { key: key.to_string(), from, to, got: bytes.len() });
                }
                Ok(bytes)
            }
            Err(e) => {
                self.inner.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentBuilder;

    async fn store_with_segment(block_bytes: u64) -> (tempfile::TempDir, SegmentStore, SegmentLocation, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::new(crate::local_operator(dir.path()).unwrap(), 1 << 20, block_bytes, 1);
        let mut b = SegmentBuilder::new();
        let mut data = Vec::new();
        for i in 0..100u8 {
            let batch = vec![i; 1000];
            data.extend_from_slice(&batch);
            b.push(&batch, i as i64, i as i64, i as i64);
        }
        let seg = b.finish();
        // Inside a pack: 7 bytes of something else first.
        let mut object = b"padding".to_vec();
        object.extend_from_slice(&seg.bytes);
        store.put("packs/x.pack", Bytes::from(object)).await.unwrap();
        let loc = SegmentLocation {
            key: "packs/x.pack".into(),
            start: 7,
            len: seg.bytes.len() as u64,
            footer_len: seg.footer_len,
        };
        (dir, store, loc, Bytes::from(data))
    }

    #[tokio::test]
    async fn ranged_reads_across_blocks_match_the_data() {
        let (_dir, store, loc, data) = store_with_segment(4096).await;
        for (from, to) in [(0, 10), (4090, 4200), (0, 100_000), (99_000, 200_000), (12_345, 54_321)] {
            let got = store.read(&loc, from, to).await.unwrap();
            let to = to.min(100_000);
            assert_eq!(&got[..], &data[from as usize..to as usize], "{from}..{to}");
        }
        let footer = store.footer(&loc).await.unwrap();
        assert_eq!((footer.base_offset, footer.last_offset), (0, 99));
        assert!(store.stats().block_hits.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn sequential_reads_hit_blocks_read_ahead() {
        let (_dir, store, loc, _) = store_with_segment(8192).await;
        store.read(&loc, 0, 8192).await.unwrap();
        let misses = store.stats().block_misses.load(Ordering::Relaxed);
        // Give the read-ahead a moment, then the next block is a hit.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if store.stats().block_misses.load(Ordering::Relaxed) > misses {
                break;
            }
        }
        let hits = store.stats().block_hits.load(Ordering::Relaxed);
        store.read(&loc, 8192, 16_384).await.unwrap();
        assert_eq!(store.stats().block_hits.load(Ordering::Relaxed), hits + 1);
    }

    #[tokio::test]
    async fn deleting_twice_is_fine() {
        let (_dir, store, _, _) = store_with_segment(4096).await;
        store.delete("packs/x.pack").await.unwrap();
        store.delete("packs/x.pack").await.unwrap();
        assert!(store.reachable().await);
    }
}
