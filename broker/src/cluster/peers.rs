//! Requests one broker sends another, over the Kafka protocol on the other's
//! advertised listener: WriteTxnMarkers (a transaction coordinator ending a
//! transaction in partitions led elsewhere) and AddPartitionsToTxn with
//! `verify_only` (a partition leader asking the coordinator before a transactional
//! write, KIP-890). A few connections per peer, each one request at a time;
//! a connection that fails or times out is dropped and made again next time.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tributary_protocol::header::{decode_response, encode_request};
use tributary_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use tributary_protocol::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::message::{Request, Response};

use super::Cluster;
use crate::coordinator::txn::{BoxedFuture, Marker, Routes, TXN_TOPIC};
use crate::errors::Error;

/// Connections kept per peer.
const CONNECTIONS: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer taken from a peer (these answers are small).
const MAX_RESPONSE: usize = 16 << 20;

/// The versions sent: the first that carry what is needed.
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const ADD_PARTITIONS_VERIFY_VERSION: i16 = 4;

#[derive(Debug, Default)]
struct Pool {
    slots: Vec<Mutex<Option<TcpStream>>>,
    next: AtomicUsize,
}

/// Connections to the other brokers (cheap to clone: one shared set).
#[derive(Debug, Clone)]
pub struct Peers(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cluster: Arc<Cluster>,
    pools: DashMap<i32, Arc<Pool>>,
    correlation: AtomicI32,
    client_id: String,
}

impl Peers {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        let client_id = format!("tributary-broker-{}", cluster.node_id);
        Peers(Arc::new(Inner { cluster, pools: DashMap::new(), correlation: AtomicI32::new(0), client_id }))
    }

    /// Sends `request` at `version` to broker `id` and returns its answer.
    async fn call(&self, id: i32, version: i16, request: Request) -> Result<Response, Error> {
        let this = &self.0;
        let key = request.api_key();
        let view = this.cluster.topology();
        let broker = view.broker(id).ok_or(Error::NotLeaderOrFollower)?;
        let address = format!("{}:{}", broker.host, broker.port);
        let pool = this
            .pools
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Pool { slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(), ..Default::default() })
            })
            .clone();
        let correlation = this.correlation.fetch_add(1, Ordering::Relaxed);
        let frame =
            encode_request(version, correlation, &this.client_id, &request).map_err(|_| Error::UnknownServerError)?;
        let slot = &pool.slots[pool.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS];
        let mut conn = slot.lock().await;
        let exchanged = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if conn.is_none() {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
                stream.set_nodelay(true)?;
                *conn = Some(stream);
            }
            let stream = conn.as_mut().expect("connected above");
            stream.write_all(&frame).await?;
            let len = stream.read_u32().await? as usize;
            if len > MAX_RESPONSE {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answer too large"));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(Bytes::from(body))
        })
        .await;
        let body = match exchanged {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                *conn = None;
                tracing::debug!(broker = id, %address, error = %e, "peer request failed");
                return Err(Error::NetworkException);
            }
            Err(_) => {
                *conn = None;
                return Err(Error::RequestTimedOut);
            }
        };
        drop(conn);
        match decode_response(key, version, body) {
            Ok((c, response)) if c == correlation => Ok(response),
            _ => {
                slot.lock().await.take();
                Err(Error::NetworkException)
            }
        }
    }
}

fn topics_of(partitions: &[(String, i32)]) -> Vec<(String, Vec<i32>)> {
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for (t, p) in partitions {
        match topics.iter_mut().find(|(name, _)| name == t) {
            Some((_, ps)) => ps.push(*p),
            None => topics.push((t.clone(), vec![*p])),
        }
    }
    topics
}

fn error_of(code: i16) -> Result<(), Error> {
    match code {
        0 => Ok(()),
        c => Err(Error::try_from_code(c).unwrap_or(Error::UnknownServerError)),
    }
}

impl Routes for Peers {
    fn coordinates(&self, partition: i32) -> Option<i32> {
        let view = self.0.cluster.topology();
        view.serves(TXN_TOPIC, partition).then(|| view.owner(TXN_TOPIC, partition).map(|o| o.epoch)).flatten()
    }

    fn leader(&self, topic: &str, partition: i32) -> Result<Option<i32>, Error> {
        let view = self.0.cluster.topology();
        match view.owner(topic, partition) {
            None => Err(Error::NotLeaderOrFollower),
            Some(o) if o.broker != view.this => Ok(Some(o.broker)),
            Some(_) if view.serves(topic, partition) => Ok(None),
            // Still being taken over here.
            Some(_) => Err(Error::NotLeaderOrFollower),
        }
    }

    fn write_markers(
        &self,
        broker: i32,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> BoxedFuture<'static, Vec<Result<(), Error>>> {
        let this = self.clone();
        Box::pin(async move {
            let topics = topics_of(&partitions)
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default().with_name(TopicName(t.into())).with_partition_indexes(ps)
                })
                .collect();
            let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(marker.producer_id))
                .with_producer_epoch(marker.producer_epoch)
                .with_transaction_result(marker.commit)
                .with_coordinator_epoch(marker.coordinator_epoch)
                .with_topics(topics)]);
            let response = match this.call(broker, WRITE_TXN_MARKERS_VERSION, Request::WriteTxnMarkers(request)).await {
                Ok(Response::WriteTxnMarkers(r)) => r,
                Ok(_) => return vec![Err(Error::UnknownServerError); partitions.len()],
                Err(e) => return vec![Err(e); partitions.len()],
            };
            let answered = |t: &str, p: i32| {
                response
                    .markers
                    .iter()
                    .flat_map(|m| &m.topics)
                    .filter(|r| r.name.as_str() == t)
                    .flat_map(|r| &r.partitions)
                    .find(|r| r.partition_index == p)
                    .map_or(Err(Error::UnknownServerError), |r| error_of(r.error_code))
            };
            partitions.iter().map(|(t, p)| answered(t, *p)).collect()
        })
    }

    fn verify(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> BoxedFuture<'static, Result<(), Error>> {
        let this = self.clone();
        Box::pin(async move {
            let index = crate::coordinator::txn::partition_index(&transactional_id);
            let coordinator = match this.leader(TXN_TOPIC, index) {
                Ok(Some(b)) => b,
                // Here after all (it moved a moment ago), or nowhere yet.
                Ok(None) => return Err(Error::NotCoordinator),
                Err(_) => return Err(Error::CoordinatorNotAvailable),
            };
            let topics = topics_of(&partitions)
                .into_iter()
                .map(|(t, ps)| AddPartitionsToTxnTopic::default().with_name(TopicName(t.into())).with_partitions(ps))
                .collect();
            let request =
                AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(transactional_id.into()))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
                    .with_verify_only(verify_only)
                    .with_topics(topics)]);
            let response =
                match this.call(coordinator, ADD_PARTITIONS_VERIFY_VERSION, Request::AddPartitionsToTxn(request)).await
                {
                    Ok(Response::AddPartitionsToTxn(r)) => r,
                    Ok(_) => return Err(Error::UnknownServerError),
                    // The coordinator cannot be asked now.
                    Err(_) => return Err(Error::CoordinatorNotAvailable),
                };
            error_of(response.error_code)?;
            for t in response.results_by_transaction.iter().flat_map(|r| &r.topic_results) {
                for p in &t.results_by_partition {
                    error_of(p.partition_error_code)?;
                }
            }
            Ok(())
        })
    }
}
