//! Pools of 4 KiB-aligned buffers for large, short-lived buffers: the journal's
//! group commits and the blocks sealing reads back with direct I/O (one pool), and
//! large response frames (another). Allocating each afresh had the kernel map and
//! zero new pages for a large share of them (the allocator returns freed memory to
//! the system and takes fresh memory for the next); a buffer handed back once the
//! last slice of it is dropped is already mapped.
//!
//! A buffer leaves the pool as a `BytesMut` and comes back through the owner of the
//! `Bytes` made of it ([`BufferPool::share`]): slices of it (cached batches, the
//! ranges a sealing read returns) keep it out until the last one is dropped. The pool
//! keeps the buffers given back last, each at most [`KEEP_LARGEST`], at most as many
//! and as many bytes as it was made for; what it does not keep is freed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

/// The largest buffer kept (a group commit is at most `group_commit_bytes` plus one
/// append; larger ones are rare and freed).
const KEEP_LARGEST: usize = 16 << 20;
/// Buffers are allocated in powers of two from this size, so that one serves the
/// next of a similar size.
pub(crate) const SMALLEST: usize = 64 << 10;

#[derive(Debug)]
pub(crate) struct BufferPool {
    kept: Mutex<std::collections::VecDeque<BytesMut>>,
    /// Buffers and bytes kept at most.
    keep_count: usize,
    keep_total: usize,
}

impl BufferPool {
    pub(crate) fn new(keep_count: usize, keep_total: usize) -> Self {
        BufferPool { kept: Mutex::default(), keep_count, keep_total }
    }

    /// An aligned buffer of at least `capacity` bytes. Its length is whatever it held
    /// before (initialized bytes a reader may overwrite without zeroing them first);
    /// a writer clears it.
    pub(crate) fn take(&self, capacity: usize) -> BytesMut {
        if capacity > KEEP_LARGEST {
            return tributary_tiering::aligned_buffer(capacity);
        }
        // A buffer of this size class or the next, the last one given back first: a
        // small group in a much larger buffer would pin all of it while the cache
        // holds a slice (the publisher copies rather than share such a buffer).
        let class = capacity.max(SMALLEST).next_power_of_two();
        {
            let mut kept = self.kept.lock();
            if let Some(i) = kept.iter().rposition(|b| b.capacity() >= capacity && b.capacity() < 4 * class) {
                return kept.remove(i).expect("invariant: index found");
            }
        }
        tributary_tiering::aligned_buffer(class)
    }

    /// A buffer of exactly `len` initialized bytes, to be overwritten (a read).
    pub(crate) fn take_filled(&self, len: usize) -> BytesMut {
        let mut buf = self.take(len);
        if buf.len() > len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }

    /// `buf` as `Bytes`; the buffer comes back to the pool once every slice of it
    /// is dropped.
    pub(crate) fn share(self: &Arc<Self>, buf: BytesMut) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: self.clone() })
    }

    /// Takes `buf` back, or frees it (too large, not aligned, or the pool full of
    /// larger ones).
    fn give(&self, buf: BytesMut) {
        let cap = buf.capacity();
        if cap > KEEP_LARGEST || buf.as_ptr().align_offset(tributary_tiering::ALIGN) != 0 {
            return;
        }
        let mut kept = self.kept.lock();
        kept.push_back(buf);
        // Over the bounds: free the buffers given back longest ago (the sizes in use
        // now are those given back last).
        let mut total: usize = kept.iter().map(BytesMut::capacity).sum();
        while kept.len() > self.keep_count || total > self.keep_total {
            let Some(oldest) = kept.pop_front() else { break };
            total -= oldest.capacity();
        }
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let kept = self.kept.lock();
        (kept.len(), kept.iter().map(BytesMut::capacity).sum())
    }
}

/// The owner of a pooled buffer's `Bytes`: gives it back when the last slice goes.
struct Pooled {
    buf: BytesMut,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_COUNT: usize = 16;
    const KEEP_TOTAL: usize = 64 << 20;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = Arc::new(BufferPool::new(KEEP_COUNT, KEEP_TOTAL));
        let mut buf = pool.take(100_000);
        assert!(buf.capacity() >= 100_000);
        assert_eq!(buf.as_ptr().align_offset(tributary_tiering::ALIGN), 0);
        buf.extend_from_slice(&[7u8; 100_000]);
        let at = buf.as_ptr();
        let bytes = pool.share(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.kept().0, 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.kept().0, 1);
        // The next buffer of its size class is the same memory, its bytes still there
        // (a reader overwrites them; nothing is zeroed).
        let again = pool.take_filled(70_000);
        assert_eq!(again.as_ptr(), at);
        assert!(again.iter().all(|&b| b == 7));
        drop(pool.share(again));
        // Growing past what it held zeroes only the bytes past it.
        let mut grown = pool.take_filled(90_000);
        assert_eq!(grown.as_ptr(), at);
        assert!(grown[..70_000].iter().all(|&b| b == 7));
        assert!(grown[70_000..].iter().all(|&b| b == 0));
        grown.clear();
        assert!(grown.capacity() >= 100_000);
    }

    #[test]
    fn the_pool_stays_within_its_bounds() {
        let pool = Arc::new(BufferPool::new(KEEP_COUNT, KEEP_TOTAL));
        let held: Vec<Bytes> = (0..20).map(|_| pool.share(pool.take(1 << 20))).collect();
        drop(held);
        let (count, total) = pool.kept();
        assert!(count <= KEEP_COUNT && total <= KEEP_TOTAL, "{count} buffers, {total} bytes");
        // Too large to keep.
        drop(pool.share(pool.take(KEEP_LARGEST + 1)));
        assert_eq!(pool.kept(), (count, total));
        // The last given back stay: a larger buffer frees the oldest once full.
        let large = pool.take(4 << 20);
        let at = large.as_ptr();
        drop(pool.share(large));
        let (count2, total2) = pool.kept();
        assert_eq!(count2, count);
        assert!(total2 > total && total2 <= KEEP_TOTAL);
        // A small buffer is not taken from a much larger one.
        let small = pool.take(1000);
        assert!(small.capacity() < 2 * SMALLEST);
        assert_eq!(pool.kept().0, count2);
        let one = pool.take(600 << 10);
        assert!(one.capacity() >= 1 << 20 && one.capacity() < 2 << 20);
        assert_eq!(pool.kept().0, count2 - 1);
        // The next size class up serves too: the last given back first.
        assert_eq!(pool.take(1536 << 10).as_ptr(), at);
    }
}
