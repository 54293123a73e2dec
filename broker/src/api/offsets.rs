//! OffsetCommit, OffsetFetch (one group up to v7, batched groups from v8) and
//! OffsetDelete. Validation and storage are the group coordinator's.

use tributary_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::coordinator::group::offsets::{CommitRequest, Fetched};
use crate::coordinator::group::records::Committed;
use crate::errors::of;

/// An offset as a client commits it (the commit time is the coordinator's).
pub(super) fn committed(offset: i64, leader_epoch: i32, metadata: Option<&StrBytes>) -> Committed {
    Committed {
        offset,
        leader_epoch,
        metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        commit_timestamp: -1,
    }
}

pub(crate) async fn commit(ctx: &RequestCtx, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let offsets: Vec<(String, i32, Committed)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let c = committed(p.committed_offset, p.committed_leader_epoch, p.committed_metadata.as_ref());
                (t.name.to_string(), p.partition_index, c)
            })
        })
        .collect();
    let req = CommitRequest {
        group_id: request.group_id.to_string(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets,
    };
    let results = ctx.broker.groups.commit(req).await;
    let mut results = match results {
        Ok(r) => r.into_iter(),
        Err(e) => {
            let n: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
            vec![Err(e); n].into_iter()
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = results.next().and_then(|r| r.err()).map(of).unwrap_or(0);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One topic's committed offsets: (topic, [(partition, committed)]).
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// Committed offsets of one group, grouped by topic in request order (or name order).
fn by_topic(fetched: Fetched) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, committed) in fetched {
        match out.last_mut() {
            Some((t, parts)) if *t == topic => parts.push((partition, committed)),
            _ => out.push((topic, vec![(partition, committed)])),
        }
    }
    out
}

fn fields(c: Option<Committed>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, Some(StrBytes::from_string(c.metadata))),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

pub(crate) fn fetch(ctx: &RequestCtx, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let groups = &ctx.broker.groups;
    if ctx.version < 8 {
        let topics =
            request.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
        return match groups.fetch_offsets_stable(&request.group_id, topics, None, request.require_stable) {
            Err(e) => OffsetFetchResponse::default().with_error_code(of(e)),
            Ok(fetched) => OffsetFetchResponse::default().with_topics(
                by_topic(fetched)
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, c)| {
                                        let (offset, epoch, metadata) = fields(c);
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        };
    }
    let results = request
        .groups
        .into_iter()
        .map(|g| {
            let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
            let member = g.member_id.as_ref().map(|m| (m.as_str(), g.member_epoch));
            let base = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match groups.fetch_offsets_stable(&g.group_id, topics, member, request.require_stable) {
                Err(e) => base.with_error_code(of(e)),
                Ok(fetched) => base.with_topics(
                    by_topic(fetched)
                        .into_iter()
                        .map(|(name, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, c)| {
                                            let (offset, epoch, metadata) = fields(c);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(metadata)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    OffsetFetchResponse::default().with_groups(results)
}

pub(crate) async fn delete(ctx: &RequestCtx, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index)))
        .collect();
    match ctx.broker.groups.delete_offsets(&request.group_id, &partitions).await {
        Err(e) => OffsetDeleteResponse::default().with_error_code(of(e)),
        Ok(results) => {
            let mut results = results.into_iter();
            OffsetDeleteResponse::default().with_topics(
                request
                    .topics
                    .into_iter()
                    .map(|t| {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let code = results.next().and_then(|r| r.err()).map(of).unwrap_or(0);
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(parts)
                    })
                    .collect(),
            )
        }
    }
}
