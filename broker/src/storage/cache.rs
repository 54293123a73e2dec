//! The bound on memory held by cached batches. The journal writer is the only
//! inserter: it admits each durable batch into its partition's cache, trims that
//! partition to `cache.partition_bytes`, and trims the oldest batches of all
//! partitions (first in, first out) to keep the total under `cache.total_bytes`.
//! A cache always holds a contiguous tail of its partition's batches, so readers know
//! which batches are in memory from a count alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::partition::{LogState, PartitionLog};
use crate::metrics::Metrics;

/// Global accounting of cached bytes, owned by the journal writer.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    partition_bytes: u64,
    total_bytes: u64,
    /// Bytes cached over all partitions; partitions being deleted subtract from it.
    pub(crate) total: Arc<AtomicU64>,
    /// Admissions in order: (partition, base offset of the batch, its size).
    fifo: VecDeque<(Weak<PartitionLog>, i64, u64)>,
    live: usize,
    metrics: Arc<Metrics>,
}

impl CacheBudget {
    pub(crate) fn new(partition_bytes: u64, total_bytes: u64, metrics: Arc<Metrics>) -> Self {
        CacheBudget {
            partition_bytes,
            total_bytes,
            total: Arc::new(AtomicU64::new(0)),
            fifo: VecDeque::new(),
            live: 0,
            metrics,
        }
    }

    /// Admits the newest batch of a partition (whose index entry was just pushed).
    pub(crate) fn admit(&mut self, partition: &Arc<PartitionLog>, st: &mut LogState, batch: Bytes) {
        let len = batch.len() as u64;
        if len > self.partition_bytes || len > self.total_bytes {
            // Too big to cache: the cache must stay a contiguous tail, so drop it all.
            let freed = std::mem::take(&mut st.cache_bytes);
            self.live -= st.cache.len().min(self.live);
            st.cache.clear();
            self.total.fetch_sub(freed, Ordering::Relaxed);
            return;
        }
        let base = st.batches.back().map(|b| b.base_offset).expect("invariant: index entry pushed before admit");
        st.cache.push_back(batch);
        st.cache_bytes += len;
        self.total.fetch_add(len, Ordering::Relaxed);
        self.fifo.push_back((Arc::downgrade(partition), base, len));
        self.live += 1;
        while st.cache_bytes > self.partition_bytes && st.cache.len() > 1 {
            evict_front(st, &self.total);
            self.live -= 1;
        }
    }

    /// Evicts the oldest batches until the total is within budget, and drops stale
    /// bookkeeping so that it never outgrows the cache it describes.
    pub(crate) fn enforce(&mut self) {
        while self.total.load(Ordering::Relaxed) > self.total_bytes {
            let Some((weak, base, _)) = self.fifo.pop_front() else {
                break;
            };
            if let Some(p) = weak.upgrade() {
                let mut st = p.state.lock();
                if st.first_cached_base() == Some(base) {
                    evict_front(&mut st, &self.total);
                    self.live = self.live.saturating_sub(1);
                }
            }
        }
        if self.fifo.len() > 1024 && self.fifo.len() > 4 * self.live {
            self.fifo.retain(|(weak, base, _)| {
                weak.upgrade().is_some_and(|p| p.state.lock().first_cached_base().is_some_and(|first| *base >= first))
            });
            self.live = self.fifo.len();
        }
        self.metrics.cache_bytes.set(self.total.load(Ordering::Relaxed) as i64);
    }
}

fn evict_front(st: &mut LogState, total: &AtomicU64) {
    if let Some(b) = st.cache.pop_front() {
        st.cache_bytes -= b.len() as u64;
        total.fetch_sub(b.len() as u64, Ordering::Relaxed);
    }
}
