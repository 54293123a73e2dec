//! Produce: validate each partition's record batches (v2 magic, CRC-32C, size
//! against `max.message.bytes`, then every record as Kafka's log validator does:
//! codec, bounded decompression, counts, offset deltas, record shape, keys on
//! compacted topics), queue them in the journal in request order, and
//! answer once they are durable (acks=1 and acks=all alike: the journal is the only
//! replica), or not at all for acks=0.

use std::time::Duration;

use bytes::Bytes;
use tributary_protocol::batch::{self, BatchError, BatchHeader};
use tributary_protocol::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use tributary_protocol::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tributary_protocol::kafka_protocol::protocol::StrBytes;
use tributary_protocol::records;
use tributary_protocol::validate::{self, RecordError, Rules};

use super::{Reply, RequestCtx};
use crate::errors::{self, of, Error};
use crate::quotas::QuotaKind;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::topic_config::TopicConfig;
use crate::storage::{PendingAppend, Topic};

/// A topic's partitions in request order, with the topic if it exists.
type TopicSlots = (TopicProduceResponse, Vec<(i32, Slot)>, Option<std::sync::Arc<Topic>>);

/// A partition's outcome so far: queued in the journal, or refused with a code.
enum Slot {
    Queued { pending: PendingAppend, bytes: u64, records: u64 },
    Refused { code: i16, message: Option<String>, record: Option<usize> },
}

/// How many times `max.message.bytes` (at least 1 MiB) a batch may decompress to:
/// beyond any producer's batching, and a bound on the work a compression bomb costs
/// (validation streams, so memory stays small whatever the bound).
const MAX_COMPRESSION_RATIO: u64 = 64;

pub(crate) async fn handle(ctx: &RequestCtx, request: ProduceRequest) -> Reply {
    let broker = &ctx.broker;
    let acks = request.acks;
    let mut slots: Vec<TopicSlots> = Vec::new();
    let bytes: u64 = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    // A transactional write needs WRITE on its transactional id, every write WRITE
    // on its topic (Kafka's codes per partition).
    // A scope at its storage limit takes nothing more.
    let over_storage = match broker.security.scopes.enabled() {
        true => broker.security.scopes.over_storage(&ctx.session.scope()),
        false => None,
    };
    let txn_allowed = request
        .transactional_id
        .as_ref()
        .is_none_or(|id| ctx.allowed(Operation::Write, ResourceType::TransactionalId, id.as_str()));
    let by_id = ctx.version >= 13;
    for topic_data in request.topic_data {
        // From v13 (KIP-516) a topic is named by its id only.
        let topic = match by_id {
            true => broker.storage.topic_by_id(&topic_data.topic_id),
            false => broker.storage.topic(topic_data.name.0.as_str()),
        };
        let name = match (by_id, &topic) {
            (true, Some(t)) => t.name.to_string(),
            (true, None) => String::new(),
            (false, _) => topic_data.name.0.to_string(),
        };
        let write_allowed = ctx.allowed(Operation::Write, ResourceType::Topic, &name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let slot = if !matches!(acks, -1..=1) {
                Slot::Refused { code: of(Error::InvalidRequiredAcks), message: None, record: None }
            } else if !txn_allowed {
                Slot::Refused { code: of(Error::TransactionalIdAuthorizationFailed), message: None, record: None }
            } else if by_id && topic.is_none() {
                Slot::Refused { code: of(Error::UnknownTopicId), message: None, record: None }
            } else if !write_allowed {
                Slot::Refused { code: of(Error::TopicAuthorizationFailed), message: None, record: None }
            } else if let Some(why) = &over_storage {
                Slot::Refused { code: of(Error::PolicyViolation), message: Some(why.clone()), record: None }
            } else {
                queue(
                    ctx,
                    acks,
                    request.transactional_id.as_ref().map(|s| s.as_str()),
                    topic.as_deref(),
                    data.index,
                    data.records,
                )
                .await
            };
            partitions.push((data.index, slot));
        }
        let response = TopicProduceResponse::default().with_name(topic_data.name).with_topic_id(topic_data.topic_id);
        slots.push((response, partitions, topic));
    }
    // Over its producer_byte_rate the client is told to wait (the data is taken),
    // as Kafka does; acks=0 clients are only not read from for that long.
    let throttle =
        broker.quotas.record(QuotaKind::Produce, &ctx.quota_user(), &ctx.client_id, bytes, crate::clock::now_ms());
    if throttle > 0 {
        ctx.throttle(QuotaKind::Produce, throttle);
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let metrics = broker.metrics.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move {
        if throttle > 0 && version < 6 {
            // Clients before KIP-219 do not back off themselves: answer late.
            tokio::time::sleep(Duration::from_millis(throttle)).await;
        }
        let mut responses = Vec::with_capacity(slots.len());
        // When the last of its appends became durable: from then on the answer waits
        // only for its turn on the connection.
        let mut durable_at: Option<std::time::Instant> = None;
        for (mut topic_response, partitions, topic) in slots {
            for (index, slot) in partitions {
                let mut r = PartitionProduceResponse::default().with_index(index).with_base_offset(-1);
                r.log_append_time_ms = -1;
                r.log_start_offset = -1;
                match slot {
                    Slot::Refused { code, message, record } => {
                        r.error_code = code;
                        if let Some(index) = record {
                            r.record_errors.push(
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(index as i32)
                                    .with_batch_index_error_message(message.clone().map(StrBytes::from_string)),
                            );
                        }
                        r.error_message = message.map(StrBytes::from_string);
                    }
                    Slot::Queued { pending, bytes, records } => match tokio::time::timeout(timeout, pending).await {
                        Ok(Ok(Ok(appended))) => {
                            durable_at = durable_at.max(appended.durable_at);
                            r.base_offset = appended.base_offset;
                            r.log_append_time_ms = appended.log_append_time;
                            if let Some(p) = topic.as_ref().and_then(|t| t.partition(index)) {
                                r.log_start_offset = p.offsets().log_start_offset;
                                metrics.produce_bytes.with_label_values(&[&p.topic]).inc_by(bytes);
                                metrics.produce_records.with_label_values(&[&p.topic]).inc_by(records);
                            }
                        }
                        Ok(Ok(Err(e))) => r.error_code = errors::code(&e),
                        Ok(Err(_)) => r.error_code = of(Error::KafkaStorageError),
                        Err(_) => r.error_code = of(Error::RequestTimedOut),
                    },
                }
                topic_response.partition_responses.push(r);
            }
            responses.push(topic_response);
        }
        if let Some(at) = durable_at {
            let waited = at.elapsed().as_secs_f64();
            metrics.request_stage_seconds.with_label_values(&["Produce", "response_slot"]).observe(waited);
        }
        ProduceResponse::default().with_responses(responses).with_throttle_time_ms(throttle as i32).into()
    }))
}

/// Validates one partition's records and queues them.
async fn queue(
    ctx: &RequestCtx,
    acks: i16,
    transactional_id: Option<&str>,
    topic: Option<&Topic>,
    index: i32,
    records: Option<Bytes>,
) -> Slot {
    let refused = |code: i16, message: String| Slot::Refused { code, message: Some(message), record: None };
    let Some(partition) = topic.and_then(|t| t.partition(index)) else {
        return refused(of(Error::UnknownTopicOrPartition), "unknown topic or partition".into());
    };
    if let Err(code) = super::route::lead(&ctx.broker.topology(), &partition.topic, index, -1) {
        return refused(code, format!("broker {} does not lead this partition now", ctx.broker.node.id));
    }
    if topic.is_some_and(|t| super::topics::is_internal(&t.name)) {
        return refused(of(Error::InvalidTopicException), "cannot produce to an internal topic".into());
    }
    let config = topic.map(|t| t.config()).expect("invariant: a partition has a topic");
    if acks == -1 && config.min_insync_replicas > 1 {
        // As Kafka answers on a cluster with fewer in-sync replicas than required:
        // a partition here has exactly one durable copy.
        return refused(
            of(Error::NotEnoughReplicas),
            format!(
                "acks=all needs min.insync.replicas={} but the partition has 1 replica",
                config.min_insync_replicas
            ),
        );
    }
    let records = records.unwrap_or_default();
    let batches = match batch::split(&records) {
        Ok(b) => b,
        Err(e) => return refused(of(Error::CorruptMessage), e.to_string()),
    };
    if batches.len() != 1 {
        return refused(
            of(Error::InvalidRecord),
            format!("produce requests carry exactly one record batch per partition, found {}", batches.len()),
        );
    }
    let (mut bytes, mut count) = (0u64, 0u64);
    for (header, data) in &batches {
        if let Some(slot) = check(header, data, &config, ctx.version) {
            return slot;
        }
        if !config.log_append_time {
            if let Err(message) = check_timestamps(header, data, &config, crate::clock::now_ms()) {
                return refused(of(Error::InvalidTimestamp), message);
            }
        }
        if header.is_transactional() {
            // Only into a partition the transaction holds (checked at the
            // coordinator), so that no transaction is left hanging without markers;
            // from v12 (transactions v2) the write itself adds the partition.
            let verified = match transactional_id {
                Some(id) => {
                    let name = topic.map(|t| t.name.to_string()).unwrap_or_default();
                    let (pid, epoch) = (header.producer_id, header.producer_epoch);
                    if ctx.version >= 12 {
                        ctx.broker.txns.add_write(id, pid, epoch, &name, partition).await
                    } else {
                        ctx.broker.txns.verify_write(id, pid, epoch, &name, partition).await
                    }
                }
                None => Err(Error::InvalidTxnState),
            };
            if let Err(e) = verified {
                // A producer of an older epoch hears INVALID_PRODUCER_EPOCH on a
                // write, as from Kafka: PRODUCER_FENCED is the coordinator's answer.
                let e = if e == Error::ProducerFenced { Error::InvalidProducerEpoch } else { e };
                return refused(of(e), "transactional batch outside an open transaction holding this partition".into());
            }
        }
        bytes += header.size as u64;
        count += header.records_count as u64;
    }
    // A topic whose compression.type names a codec stores its batches with it, as
    // Kafka recompresses: the same records, offsets and producer fields.
    let batches: Vec<(BatchHeader, Bytes)> = match config.compression {
        Some(codec) if batches.iter().any(|(h, _)| h.compression() != codec) => {
            let mut out = Vec::with_capacity(batches.len());
            for (header, data) in batches {
                if header.compression() == codec {
                    out.push((header, data));
                    continue;
                }
                let recompressed = match tributary_protocol::build::recompress(&data, codec) {
                    Ok(b) => b,
                    Err(e) => return refused(of(Error::CorruptMessage), format!("cannot recompress the batch: {e}")),
                };
                match BatchHeader::parse(&recompressed) {
                    Ok(h) => out.push((h, recompressed)),
                    Err(e) => return refused(of(Error::CorruptMessage), format!("recompressed batch: {e}")),
                }
            }
            out
        }
        _ => batches,
    };
    if let Err(e) = ctx.broker.storage.check_room() {
        return refused(errors::code(&e), e.to_string());
    }
    match ctx.broker.storage.submit(partition, batches, config.log_append_time).await {
        Ok(pending) => {
            partition.note_produced(bytes, count);
            if let Some(t) = topic {
                t.produced.add(bytes, count);
            }
            Slot::Queued { pending, bytes, records: count }
        }
        Err(e) => refused(errors::code(&e), e.to_string()),
    }
}

fn check(header: &BatchHeader, data: &[u8], config: &TopicConfig, version: i16) -> Option<Slot> {
    let max_message_bytes = config.max_message_bytes;
    let refused = |code: i16, message: String| Some(Slot::Refused { code, message: Some(message), record: None });
    if header.size > max_message_bytes.max(0) as usize {
        return refused(
            of(Error::MessageTooLarge),
            format!("batch of {} bytes exceeds max.message.bytes {}", header.size, max_message_bytes),
        );
    }
    match header.validate(data) {
        Ok(()) => {}
        Err(e @ BatchError::UnsupportedMagic(_)) => {
            return refused(of(Error::UnsupportedForMessageFormat), e.to_string())
        }
        // Kafka's "invalid offset range" / "invalid reported count".
        Err(e @ BatchError::BadCount { .. }) => return refused(of(Error::InvalidRecord), e.to_string()),
        Err(e) => return refused(of(Error::CorruptMessage), e.to_string()),
    }
    if header.is_control() {
        return refused(of(Error::InvalidRecord), "clients may not write control batches".into());
    }
    if header.records_count == 0 {
        return refused(of(Error::InvalidRecord), "batch has no records".into());
    }
    if header.compression() == batch::Compression::Zstd && version < 7 {
        return refused(of(Error::UnsupportedCompressionType), "zstd needs Produce v7 or later".into());
    }
    let rules = Rules {
        max_uncompressed_bytes: ((max_message_bytes.max(0) as u64).max(1 << 20) * MAX_COMPRESSION_RATIO)
            .min(config.max_decompressed_bytes.max(0) as u64),
        require_keys: config.compact,
    };
    match validate::validate_records(header, data, rules) {
        Ok(()) => None,
        Err(e @ RecordError::Corrupt(_)) => refused(of(Error::CorruptMessage), e.to_string()),
        Err(RecordError::Invalid { record, message }) => {
            Some(Slot::Refused { code: of(Error::InvalidRecord), message: Some(message), record })
        }
    }
}

/// `message.timestamp.before.max.ms` / `after.max.ms` for CreateTime topics: every
/// record's timestamp within [now - before, now + after]. The latest is the batch's
/// max timestamp; the earliest needs the records, so a batch is only read through
/// when the topic bounds the past (the default does not).
fn check_timestamps(header: &BatchHeader, data: &Bytes, config: &TopicConfig, now: i64) -> Result<(), String> {
    let out_of_range = |ts: i64| {
        format!(
            "timestamp {ts} is out of range: it must be within [now - {}, now + {}] ms (message.timestamp.before.max.ms, \
             message.timestamp.after.max.ms)",
            config.timestamp_before_max_ms, config.timestamp_after_max_ms
        )
    };
    if header.max_timestamp.saturating_sub(now) > config.timestamp_after_max_ms {
        return Err(out_of_range(header.max_timestamp));
    }
    if config.timestamp_before_max_ms < i64::MAX {
        let earliest = records::read(header, data)
            .map_err(|e| format!("cannot read the batch's records: {e}"))?
            .iter()
            .map(|r| r.timestamp)
            .min()
            .unwrap_or(header.base_timestamp);
        if now.saturating_sub(earliest) > config.timestamp_before_max_ms {
            return Err(out_of_range(earliest));
        }
    }
    Ok(())
}
