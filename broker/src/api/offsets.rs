//! OffsetCommit, OffsetFetch (one group up to v7, batched groups from v8) and
//! OffsetDelete. Validation and storage are the group coordinator's. From
//! OffsetCommit and OffsetFetch v10 (KIP-848's topic ids) topics are named by id;
//! an id this broker does not know is answered UNKNOWN_TOPIC_ID.

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
use uuid::Uuid;

use super::RequestCtx;
use crate::coordinator::group::offsets::{CommitRequest, Fetched};
use crate::coordinator::group::records::Committed;
use crate::errors::{of, Error};
use crate::security::acl::{Operation, ResourceType};

/// An offset as a client commits it (the commit time is the coordinator's).
pub(super) fn committed(offset: i64, leader_epoch: i32, metadata: Option<&StrBytes>) -> Committed {
    Committed {
        offset,
        leader_epoch,
        metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        commit_timestamp: -1,
    }
}

/// The name of the topic with this id, if this broker knows it.
pub(super) fn topic_name(ctx: &RequestCtx, id: &Uuid) -> Option<TopicName> {
    ctx.broker.storage.topic_by_id(id).map(|t| TopicName(StrBytes::from_string(t.name.to_string())))
}

/// Where a request names topics by id (`by_id`), names each from its id in place;
/// per topic, whether it is known (always so where topics are named by name).
pub(super) fn name_by_id<'a>(
    ctx: &RequestCtx,
    by_id: bool,
    topics: impl Iterator<Item = (&'a Uuid, &'a mut TopicName)>,
) -> Vec<bool> {
    topics
        .map(|(id, name)| match by_id {
            false => true,
            true => match topic_name(ctx, id) {
                Some(n) => {
                    *name = n;
                    true
                }
                None => false,
            },
        })
        .collect()
}

/// What a topic's partitions are answered before the coordinator is asked: its id
/// unknown, or the client may not touch it.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Access {
    Allowed,
    UnknownId,
    Denied,
}

impl Access {
    /// Each topic's access in order: its id unknown (`known` false), READ refused, or
    /// allowed.
    pub(super) fn of_topics<'a>(
        ctx: &RequestCtx,
        known: Vec<bool>,
        names: impl Iterator<Item = &'a TopicName>,
    ) -> Vec<Access> {
        names
            .zip(known)
            .map(|(name, known)| match (known, ctx.allowed(Operation::Read, ResourceType::Topic, name)) {
                (false, _) => Access::UnknownId,
                (true, false) => Access::Denied,
                (true, true) => Access::Allowed,
            })
            .collect()
    }

    pub(super) fn code(self) -> Option<i16> {
        match self {
            Access::Allowed => None,
            Access::UnknownId => Some(of(Error::UnknownTopicId)),
            Access::Denied => Some(of(Error::TopicAuthorizationFailed)),
        }
    }
}

pub(crate) async fn commit(ctx: &RequestCtx, mut request: OffsetCommitRequest) -> OffsetCommitResponse {
    // READ on the group, and READ on each topic committed to.
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return refuse_commit(request, Error::GroupAuthorizationFailed);
    }
    let known = name_by_id(ctx, ctx.version >= 10, request.topics.iter_mut().map(|t| (&t.topic_id, &mut t.name)));
    let access = Access::of_topics(ctx, known, request.topics.iter().map(|t| &t.name));
    let offsets: Vec<(String, i32, Committed)> = request
        .topics
        .iter()
        .zip(&access)
        .filter(|(_, a)| **a == Access::Allowed)
        .flat_map(|(t, _)| {
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
        .zip(access)
        .map(|(t, access)| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code =
                        access.code().unwrap_or_else(|| results.next().and_then(|r| r.err()).map(of).unwrap_or(0));
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_topic_id(t.topic_id).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Every partition of the request answered with `error`.
fn refuse_commit(request: OffsetCommitRequest, error: Error) -> OffsetCommitResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(of(error))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_topic_id(t.topic_id).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Drops what the client may not describe: topics it asked for by name stay, their
/// partitions answered TOPIC_AUTHORIZATION_FAILED (`Err`); when it asked for every
/// topic they are left out.
fn describable(ctx: &RequestCtx, fetched: Fetched, named: bool) -> Vec<(String, i32, Result<Option<Committed>, ()>)> {
    fetched
        .into_iter()
        .filter_map(|(topic, partition, committed)| {
            match ctx.allowed(Operation::Describe, ResourceType::Topic, &topic) {
                true => Some((topic, partition, Ok(committed))),
                false if named => Some((topic, partition, Err(()))),
                false => None,
            }
        })
        .collect()
}

/// One topic's committed offsets: (topic, [(partition, committed)]).
type TopicOffsets = (String, Vec<(i32, Result<Option<Committed>, ()>)>);

/// Committed offsets of one group, grouped by topic in request order (or name order).
fn by_topic(fetched: Vec<(String, i32, Result<Option<Committed>, ()>)>) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, committed) in fetched {
        match out.last_mut() {
            Some((t, parts)) if *t == topic => parts.push((partition, committed)),
            _ => out.push((topic, vec![(partition, committed)])),
        }
    }
    out
}

/// (offset, leader epoch, metadata, error code) of one partition's answer.
fn fields(c: Result<Option<Committed>, ()>) -> (i64, i32, Option<StrBytes>, i16) {
    match c {
        Ok(Some(c)) => (c.offset, c.leader_epoch, Some(StrBytes::from_string(c.metadata)), 0),
        Ok(None) => (-1, -1, Some(StrBytes::from_static_str("")), 0),
        Err(()) => (-1, -1, Some(StrBytes::from_static_str("")), of(Error::TopicAuthorizationFailed)),
    }
}

pub(crate) fn fetch(ctx: &RequestCtx, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let groups = &ctx.broker.groups;
    if ctx.version < 8 {
        if !ctx.allowed(Operation::Describe, ResourceType::Group, &request.group_id) {
            return OffsetFetchResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
        }
        let named = request.topics.is_some();
        let topics =
            request.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
        return match groups.fetch_offsets_stable(&request.group_id, topics, None, request.require_stable) {
            Err(e) => OffsetFetchResponse::default().with_error_code(of(e)),
            Ok(fetched) => OffsetFetchResponse::default().with_topics(
                by_topic(describable(ctx, fetched, named))
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, c)| {
                                        let (offset, epoch, metadata, code) = fields(c);
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
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
    // v10: topics named by id; an id this broker does not know is answered
    // UNKNOWN_TOPIC_ID, and a topic of the group's that no longer exists is left out
    // (a client cannot name it).
    let by_id = ctx.version >= 10;
    let storage = &ctx.broker.storage;
    let results = request
        .groups
        .into_iter()
        .map(|mut g| {
            let mut unknown: Vec<OffsetFetchResponseTopics> = Vec::new();
            if let (true, Some(ts)) = (by_id, g.topics.as_mut()) {
                ts.retain_mut(|t| match topic_name(ctx, &t.topic_id) {
                    Some(name) => {
                        t.name = name;
                        true
                    }
                    None => {
                        let parts = t.partition_indexes.iter().map(|&p| {
                            let (offset, epoch, metadata, _) = fields(Ok(None));
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_error_code(of(Error::UnknownTopicId))
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                        });
                        unknown.push(
                            OffsetFetchResponseTopics::default()
                                .with_topic_id(t.topic_id)
                                .with_partitions(parts.collect()),
                        );
                        false
                    }
                });
            }
            let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
            let member = g.member_id.as_ref().map(|m| (m.as_str(), g.member_epoch));
            let base = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            if !ctx.allowed(Operation::Describe, ResourceType::Group, &g.group_id) {
                return base.with_error_code(of(Error::GroupAuthorizationFailed));
            }
            let named = topics.is_some();
            match groups.fetch_offsets_stable(&g.group_id, topics, member, request.require_stable) {
                Err(e) => base.with_error_code(of(e)),
                Ok(fetched) => {
                    let mut topics: Vec<OffsetFetchResponseTopics> = by_topic(describable(ctx, fetched, named))
                        .into_iter()
                        .filter_map(|(name, parts)| {
                            let id = match by_id {
                                true => storage.topic(&name)?.id,
                                false => Uuid::nil(),
                            };
                            let parts = parts.into_iter().map(|(p, c)| {
                                let (offset, epoch, metadata, code) = fields(c);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(metadata)
                            });
                            Some(
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_topic_id(id)
                                    .with_partitions(parts.collect()),
                            )
                        })
                        .collect();
                    topics.extend(unknown);
                    base.with_topics(topics)
                }
            }
        })
        .collect();
    OffsetFetchResponse::default().with_groups(results)
}

pub(crate) async fn delete(ctx: &RequestCtx, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    // DELETE on the group, READ on each topic.
    if !ctx.allowed(Operation::Delete, ResourceType::Group, &request.group_id) {
        return OffsetDeleteResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
    }
    let readable: Vec<bool> =
        request.topics.iter().map(|t| ctx.allowed(Operation::Read, ResourceType::Topic, &t.name)).collect();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&readable)
        .filter(|(_, r)| **r)
        .flat_map(|(t, _)| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index)))
        .collect();
    match ctx.broker.groups.delete_offsets(&request.group_id, &partitions).await {
        Err(e) => OffsetDeleteResponse::default().with_error_code(of(e)),
        Ok(results) => {
            let mut results = results.into_iter();
            OffsetDeleteResponse::default().with_topics(
                request
                    .topics
                    .into_iter()
                    .zip(readable)
                    .map(|(t, readable)| {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let code = match readable {
                                    false => of(Error::TopicAuthorizationFailed),
                                    true => results.next().and_then(|r| r.err()).map(of).unwrap_or(0),
                                };
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
