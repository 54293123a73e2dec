//! The sweeper: the controller deletes from the object store what no partition can
//! need any more, so the store follows what the cluster keeps, not what it was ever
//! sent (DESIGN §7: "journal objects are deleted once every partition in them has
//! sealed past them").
//!
//! # Journal objects
//! A stream `wal/<broker>/<lease>/` is read only through the tenures of partition
//! histories that name it, each from its first object (`from_seq`) on, and a
//! stream's owner starts a new tenure only at or above the floor it keeps in the
//! store (takeovers in progress pin theirs, [`super::wal::WalShipper::pin`]). One
//! sweep lists the objects, then the brokers' keys, then the live streams' floors,
//! then every history, in that order, and deletes:
//! - of a stream whose lease is gone (no broker key holds it) and that no tenure
//!   names: everything. No tenure can name it later: tenures are written only by
//!   their owner, under its live lease.
//! - of a live stream: what lies below both its floor (which stands for its open
//!   tenures: it is the lowest object any partition led under it, or any takeover
//!   in progress, may still need, as a takeover after its death would read) and
//!   the first object of every closed tenure naming it.
//! - of a dead stream tenures name: every object below the lowest first object of
//!   those tenures; when all of them were closed with their last object recorded,
//!   also every object past the highest (nothing there was acknowledged for them).
//!
//! Tenures end when the partition's next manifest lets them go: the owner publishes
//! one after every seal, compaction and retention drop, and after a takeover, so an
//! idle or empty partition does not keep its old owners' streams.
//!
//! A takeover reading an older version of a history that no longer names what it
//! reads finds its tenure write refused (the write is guarded by the history's
//! revision) and starts again from the new one, so deleting at once is safe.
//!
//! # Segments and manifests
//! Sealed segments (single objects and packs shared by several partitions) and
//! manifests are named by the partitions' current manifests, which the histories
//! point at. An object under `manifests/`, `packs/` or the segment scope that no
//! current manifest names is deleted once it has stayed unnamed through sweeps
//! spanning `cluster.sweep_grace_secs`: a segment sealed moments ago is named only
//! when its manifest is published, and a fetch may still read a segment compaction
//! replaced. Counting the grace on the sweeper's own clock across sweeps needs no
//! agreement between the store's clock and the broker's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handover::{History, HISTORY};
use super::Cluster;

/// Where segment objects live (besides `packs/`): `<scope>/<stream>/...`.
const SEGMENT_SCOPE: &str = "default/";
const MANIFESTS: &str = "manifests/";
const PACKS: &str = "packs/";
/// Objects deleted in one request.
const DELETE_BATCH: usize = 1000;
/// History keys read per etcd request.
const HISTORY_PAGE: i64 = 2000;

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub journal: usize,
    pub segments: usize,
    pub manifests: usize,
    /// Unnamed segments and manifests still in their grace time.
    pub pending: usize,
}

/// One journal stream in the store.
#[derive(Debug, Default)]
struct Stream {
    objects: Vec<(u64, String)>,
    floor: Option<String>,
}

/// What the histories say of one stream.
#[derive(Debug, Clone, Copy, Default)]
struct Named {
    /// The lowest first object of its closed tenures (handed on, or closed by a
    /// successor), and the highest end when every one of them recorded it.
    closed: Option<(u64, Option<u64>)>,
    /// The lowest first object of its open tenures.
    open: Option<u64>,
}

/// Which objects of the streams to delete, given which streams are live (their lease
/// held) with their floors, and what the histories name.
fn journal_garbage(
    streams: &HashMap<(i32, i64), Stream>,
    live: &HashMap<(i32, i64), u64>,
    named: &HashMap<(i32, i64), Named>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, stream) in streams {
        let n = named.get(key).copied().unwrap_or_default();
        let closed_from = n.closed.map_or(u64::MAX, |c| c.0);
        let doomed = |seq: u64| match live.get(key) {
            // Live: its owner's floor stands for its open tenures (their partitions,
            // and takeovers in progress, are what the floor is the lowest of).
            Some(&floor) => seq < floor.min(closed_from),
            // Dead and named by no tenure: all of it.
            None if n.closed.is_none() && n.open.is_none() => true,
            None => {
                seq < closed_from.min(n.open.unwrap_or(u64::MAX))
                    || (n.open.is_none() && n.closed.and_then(|c| c.1).is_some_and(|until| seq >= until))
            }
        };
        out.extend(stream.objects.iter().filter(|(seq, _)| doomed(*seq)).map(|(_, k)| k.clone()));
        if !live.contains_key(key) && n.closed.is_none() && n.open.is_none() {
            out.extend(stream.floor.clone());
        }
    }
    out
}

/// What the histories name: per stream, its tenures' first (and last) objects.
fn named_by(histories: &[History]) -> HashMap<(i32, i64), Named> {
    let mut streams: HashMap<(i32, i64), Named> = HashMap::new();
    for h in histories {
        for t in &h.chain {
            let n = streams.entry((t.broker, t.lease)).or_default();
            if t.end.is_some() {
                n.closed = Some(match n.closed {
                    None => (t.from_seq, t.end_seq),
                    Some((from, until)) => (from.min(t.from_seq), until.zip(t.end_seq).map(|(a, b)| a.max(b))),
                });
            } else {
                n.open = Some(n.open.map_or(t.from_seq, |o| o.min(t.from_seq)));
            }
        }
    }
    streams
}

/// Parses `wal/<broker>/<lease>/<sequence or "floor">`.
fn parse_wal_key(path: &str) -> Option<((i32, i64), Option<u64>)> {
    let mut parts = path.strip_prefix("wal/")?.split('/');
    let broker = parts.next()?.parse().ok()?;
    let lease = i64::from_str_radix(parts.next()?, 16).ok()?;
    let last = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    if last == "floor" {
        return Some(((broker, lease), None));
    }
    Some(((broker, lease), Some(last.parse().ok()?)))
}

/// The controller's sweeper. Its memory (which manifest names which segments, and
/// since when each unnamed object is unnamed) starts empty whenever this broker
/// becomes the controller.
#[derive(Debug, Default)]
pub struct Sweeper {
    /// Segment keys named by each manifest read so far (manifests never change).
    manifests: HashMap<String, Vec<String>>,
    /// Unnamed segment and manifest objects, and since when.
    unnamed: HashMap<String, Instant>,
}

impl Sweeper {
    /// One sweep of the whole store.
    pub async fn sweep(&mut self, cluster: &Cluster, op: &Operator, grace: Duration) -> Result<Swept, String> {
        let mut swept = Swept::default();
        // 1. The objects, before anything is read from etcd (see the module doc).
        let mut streams: HashMap<(i32, i64), Stream> = HashMap::new();
        for entry in list(op, "wal/").await? {
            let Some((key, seq)) = parse_wal_key(&entry) else { continue };
            let s = streams.entry(key).or_default();
            match seq {
                Some(seq) => s.objects.push((seq, entry)),
                None => s.floor = Some(entry),
            }
        }
        let mut stored = Vec::new();
        for prefix in [MANIFESTS, PACKS, SEGMENT_SCOPE] {
            stored.extend(list(op, prefix).await?);
        }
        // 2. The brokers' keys: which streams are live.
        let etcd = &cluster.etcd;
        let (brokers, _) = etcd.list("brokers/").await.map_err(|e| e.to_string())?;
        let held: HashSet<(i32, i64)> =
            brokers.iter().filter_map(|e| Some((e.key.strip_prefix("brokers/")?.parse().ok()?, e.lease))).collect();
        // 3. The floors of the live streams. Before the histories: a partition that
        //    was local when its owner wrote the floor and is handed on later shows
        //    in them either open (and the floor covers it) or closed (and its tenure
        //    does); a tenure written later starts at or above the floor.
        let mut live = HashMap::new();
        for key in streams.keys().filter(|k| held.contains(k)) {
            let floor = super::wal::read_floor(op, key.0, key.1).await?;
            live.insert(*key, floor);
        }
        // 4. Every history, at one revision.
        let entries = etcd.list_paged(HISTORY, HISTORY_PAGE).await.map_err(|e| e.to_string())?;
        let mut histories = Vec::with_capacity(entries.len());
        let mut keys = Vec::with_capacity(entries.len());
        for e in &entries {
            if let Ok(h) = serde_json::from_slice::<History>(&e.value) {
                histories.push(h);
                keys.push(e.key.as_str());
            }
        }
        let named = named_by(&histories);
        let doomed = journal_garbage(&streams, &live, &named);
        swept.journal = delete(op, doomed).await?;

        // Segments and manifests: what the current manifests name.
        let mut pointed = HashSet::new();
        for (h, key) in histories.iter().zip(keys) {
            let Some(p) = &h.sealed else { continue };
            pointed.insert(self.named_by_manifest(cluster, op, key, p.key.clone()).await?);
        }
        self.manifests.retain(|k, _| pointed.contains(k));
        let mut in_use: HashSet<&str> = pointed.iter().map(String::as_str).collect();
        in_use.extend(self.manifests.values().flatten().map(String::as_str));
        let now = Instant::now();
        let mut seen = HashSet::new();
        let mut due = Vec::new();
        for key in stored {
            if in_use.contains(key.as_str()) {
                continue;
            }
            let since = *self.unnamed.entry(key.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                due.push(key);
            } else {
                seen.insert(key);
            }
        }
        self.unnamed.retain(|k, _| seen.contains(k));
        swept.pending = self.unnamed.len();
        let (manifests, segments): (Vec<String>, Vec<String>) = due.into_iter().partition(|k| k.starts_with(MANIFESTS));
        swept.manifests = delete(op, manifests).await?;
        swept.segments = delete(op, segments).await?;
        Ok(swept)
    }
}

impl Sweeper {
    /// Reads (once) what the manifest a history points at names, and returns its
    /// key. Its owner deletes a manifest once a newer one is pointed at, so one
    /// found gone is looked up again in the history; one that cannot be read
    /// leaves its segments unknown, and so ends the sweep before any segment goes.
    async fn named_by_manifest(
        &mut self,
        cluster: &Cluster,
        op: &Operator,
        history_key: &str,
        mut key: String,
    ) -> Result<String, String> {
        for _ in 0..3 {
            if self.manifests.contains_key(&key) {
                return Ok(key);
            }
            match op.read(&key).await {
                Ok(data) => {
                    let manifest: crate::storage::Manifest =
                        serde_json::from_slice(&data.to_bytes()).map_err(|e| format!("{key}: {e}"))?;
                    self.manifests.insert(key.clone(), manifest.segments.into_iter().map(|s| s.key).collect());
                    return Ok(key);
                }
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                    let entry = cluster.etcd.get(history_key).await.map_err(|e| e.to_string())?;
                    let now = entry
                        .and_then(|e| serde_json::from_slice::<History>(&e.value).ok())
                        .and_then(|h| h.sealed)
                        .map(|p| p.key);
                    match now {
                        Some(k) if k != key => key = k,
                        _ => return Err(format!("{key}, pointed at by {history_key}, is gone")),
                    }
                }
                Err(e) => return Err(format!("reading {key}: {e}")),
            }
        }
        Err(format!("the manifest of {history_key} kept changing while it was read"))
    }
}

/// Every file under `prefix`, by path.
async fn list(op: &Operator, prefix: &str) -> Result<Vec<String>, String> {
    let entries = match op.list_with(prefix).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {prefix}: {e}")),
    };
    Ok(entries.into_iter().filter(|e| !e.metadata().is_dir()).map(|e| e.path().to_string()).collect())
}

async fn delete(op: &Operator, keys: Vec<String>) -> Result<usize, String> {
    let n = keys.len();
    for chunk in keys.chunks(DELETE_BATCH) {
        op.delete_iter(chunk.iter().cloned()).await.map_err(|e| format!("deleting {} objects: {e}", chunk.len()))?;
    }
    Ok(n)
}

/// While this broker is the controller, sweeps every `interval` until `shutdown`.
pub async fn run(
    cluster: Arc<Cluster>,
    op: Operator,
    interval: Duration,
    grace: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let mut sweeper = Sweeper::default();
    let mut controller = cluster.controller.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !*controller.borrow_and_update() {
            sweeper = Sweeper::default();
            continue;
        }
        let started = Instant::now();
        match sweeper.sweep(&cluster, &op, grace).await {
            Ok(s) => {
                metrics.swept_objects.with_label_values(&["journal"]).inc_by(s.journal as u64);
                metrics.swept_objects.with_label_values(&["segment"]).inc_by(s.segments as u64);
                metrics.swept_objects.with_label_values(&["manifest"]).inc_by(s.manifests as u64);
                metrics.sweep_pending.set(s.pending as i64);
                let level_info = s.journal + s.segments + s.manifests > 0;
                if level_info {
                    tracing::info!(
                        journal = s.journal,
                        segments = s.segments,
                        manifests = s.manifests,
                        pending = s.pending,
                        ms = started.elapsed().as_millis() as u64,
                        "object store swept"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "object store sweep failed; trying again next time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::handover::Tenure;

    fn stream(seqs: std::ops::Range<u64>) -> Stream {
        Stream { objects: seqs.map(|s| (s, format!("o{s}"))).collect(), floor: Some("floor".into()) }
    }

    fn tenure(broker: i32, lease: i64, from_seq: u64, end_seq: Option<u64>) -> Tenure {
        Tenure { epoch: 0, broker, lease, start: 0, from_seq, end: end_seq.map(|_| 10), end_seq }
    }

    fn doomed(
        streams: &HashMap<(i32, i64), Stream>,
        live: &[((i32, i64), u64)],
        chains: Vec<Vec<Tenure>>,
    ) -> Vec<String> {
        let histories: Vec<History> = chains.into_iter().map(|chain| History { chain, ..Default::default() }).collect();
        let named = named_by(&histories);
        let mut out = journal_garbage(streams, &live.iter().copied().collect(), &named);
        out.sort();
        out
    }

    #[test]
    fn a_dead_stream_no_tenure_names_goes_whole_and_a_live_one_keeps_its_floor() {
        let streams = HashMap::from([((1, 10), stream(0..3)), ((2, 20), stream(0..3))]);
        // Broker 1's lease is gone; broker 2 is live with its floor at 2.
        let out = doomed(&streams, &[((2, 20), 2)], vec![]);
        assert_eq!(out, vec!["floor", "o0", "o0", "o1", "o1", "o2"]);
    }

    #[test]
    fn named_streams_keep_everything_from_their_lowest_first_object() {
        let streams = HashMap::from([((1, 10), stream(0..6)), ((2, 20), stream(0..6))]);
        let chains = vec![
            // Partition a: broker 1 handed on (objects 2..4), broker 2 leads from 3.
            vec![tenure(1, 10, 2, Some(4)), tenure(2, 20, 3, None)],
            // Partition b: broker 1 handed on too (objects 1..5).
            vec![tenure(1, 10, 1, Some(5)), tenure(2, 20, 4, None)],
        ];
        // Broker 1 is dead: below 1 and from 5 on go. Broker 2 is live, its floor
        // at 1 (a takeover in progress pinned it): only object 0 goes.
        let out = doomed(&streams, &[((2, 20), 1)], chains.clone());
        assert_eq!(out, vec!["o0", "o0", "o5"]);
        // Its floor past its open tenures' first objects: the floor stands for them
        // (their partitions hold nothing unsealed below it).
        let out = doomed(&streams, &[((2, 20), 6)], chains);
        assert_eq!(out, vec!["o0", "o0", "o1", "o2", "o3", "o4", "o5", "o5"]);
    }

    #[test]
    fn a_live_stream_keeps_what_a_partition_it_handed_on_still_needs() {
        let streams = HashMap::from([((2, 20), stream(0..6))]);
        // Broker 2 handed a partition on (its objects 1..3); its floor is at 4.
        let chains = vec![vec![tenure(2, 20, 1, Some(3)), tenure(3, 30, 0, None)]];
        assert_eq!(doomed(&streams, &[((2, 20), 4), ((3, 30), 0)], chains), vec!["o0"]);
    }

    #[test]
    fn an_open_tenure_of_a_dead_owner_keeps_its_stream_to_the_end() {
        let streams = HashMap::from([((1, 10), stream(0..6))]);
        let chains = vec![vec![tenure(1, 10, 2, Some(4))], vec![tenure(1, 10, 3, None)]];
        assert_eq!(doomed(&streams, &[], chains), vec!["o0", "o1"]);
    }

    #[test]
    fn journal_keys_parse_back() {
        let key = format!("{}{:020}", super::super::wal::stream_prefix(3, 0xabc), 42);
        assert_eq!(parse_wal_key(&key), Some(((3, 0xabc), Some(42))));
        let floor = format!("{}floor", super::super::wal::stream_prefix(3, 0xabc));
        assert_eq!(parse_wal_key(&floor), Some(((3, 0xabc), None)));
        assert_eq!(parse_wal_key("wal/x/1/2"), None);
        assert_eq!(parse_wal_key("packs/a.pack"), None);
    }
}
