//! CreateTopics and DeleteTopics. Creation validates the name, the partition count,
//! the replication factor (one broker: -1 or 1) and every config override, all
//! before anything is written; `validate_only` stops there.

use std::collections::{BTreeMap, HashSet};

use tributary_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use tributary_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use tributary_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use tributary_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::configs::SOURCE_TOPIC_OVERRIDE;
use super::RequestCtx;
use crate::errors::{self, of, Error};
use crate::security::acl::{Operation, ResourceType};
use crate::storage::topic_config::{self, TopicConfig, TOPIC_CONFIGS};

/// Most partitions one topic may have.
const MAX_PARTITIONS: i32 = 1_000_000;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is illegal"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters long; the limit is 249", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name {name:?} contains {c:?}; allowed are ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

pub(crate) async fn create(ctx: &RequestCtx, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let storage = &ctx.broker.storage;
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> =
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        result.num_partitions = -1;
        result.replication_factor = -1;
        let checked = if duplicated.contains(&name) {
            Err((of(Error::InvalidRequest), format!("topic {name} appears more than once in the request")))
        } else if !ctx.allowed_on_cluster(Operation::Create)
            && !ctx.allowed(Operation::Create, ResourceType::Topic, &name)
        {
            Err((of(Error::TopicAuthorizationFailed), "Authorization failed.".to_string()))
        } else {
            check(ctx, &topic)
        };
        let (partitions, configs) = match checked {
            Ok(v) => v,
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                results.push(result);
                continue;
            }
        };
        if let Some(message) = ctx.over_scope_partitions(partitions as i64) {
            result.error_code = of(Error::PolicyViolation);
            result.error_message = Some(StrBytes::from_string(message));
            results.push(result);
            continue;
        }
        if storage.topic(&name).is_some() {
            result.error_code = of(Error::TopicAlreadyExists);
            result.error_message = Some(StrBytes::from_string(format!("topic {name} already exists")));
            results.push(result);
            continue;
        }
        let resolved = TopicConfig::resolve(configs.clone(), &storage.topic_defaults());
        if !request.validate_only {
            match ctx.broker.create_topic(&name, partitions, configs).await {
                Ok(t) => {
                    result.topic_id = t.id;
                    tracing::info!(topic = %name, partitions, "created topic");
                }
                Err(e) => {
                    result.error_code = errors::change_code(&e);
                    result.error_message = Some(StrBytes::from_string(e.to_string()));
                    results.push(result);
                    continue;
                }
            }
        }
        result.num_partitions = partitions;
        result.replication_factor = 1;
        if ctx.version >= 5 && !ctx.allowed(Operation::DescribeConfigs, ResourceType::Topic, &name) {
            result.topic_config_error_code = of(Error::TopicAuthorizationFailed);
        } else if ctx.version >= 5 {
            result.configs = Some(
                TOPIC_CONFIGS
                    .iter()
                    .map(|def| {
                        let (value, is_override) = resolved.value(def, &storage.topic_defaults());
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(def.name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(if is_override { SOURCE_TOPIC_OVERRIDE } else { SOURCE_DEFAULT })
                    })
                    .collect(),
            );
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

type Checked = Result<(i32, BTreeMap<String, String>), (i16, String)>;

/// Validates one topic of a CreateTopics request: its partition count and configs.
fn check(ctx: &RequestCtx, topic: &CreatableTopic) -> Checked {
    let name = topic.name.0.as_str();
    ctx.validate_topic_name(name).map_err(|m| (of(Error::InvalidTopicException), m))?;
    let node = ctx.broker.node.id;
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                of(Error::InvalidRequest),
                "num_partitions and replication_factor must be -1 when assignments are given".into(),
            ));
        }
        let mut indexes: Vec<i32> = topic.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err((of(Error::InvalidReplicaAssignment), "partition indexes must be 0..n without gaps".into()));
        }
        if topic.assignments.iter().any(|a| a.broker_ids.iter().map(|b| b.0).ne([node])) {
            return Err((
                of(Error::InvalidReplicaAssignment),
                format!("every partition must be assigned to broker {node} alone"),
            ));
        }
        topic.assignments.len() as i32
    } else {
        match topic.replication_factor {
            -1 | 1 => {}
            rf if rf > 1 => {
                return Err((
                    of(Error::InvalidReplicationFactor),
                    format!("replication factor {rf} is larger than the number of brokers (1)"),
                ))
            }
            rf => return Err((of(Error::InvalidReplicationFactor), format!("replication factor {rf} is not valid"))),
        }
        if topic.num_partitions == -1 {
            ctx.broker.config.topics.num_partitions
        } else {
            topic.num_partitions
        }
    };
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err((
            of(Error::InvalidPartitions),
            format!("number of partitions {partitions} must be in [1, {MAX_PARTITIONS}]"),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        let key = c.name.as_str();
        let Some(value) = c.value.as_ref() else {
            return Err((of(Error::InvalidConfig), format!("null value for config {key}")));
        };
        topic_config::validate(key, value.as_str()).map_err(|m| (of(Error::InvalidConfig), m))?;
        configs.insert(key.to_string(), value.to_string());
    }
    Ok((partitions, configs))
}

pub(crate) async fn delete(ctx: &RequestCtx, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let storage = &ctx.broker.storage;
    // v0-5 name topics in topic_names; v6 in topics, by name or by id.
    let wanted: Vec<(Option<TopicName>, Uuid)> = if ctx.version >= 6 {
        request.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n), Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let mut result = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
        let topic = match &name {
            Some(n) => storage.topic(n.0.as_str()),
            None => storage.topic_by_id(&id),
        };
        // Without DESCRIBE a client learns nothing, not even whether the topic exists.
        let describable = |n: &str| ctx.allowed(Operation::Describe, ResourceType::Topic, n);
        if name.as_ref().is_some_and(|n| !describable(n)) || topic.as_ref().is_some_and(|t| !describable(&t.name)) {
            result.error_code = of(Error::TopicAuthorizationFailed);
            responses.push(result);
            continue;
        }
        let Some(topic) = topic else {
            result.error_code =
                if name.is_some() { of(Error::UnknownTopicOrPartition) } else { of(Error::UnknownTopicId) };
            responses.push(result);
            continue;
        };
        if !ctx.allowed(Operation::Delete, ResourceType::Topic, &topic.name) {
            result.error_code = of(Error::TopicAuthorizationFailed);
            responses.push(result);
            continue;
        }
        result.name = Some(TopicName(StrBytes::from_string(topic.name.to_string())));
        result.topic_id = topic.id;
        if is_internal(&topic.name) {
            result.error_code = of(Error::InvalidTopicException);
            result.error_message =
                Some(StrBytes::from_string(format!("internal topic {} cannot be deleted", topic.name)));
            responses.push(result);
            continue;
        }
        match ctx.broker.delete_topic(&topic).await {
            Ok(()) => {
                tracing::info!(topic = %topic.name, "deleted topic");
                ctx.broker.groups.topic_deleted(&topic.name).await;
            }
            Err(e) => {
                result.error_code = errors::change_code(&e);
                result.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Topics the broker keeps for itself (committed offsets).
pub(crate) fn is_internal(name: &str) -> bool {
    crate::coordinator::is_internal_topic(name)
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(249)).is_ok());
        assert!(validate_name(&"x".repeat(250)).is_err());
    }
}
