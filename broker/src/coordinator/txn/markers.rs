//! Writing a transaction's markers: into the partitions this broker leads directly,
//! and (cluster mode) through WriteTxnMarkers to the brokers that lead the others.
//! Every marker carries the coordinator epoch, the leader epoch of the coordinator's
//! `__transaction_state` partition, so a partition refuses markers of a coordinator
//! that has since lost it (TRANSACTION_COORDINATOR_FENCED).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::build::{build, BatchSpec};

use super::TxnCoordinator;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::errors::{self, Error};
use crate::storage::txn_index::marker_record;

/// A boxed future, for the object-safe [`Routes`].
pub type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One transaction's end, as markers state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Cluster mode: who leads what, and the other brokers. Single node has none: this
/// broker leads every partition and coordinates every transactional id.
pub trait Routes: Send + Sync + std::fmt::Debug {
    /// The leader epoch of `__transaction_state` partition `partition` when this
    /// broker owns it and has taken it over; `None` otherwise.
    fn coordinates(&self, partition: i32) -> Option<i32>;
    /// Who leads a partition now: `Ok(None)` this broker, `Ok(Some(id))` another,
    /// `Err` (retriable) none yet.
    fn leader(&self, topic: &str, partition: i32) -> Result<Option<i32>, Error>;
    /// Writes `marker` into `partitions` at broker `broker`: one result each.
    fn write_markers(
        &self,
        broker: i32,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> BoxedFuture<'static, Vec<Result<(), Error>>>;
    /// Asks the coordinator of `transactional_id` (another broker) whether the
    /// producer's open transaction holds `partitions` (`verify_only`), or to add
    /// them to it (transactions v2: Produce v12, TxnOffsetCommit v5).
    fn verify(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> BoxedFuture<'static, Result<(), Error>>;
}

/// How long EndTxn waits for markers at other brokers before answering: the
/// decision is durable by then, and the timer writes what is left.
const MARKER_WAIT: Duration = Duration::from_secs(5);
const MARKER_RETRY: Duration = Duration::from_millis(100);

/// A control batch ending `marker`'s transaction.
pub(crate) fn marker_batch(marker: Marker, now_ms: i64) -> Result<(BatchHeader, Bytes), Error> {
    let (key, value) = marker_record(marker.commit, marker.coordinator_epoch);
    let spec = BatchSpec {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        base_sequence: -1,
        transactional: true,
        control: true,
        timestamp: now_ms,
    };
    let batch = build(&spec, &[(Some(key), Some(value))]).map_err(|_| Error::UnknownServerError)?;
    let header = BatchHeader::parse(&batch).map_err(|_| Error::UnknownServerError)?;
    Ok((header, batch))
}

impl TxnCoordinator {
    /// Writes `marker` into partitions this broker leads, all queued before any is
    /// awaited (one group commit makes them durable together). The pending
    /// transactional offsets of a `__consumer_offsets` partition end with its marker.
    /// A partition that no longer exists needs no marker.
    pub(crate) async fn write_local_markers(
        &self,
        marker: Marker,
        partitions: &[(String, i32)],
    ) -> Vec<Result<(), Error>> {
        let (header, batch) = match marker_batch(marker, self.clock.now_ms()) {
            Ok(b) => b,
            Err(e) => return vec![Err(e); partitions.len()],
        };
        let mut queued = Vec::with_capacity(partitions.len());
        for (t, p) in partitions {
            let Some(partition) = self.storage.topic(t).and_then(|topic| topic.partition(*p).cloned()) else {
                tracing::warn!(producer_id = marker.producer_id, topic = %t, partition = p, "partition gone; no marker");
                queued.push(None);
                continue;
            };
            queued.push(Some(self.storage.submit(&partition, vec![(header, batch.clone())], false).await));
        }
        let mut out = Vec::with_capacity(partitions.len());
        for ((t, p), q) in partitions.iter().zip(queued) {
            let result = match q {
                None => Ok(()),
                Some(Err(e)) => Err(errors::coordinator(&e)),
                Some(Ok(pending)) => match pending.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(errors::coordinator(&e)),
                    Err(_) => Err(Error::CoordinatorNotAvailable),
                },
            };
            if result.is_ok() && t == OFFSETS_TOPIC {
                self.groups.end_transaction_in_partition(*p, marker.producer_id, marker.commit);
            }
            out.push(result);
        }
        out
    }

    /// Writes `marker` into every partition of `partitions`, wherever it is led.
    /// Single node: one pass, the first error answered. Cluster mode: partitions that
    /// move or whose leader is briefly unavailable are retried for [`MARKER_WAIT`];
    /// `Ok(false)` when some are still unmarked then (the timer carries on).
    pub(crate) async fn write_markers(
        &self,
        marker: Marker,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<bool, Error> {
        let Some(routes) = self.routes.get().cloned() else {
            let all: Vec<(String, i32)> = partitions.iter().cloned().collect();
            for r in self.write_local_markers(marker, &all).await {
                r?;
            }
            return Ok(true);
        };
        let deadline = tokio::time::Instant::now() + MARKER_WAIT;
        let mut left: BTreeSet<(String, i32)> = partitions.clone();
        loop {
            let mut local = Vec::new();
            let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (t, p) in &left {
                match routes.leader(t, *p) {
                    Ok(None) => local.push((t.clone(), *p)),
                    Ok(Some(b)) => remote.entry(b).or_default().push((t.clone(), *p)),
                    Err(_) if self.storage.topic(t).and_then(|topic| topic.partition(*p).cloned()).is_none() => {
                        // Deleted since: nothing to end there.
                        local.push((t.clone(), *p));
                    }
                    Err(_) => {}
                }
            }
            let mut calls = tokio::task::JoinSet::new();
            for (broker, ps) in remote {
                let call = routes.write_markers(broker, marker, ps.clone());
                calls.spawn(async move { (ps, call.await) });
            }
            let mut fenced = false;
            for (p, r) in local.iter().zip(self.write_local_markers(marker, &local).await) {
                fenced |= r == Err(Error::TransactionCoordinatorFenced);
                if r.is_ok() {
                    left.remove(p);
                }
            }
            while let Some(done) = calls.join_next().await {
                let Ok((ps, results)) = done else { continue };
                for (p, r) in ps.iter().zip(results) {
                    fenced |= r == Err(Error::TransactionCoordinatorFenced);
                    if r.is_ok() {
                        left.remove(p);
                    }
                }
            }
            if left.is_empty() {
                return Ok(true);
            }
            if fenced {
                // A newer coordinator has this transactional id: it finishes the job.
                return Err(Error::NotCoordinator);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(producer_id = marker.producer_id, left = left.len(), "markers still to write");
                return Ok(false);
            }
            tokio::time::sleep(MARKER_RETRY).await;
        }
    }
}

/// The routes, once cluster mode sets them.
pub(crate) type RoutesCell = std::sync::OnceLock<Arc<dyn Routes>>;
