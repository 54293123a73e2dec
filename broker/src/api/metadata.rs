//! Metadata: the brokers (this one), the cluster id, and the requested topics with
//! their partitions, creating topics that do not exist when auto-creation is on and
//! the client allows it (v4+).

use tributary_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::topics::validate_name;
use super::RequestCtx;
use crate::errors::{self, of, Error};
use crate::storage::{StorageError, Topic};

pub(crate) async fn handle(ctx: &RequestCtx, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let storage = &broker.storage;
    let node = &broker.node;
    // v0 asks for every topic with an empty list; v1+ with null.
    let requested = match request.topics {
        Some(t) if ctx.version == 0 && t.is_empty() => None,
        other => other,
    };
    let auto_create = broker.config.topics.auto_create && (ctx.version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match requested {
        None => topics.extend(storage.topics().iter().map(|t| describe(t, node.id))),
        Some(wanted) => {
            for want in wanted {
                let entry = match want.name {
                    Some(name) => by_name(ctx, name.0.as_str(), auto_create).await,
                    None => match storage.topic_by_id(&want.topic_id) {
                        Some(t) => describe(&t, node.id),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(want.topic_id)
                            .with_error_code(of(Error::UnknownTopicId)),
                    },
                };
                topics.push(entry);
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node.id))
            .with_host(StrBytes::from_string(node.host.clone()))
            .with_port(node.port)])
        .with_cluster_id(Some(StrBytes::from_string(storage.cluster_id().to_string())))
        .with_controller_id(BrokerId(node.id))
        .with_topics(topics)
}

async fn by_name(ctx: &RequestCtx, name: &str, auto_create: bool) -> MetadataResponseTopic {
    let storage = &ctx.broker.storage;
    let node_id = ctx.broker.node.id;
    let unknown = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(code)
    };
    if let Some(t) = storage.topic(name) {
        return describe(&t, node_id);
    }
    if validate_name(name).is_err() {
        return unknown(of(Error::InvalidTopicException));
    }
    if !auto_create {
        return unknown(of(Error::UnknownTopicOrPartition));
    }
    let partitions = ctx.broker.config.topics.num_partitions;
    match storage.create_topic(name, partitions, Default::default()).await {
        Ok(t) => {
            tracing::info!(topic = name, partitions, "auto-created topic");
            describe(&t, node_id)
        }
        Err(StorageError::TopicExists(_)) => match storage.topic(name) {
            Some(t) => describe(&t, node_id),
            None => unknown(of(Error::LeaderNotAvailable)),
        },
        Err(e) => unknown(errors::code(&e)),
    }
}

fn describe(topic: &Topic, node_id: i32) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.to_string()))))
        .with_topic_id(topic.id)
        .with_is_internal(super::topics::is_internal(&topic.name))
        .with_partitions(
            topic
                .partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p.index)
                        .with_leader_id(BrokerId(node_id))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(node_id)])
                        .with_isr_nodes(vec![BrokerId(node_id)])
                })
                .collect(),
        )
}
