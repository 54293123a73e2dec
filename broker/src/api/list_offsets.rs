//! ListOffsets: per partition, the offset for a timestamp: -2 earliest, -1 latest
//! (the high watermark), -3 the record with the largest timestamp (v7+), -4 earliest
//! local (v8+), -5 latest tiered (v9+) and -6 earliest pending upload (v11+,
//! KIP-1023), or the first record at or after a given time (offset -1 when there is
//! none). Tributary's topics are not Kafka remote-storage topics (sealed segments are
//! its own storage, read as the log itself), so -5 and -6 answer as Kafka does for a
//! topic without remote storage: offset, timestamp and leader epoch -1.

use tributary_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use tributary_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::RequestCtx;
use crate::errors::{self, of, Error};
use crate::security::acl::{Operation, ResourceType};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

pub(crate) async fn handle(ctx: &RequestCtx, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let storage = &ctx.broker.storage;
    let view = ctx.broker.topology();
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = storage.topic(wanted.name.0.as_str());
        let describable = ctx.allowed(Operation::Describe, ResourceType::Topic, wanted.name.0.as_str());
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for p in wanted.partitions {
            let mut r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            if !describable {
                r.error_code = of(Error::TopicAuthorizationFailed);
                partitions.push(r);
                continue;
            }
            let Some(log) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                r.error_code = of(Error::UnknownTopicOrPartition);
                partitions.push(r);
                continue;
            };
            let client_epoch = if ctx.version >= 4 { p.current_leader_epoch } else { -1 };
            match super::route::lead(&view, &log.topic, p.partition_index, client_epoch) {
                Ok(epoch) if ctx.version >= 4 => r.leader_epoch = epoch,
                Ok(_) => {}
                Err(code) => {
                    r.error_code = code;
                    partitions.push(r);
                    continue;
                }
            }
            let offsets = log.offsets();
            let found = match p.timestamp {
                // read_committed consumers start "latest" at the last stable offset.
                LATEST if request.isolation_level == 1 => Ok(Some((offsets.last_stable_offset, -1))),
                LATEST => Ok(Some((offsets.high_watermark, -1))),
                EARLIEST | EARLIEST_LOCAL => Ok(Some((offsets.log_start_offset, -1))),
                MAX_TIMESTAMP => storage.max_timestamp(log).await,
                LATEST_TIERED | EARLIEST_PENDING_UPLOAD => {
                    r.leader_epoch = -1;
                    Ok(None)
                }
                t if t >= 0 => storage.offset_for_timestamp(log, t).await,
                _ => {
                    r.error_code = of(Error::InvalidRequest);
                    partitions.push(r);
                    continue;
                }
            };
            match found {
                Ok(Some((offset, timestamp))) => {
                    r.offset = offset;
                    r.timestamp = timestamp;
                }
                Ok(None) => {}
                Err(e) => r.error_code = errors::code(&e),
            }
            partitions.push(r);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(wanted.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}
