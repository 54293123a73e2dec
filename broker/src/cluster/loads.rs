//! Measured load: placement weighs a partition by its produce rate, not only by its
//! existence (DESIGN §7: "load is the partition count at first, then measured
//! bytes/s"), so hot partitions spread over brokers and cold ones gather.
//!
//! Each broker measures the bytes clients produce to every partition it leads (one
//! relaxed counter per partition, read every `cluster.load_interval_secs`) and
//! publishes the hot ones in `loads/<broker>` under its lease: per topic, the
//! partitions whose smoothed rate reaches `cluster.load_unit_bytes` per second, each
//! with its rate in those units rounded down to a power of two. An idle partition
//! costs nothing in etcd and weighs 1; a partition at `u` units weighs `1 + u`.
//! Rounding to powers of two, with some hysteresis at each boundary, keeps a rate
//! that wanders a little from rewriting the key or moving anything; the controller
//! ([`super::assign`]) moves partitions for load only when a broker is over its bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::membership::Lease;
use super::Cluster;
use crate::storage::Storage;

pub const LOADS: &str = "loads/";

/// What one broker publishes: topic -> [(partition, units)], units a power of two.
pub type Published = BTreeMap<String, Vec<(i32, u64)>>;

fn key(broker: i32) -> String {
    format!("{LOADS}{broker:010}")
}

/// The weight of a partition measured at `units` (0 when idle).
pub fn weight(units: u64) -> u64 {
    1 + units
}

/// The power-of-two bucket for a rate of `rate` units per second, given the bucket
/// it had (0: none): it changes only once the rate leaves the old bucket by a
/// quarter of its width, so a rate at a boundary does not flap.
pub fn bucket(rate: f64, previous: u64) -> u64 {
    if previous > 0 {
        let (low, high) = (previous as f64 * 0.75, previous as f64 * 2.5);
        if rate >= low && rate < high {
            return previous;
        }
    }
    if rate < 1.0 {
        return 0;
    }
    let r = rate.min(1e18) as u64;
    1u64 << (63 - r.leading_zeros())
}

/// Every partition's measured units from every broker's published loads (a
/// partition reported by two brokers, as during a move, keeps the higher).
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> HashMap<(String, i32), u64> {
    let mut out: HashMap<(String, i32), u64> = HashMap::new();
    for value in values {
        let Ok(published) = serde_json::from_slice::<Published>(value) else { continue };
        for (topic, partitions) in published {
            for (p, units) in partitions {
                let e = out.entry((topic.clone(), p)).or_default();
                *e = (*e).max(units);
            }
        }
    }
    out
}

/// Measures the partitions led here and keeps `loads/<broker>` current, until
/// `shutdown`.
pub async fn run(
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    interval: Duration,
    unit: u64,
    shutdown: CancellationToken,
) {
    // Per partition: (bytes at the last look, smoothed rate in units/s, bucket).
    let mut seen: HashMap<(Arc<str>, i32), (u64, f64, u64)> = HashMap::new();
    let mut last = Instant::now();
    let mut written: Option<(i64, Published)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = Instant::now();
        let secs = now.duration_since(last).as_secs_f64().max(0.001);
        last = now;
        let mut published = Published::new();
        let mut alive = HashMap::with_capacity(seen.len());
        for entry in cluster.ready.iter() {
            let (topic, p) = entry.key();
            let Some(log) = storage.topic(topic).and_then(|t| t.partition(*p).cloned()) else { continue };
            let bytes = log.produced_bytes();
            let (before, smoothed, previous) = seen.get(entry.key()).copied().unwrap_or((bytes, 0.0, 0));
            let sample = bytes.saturating_sub(before) as f64 / secs / unit as f64;
            // Half the weight on the newest interval: a step in the rate shows within
            // two or three intervals, a single burst does not.
            let smoothed = if seen.contains_key(entry.key()) { 0.5 * smoothed + 0.5 * sample } else { 0.0 };
            let units = bucket(smoothed, previous);
            if units > 0 {
                published.entry(topic.to_string()).or_default().push((*p, units));
            }
            alive.insert(entry.key().clone(), (bytes, smoothed, units));
        }
        seen = alive;
        for partitions in published.values_mut() {
            partitions.sort_unstable();
        }
        let held: Lease = *cluster.lease.borrow();
        if !held.live(now) || written.as_ref().is_some_and(|(l, w)| *l == held.id && *w == published) {
            continue;
        }
        let value = serde_json::to_vec(&published).expect("loads serialise");
        let put = etcd_client::PutOptions::new().with_lease(held.id);
        let full = cluster.etcd.full(&key(cluster.node_id));
        let txn = etcd_client::Txn::new().and_then([etcd_client::TxnOp::put(full, value, Some(put))]);
        match cluster.etcd.txn("publish measured loads", txn).await {
            Ok(_) => written = Some((held.id, published)),
            Err(e) => tracing::debug!(error = %e, "cannot publish measured loads; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_fall_into_power_of_two_buckets_that_do_not_flap() {
        assert_eq!(bucket(0.0, 0), 0);
        assert_eq!(bucket(0.9, 0), 0);
        assert_eq!(bucket(1.0, 0), 1);
        assert_eq!(bucket(5.0, 0), 4);
        assert_eq!(bucket(1000.0, 0), 512);
        // Around a boundary the old bucket holds...
        assert_eq!(bucket(7.9, 4), 4);
        assert_eq!(bucket(8.1, 4), 4);
        assert_eq!(bucket(3.1, 4), 4);
        // ...until the rate is well out of it.
        assert_eq!(bucket(10.5, 4), 8);
        assert_eq!(bucket(2.9, 4), 2);
        assert_eq!(bucket(0.2, 4), 0);
        assert_eq!(weight(0), 1);
        assert_eq!(weight(8), 9);
    }

    #[test]
    fn published_loads_merge_keeping_the_higher_of_two_reports() {
        let a: Published = BTreeMap::from([("t".to_string(), vec![(0, 4), (3, 1)])]);
        let b: Published = BTreeMap::from([("t".to_string(), vec![(0, 8)]), ("u".to_string(), vec![(1, 2)])]);
        let values = [serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&b).unwrap(), b"garbage".to_vec()];
        let all = parse_all(values.iter().map(Vec::as_slice));
        assert_eq!(all.len(), 3);
        assert_eq!(all[&("t".to_string(), 0)], 8);
        assert_eq!(all[&("t".to_string(), 3)], 1);
        assert_eq!(all[&("u".to_string(), 1)], 2);
    }
}
