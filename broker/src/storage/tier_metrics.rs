//! Segment-store metrics computed at scrape time: sealed segments and bytes per
//! topic, flush lag (bytes and age still only in the journal), and the store's
//! counters (uploads, errors, reads, block cache hits and misses).

use std::sync::atomic::Ordering;
use std::sync::Weak;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};

use super::Storage;

/// Reads one counter of the store's statistics.
type Stat = fn(&tributary_tiering::store::StoreStats) -> u64;

/// The collector; holds the engine weakly.
#[derive(Debug)]
pub struct TierCollector {
    storage: Weak<Storage>,
    gauges: Vec<IntGaugeVec>,
    journal_full: IntGauge,
    garbage: IntGauge,
    counters: Vec<(IntCounter, Stat)>,
    scrape: Mutex<()>,
}

impl TierCollector {
    pub fn new(storage: Weak<Storage>) -> Self {
        let vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["topic"]).expect("invariant: valid metric")
        };
        let gauges = vec![
            vec("tributary_sealed_segments", "Sealed segments in the segment store, by topic."),
            vec("tributary_sealed_bytes", "Bytes of record batches in sealed segments, by topic."),
            vec("tributary_flush_lag_bytes", "Bytes of record batches only in the journal, not yet sealed, by topic."),
            vec(
                "tributary_flush_lag_seconds",
                "Age of the oldest batch only in the journal, by topic (0: nothing unsealed).",
            ),
        ];
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("invariant: valid metric");
        let counters: Vec<(IntCounter, Stat)> = vec![
            (counter("tributary_segment_uploads_total", "Objects written to the segment store."), |s| {
                s.uploads.load(Ordering::Relaxed)
            }),
            (counter("tributary_segment_upload_bytes_total", "Bytes written to the segment store."), |s| {
                s.upload_bytes.load(Ordering::Relaxed)
            }),
            (counter("tributary_segment_upload_errors_total", "Writes to the segment store that failed."), |s| {
                s.upload_errors.load(Ordering::Relaxed)
            }),
            (counter("tributary_segment_read_bytes_total", "Bytes read from the segment store."), |s| {
                s.bytes_read.load(Ordering::Relaxed)
            }),
            (counter("tributary_segment_read_errors_total", "Reads from the segment store that failed."), |s| {
                s.read_errors.load(Ordering::Relaxed)
            }),
            (counter("tributary_segment_object_deletes_total", "Objects deleted from the segment store."), |s| {
                s.deletes.load(Ordering::Relaxed)
            }),
            (counter("tributary_block_cache_hits_total", "Segment blocks found in the block cache."), |s| {
                s.block_hits.load(Ordering::Relaxed)
            }),
            (counter("tributary_block_cache_misses_total", "Segment blocks read from the store."), |s| {
                s.block_misses.load(Ordering::Relaxed)
            }),
        ];
        let journal_full = IntGauge::new(
            "tributary_journal_full",
            "1 while the journal is over journal.max_bytes and appends are refused.",
        )
        .expect("invariant: valid metric");
        let garbage = IntGauge::new(
            "tributary_segment_garbage_objects",
            "Objects no manifest refers to any more, waiting to be deleted from the segment store.",
        )
        .expect("invariant: valid metric");
        TierCollector { storage, gauges, journal_full, garbage, counters, scrape: Mutex::new(()) }
    }
}

impl Collector for TierCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut out: Vec<&Desc> = self.gauges.iter().flat_map(|g| g.desc()).collect();
        out.extend(self.journal_full.desc());
        out.extend(self.garbage.desc());
        out.extend(self.counters.iter().flat_map(|(c, _)| c.desc()));
        out
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _turn = self.scrape.lock();
        for g in &self.gauges {
            g.reset();
        }
        if let Some(storage) = self.storage.upgrade() {
            for (topic, (segments, sealed, journal, age_ms)) in storage.tier_stats() {
                let values = [segments as i64, sealed as i64, journal as i64, age_ms / 1000];
                for (g, v) in self.gauges.iter().zip(values) {
                    g.with_label_values(&[&topic]).set(v);
                }
            }
            self.journal_full.set(storage.journal_is_full() as i64);
            self.garbage.set(storage.garbage_objects() as i64);
            let stats = storage.segment_store().stats();
            for (c, read) in &self.counters {
                let now = read(stats);
                let seen = c.get();
                if now > seen {
                    c.inc_by(now - seen);
                }
            }
        }
        let mut out: Vec<MetricFamily> = self.gauges.iter().flat_map(|g| g.collect()).collect();
        out.extend(self.journal_full.collect());
        out.extend(self.garbage.collect());
        out.extend(self.counters.iter().flat_map(|(c, _)| c.collect()));
        out
    }
}
