//! Fetch: whole batches from each requested partition, from the batch holding the
//! fetch offset, within the partition and response byte limits (the first batch
//! always, KIP-74), waiting up to `max_wait_ms` for `min_bytes` (woken by new durable
//! data). Fetch sessions (KIP-227) are answered without creating one (session id 0),
//! which clients take as "send full requests"; a request naming a session we do not
//! have gets FETCH_SESSION_ID_NOT_FOUND. With `isolation_level = read_committed`
//! only data below the last stable offset is returned, with the aborted
//! transactions that overlap it, so the client can drop their records.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use tributary_protocol::kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};

use super::{Reply, RequestCtx};
use crate::broker::Broker;
use crate::errors::{self, of, Error};
use crate::quotas::QuotaKind;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{StorageError, Topic};

const READ_COMMITTED: i8 = 1;

pub(crate) fn handle(ctx: &RequestCtx, request: FetchRequest) -> Reply {
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move { fetch(&ctx, request).await.into() }))
}

async fn fetch(ctx: &RequestCtx, request: FetchRequest) -> FetchResponse {
    let (broker, version) = (&ctx.broker, ctx.version);
    if version >= 7 && request.session_id != 0 {
        return FetchResponse::default().with_error_code(of(Error::FetchSessionIdNotFound));
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let mut durable = broker.storage.durable_changes();
    // No more than the client's consumer_byte_rate allows in one response (Kafka's
    // cap), so that a large fetch is answered smaller rather than throttled forever.
    let user = ctx.quota_user();
    let cap = broker.quotas.max_in_window(QuotaKind::Fetch, &user, &ctx.client_id).map_or(usize::MAX, |c| c as usize);
    // READ on each topic, decided once for the whole long poll.
    let readable: Vec<bool> = request
        .topics
        .iter()
        .map(|t| {
            let name = match version >= 13 {
                true => broker.storage.topic_by_id(&t.topic_id).map(|t| t.name.to_string()),
                false => Some(t.topic.0.to_string()),
            };
            name.is_none_or(|n| ctx.allowed(Operation::Read, ResourceType::Topic, &n))
        })
        .collect();
    let (mut reading, mut waiting) = (Duration::ZERO, Duration::ZERO);
    let (mut response, bytes, tally) = loop {
        durable.borrow_and_update();
        let started = Instant::now();
        let (response, bytes, errors, tally) = read_all(broker, version, &request, &readable, cap).await;
        reading += started.elapsed();
        if bytes >= request.min_bytes.max(0) as usize || errors || Instant::now() >= deadline {
            break (response, bytes, tally);
        }
        let started = Instant::now();
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { break (response, bytes, tally) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
        waiting += started.elapsed();
    };
    let stages = &broker.metrics.fetch_stage_seconds;
    stages.with_label_values(&["read"]).observe(reading.as_secs_f64());
    stages.with_label_values(&["wait"]).observe(waiting.as_secs_f64());
    // Over its consumer_byte_rate the client gets no data, only the time to wait (the
    // bytes it did not get do not count), as Kafka answers.
    let now = crate::clock::now_ms();
    let quotas = &broker.quotas;
    let throttle = quotas.record(QuotaKind::Fetch, &user, &ctx.client_id, bytes as u64, now);
    if throttle > 0 {
        quotas.unrecord(QuotaKind::Fetch, &user, &ctx.client_id, bytes as u64, now);
        ctx.throttle(QuotaKind::Fetch, throttle);
        response = FetchResponse::default();
        response.throttle_time_ms = throttle as i32;
        if version < 8 {
            // Clients before KIP-219 do not back off themselves: answer late.
            tokio::time::sleep(Duration::from_millis(throttle)).await;
        }
        return response;
    }
    for (topic, bytes, records) in tally {
        broker.metrics.fetch_bytes.with_label_values(&[&topic]).inc_by(bytes);
        broker.metrics.fetch_records.with_label_values(&[&topic]).inc_by(records);
    }
    response
}

/// Per partition returned with data: (topic, bytes, records), for the metrics.
type Tally = Vec<(Arc<str>, u64, u64)>;

/// One pass over every requested partition. Returns the response, the bytes in it,
/// whether any partition had an error (which answers at once), and the tally.
async fn read_all(
    broker: &Broker,
    version: i16,
    request: &FetchRequest,
    readable: &[bool],
    cap: usize,
) -> (FetchResponse, usize, bool, Tally) {
    let mut tally = Tally::new();
    let storage = &broker.storage;
    let view = broker.topology();
    let mut budget = if version >= 3 { request.max_bytes.max(0) as usize } else { usize::MAX }.min(cap);
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    let committed = version >= 4 && request.isolation_level == READ_COMMITTED;
    for (wanted, readable) in request.topics.iter().zip(readable) {
        let topic: Option<Arc<Topic>> =
            if version >= 13 { storage.topic_by_id(&wanted.topic_id) } else { storage.topic(wanted.topic.0.as_str()) };
        let unknown = if version >= 13 { of(Error::UnknownTopicId) } else { of(Error::UnknownTopicOrPartition) };
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for p in &wanted.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new()));
            if version >= 4 && request.isolation_level == READ_COMMITTED {
                data.aborted_transactions = Some(Vec::new());
            }
            if !readable {
                data.error_code = of(Error::TopicAuthorizationFailed);
                any_error = true;
                partitions.push(data);
                continue;
            }
            let Some(log) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
                data.error_code = unknown;
                any_error = true;
                partitions.push(data);
                continue;
            };
            if version >= 12 {
                // KIP-951: where the partition leads now, so a client can move at once.
                let owner = view.owner(&log.topic, p.partition);
                data.current_leader.leader_id = BrokerId(owner.map_or(-1, |o| o.broker));
                data.current_leader.leader_epoch = owner.map_or(-1, |o| o.epoch);
            }
            let client_epoch = if version >= 9 { p.current_leader_epoch } else { -1 };
            if let Err(code) = super::route::lead(&view, &log.topic, p.partition, client_epoch) {
                data.error_code = code;
                any_error = true;
                partitions.push(data);
                continue;
            }
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
            match storage.read_isolated(log, p.fetch_offset, limit, total == 0, committed).await {
                Ok(read) => {
                    data.high_watermark = read.offsets.high_watermark;
                    data.last_stable_offset = read.offsets.last_stable_offset;
                    data.log_start_offset = read.offsets.log_start_offset;
                    if committed {
                        data.aborted_transactions = Some(
                            read.aborted
                                .iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect(),
                        );
                    }
                    let size: usize = read.batches.iter().map(|b| b.len()).sum();
                    if size > 0 {
                        let records: i64 = read
                            .batches
                            .iter()
                            .filter_map(|b| BatchHeader::parse(b).ok())
                            .map(|h| h.records_count as i64)
                            .sum();
                        tally.push((log.topic.clone(), size as u64, records as u64));
                        data.records = Some(read.joined.unwrap_or_else(|| concat(read.batches, size)));
                    }
                    total += size;
                    budget = budget.saturating_sub(size);
                }
                Err(e) => {
                    if let StorageError::OffsetOutOfRange { log_start_offset, high_watermark, .. } = e {
                        data.high_watermark = high_watermark;
                        data.last_stable_offset = high_watermark;
                        data.log_start_offset = log_start_offset;
                    }
                    data.error_code = errors::code(&e);
                    any_error = true;
                }
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(wanted.topic.clone())
                .with_topic_id(wanted.topic_id)
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(responses), total, any_error, tally)
}

fn concat(batches: Vec<Bytes>, size: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.into_iter().next().expect("invariant: one batch");
    }
    let mut buf = BytesMut::with_capacity(size);
    for b in batches {
        buf.extend_from_slice(&b);
    }
    buf.freeze()
}
