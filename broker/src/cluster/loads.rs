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
//!
//! The same key carries, for streams with a scaling policy, the bytes/s and
//! records/s of the partitions led here: the controller sums them over the brokers
//! to decide when a stream grows ([`crate::scaling`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::membership::Lease;
use super::Cluster;
use crate::storage::topic_config::ScalingPolicy;
use crate::storage::Storage;

pub const LOADS: &str = "loads/";

/// What one broker publishes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    /// Hot partitions: topic -> [(partition, units)], units a power of two.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hot: BTreeMap<String, Vec<(i32, u64)>>,
    /// Streams with a scaling policy: topic -> (bytes/s, records/s) over the
    /// partitions led here in the last interval (the controller's scaler sums them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, (f64, f64)>,
}

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
        for (topic, partitions) in published.hot {
            for (p, units) in partitions {
                let e = out.entry((topic.clone(), p)).or_default();
                *e = (*e).max(units);
            }
        }
    }
    out
}

/// One partition as last measured here.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Its counters at the last look.
    bytes: u64,
    records: u64,
    /// Its smoothed rate in load units per second, and the bucket published.
    smoothed: f64,
    bucket: u64,
}

/// Every scaled stream's rate, (bytes/s, records/s), summed over what the brokers
/// published.
pub async fn stream_rates(etcd: &super::Etcd) -> Result<HashMap<String, (f64, f64)>, super::ClusterError> {
    let (entries, _) = etcd.list(LOADS).await?;
    let mut out: HashMap<String, (f64, f64)> = HashMap::new();
    for e in entries {
        let Ok(published) = serde_json::from_slice::<Published>(&e.value) else { continue };
        for (topic, (bytes, records)) in published.streams {
            let r = out.entry(topic).or_default();
            r.0 += bytes;
            r.1 += records;
        }
    }
    Ok(out)
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
    let mut seen: HashMap<(Arc<str>, i32), Measured> = HashMap::new();
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
        let mut published = Published::default();
        let mut alive = HashMap::with_capacity(seen.len());
        for entry in cluster.ready.iter() {
            let (topic, p) = entry.key();
            let Some(t) = storage.topic(topic) else { continue };
            let Some(log) = t.partition(*p).cloned() else { continue };
            let (bytes, records) = (log.produced_bytes(), log.produced_records());
            let known = seen.get(entry.key()).copied();
            let Measured { bytes: before, records: records_before, smoothed, bucket: previous } =
                known.unwrap_or(Measured { bytes, records, smoothed: 0.0, bucket: 0 });
            let bytes_per_sec = bytes.saturating_sub(before) as f64 / secs;
            if t.config().scaling.policy != ScalingPolicy::Fixed {
                let r = published.streams.entry(topic.to_string()).or_default();
                r.0 += bytes_per_sec;
                r.1 += records.saturating_sub(records_before) as f64 / secs;
            }
            // Half the weight on the newest interval: a step in the rate shows within
            // two or three intervals, a single burst does not.
            let sample = bytes_per_sec / unit as f64;
            let smoothed = if known.is_some() { 0.5 * smoothed + 0.5 * sample } else { 0.0 };
            let units = bucket(smoothed, previous);
            if units > 0 {
                published.hot.entry(topic.to_string()).or_default().push((*p, units));
            }
            alive.insert(entry.key().clone(), Measured { bytes, records, smoothed, bucket: units });
        }
        seen = alive;
        for partitions in published.hot.values_mut() {
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
        let a = Published { hot: BTreeMap::from([("t".to_string(), vec![(0, 4), (3, 1)])]), ..Default::default() };
        let b = Published {
            hot: BTreeMap::from([("t".to_string(), vec![(0, 8)]), ("u".to_string(), vec![(1, 2)])]),
            streams: BTreeMap::from([("u".to_string(), (10.0, 1.0))]),
        };
        let values = [serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&b).unwrap(), b"garbage".to_vec()];
        let all = parse_all(values.iter().map(Vec::as_slice));
        assert_eq!(all.len(), 3);
        assert_eq!(all[&("t".to_string(), 0)], 8);
        assert_eq!(all[&("t".to_string(), 3)], 1);
        assert_eq!(all[&("u".to_string(), 1)], 2);
    }
}
