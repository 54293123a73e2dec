//! Journal objects: in cluster mode every group commit of the local journal becomes
//! one object `wal/<broker>/<lease>/<sequence>` in the object store before any of its
//! appends is acknowledged (DESIGN §7). The local disk is only a cache; the new owner
//! of a partition reads these objects to rebuild it.
//!
//! Several uploads are in flight at once, but groups are published strictly in
//! sequence order, so what a broker acknowledged is always a prefix of its objects.
//!
//! # Fencing
//! A group is acknowledged only if its upload finished while the broker's lease was
//! live by the broker's own conservative deadline (`membership::Lease`). etcd cannot
//! expire the lease before that deadline, and a successor reads the objects only
//! after the lease expired (or after this broker released the partition), so every
//! acknowledged object is there when it lists them. Objects that land later belong
//! to a lease the successor has closed at the prefix it read ([`super::handover`]):
//! nothing in them was acknowledged, and nothing in them is read as the partition's.
//!
//! # Object format
//! ```text
//! 8 bytes  "TRBWAL01"
//! u32      length of the header
//! ..       header (JSON): broker, lease, sequence, and per journal id the partition
//! ..       the group's journal entries, framed as in the local journal
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use opendal::Operator;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::membership::Lease;
use crate::storage::{Shipment, Shipper, Storage, StorageError};

const MAGIC: &[u8; 8] = b"TRBWAL01";
/// Group commits uploading at once.
const IN_FLIGHT: usize = 16;
/// How long one upload attempt of a journal object may take.
const ATTEMPT: Duration = Duration::from_secs(2);

/// The prefix of one broker's objects under one lease.
pub fn stream_prefix(broker: i32, lease: i64) -> String {
    format!("wal/{broker:010}/{lease:016x}/")
}

fn object_key(broker: i32, lease: i64, seq: u64) -> String {
    format!("{}{seq:020}", stream_prefix(broker, lease))
}

/// The header of a journal object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub broker: i32,
    pub lease: i64,
    pub seq: u64,
    /// (journal id in the entries, topic id, partition index)
    pub partitions: Vec<(u64, Uuid, i32)>,
}

pub fn encode(header: &Header, entries: &[u8]) -> Bytes {
    let head = serde_json::to_vec(header).expect("header serialises");
    let mut out = BytesMut::with_capacity(12 + head.len() + entries.len());
    out.put_slice(MAGIC);
    out.put_u32(head.len() as u32);
    out.put_slice(&head);
    out.put_slice(entries);
    out.freeze()
}

/// One record batch found in a journal object.
#[derive(Debug, Clone)]
pub struct Found {
    pub topic: Uuid,
    pub partition: i32,
    pub batch: Bytes,
}

/// Decodes an object into its header and its batches, in order. A damaged object
/// is an error: it was written whole or not at all.
pub fn decode(data: Bytes) -> Result<(Header, Vec<Found>), String> {
    if data.len() < 12 || &data[..8] != MAGIC {
        return Err("not a journal object".into());
    }
    let len = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    let head = data.get(12..12 + len).ok_or("header past the end")?;
    let header: Header = serde_json::from_slice(head).map_err(|e| format!("header: {e}"))?;
    let entries = data.slice(12 + len..);
    let (scanned, intact) = crate::storage::journal::entry::scan(&entries);
    if intact != entries.len() {
        return Err(format!("damaged entry at {intact} of {}", entries.len()));
    }
    let mut out = Vec::new();
    for e in scanned {
        if e.kind != crate::storage::journal::entry::KIND_BATCH {
            continue;
        }
        // A partition whose topic was deleted while the group was shipped has no
        // header entry: nobody needs its batches.
        let Some((_, topic, partition)) = header.partitions.iter().find(|(id, _, _)| *id == e.partition) else {
            continue;
        };
        out.push(Found { topic: *topic, partition: *partition, batch: e.payload });
    }
    Ok((header, out))
}

/// The writer side: takes shipments from the journal writer thread.
#[derive(Debug)]
pub struct WalShipper {
    tx: mpsc::Sender<Shipment>,
    failing: Arc<Mutex<Option<String>>>,
    /// (lease, next sequence): where the next object goes.
    next: Arc<Mutex<(i64, u64)>>,
    /// Sequences takeovers in progress will name as their tenure's first object
    /// (with how many hold each), read together with `next`.
    pins: Mutex<std::collections::BTreeMap<(i64, u64), usize>>,
}

impl WalShipper {
    /// The sequence the next object under `lease` gets: a partition rebuilt now finds
    /// its own new entries from there on.
    pub fn next_seq(&self, lease: i64) -> u64 {
        let n = self.next.lock();
        if n.0 == lease {
            n.1
        } else {
            0
        }
    }

    /// The next sequence under `lease`, held as the first object of a tenure still
    /// to be written: until the pin is dropped, the stream's floor stays at or
    /// below it, so the sweeper never deletes the objects the tenure will name.
    pub fn pin(&self, lease: i64) -> Pin<'_> {
        let n = self.next.lock();
        let seq = if n.0 == lease { n.1 } else { 0 };
        *self.pins.lock().entry((lease, seq)).or_default() += 1;
        Pin { shipper: self, lease, seq }
    }

    /// The next sequence under `lease`, lowered to the lowest pin held under it.
    fn next_or_pinned(&self, lease: i64) -> u64 {
        let next = self.next_seq(lease);
        let pins = self.pins.lock();
        pins.range((lease, 0)..=(lease, u64::MAX)).next().map_or(next, |(&(_, seq), _)| seq.min(next))
    }
}

/// A sequence held for a tenure being written ([`WalShipper::pin`]).
#[derive(Debug)]
pub struct Pin<'a> {
    shipper: &'a WalShipper,
    lease: i64,
    pub seq: u64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut pins = self.shipper.pins.lock();
        if let std::collections::btree_map::Entry::Occupied(mut e) = pins.entry((self.lease, self.seq)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl Shipper for WalShipper {
    fn ship(&self, shipment: Shipment) {
        if let Err(mpsc::error::SendError(s)) = self.tx.blocking_send(shipment) {
            s.refuse(|| StorageError::ShuttingDown);
        }
    }

    fn refusal(&self) -> Option<StorageError> {
        self.failing.lock().as_ref().map(|r| StorageError::JournalFailed(format!("object store: {r}")))
    }
}

struct Flight {
    lease: i64,
    /// The group commits in the object, in journal order.
    shipments: Vec<Shipment>,
    upload: tokio::task::JoinHandle<bool>,
}

/// Group commits waiting together go into one object up to this size.
const OBJECT_BYTES: usize = 4 << 20;

/// Starts shipping: returns the shipper to give the storage engine, and the task that
/// uploads, in order, until `shutdown`.
pub fn start(
    op: Operator,
    storage: Arc<Storage>,
    broker: i32,
    lease: watch::Receiver<Lease>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) -> (Arc<WalShipper>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let failing = Arc::new(Mutex::new(None));
    let next = Arc::new(Mutex::new((0, 0)));
    let shipper = Arc::new(WalShipper { tx, failing: failing.clone(), next: next.clone(), pins: Mutex::default() });
    let task = tokio::spawn(run(op, storage, broker, lease, rx, failing, next, metrics, shutdown));
    (shipper, task)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    op: Operator,
    storage: Arc<Storage>,
    broker: i32,
    lease: watch::Receiver<Lease>,
    mut rx: mpsc::Receiver<Shipment>,
    failing: Arc<Mutex<Option<String>>>,
    next: Arc<Mutex<(i64, u64)>>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let mut flights: VecDeque<Flight> = VecDeque::new();
    // The lease objects are being written under, and the next sequence in it.
    let mut stream = (0i64, 0u64);
    // A lease under which a group was refused: everything after it is refused too.
    let mut broken = 0i64;
    loop {
        tokio::select! {
            received = rx.recv(), if flights.len() < IN_FLIGHT => {
                let Some(first) = received else { break };
                let held = *lease.borrow();
                if !held.live(Instant::now()) || held.id == broken {
                    first.refuse(|| StorageError::NotLeader);
                    continue;
                }
                if held.id != stream.0 {
                    stream = (held.id, 0);
                }
                // Whatever else is waiting goes into the same object.
                let mut shipments = vec![first];
                let mut data = BytesMut::from(&shipments[0].data()[..]);
                while data.len() < OBJECT_BYTES {
                    match rx.try_recv() {
                        Ok(s) => {
                            data.extend_from_slice(&s.data());
                            shipments.push(s);
                        }
                        Err(_) => break,
                    }
                }
                let mut partitions = Vec::new();
                let mut known = std::collections::HashSet::new();
                for s in &shipments {
                    for (id, topic, index) in s.partitions() {
                        if !known.insert(id) {
                            continue;
                        }
                        if let Some(t) = storage.topic(&topic) {
                            partitions.push((id, t.id, index));
                        }
                    }
                }
                if partitions.is_empty() {
                    // Nothing to make durable (duplicates only): in order all the same.
                    let upload = tokio::spawn(async { true });
                    flights.push_back(Flight { lease: held.id, shipments, upload });
                    continue;
                }
                let header = Header { broker, lease: held.id, seq: stream.1, partitions };
                let key = object_key(broker, held.id, stream.1);
                // Before the next sequence is published (see PartitionLog::first_object_from).
                for s in &shipments {
                    for (log, last) in s.partition_ends() {
                        log.note_shipped(held.id, stream.1, last);
                    }
                }
                stream.1 += 1;
                *next.lock() = stream;
                let body = encode(&header, &data);
                let upload = tokio::spawn(upload(
                    op.clone(),
                    key,
                    body,
                    lease.clone(),
                    held.id,
                    failing.clone(),
                    metrics.clone(),
                ));
                flights.push_back(Flight { lease: held.id, shipments, upload });
            }
            done = async { (&mut flights.front_mut().expect("non-empty").upload).await }, if !flights.is_empty() => {
                let flight = flights.pop_front().expect("non-empty");
                let held = *lease.borrow();
                let durable = done.unwrap_or(false);
                if durable && flight.lease != broken && held.id == flight.lease && held.live(Instant::now()) {
                    for s in flight.shipments {
                        s.publish();
                    }
                } else {
                    if flight.lease != broken {
                        tracing::warn!(lease = flight.lease, "journal object not durable within the lease: refusing its appends and every later one under this lease");
                    }
                    broken = flight.lease;
                    for s in flight.shipments {
                        s.refuse(|| StorageError::NotLeader);
                    }
                }
            }
            _ = shutdown.cancelled(), if flights.is_empty() => {
                // Refuse what is still queued; nothing is in flight.
                rx.close();
                while let Some(s) = rx.recv().await {
                    s.refuse(|| StorageError::ShuttingDown);
                }
                return;
            }
        }
    }
    for f in flights {
        f.upload.abort();
        for s in f.shipments {
            s.refuse(|| StorageError::ShuttingDown);
        }
    }
}

/// Writes one object, retrying with backoff while the lease it belongs to is live.
/// Returns whether it is durable.
async fn upload(
    op: Operator,
    key: String,
    body: Bytes,
    lease: watch::Receiver<Lease>,
    lease_id: i64,
    failing: Arc<Mutex<Option<String>>>,
    metrics: Arc<crate::metrics::Metrics>,
) -> bool {
    let mut backoff = Duration::from_millis(20);
    loop {
        let started = std::time::Instant::now();
        // One attempt is bounded (the operator's own retries can take many seconds):
        // a store that does not answer is noticed, and new appends refused, quickly.
        let attempt = match tokio::time::timeout(ATTEMPT, op.write(&key, body.clone())).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", ATTEMPT.as_millis())),
        };
        match attempt {
            Ok(_) => {
                metrics.wal_put_seconds.observe(started.elapsed().as_secs_f64());
                metrics.wal_bytes.inc_by(body.len() as u64);
                if failing.lock().take().is_some() {
                    tracing::info!("object store taking journal objects again");
                }
                return true;
            }
            Err(e) => {
                metrics.wal_put_errors.inc();
                let mut f = failing.lock();
                if f.is_none() {
                    tracing::warn!(key, error = %e, "journal object upload failed; retrying, new appends refused meanwhile");
                }
                *f = Some(e);
            }
        }
        let held = *lease.borrow();
        if held.id != lease_id || !held.live(Instant::now()) {
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// The key of a stream's floor: the first of its objects any partition led under
/// it may still need (an object named so no sequence is ever taken for it).
fn floor_key(broker: i32, lease: i64) -> String {
    format!("{}floor", stream_prefix(broker, lease))
}

/// Keeps the floor of this broker's current stream up to date (every two seconds,
/// while the lease is live): the lowest first needed object over every local
/// partition and every takeover in progress ([`WalShipper::pin`]), or the next
/// sequence where none needs any. It only grows: a partition taken over later
/// needs nothing below the next sequence of then. A takeover of a partition whose
/// owner died holding it reads that owner's stream from the floor on, so an idle
/// partition, whose tenure's first object never moves up, does not make it read
/// the stream from the start; and the sweeper ([`super::sweep`]) deletes nothing of
/// a live stream at or above its floor.
pub async fn keep_floor(
    op: Operator,
    storage: Arc<Storage>,
    shipper: Arc<WalShipper>,
    broker: i32,
    lease: watch::Receiver<Lease>,
    shutdown: CancellationToken,
) {
    let mut written: (i64, u64) = (0, 0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let held = *lease.borrow();
        if !held.live(Instant::now()) {
            continue;
        }
        // The next sequence first (see PartitionLog::first_object_from).
        let next = shipper.next_or_pinned(held.id);
        let floor = storage
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.first_needed_object(held.id)))
            .fold(next, u64::min);
        if written.0 == held.id && floor <= written.1 {
            continue;
        }
        if !lease.borrow().live(Instant::now()) {
            continue;
        }
        match op.write(&floor_key(broker, held.id), floor.to_string()).await {
            Ok(_) => written = (held.id, floor),
            Err(e) => tracing::debug!(error = %e, "cannot write the journal stream's floor; retrying"),
        }
    }
}

/// The floor of a stream, as its broker last wrote it (0 when it wrote none).
pub async fn read_floor(op: &Operator, broker: i32, lease: i64) -> Result<u64, String> {
    let key = floor_key(broker, lease);
    match op.read(&key).await {
        Ok(data) => String::from_utf8_lossy(&data.to_bytes()).trim().parse().map_err(|e| format!("{key}: {e}")),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading {key}: {e}")),
    }
}

/// The objects of one stream from `from_seq` up to the first missing one (or up to
/// `until`, excluded), decoded, in order. (A gap is where this broker stopped acknowledging: nothing after it was
/// acknowledged, see the module documentation.)
pub async fn read_stream(
    op: &Operator,
    broker: i32,
    lease: i64,
    from_seq: u64,
    until: Option<u64>,
) -> Result<Vec<(Header, Vec<Found>)>, String> {
    if until.is_some_and(|u| u <= from_seq) {
        return Ok(Vec::new());
    }
    let prefix = stream_prefix(broker, lease);
    // Keys sort by sequence: list only from the first wanted one where the store can.
    let mut listing = op.list_with(&prefix);
    let after = from_seq.checked_sub(1).map(|s| object_key(broker, lease, s));
    if let Some(after) = after.as_deref().filter(|_| op.info().full_capability().list_with_start_after) {
        listing = listing.start_after(after);
    }
    let mut keys: Vec<(u64, String)> = listing
        .await
        .map_err(|e| format!("listing {prefix}: {e}"))?
        .into_iter()
        .filter_map(|e| e.name().parse::<u64>().ok().map(|seq| (seq, e.path().to_string())))
        .filter(|(seq, _)| *seq >= from_seq && until.is_none_or(|u| *seq < u))
        .collect();
    keys.sort();
    let mut contiguous = Vec::new();
    for (expected, (seq, key)) in (from_seq..).zip(keys) {
        if seq != expected {
            break;
        }
        contiguous.push(key);
    }
    // Read many at once (each object is one round trip), decoded in order.
    let mut slots: Vec<Option<(Header, Vec<Found>)>> = vec![None; contiguous.len()];
    let mut reads = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while next < contiguous.len() && reads.len() < READ_PARALLEL {
            let (op, key, at) = (op.clone(), contiguous[next].clone(), next);
            reads.spawn(async move {
                let data = op.read(&key).await.map_err(|e| format!("reading {key}: {e}"))?;
                decode(data.to_bytes()).map(|d| (at, d)).map_err(|e| format!("{key}: {e}"))
            });
            next += 1;
        }
        let Some(done) = reads.join_next().await else { break };
        let (at, decoded) = done.map_err(|e| format!("read task: {e}"))??;
        slots[at] = Some(decoded);
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Objects read at once while taking partitions over.
const READ_PARALLEL: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_damage_is_an_error() {
        let mut entries = BytesMut::new();
        crate::storage::journal::entry::encode(
            &mut entries,
            crate::storage::journal::entry::KIND_BATCH,
            7,
            b"batch-bytes",
        );
        let t = Uuid::new_v4();
        let header = Header { broker: 2, lease: 99, seq: 5, partitions: vec![(7, t, 3)] };
        let body = encode(&header, &entries);
        let (h, found) = decode(body.clone()).unwrap();
        assert_eq!(h, header);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].topic, found[0].partition, &found[0].batch[..]), (t, 3, &b"batch-bytes"[..]));
        let mut bad = body.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(Bytes::from(bad)).is_err());
        assert!(decode(Bytes::from_static(b"nope")).is_err());
    }

    #[test]
    fn keys_sort_by_sequence() {
        assert!(object_key(1, 5, 9) < object_key(1, 5, 10));
        assert!(object_key(1, 5, 0).starts_with(&stream_prefix(1, 5)));
    }
}
