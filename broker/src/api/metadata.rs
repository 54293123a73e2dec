//! Metadata: the live brokers, the controller, the cluster id, and the requested
//! topics with their partitions and each partition's leader and leader epoch (from
//! the [`Topology`]), creating topics that do not exist when auto-creation is on and
//! the client allows it (v4+).

use tributary_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::topics::validate_name;
use super::RequestCtx;
use crate::broker::ChangeError;
use crate::cluster::{CatalogError, Topology};
use crate::errors::{self, of, Error};
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
        None => topics.extend(storage.topics().iter().map(|t| describe(t, &view))),
        Some(wanted) => {
            for want in wanted {
                let entry = match want.name {
                    Some(name) => by_name(ctx, name.0.as_str(), auto_create, &view).await,
                    None => match storage.topic_by_id(&want.topic_id) {
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
    let topic_ops = super::operations::if_asked(request.include_topic_authorized_operations, super::operations::TOPIC);
    for t in topics.iter_mut().filter(|t| t.error_code == 0) {
        t.topic_authorized_operations = topic_ops;
    }
    let brokers = view
        .brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(view.cluster_id.to_string())))
        .with_controller_id(BrokerId(view.controller.unwrap_or(-1)))
        .with_cluster_authorized_operations(super::operations::if_asked(
            request.include_cluster_authorized_operations,
            super::operations::CLUSTER,
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
    if let Some(t) = storage.topic(name) {
        return describe(&t, view);
    }
    if validate_name(name).is_err() {
        return unknown(of(Error::InvalidTopicException));
    }
    if !auto_create {
        return unknown(of(Error::UnknownTopicOrPartition));
    }
    let partitions = ctx.broker.config.topics.num_partitions;
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
                    // The owner must be a live broker, or clients would be sent nowhere.
                    match view.owner(&topic.name, p.index).filter(|o| view.broker(o.broker).is_some()) {
                        Some(owner) => partition
                            .with_leader_id(BrokerId(owner.broker))
                            .with_leader_epoch(owner.epoch)
                            .with_replica_nodes(vec![BrokerId(owner.broker)])
                            .with_isr_nodes(vec![BrokerId(owner.broker)]),
                        None => partition
                            .with_error_code(of(Error::LeaderNotAvailable))
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1),
                    }
                })
                .collect(),
        )
}
