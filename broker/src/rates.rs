//! Per-partition produce rates in `/metrics`: bytes/s and records/s over several
//! windows (`topics.rate_windows_ms`, Pravega's 2, 5 and 10 minutes by default),
//! as exponentially weighted averages with each window as time constant, sampled
//! every `topics.rate_sample_ms` from the counters produce already keeps (one
//! relaxed add per batch).
//!
//! Idle partitions cost nothing: a topic whose counter has not moved since the last
//! sample, and none of whose partitions still has a rate to decay, is skipped whole;
//! a partition gets series only once something was produced to it, and loses them
//! once its rates have decayed to nothing. In cluster mode each broker reports the
//! partitions it leads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::storage::Storage;

/// Rates below this (per second) count as none.
const NOTHING: f64 = 1e-3;

/// One partition's averages, per window: (bytes/s, records/s).
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    last: (u64, u64),
    pub averages: Vec<(f64, f64)>,
}

impl Rates {
    fn new(now: (u64, u64), windows: usize) -> Self {
        Rates { last: now, averages: vec![(0.0, 0.0); windows] }
    }

    /// Takes a sample `secs` after the last; returns whether any rate is left.
    pub fn sample(&mut self, now: (u64, u64), secs: f64, windows_ms: &[u64]) -> bool {
        let secs = secs.max(0.001);
        let bytes = now.0.saturating_sub(self.last.0) as f64 / secs;
        let records = now.1.saturating_sub(self.last.1) as f64 / secs;
        self.last = now;
        for (avg, &w) in self.averages.iter_mut().zip(windows_ms) {
            let alpha = 1.0 - (-secs * 1000.0 / w as f64).exp();
            avg.0 += alpha * (bytes - avg.0);
            avg.1 += alpha * (records - avg.1);
        }
        self.averages.iter().any(|&(b, r)| b >= NOTHING || r >= NOTHING)
    }
}

/// Samples until `shutdown`, keeping `tributary_partition_produce_rate` current.
pub async fn run(
    storage: Arc<Storage>,
    metrics: Arc<Metrics>,
    windows_ms: Vec<u64>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let labels: Vec<String> = windows_ms.iter().map(|w| format!("{}s", w / 1000)).collect();
    // Per topic: its counter at the last sample; per partition: its rates.
    let mut topics: HashMap<Uuid, (u64, u64)> = HashMap::new();
    let mut partitions: HashMap<(Uuid, i32), Rates> = HashMap::new();
    let mut shown: HashMap<(Uuid, i32), (Arc<str>, String)> = HashMap::new();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = Instant::now();
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        let mut seen = HashMap::with_capacity(topics.len());
        let decaying: std::collections::HashSet<Uuid> = partitions.keys().map(|(id, _)| *id).collect();
        for topic in storage.topics() {
            let total = topic.produced.get();
            let before = topics.get(&topic.id).copied();
            seen.insert(topic.id, total);
            if before == Some(total) && !decaying.contains(&topic.id) {
                continue;
            }
            for p in &topic.partitions {
                let key = (topic.id, p.index);
                let counters = (p.produced_bytes(), p.produced_records());
                let left = match partitions.get_mut(&key) {
                    Some(r) => r.sample(counters, secs, &windows_ms),
                    None if counters == (0, 0) => continue,
                    None => {
                        // First seen producing: rates from the next sample on.
                        partitions.insert(key, Rates::new(counters, windows_ms.len()));
                        continue;
                    }
                };
                let (name, index) =
                    shown.entry(key).or_insert_with(|| (topic.name.clone(), p.index.to_string())).clone();
                if !left {
                    partitions.remove(&key);
                    shown.remove(&key);
                    for w in &labels {
                        for unit in ["bytes", "records"] {
                            let _ = metrics.partition_rate.remove_label_values(&[&*name, index.as_str(), unit, w]);
                        }
                    }
                    continue;
                }
                let r = &partitions[&key];
                for ((b, rec), w) in r.averages.iter().zip(&labels) {
                    metrics.partition_rate.with_label_values(&[&*name, index.as_str(), "bytes", w]).set(*b);
                    metrics.partition_rate.with_label_values(&[&*name, index.as_str(), "records", w]).set(*rec);
                }
            }
        }
        // Deleted topics: their state and series go.
        topics = seen;
        partitions.retain(|(id, _), _| topics.contains_key(id));
        shown.retain(|(id, _), (name, label)| {
            let keep = topics.contains_key(id);
            if !keep {
                for w in &labels {
                    for unit in ["bytes", "records"] {
                        let _ = metrics.partition_rate.remove_label_values(&[&**name, label.as_str(), unit, w]);
                    }
                }
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_follow_each_window_and_decay_to_nothing() {
        let windows = [1000, 10_000];
        let mut r = Rates::new((0, 0), 2);
        let mut total = (0u64, 0u64);
        // 1,000 B/s and 10 records/s for 5 s, sampled every 100 ms.
        for _ in 0..50 {
            total = (total.0 + 100, total.1 + 1);
            assert!(r.sample(total, 0.1, &windows));
        }
        let (short, long) = (r.averages[0], r.averages[1]);
        assert!((short.0 - 1000.0).abs() < 10.0 && (short.1 - 10.0).abs() < 0.1, "{short:?}");
        assert!(long.0 > 300.0 && long.0 < 500.0, "the long window is still catching up: {long:?}");
        // Then nothing: the short window drops first, and at last nothing is left.
        let mut left = true;
        let mut samples = 0;
        while left && samples < 10_000 {
            left = r.sample(total, 0.1, &windows);
            samples += 1;
        }
        assert!(!left && samples > 100, "decayed after {samples} samples");
    }
}
