//! The controller's work: place every partition (those of the internal topics too,
//! so group and transaction coordinators are placed the same way) on the live
//! brokers by consistent hashing with bounded loads, and write the owners to
//! `assignments/<topic>` with leader epochs that grow whenever an owner changes.
//!
//! Every write is an etcd transaction that holds only while the controller key is
//! still held by this broker's lease, so a deposed controller (paused, cut off) can
//! never overwrite its successor's assignments.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_placement::{partition_key, Item, Member, Ring};

use super::catalog::{Catalog, ASSIGNMENTS};
use super::controller::CONTROLLER_KEY;
use super::etcd::{ClusterError, Etcd};
use super::membership::Lease;
use super::topology::{Owner, Topology};
use std::sync::Arc;

/// Most operations in one etcd transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 100;

/// Parses `assignments/<topic>`: `[[broker, epoch], ...]` by partition.
pub fn parse(value: &[u8]) -> Option<Vec<Option<Owner>>> {
    let raw: Vec<(i32, i32)> = serde_json::from_slice(value).ok()?;
    Some(raw.into_iter().map(|(broker, epoch)| (broker >= 0).then_some(Owner { broker, epoch })).collect())
}

fn encode(owners: &[Option<Owner>]) -> Vec<u8> {
    let raw: Vec<(i32, i32)> = owners.iter().map(|o| o.map_or((-1, -1), |o| (o.broker, o.epoch))).collect();
    serde_json::to_vec(&raw).expect("assignments serialise")
}

/// Measured units per partition (absent: idle).
pub type Loads = HashMap<(String, i32), u64>;

/// Every partition as a placement item weighed by its measured load.
fn items<'a>(topics: &'a BTreeMap<String, i32>, loads: &Loads) -> (Vec<(&'a str, i32)>, Vec<Item>) {
    let mut index = Vec::new();
    let mut items = Vec::new();
    for (name, &count) in topics {
        for p in 0..count {
            let units = loads.get(&(name.clone(), p)).copied().unwrap_or(0);
            index.push((name.as_str(), p));
            items.push(Item { key: partition_key(name, p), load: super::loads::weight(units) });
        }
    }
    (index, items)
}

/// The new owners of every topic: placement over `brokers`, each partition weighed by
/// its measured load, with each partition's epoch kept where its owner stays and
/// raised by one where it moves.
pub fn assign(
    brokers: &[Member],
    topics: &BTreeMap<String, i32>,
    current: &HashMap<Arc<str>, Arc<Vec<Option<Owner>>>>,
    balance_factor: f64,
    loads: &Loads,
) -> BTreeMap<String, Vec<Option<Owner>>> {
    let mut out = BTreeMap::new();
    let Ok(ring) = Ring::new(brokers) else {
        return out;
    };
    let (index, items) = items(topics, loads);
    let Ok(placed) = ring.place(&items, Some(balance_factor)) else {
        return out;
    };
    for ((name, p), broker) in index.into_iter().zip(placed.owners) {
        let before = current.get(name).and_then(|o| o.get(p as usize).copied().flatten());
        let epoch = match before {
            Some(b) if b.broker == broker => b.epoch,
            Some(b) => b.epoch + 1,
            None => 0,
        };
        let owners: &mut Vec<Option<Owner>> = out.entry(name.to_string()).or_default();
        owners.push(Some(Owner { broker, epoch }));
    }
    out
}

/// Each broker's load and bound (by id) if the current owners stay: `None` unless
/// every partition has an owner among `brokers`.
pub fn current_loads(
    brokers: &[Member],
    topics: &BTreeMap<String, i32>,
    current: &HashMap<Arc<str>, Arc<Vec<Option<Owner>>>>,
    balance_factor: f64,
    loads: &Loads,
) -> Option<BTreeMap<i32, (u64, u64)>> {
    let ring = Ring::new(brokers).ok()?;
    let (index, items) = items(topics, loads);
    let total = items.iter().map(|i| i.load).sum();
    let mut out: BTreeMap<i32, (u64, u64)> =
        brokers.iter().zip(ring.bounds(total, balance_factor)).map(|(m, b)| (m.id, (0, b))).collect();
    for ((name, p), item) in index.into_iter().zip(&items) {
        let owner = current.get(name)?.get(p as usize).copied().flatten()?;
        out.get_mut(&owner.broker)?.0 += item.load;
    }
    Some(out)
}

/// While this broker is the controller, keeps the assignments equal to a placement
/// of the current brokers and topics weighed by measured load: placed afresh when
/// brokers or partitions change, and when measured loads put a broker over its
/// bound; otherwise left as they are, so load that wanders within the bounds moves
/// nothing.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    etcd: Etcd,
    mut elected: watch::Receiver<bool>,
    lease: watch::Receiver<Lease>,
    mut view: watch::Receiver<Arc<Topology>>,
    mut catalog: watch::Receiver<i64>,
    internal: Vec<(String, i32)>,
    balance_factor: f64,
    load_interval: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    // The brokers of the last fresh placement (none since this broker was elected).
    let mut placed_over: Option<Vec<Member>> = None;
    loop {
        if *elected.borrow_and_update() {
            let held = lease.borrow().id;
            let current = view.borrow_and_update().clone();
            match place_once(&etcd, held, &current, &internal, balance_factor, &mut placed_over, &metrics).await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(topics = changed, "controller wrote new partition assignments"),
                Err(e) => {
                    tracing::warn!(error = %e, "controller could not write assignments; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        } else if placed_over.take().is_some() {
            // Only the controller's figures mean anything.
            metrics.broker_load.reset();
            metrics.broker_load_bound.reset();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = elected.changed() => if r.is_err() { return },
            r = view.changed() => if r.is_err() { return },
            r = catalog.changed() => if r.is_err() { return },
            // Measured loads change without any event: look again at their pace.
            _ = tokio::time::sleep(load_interval) => {}
        }
        // Let a burst of changes (a broker's keys, many topics) settle into one pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One pass: reads the catalog, the measured loads and the assignments, writes what
/// differs. Returns the number of topics whose assignments were written.
async fn place_once(
    etcd: &Etcd,
    lease: i64,
    view: &Topology,
    internal: &[(String, i32)],
    balance_factor: f64,
    placed_over: &mut Option<Vec<Member>>,
    metrics: &crate::metrics::Metrics,
) -> Result<usize, ClusterError> {
    // A draining broker (shutting down cleanly) gets nothing; with every broker
    // draining the assignments stay as they are.
    let brokers: Vec<Member> =
        view.brokers.iter().filter(|b| !b.draining).map(|b| Member { id: b.id, weight: b.weight.max(1) }).collect();
    if lease == 0 || brokers.is_empty() {
        return Ok(0);
    }
    let (catalog, _) = Catalog::list(etcd).await?;
    let mut topics: BTreeMap<String, i32> = catalog.into_iter().map(|(n, e)| (n, e.partitions)).collect();
    for (name, count) in internal {
        topics.insert(name.clone(), *count);
    }
    let (entries, _) = etcd.list(ASSIGNMENTS).await?;
    let mut current: HashMap<Arc<str>, Arc<Vec<Option<Owner>>>> = HashMap::new();
    for e in &entries {
        if let Some(owners) = parse(&e.value) {
            current.insert(e.key[ASSIGNMENTS.len()..].into(), Arc::new(owners));
        }
    }
    let (published, _) = etcd.list(super::loads::LOADS).await?;
    let loads = super::loads::parse_all(published.iter().map(|e| e.value.as_slice()));
    // The current owners stay while the brokers are those of the last fresh
    // placement, every partition has one, and no broker is over its bound.
    let now = current_loads(&brokers, &topics, &current, balance_factor, &loads);
    let keep = placed_over.as_deref() == Some(brokers.as_slice())
        && now.as_ref().is_some_and(|l| l.values().all(|(load, bound)| load <= bound));
    let wanted = if keep {
        topics.keys().filter_map(|n| Some((n.clone(), current.get(n.as_str())?.as_ref().clone()))).collect()
    } else {
        *placed_over = Some(brokers.clone());
        assign(&brokers, &topics, &current, balance_factor, &loads)
    };
    if let Some(l) = current_loads(&brokers, &topics, &wanted_view(&wanted), balance_factor, &loads) {
        metrics.broker_load.reset();
        metrics.broker_load_bound.reset();
        for (id, (load, bound)) in l {
            metrics.broker_load.with_label_values(&[&id.to_string()]).set(load as i64);
            metrics.broker_load_bound.with_label_values(&[&id.to_string()]).set(bound as i64);
        }
    }
    let mut ops = Vec::new();
    for (name, owners) in &wanted {
        if current.get(name.as_str()).map(|c| c.as_slice()) != Some(owners.as_slice()) {
            ops.push(TxnOp::put(etcd.full(&format!("{ASSIGNMENTS}{name}")), encode(owners), None));
        }
    }
    for name in current.keys() {
        if !topics.contains_key(name.as_ref()) {
            ops.push(TxnOp::delete(etcd.full(&format!("{ASSIGNMENTS}{name}")), None));
        }
    }
    let changed = ops.len();
    let guard = Compare::lease(etcd.full(CONTROLLER_KEY), CompareOp::Equal, lease);
    while !ops.is_empty() {
        let chunk: Vec<TxnOp> = ops.drain(..ops.len().min(TXN_OPS)).collect();
        let response = etcd.txn("write assignments", Txn::new().when([guard.clone()]).and_then(chunk)).await?;
        if !response.succeeded() {
            tracing::info!("no longer the controller; leaving the assignments to the new one");
            *placed_over = None;
            return Ok(0);
        }
    }
    Ok(changed)
}

fn wanted_view(wanted: &BTreeMap<String, Vec<Option<Owner>>>) -> HashMap<Arc<str>, Arc<Vec<Option<Owner>>>> {
    wanted.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::new(v.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_stay_where_owners_stay_and_grow_where_they_move() {
        let topics = BTreeMap::from([("a".to_string(), 50), ("b".to_string(), 30)]);
        let three: Vec<Member> = (0..3).map(|id| Member { id, weight: 1 }).collect();
        let first = assign(&three, &topics, &HashMap::new(), 1.25, &Loads::new());
        assert!(first.values().flatten().all(|o| o.unwrap().epoch == 0));
        let current = first.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::new(v.clone()))).collect();
        let four: Vec<Member> = (0..4).map(|id| Member { id, weight: 1 }).collect();
        let second = assign(&four, &topics, &current, 1.25, &Loads::new());
        let mut moved = 0;
        for (name, owners) in &second {
            for (p, o) in owners.iter().enumerate() {
                let (before, after) = (first[name][p].unwrap(), o.unwrap());
                if before.broker == after.broker {
                    assert_eq!(after.epoch, before.epoch);
                } else {
                    // Mostly onto the new broker; a changed bound may push a few along.
                    assert_eq!(after.epoch, before.epoch + 1);
                    moved += 1;
                }
            }
        }
        assert!(moved > 0 && moved < 40, "{moved} of 80 moved");
    }

    #[test]
    fn measured_load_spreads_hot_partitions_and_no_broker_exceeds_its_bound() {
        let topics = BTreeMap::from([("t".to_string(), 30)]);
        let three: Vec<Member> = (0..3).map(|id| Member { id, weight: 1 }).collect();
        let first = assign(&three, &topics, &HashMap::new(), 1.25, &Loads::new());
        let current: HashMap<Arc<str>, Arc<Vec<Option<Owner>>>> =
            first.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::new(v.clone()))).collect();
        // Idle: within the bounds as placed.
        let idle = current_loads(&three, &topics, &current, 1.25, &Loads::new()).unwrap();
        assert!(idle.values().all(|(l, b)| l <= b), "{idle:?}");
        // Four partitions of one broker become hot (8 units each): it is over its bound...
        let busiest = first["t"]
            .iter()
            .flatten()
            .map(|o| o.broker)
            .max_by_key(|b| first["t"].iter().flatten().filter(|o| o.broker == *b).count());
        let hot: Vec<i32> =
            (0..30).filter(|&p| first["t"][p as usize].unwrap().broker == busiest.unwrap()).take(4).collect();
        let loads: Loads = hot.iter().map(|&p| (("t".to_string(), p), 8)).collect();
        let now = current_loads(&three, &topics, &current, 1.25, &loads).unwrap();
        assert!(now.values().any(|(l, b)| l > b), "{now:?}");
        // ...and placed again, every broker is within its bound and the hot ones spread.
        let second = assign(&three, &topics, &current, 1.25, &loads);
        let placed: HashMap<Arc<str>, Arc<Vec<Option<Owner>>>> =
            second.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::new(v.clone()))).collect();
        let after = current_loads(&three, &topics, &placed, 1.25, &loads).unwrap();
        assert!(after.values().all(|(l, b)| l <= b), "{after:?}");
        let owners: std::collections::HashSet<i32> =
            hot.iter().map(|&p| second["t"][p as usize].unwrap().broker).collect();
        assert!(owners.len() > 1, "hot partitions still together: {owners:?}");
        // A partition without a live owner: the current owners cannot stay.
        let two = &three[..2];
        assert!(current_loads(two, &topics, &current, 1.25, &Loads::new()).is_none());
    }

    #[test]
    fn assignments_round_trip_through_their_etcd_value() {
        let owners = vec![Some(Owner { broker: 2, epoch: 7 }), None];
        assert_eq!(parse(&encode(&owners)), Some(owners));
        assert_eq!(parse(b"not json"), None);
    }
}
