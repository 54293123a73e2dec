//! Admin APIs beside topics and configs: AlterConfigs and IncrementalAlterConfigs
//! (topic and group overrides, client-metrics subscriptions and dynamic broker
//! configs: validated, durable, live), CreatePartitions, DeleteRecords,
//! DescribeCluster, and ElectLeaders (one broker leads everything: nothing to elect).

use std::collections::BTreeMap;

use tributary_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use tributary_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use tributary_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use tributary_protocol::kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::topics::is_internal;
use super::RequestCtx;
use crate::cluster::quotas::QuotaChangeError;
use crate::errors::{self, of, Error};
use crate::security::acl::{Operation, ResourceType};
use crate::storage::topic_config;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// One resource's config change: (name, Some(value) to set | None to remove),
/// applied over the current overrides (incremental) or replacing them (legacy).
type Change = (String, i8, Option<String>);

/// Validates and applies config changes to a topic. Returns (error code, message).
async fn alter_topic(
    ctx: &RequestCtx,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    let storage = &ctx.broker.storage;
    let Some(topic) = storage.topic(name) else {
        return (of(Error::UnknownTopicOrPartition), Some(format!("topic {name} does not exist")));
    };
    if is_internal(name) {
        return (of(Error::InvalidConfig), Some(format!("configs of internal topic {name} are managed by the broker")));
    }
    let mut overrides: BTreeMap<String, String> =
        if incremental { topic.config().overrides.clone() } else { BTreeMap::new() };
    for (key, op, value) in changes {
        let Some(def) = topic_config::find(&key) else {
            return (of(Error::InvalidConfig), Some(format!("unknown topic config {key}")));
        };
        match (op, value) {
            (SET, Some(v)) => {
                if let Err(m) = topic_config::validate(&key, &v) {
                    return (of(Error::InvalidConfig), Some(m));
                }
                overrides.insert(key, v);
            }
            (SET, None) | (DELETE, _) => {
                overrides.remove(&key);
            }
            (APPEND | SUBTRACT, value) => {
                if !matches!(def.kind, topic_config::Kind::ListOf(_)) {
                    return (
                        of(Error::InvalidConfig),
                        Some(format!("{key} is not a list: APPEND/SUBTRACT do not apply")),
                    );
                }
                let defaults = storage.topic_defaults();
                let current = overrides.get(&key).cloned().unwrap_or_else(|| (def.default)(&defaults));
                let mut items: Vec<String> =
                    current.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                for v in value.unwrap_or_default().split(',').map(str::trim).filter(|x| !x.is_empty()) {
                    if op == APPEND && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    } else if op == SUBTRACT {
                        items.retain(|i| i != v);
                    }
                }
                let joined = items.join(",");
                if let Err(m) = topic_config::validate(&key, &joined) {
                    return (of(Error::InvalidConfig), Some(m));
                }
                overrides.insert(key, joined);
            }
            (other, _) => return (of(Error::InvalidRequest), Some(format!("unknown config operation {other}"))),
        }
    }
    if validate_only {
        return (0, None);
    }
    match ctx.broker.set_topic_configs(&topic, overrides).await {
        Ok(()) => {
            tracing::info!(topic = name, "topic configs changed");
            (0, None)
        }
        Err(e) => (errors::change_code(&e), Some(e.to_string())),
    }
}

/// A group's config overrides (KIP-848 group configs), changed as a whole: the
/// group need not exist, as on Kafka.
async fn alter_group(
    ctx: &RequestCtx,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    use crate::coordinator::group::configs;
    if name.is_empty() {
        return (of(Error::InvalidRequest), Some("the group name must not be empty".into()));
    }
    let settings = &ctx.broker.groups.settings;
    let apply = |current: BTreeMap<String, String>| {
        let mut overrides = if incremental { current } else { BTreeMap::new() };
        for (key, op, value) in &changes {
            if configs::find(key).is_none() {
                return Err(format!("Unknown group config name: {key}"));
            }
            match (*op, value) {
                (SET, Some(v)) => {
                    overrides.insert(key.clone(), v.clone());
                }
                (SET, None) | (DELETE, _) => {
                    overrides.remove(key);
                }
                (APPEND | SUBTRACT, _) => return Err(format!("{key} is not a list: APPEND/SUBTRACT do not apply")),
                (other, _) => return Err(format!("unknown config operation {other}")),
            }
        }
        configs::validate(&overrides, settings)?;
        Ok(overrides)
    };
    match ctx.broker.alter_group_configs(name, validate_only, apply).await {
        Ok(()) => {
            if !validate_only {
                tracing::info!(group = name, "group configs changed");
            }
            (0, None)
        }
        Err(QuotaChangeError::Invalid(m)) => (of(Error::InvalidConfig), Some(m)),
        Err(QuotaChangeError::Storage(code, m)) => (code, Some(m)),
        Err(e) => (of(Error::RequestTimedOut), Some(e.to_string())),
    }
}

/// A client-metrics resource (a KIP-714 subscription), changed as a whole and
/// checked as Kafka checks it; `metrics` and `match` are lists (APPEND, SUBTRACT).
async fn alter_client_metrics(
    ctx: &RequestCtx,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    use crate::telemetry::subscriptions::{parse, INTERVAL_MS, MATCH, METRICS};
    if name.is_empty() {
        return (of(Error::InvalidRequest), Some("the client-metrics resource name must not be empty".into()));
    }
    let apply = |current: BTreeMap<String, String>| {
        let mut configs = if incremental { current } else { BTreeMap::new() };
        for (key, op, value) in &changes {
            if ![METRICS, INTERVAL_MS, MATCH].contains(&key.as_str()) {
                return Err(format!("Unknown client metrics config name: {key}"));
            }
            let items = |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            match (*op, value) {
                (SET, Some(v)) => {
                    configs.insert(key.clone(), v.clone());
                }
                (SET, None) | (DELETE, _) => {
                    configs.remove(key);
                }
                (APPEND | SUBTRACT, _) if key == INTERVAL_MS => {
                    return Err(format!("{key} is not a list: APPEND/SUBTRACT do not apply"))
                }
                (APPEND, Some(v)) => {
                    let mut list: Vec<String> = configs.get(key).map(|c| items(c)).unwrap_or_default();
                    for item in items(v) {
                        if !list.contains(&item) {
                            list.push(item);
                        }
                    }
                    configs.insert(key.clone(), list.join(","));
                }
                (SUBTRACT, Some(v)) => {
                    let gone: Vec<String> = items(v);
                    let list: Vec<String> = configs.get(key).map(|c| items(c)).unwrap_or_default();
                    let left: Vec<String> = list.into_iter().filter(|i| !gone.contains(i)).collect();
                    configs.insert(key.clone(), left.join(","));
                }
                (other, _) => return Err(format!("unknown config operation {other}")),
            }
        }
        parse(&configs)?;
        Ok(configs)
    };
    match ctx.broker.alter_client_metrics(name, validate_only, apply).await {
        Ok(()) => {
            if !validate_only {
                tracing::info!(subscription = name, "client-metrics configs changed");
            }
            (0, None)
        }
        Err(QuotaChangeError::Invalid(m)) => (of(Error::InvalidConfig), Some(m)),
        Err(QuotaChangeError::Storage(code, m)) => (code, Some(m)),
        Err(e) => (of(Error::RequestTimedOut), Some(e.to_string())),
    }
}

/// A broker resource's dynamic configs (`""`: every broker's default, or a
/// broker id): the topic defaults, live on every broker they apply to.
async fn alter_broker(
    ctx: &RequestCtx,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    use crate::broker_configs::{resource_name, validate, Refusal};
    let Some(name) = resource_name(name) else {
        return (of(Error::InvalidRequest), Some(format!("{name} is not a broker id")));
    };
    let read_only = super::configs::read_only_broker_names(ctx);
    // A setting that cannot change at runtime is refused as Kafka refuses it, before
    // anything is read or written.
    let asked: BTreeMap<String, String> =
        changes.iter().map(|(k, _, v)| (k.clone(), v.clone().unwrap_or_default())).collect();
    if let Err(Refusal::NotDynamic(m)) = validate(&asked, &read_only) {
        return (of(Error::InvalidRequest), Some(m));
    }
    let apply = |current: BTreeMap<String, String>| {
        let mut configs = if incremental { current } else { BTreeMap::new() };
        for (key, op, value) in &changes {
            match (*op, value) {
                (SET, Some(v)) => {
                    configs.insert(key.clone(), v.clone());
                }
                (SET, None) | (DELETE, _) => {
                    configs.remove(key);
                }
                (APPEND | SUBTRACT, _) => return Err(format!("{key} is not a list: APPEND/SUBTRACT do not apply")),
                (other, _) => return Err(format!("unknown config operation {other}")),
            }
        }
        validate(&configs, &read_only).map_err(|r| match r {
            Refusal::NotDynamic(m) | Refusal::Invalid(m) => m,
        })?;
        Ok(configs)
    };
    match ctx.broker.alter_broker_configs(&name, validate_only, apply).await {
        Ok(()) => {
            if !validate_only {
                tracing::info!(
                    broker = if name.is_empty() { "default" } else { &name },
                    "dynamic broker configs changed"
                );
            }
            (0, None)
        }
        Err(QuotaChangeError::Invalid(m)) => (of(Error::InvalidConfig), Some(m)),
        Err(QuotaChangeError::Storage(code, m)) => (code, Some(m)),
        Err(e) => (of(Error::RequestTimedOut), Some(e.to_string())),
    }
}

/// ALTER_CONFIGS on the topic, group or cluster (for a broker's configs).
fn may_alter(ctx: &RequestCtx, resource_type: i8, name: &str) -> bool {
    match resource_type {
        TOPIC => ctx.allowed(Operation::AlterConfigs, ResourceType::Topic, name),
        GROUP => ctx.allowed(Operation::AlterConfigs, ResourceType::Group, name),
        BROKER | CLIENT_METRICS => ctx.allowed_on_cluster(Operation::AlterConfigs),
        _ => true,
    }
}

/// The authorization error of a config resource type, as Kafka answers it.
pub(super) fn refused(resource_type: i8) -> (i16, Option<String>) {
    let error = match resource_type {
        TOPIC => Error::TopicAuthorizationFailed,
        GROUP => Error::GroupAuthorizationFailed,
        _ => Error::ClusterAuthorizationFailed,
    };
    (of(error), None)
}

pub(crate) async fn incremental_alter_configs(
    ctx: &RequestCtx,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let changes: Vec<Change> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let (code, message) = match r.resource_type {
            _ if !may_alter(ctx, r.resource_type, &r.resource_name) => refused(r.resource_type),
            TOPIC => alter_topic(ctx, &r.resource_name, changes, true, request.validate_only).await,
            GROUP => alter_group(ctx, &r.resource_name, changes, true, request.validate_only).await,
            CLIENT_METRICS => alter_client_metrics(ctx, &r.resource_name, changes, true, request.validate_only).await,
            BROKER => alter_broker(ctx, &r.resource_name, changes, true, request.validate_only).await,
            other => (of(Error::InvalidRequest), Some(format!("resource type {other} has no alterable configs"))),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(s))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn alter_configs(ctx: &RequestCtx, request: AlterConfigsRequest) -> AlterConfigsResponse {
    use alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let changes: Vec<Change> =
            r.configs.iter().map(|c| (c.name.to_string(), SET, c.value.as_ref().map(|v| v.to_string()))).collect();
        let (code, message) = match r.resource_type {
            _ if !may_alter(ctx, r.resource_type, &r.resource_name) => refused(r.resource_type),
            TOPIC => alter_topic(ctx, &r.resource_name, changes, false, request.validate_only).await,
            GROUP => alter_group(ctx, &r.resource_name, changes, false, request.validate_only).await,
            CLIENT_METRICS => alter_client_metrics(ctx, &r.resource_name, changes, false, request.validate_only).await,
            BROKER => alter_broker(ctx, &r.resource_name, changes, false, request.validate_only).await,
            other => (of(Error::InvalidRequest), Some(format!("resource type {other} has no alterable configs"))),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(s))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn create_partitions(ctx: &RequestCtx, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let storage = &ctx.broker.storage;
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let topic = storage.topic(&t.name);
        let over_scope =
            topic.as_ref().and_then(|x| ctx.over_scope_partitions((t.count - x.partitions.len() as i32) as i64));
        let (code, message) = match topic {
            _ if !ctx.allowed(Operation::Alter, ResourceType::Topic, &t.name) => {
                (of(Error::TopicAuthorizationFailed), None)
            }
            None => (of(Error::UnknownTopicOrPartition), Some(format!("topic {} does not exist", t.name.as_str()))),
            Some(_) if is_internal(&t.name) => (of(Error::InvalidRequest), Some("internal topic".to_string())),
            Some(topic) if t.count <= topic.partitions.len() as i32 => (
                of(Error::InvalidPartitions),
                Some(format!("topic has {} partitions; the new count must be larger", topic.partitions.len())),
            ),
            Some(_) if t.count > 100_000 => (of(Error::InvalidPartitions), Some("at most 100000 partitions".into())),
            Some(_) if over_scope.is_some() => (of(Error::PolicyViolation), over_scope.clone()),
            Some(_)
                if t.assignments
                    .as_ref()
                    .is_some_and(|a| a.iter().any(|x| x.broker_ids.iter().any(|b| b.0 != ctx.broker.node.id))) =>
            {
                (of(Error::InvalidReplicaAssignment), Some("replicas must be on this broker".into()))
            }
            Some(_) if request.validate_only => (0, None),
            Some(_) => match ctx.broker.add_partitions(&t.name, t.count).await {
                Ok(topic) => {
                    tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "added partitions");
                    (0, None)
                }
                Err(e) => (errors::change_code(&e), Some(e.to_string())),
            },
        };
        results.push(result.with_error_code(code).with_error_message(message.map(s)));
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(crate) async fn delete_records(ctx: &RequestCtx, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let storage = &ctx.broker.storage;
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = storage.topic(&t.name);
        let deletable = ctx.allowed(Operation::Delete, ResourceType::Topic, &t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            if !deletable {
                partitions.push(result.with_error_code(of(Error::TopicAuthorizationFailed)));
                continue;
            }
            let (Some(topic), Some(log)) =
                (topic.as_ref(), topic.as_ref().and_then(|x| x.partition(p.partition_index)))
            else {
                partitions.push(result.with_error_code(of(Error::UnknownTopicOrPartition)));
                continue;
            };
            if is_internal(&topic.name) {
                partitions.push(result.with_error_code(of(Error::InvalidTopicException)));
                continue;
            }
            partitions.push(match storage.delete_records(topic, log, p.offset).await {
                Ok(low) => result.with_low_watermark(low),
                Err(e) => result.with_error_code(errors::code(&e)),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub(crate) fn describe_cluster(ctx: &RequestCtx, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let view = ctx.broker.topology();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(s(view.cluster_id.to_string()))
        .with_controller_id(BrokerId(view.controller.unwrap_or(-1)))
        .with_cluster_authorized_operations(super::operations::if_asked(
            ctx,
            request.include_cluster_authorized_operations,
            ResourceType::Cluster,
            super::CLUSTER_NAME,
        ));
    // Endpoint type 1 is brokers; 2 (controllers) is the same brokers: every broker
    // can be the controller, which etcd elects.
    response.with_brokers(
        view.brokers
            .iter()
            .map(|b| {
                let (host, port) = ctx.endpoint(b);
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(b.rack.clone().map(s))
            })
            .collect(),
    )
}

pub(crate) fn elect_leaders(ctx: &RequestCtx, request: ElectLeadersRequest) -> ElectLeadersResponse {
    if !ctx.allowed_on_cluster(Operation::Alter) {
        return ElectLeadersResponse::default().with_error_code(of(Error::ClusterAuthorizationFailed));
    }
    let storage = &ctx.broker.storage;
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(tps) => tps.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect(),
        None => storage
            .topics()
            .iter()
            .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| p.index).collect()))
            .collect(),
    };
    let results = wanted
        .into_iter()
        .map(|(name, parts)| {
            let topic = storage.topic(&name);
            ReplicaElectionResult::default().with_topic(TopicName(s(name))).with_partition_result(
                parts
                    .into_iter()
                    .map(|p| {
                        let known = topic.as_ref().is_some_and(|t| t.partition(p).is_some());
                        let (code, message) = if known {
                            (of(Error::ElectionNotNeeded), "this broker leads every partition")
                        } else {
                            (of(Error::UnknownTopicOrPartition), "unknown topic or partition")
                        };
                        PartitionResult::default()
                            .with_partition_id(p)
                            .with_error_code(code)
                            .with_error_message(Some(s(message)))
                    })
                    .collect(),
            )
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

pub(crate) fn offset_for_leader_epoch(
    ctx: &RequestCtx,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    use offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    let storage = &ctx.broker.storage;
    let view = ctx.broker.topology();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = storage.topic(&t.topic);
            let describable = ctx.allowed(Operation::Describe, ResourceType::Topic, &t.topic);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base =
                        EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    if !describable {
                        return base.with_error_code(of(Error::TopicAuthorizationFailed));
                    }
                    let Some(log) = topic.as_ref().and_then(|x| x.partition(p.partition)) else {
                        return base.with_error_code(of(Error::UnknownTopicOrPartition));
                    };
                    let current = match super::route::lead(&view, &log.topic, p.partition, p.current_leader_epoch) {
                        Ok(epoch) => epoch,
                        Err(code) => return base.with_error_code(code),
                    };
                    if p.leader_epoch > current {
                        return base;
                    }
                    match log.end_offset_for_epoch(p.leader_epoch, log.offsets().high_watermark) {
                        Some((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        None => base,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

pub(crate) fn describe_log_dirs(ctx: &RequestCtx, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    use describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
    if !ctx.allowed_on_cluster(Operation::Describe) {
        return DescribeLogDirsResponse::default().with_error_code(of(Error::ClusterAuthorizationFailed));
    }
    let storage = &ctx.broker.storage;
    let wanted: Vec<(std::sync::Arc<crate::storage::Topic>, Vec<i32>)> = match request.topics {
        None => storage
            .topics()
            .into_iter()
            .map(|t| {
                let parts = t.partitions.iter().map(|p| p.index).collect();
                (t, parts)
            })
            .collect(),
        Some(ts) => ts.into_iter().filter_map(|t| storage.topic(&t.topic).map(|topic| (topic, t.partitions))).collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, parts)| {
            DescribeLogDirsTopic::default().with_name(TopicName(s(topic.name.to_string()))).with_partitions(
                parts
                    .into_iter()
                    .filter_map(|i| topic.partition(i))
                    .map(|p| {
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p.index)
                            .with_partition_size(p.size_bytes() as i64)
                    })
                    .collect(),
            )
        })
        .collect();
    let dir = ctx.broker.config.data_dir.display().to_string();
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(s(dir))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}
