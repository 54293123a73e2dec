//! Metadata: the live brokers, the controller, the cluster id, and the requested
//! topics with their partitions and each partition's leader and leader epoch (from
//! the [`Topology`]), creating topics that do not exist when auto-creation is on and
//! the client allows it (v4+). DescribeTopicPartitions, the paged describe of
//! topics KIP-966 added, answers from the same view.

use tributary_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::broker::ChangeError;
use crate::cluster::{CatalogError, Topology};
use crate::errors::{self, of, Error};
use crate::security::acl::{Operation, ResourceType};
use crate::storage::{StorageError, Topic};

pub(crate) async fn handle(ctx: &RequestCtx, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let storage = &broker.storage;
    let view = broker.topology();
    // v0 asks for every topic with an empty list; v1+ with null.
    let requested = match request.topics {
        Some(t) if ctx.version == 0 && t.is_empty() => None,
        other => other,
    };
    let auto_create = broker.config.topics.auto_create && (ctx.version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match requested {
        // Every topic the client may describe; the others are left out.
        None => topics.extend(
            storage
                .topics()
                .iter()
                .filter(|t| ctx.allowed(Operation::Describe, ResourceType::Topic, &t.name))
                .map(|t| describe(t, &view)),
        ),
        Some(wanted) => {
            for want in wanted {
                let entry = match want.name {
                    Some(name) => by_name(ctx, name.0.as_str(), auto_create, &view).await,
                    None => match storage.topic_by_id(&want.topic_id) {
                        Some(t) if !ctx.allowed(Operation::Describe, ResourceType::Topic, &t.name) => {
                            MetadataResponseTopic::default()
                                .with_topic_id(want.topic_id)
                                .with_error_code(of(Error::TopicAuthorizationFailed))
                        }
                        Some(t) => describe(&t, &view),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(want.topic_id)
                            .with_error_code(of(Error::UnknownTopicId)),
                    },
                };
                topics.push(entry);
            }
        }
    }
    for t in topics.iter_mut().filter(|t| t.error_code == 0) {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        t.topic_authorized_operations =
            super::operations::if_asked(ctx, request.include_topic_authorized_operations, ResourceType::Topic, &name);
    }
    let brokers = view
        .brokers
        .iter()
        .map(|b| {
            let (host, port) = ctx.endpoint(b);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(host)
                .with_port(port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(view.cluster_id.to_string())))
        .with_controller_id(BrokerId(view.controller.unwrap_or(-1)))
        .with_cluster_authorized_operations(super::operations::if_asked(
            ctx,
            request.include_cluster_authorized_operations,
            ResourceType::Cluster,
            super::CLUSTER_NAME,
        ))
        .with_topics(topics)
}

async fn by_name(ctx: &RequestCtx, name: &str, auto_create: bool, view: &Topology) -> MetadataResponseTopic {
    let storage = &ctx.broker.storage;
    let unknown = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(code)
    };
    // A topic the client may not describe is refused whether or not it exists.
    if !ctx.allowed(Operation::Describe, ResourceType::Topic, name) {
        return unknown(of(Error::TopicAuthorizationFailed));
    }
    if let Some(t) = storage.topic(name) {
        return describe(&t, view);
    }
    if ctx.validate_topic_name(name).is_err() {
        return unknown(of(Error::InvalidTopicException));
    }
    if !auto_create {
        return unknown(of(Error::UnknownTopicOrPartition));
    }
    if !ctx.allowed_on_cluster(Operation::Create) && !ctx.allowed(Operation::Create, ResourceType::Topic, name) {
        return unknown(of(Error::TopicAuthorizationFailed));
    }
    let partitions = ctx.broker.config.topics.num_partitions;
    if ctx.over_scope_partitions(partitions as i64).is_some() {
        return unknown(of(Error::PolicyViolation));
    }
    match ctx.broker.create_topic(name, partitions, Default::default()).await {
        Ok(t) => {
            tracing::info!(topic = name, partitions, "auto-created topic");
            describe(&t, view)
        }
        Err(ChangeError::Storage(StorageError::TopicExists(_)) | ChangeError::Catalog(CatalogError::Exists(_))) => {
            match storage.topic(name) {
                Some(t) => describe(&t, view),
                None => unknown(of(Error::LeaderNotAvailable)),
            }
        }
        Err(e) => unknown(errors::change_code(&e)),
    }
}

fn describe(topic: &Topic, view: &Topology) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.to_string()))))
        .with_topic_id(topic.id)
        .with_is_internal(super::topics::is_internal(&topic.name))
        .with_partitions(
            topic
                .partitions
                .iter()
                .map(|p| {
                    let partition = MetadataResponsePartition::default().with_partition_index(p.index);
                    match leader(view, &topic.name, p.index) {
                        Ok((broker, epoch)) => partition
                            .with_leader_id(broker)
                            .with_leader_epoch(epoch)
                            .with_replica_nodes(vec![broker])
                            .with_isr_nodes(vec![broker]),
                        Err(code) => partition.with_error_code(code).with_leader_id(BrokerId(-1)).with_leader_epoch(-1),
                    }
                })
                .collect(),
        )
}

/// A partition's leader and leader epoch, or LEADER_NOT_AVAILABLE: the owner must be
/// a live broker, or clients would be sent nowhere.
fn leader(view: &Topology, topic: &str, partition: i32) -> Result<(BrokerId, i32), i16> {
    match view.owner(topic, partition).filter(|o| view.broker(o.broker).is_some()) {
        Some(owner) => Ok((BrokerId(owner.broker), owner.epoch)),
        None => Err(of(Error::LeaderNotAvailable)),
    }
}

/// DescribeTopicPartitions (KIP-966; the Java Admin's `describeTopics`): the named
/// topics, or every topic when none is named, in name order, with at most
/// `min(response_partition_limit, limits.max_request_partition_size_limit)`
/// partitions in one answer; where that cut a topic or left topics out,
/// `next_cursor` names the first topic and partition not described, and the client
/// asks again from there. A named topic that does not exist is answered with
/// UNKNOWN_TOPIC_OR_PARTITION; a cursor whose topic is not among the named ones, or
/// with a negative partition, makes the request INVALID_REQUEST.
pub(crate) fn describe_topic_partitions(
    ctx: &RequestCtx,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let storage = &ctx.broker.storage;
    let view = ctx.broker.topology();
    let every = request.topics.is_empty();
    let mut names: Vec<String> = if every {
        let describable = |t: &&std::sync::Arc<Topic>| ctx.allowed(Operation::Describe, ResourceType::Topic, &t.name);
        storage.topics().iter().filter(describable).map(|t| t.name.to_string()).collect()
    } else {
        request.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let start = match &request.cursor {
        None => None,
        Some(c) => {
            let topic = c.topic_name.0.to_string();
            if c.partition_index < 0 || (!every && !names.contains(&topic)) {
                let invalid = names
                    .into_iter()
                    .map(|n| {
                        DescribeTopicPartitionsResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                            .with_error_code(of(Error::InvalidRequest))
                    })
                    .collect();
                return DescribeTopicPartitionsResponse::default().with_topics(invalid);
            }
            names.retain(|n| *n >= topic);
            Some((topic, c.partition_index))
        }
    };
    let cap = ctx.broker.config.limits.max_request_partition_size_limit;
    let mut left = request.response_partition_limit.clamp(1, cap.max(1)) as usize;
    let (mut topics, mut next) = (Vec::new(), None);
    for name in names {
        let first = match &start {
            Some((topic, partition)) if *topic == name => *partition as usize,
            _ => 0,
        };
        if left == 0 {
            next = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_index(first as i32),
            );
            break;
        }
        if !every && !ctx.allowed(Operation::Describe, ResourceType::Topic, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(of(Error::TopicAuthorizationFailed)),
            );
            continue;
        }
        let Some(topic) = storage.topic(&name) else {
            // Named and missing; when every topic was asked for, one deleted meanwhile.
            if !every {
                let code = if ctx.validate_topic_name(&name).is_ok() {
                    Error::UnknownTopicOrPartition
                } else {
                    Error::InvalidTopicException
                };
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name))))
                        .with_error_code(of(code)),
                );
            }
            continue;
        };
        let end = topic.partitions.len().min(first.saturating_add(left));
        let partitions: Vec<_> = topic
            .partitions
            .get(first..end)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let partition = DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.index)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()));
                match leader(&view, &topic.name, p.index) {
                    Ok((broker, epoch)) => partition
                        .with_leader_id(broker)
                        .with_leader_epoch(epoch)
                        .with_replica_nodes(vec![broker])
                        .with_isr_nodes(vec![broker]),
                    Err(code) => partition.with_error_code(code).with_leader_id(BrokerId(-1)).with_leader_epoch(-1),
                }
            })
            .collect();
        left -= partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(super::topics::is_internal(&topic.name))
                .with_topic_authorized_operations(ctx.authorized_operations(ResourceType::Topic, &name))
                .with_partitions(partitions),
        );
        if end < topic.partitions.len() {
            next = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_index(end as i32),
            );
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next)
}
