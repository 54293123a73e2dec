//! DescribeConfigs for topics (every known key with its effective value, source and
//! synonyms: the topic override, the broker setting under its Kafka name, the default)
//! for this broker (its settings under their Kafka names, read-only) and for groups
//! (KIP-848 group configs: the group's override or the broker's setting) and
//! client-metrics resources (KIP-714 subscriptions).

use tributary_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use tributary_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::errors::{of, Error};
use crate::security::acl::{Operation, ResourceType};
use tributary_config::TopicDefaults;

use crate::storage::topic_config::{ConfigType, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_CLIENT_METRICS: i8 = 16;
const RESOURCE_GROUP: i8 = 32;
pub(crate) const SOURCE_TOPIC_OVERRIDE: i8 = 1;
const SOURCE_CLIENT_METRICS: i8 = 7;
const SOURCE_GROUP_OVERRIDE: i8 = 8;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// (name, value, source)
type Synonym = (String, String, i8);

struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    documentation: Option<&'static str>,
    /// In precedence order, the entry's own first.
    synonyms: Vec<Synonym>,
}

/// The broker config a topic config falls back to, under Kafka's name, where its
/// built-in default is a value (Kafka's `log.retention.ms`, `log.roll.ms`,
/// `log.flush.interval.ms` and `log.roll.jitter.ms` default to nothing, and a topic
/// describes no synonym for them; nor for configs with no broker setting).
fn broker_synonym(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "cleanup.policy" => "log.cleanup.policy",
        "compression.type" => "compression.type",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.zstd.level" => "compression.zstd.level",
        "max.decompressed.message.bytes" => "max.decompressed.message.bytes",
        "remote.copy.lag.bytes" => "log.remote.copy.lag.bytes",
        "remote.copy.lag.ms" => "log.remote.copy.lag.ms",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "min.insync.replicas" => "min.insync.replicas",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        "local.retention.ms" => "log.local.retention.ms",
        "local.retention.bytes" => "log.local.retention.bytes",
        _ => return None,
    })
}

/// Whose synonyms [`broker_layers`] lists: a broker's own entry names the built-in
/// default of `log.retention.ms` and `log.roll.ms` in hours (Kafka's
/// `log.retention.hours=168`), a topic's names no default for them (Kafka's
/// `log.retention.ms` and `log.roll.ms` have none).
#[derive(Clone, Copy, PartialEq)]
enum For {
    Broker,
    Topic,
}

/// The broker settings (under their Kafka names) a topic config falls back to, in
/// precedence order: this broker's dynamic config, the cluster-wide dynamic
/// default, `tributary.toml` where it differs from the built-in default; then the
/// built-in default. `None` for a topic config with no dynamic broker setting.
fn broker_layers(key: &str, ctx: &RequestCtx, of: For) -> Option<(&'static str, Vec<Synonym>)> {
    let d = crate::broker_configs::DYNAMIC.iter().find(|d| d.topic_name == key)?;
    let configs = &ctx.broker.broker_configs;
    let (own, default) = configs.layers(d.name);
    let mut layers = Vec::new();
    if let Some(v) = own {
        layers.push((d.name.to_string(), v, SOURCE_DYNAMIC_BROKER));
    }
    if let Some(v) = default {
        layers.push((d.name.to_string(), v, SOURCE_DYNAMIC_DEFAULT_BROKER));
    }
    let def = TOPIC_CONFIGS.iter().find(|t| t.name == key)?;
    let (file, builtin) = ((def.default)(configs.statics()), (def.default)(&TopicDefaults::default()));
    if file != builtin {
        layers.push((d.name.to_string(), file, SOURCE_STATIC_BROKER));
    }
    // Kafka names the built-in default of the time-based ones in hours (a broker's
    // entry); a topic's names none (their ms setting has no default in Kafka).
    let in_hours = match (d.name, builtin.parse::<i64>()) {
        ("log.retention.ms", Ok(ms)) if ms > 0 && ms % 3_600_000 == 0 => Some(("log.retention.hours", ms / 3_600_000)),
        ("log.roll.ms", Ok(ms)) if ms > 0 && ms % 3_600_000 == 0 => Some(("log.roll.hours", ms / 3_600_000)),
        _ => None,
    };
    match (in_hours, of) {
        (Some((name, hours)), For::Broker) => layers.push((name.to_string(), hours.to_string(), SOURCE_DEFAULT)),
        (Some(_), For::Topic) => {}
        (None, _) => layers.push((d.name.to_string(), builtin, SOURCE_DEFAULT)),
    }
    Some((d.name, layers))
}

pub(crate) fn describe(ctx: &RequestCtx, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let entries = match resource.resource_type {
            RESOURCE_TOPIC if !ctx.allowed(Operation::DescribeConfigs, ResourceType::Topic, &name) => {
                Err((of(Error::TopicAuthorizationFailed), "Topic authorization failed.".into()))
            }
            RESOURCE_GROUP if !ctx.allowed(Operation::DescribeConfigs, ResourceType::Group, &name) => {
                Err((of(Error::GroupAuthorizationFailed), "Group authorization failed.".into()))
            }
            RESOURCE_BROKER | RESOURCE_CLIENT_METRICS if !ctx.allowed_on_cluster(Operation::DescribeConfigs) => {
                Err((of(Error::ClusterAuthorizationFailed), "Cluster authorization failed.".into()))
            }
            RESOURCE_TOPIC => topic_entries(ctx, &name),
            RESOURCE_BROKER if name.is_empty() => Ok(broker_default_entries(ctx)),
            RESOURCE_BROKER if name == ctx.broker.node.id.to_string() => Ok(broker_entries(ctx)),
            RESOURCE_BROKER => Err((of(Error::InvalidRequest), format!("unknown broker {name}"))),
            RESOURCE_GROUP if name.is_empty() => {
                Err((of(Error::InvalidRequest), "the group name must not be empty".to_string()))
            }
            RESOURCE_GROUP => Ok(group_entries(ctx, &name)),
            RESOURCE_CLIENT_METRICS if name.is_empty() => {
                Err((of(Error::InvalidRequest), "the client-metrics resource name must not be empty".to_string()))
            }
            RESOURCE_CLIENT_METRICS => Ok(client_metrics_entries(ctx, &name)),
            other => Err((of(Error::InvalidRequest), format!("resource type {other} is not supported"))),
        };
        match entries {
            Ok(entries) => {
                let keys = resource.configuration_keys.as_ref();
                result.configs = entries
                    .into_iter()
                    .filter(|e| keys.is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| render(e, request.include_synonyms, ctx.version))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(ctx: &RequestCtx, name: &str) -> Result<Vec<Entry>, (i16, String)> {
    let storage = &ctx.broker.storage;
    let topic = storage
        .topic(name)
        .ok_or_else(|| (of(Error::UnknownTopicOrPartition), format!("topic {name} does not exist")))?;
    let config = topic.config();
    let defaults = storage.topic_defaults();
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, is_override) = config.value(def, &defaults);
            // Kafka's synonyms: the topic override, the broker settings, the default.
            let mut synonyms = Vec::new();
            if is_override {
                synonyms.push((def.name.to_string(), value.clone(), SOURCE_TOPIC_OVERRIDE));
            }
            match (broker_layers(def.name, ctx, For::Topic), broker_synonym(def.name)) {
                (Some((_, layers)), _) => synonyms.extend(layers),
                (None, Some(broker)) => {
                    synonyms.push((broker.to_string(), (def.default)(&TopicDefaults::default()), SOURCE_DEFAULT))
                }
                (None, None) => {}
            }
            Entry {
                name: def.name.to_string(),
                value,
                source: synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2),
                read_only: false,
                config_type: def.type_name,
                documentation: def.effect.note(),
                synonyms,
            }
        })
        .collect())
}

/// A group's configs: its override or the broker's setting, under Kafka's names
/// (the group need not exist, as on Kafka).
fn group_entries(ctx: &RequestCtx, group: &str) -> Vec<Entry> {
    use crate::coordinator::group::configs::DEFS;
    let groups = &ctx.broker.groups;
    let overrides = groups.configs.get(group);
    DEFS.iter()
        .map(|def| {
            let default = (def.default)(&groups.settings).to_string();
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), v.clone(), SOURCE_GROUP_OVERRIDE));
            }
            synonyms.push((def.broker_name.to_string(), default, SOURCE_DEFAULT));
            Entry {
                name: def.name.to_string(),
                value: synonyms[0].1.clone(),
                source: synonyms[0].2,
                read_only: false,
                config_type: ConfigType::Int,
                documentation: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// A client-metrics resource's configs (KIP-714): what it sets, the defaults for
/// the rest (no metrics, Kafka's five-minute interval, matching every client).
fn client_metrics_entries(ctx: &RequestCtx, name: &str) -> Vec<Entry> {
    use crate::telemetry::subscriptions::{INTERVAL_DEFAULT, INTERVAL_MS, MATCH, METRICS};
    let set = ctx.broker.telemetry.subscriptions.get(name);
    [
        (METRICS, String::new(), ConfigType::List),
        (INTERVAL_MS, INTERVAL_DEFAULT.to_string(), ConfigType::Int),
        (MATCH, String::new(), ConfigType::List),
    ]
    .into_iter()
    .map(|(key, default, config_type)| {
        let (value, source) = match set.get(key) {
            Some(v) => (v.clone(), SOURCE_CLIENT_METRICS),
            None => (default, SOURCE_DEFAULT),
        };
        Entry {
            name: key.to_string(),
            value: value.clone(),
            source,
            read_only: false,
            config_type,
            documentation: None,
            synonyms: vec![(key.to_string(), value, source)],
        }
    })
    .collect()
}

/// This broker's settings under their Kafka names: the dynamic ones (the topic
/// defaults, see `crate::broker_configs`) with where their value comes from, the
/// rest read-only from `tributary.toml`.
fn broker_entries(ctx: &RequestCtx) -> Vec<Entry> {
    let c = &ctx.broker.config;
    let node = &ctx.broker.node;
    let entry = |name: &str, value: String, config_type: ConfigType| Entry {
        name: name.to_string(),
        value: value.clone(),
        source: SOURCE_STATIC_BROKER,
        read_only: true,
        config_type,
        documentation: None,
        synonyms: vec![(name.to_string(), value, SOURCE_STATIC_BROKER)],
    };
    let mut entries = vec![
        entry("node.id", c.node_id.to_string(), ConfigType::Int),
        entry("broker.id", c.node_id.to_string(), ConfigType::Int),
        entry("listeners", format!("PLAINTEXT://{}", c.listen), ConfigType::List),
        entry("advertised.listeners", format!("PLAINTEXT://{}:{}", node.host, node.port), ConfigType::List),
        entry("log.dirs", c.data_dir.display().to_string(), ConfigType::String),
        entry("auto.create.topics.enable", c.topics.auto_create.to_string(), ConfigType::Boolean),
        entry("num.partitions", c.topics.num_partitions.to_string(), ConfigType::Int),
        entry("default.replication.factor", "1".into(), ConfigType::Int),
        entry("socket.request.max.bytes", c.limits.socket_request_max_bytes.to_string(), ConfigType::Int),
        entry("min.insync.replicas", "1".into(), ConfigType::Int),
    ];
    for d in crate::broker_configs::DYNAMIC {
        let Some((name, synonyms)) = broker_layers(d.topic_name, ctx, For::Broker) else { continue };
        let config_type =
            TOPIC_CONFIGS.iter().find(|t| t.name == d.topic_name).map_or(ConfigType::Long, |t| t.type_name);
        // The value is this broker's, in the entry's own unit even where the
        // built-in default's synonym is named in hours (log.retention.hours=168).
        let value = match (&synonyms[0], TOPIC_CONFIGS.iter().find(|t| t.name == d.topic_name)) {
            ((synonym, _, _), Some(def)) if synonym != name => (def.default)(&ctx.broker.broker_configs.effective()),
            ((_, value, _), _) => value.clone(),
        };
        entries.push(Entry {
            name: name.to_string(),
            value,
            source: match synonyms[0].2 {
                // The built-in default is this broker's setting when nothing else is.
                SOURCE_DEFAULT => SOURCE_STATIC_BROKER,
                s => s,
            },
            read_only: false,
            config_type,
            documentation: None,
            synonyms,
        });
    }
    entries
}

/// The cluster-wide default broker resource (`--entity-default`): the dynamic
/// configs set for every broker, as Kafka describes it.
fn broker_default_entries(ctx: &RequestCtx) -> Vec<Entry> {
    ctx.broker
        .broker_configs
        .get("")
        .into_iter()
        .map(|(name, value)| {
            let topic_name = crate::broker_configs::find(&name).map(|d| d.topic_name);
            let config_type =
                TOPIC_CONFIGS.iter().find(|t| Some(t.name) == topic_name).map_or(ConfigType::Long, |t| t.type_name);
            Entry {
                name: name.clone(),
                value: value.clone(),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
                read_only: false,
                config_type,
                documentation: None,
                synonyms: vec![(name, value, SOURCE_DYNAMIC_DEFAULT_BROKER)],
            }
        })
        .collect()
}

/// The names DescribeConfigs shows for a broker that cannot change at runtime.
pub(crate) fn read_only_broker_names(ctx: &RequestCtx) -> Vec<String> {
    broker_entries(ctx).into_iter().filter(|e| e.read_only).map(|e| e.name).collect()
}

fn render(e: Entry, include_synonyms: bool, version: i16) -> DescribeConfigsResourceResult {
    let value = Some(StrBytes::from_string(e.value));
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name.clone()))
        .with_value(value.clone())
        .with_read_only(e.read_only)
        .with_config_source(e.source);
    if include_synonyms {
        r.synonyms = e
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_source(source)
            })
            .collect();
    }
    if version >= 3 {
        r.config_type = e.config_type as i8;
        r.documentation = e.documentation.map(StrBytes::from_static_str);
    }
    r
}

/// ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the resources
/// that have configs, of the types asked for (every type when none): topics,
/// brokers, groups (those with overrides) and client-metrics resources (KIP-714
/// subscriptions). Broker loggers have none here, so they list nothing. Needs
/// DESCRIBE_CONFIGS on the cluster, as on Kafka.
pub(crate) fn list_resources(
    ctx: &RequestCtx,
    request: tributary_protocol::kafka_protocol::messages::ListConfigResourcesRequest,
) -> tributary_protocol::kafka_protocol::messages::ListConfigResourcesResponse {
    use tributary_protocol::kafka_protocol::messages::list_config_resources_response::ConfigResource;
    use tributary_protocol::kafka_protocol::messages::ListConfigResourcesResponse;
    const BROKER_LOGGER: i8 = 8;
    const CLIENT_METRICS: i8 = 16;
    let response = ListConfigResourcesResponse::default();
    if !ctx.allowed_on_cluster(Operation::DescribeConfigs) {
        return response.with_error_code(of(Error::ClusterAuthorizationFailed));
    }
    // v0 lists client-metrics resources only.
    let types: Vec<i8> = match (ctx.version, request.resource_types.is_empty()) {
        (0, _) => vec![CLIENT_METRICS],
        (_, true) => vec![RESOURCE_TOPIC, RESOURCE_BROKER, BROKER_LOGGER, CLIENT_METRICS, RESOURCE_GROUP],
        (_, false) => request.resource_types.clone(),
    };
    let known = [RESOURCE_TOPIC, RESOURCE_BROKER, BROKER_LOGGER, CLIENT_METRICS, RESOURCE_GROUP];
    if types.iter().any(|t| !known.contains(t)) {
        return response.with_error_code(of(Error::InvalidRequest));
    }
    let mut out = Vec::new();
    let entry = |t: i8, name: String| ConfigResource::default().with_resource_type(t).with_resource_name(name.into());
    for t in types {
        match t {
            RESOURCE_TOPIC => out.extend(ctx.broker.storage.topics().iter().map(|x| entry(t, x.name.to_string()))),
            RESOURCE_BROKER => out.extend(ctx.broker.topology().brokers.iter().map(|b| entry(t, b.id.to_string()))),
            RESOURCE_GROUP => {
                let mut groups: Vec<String> = ctx.broker.groups.configs.names();
                groups.sort();
                out.extend(groups.into_iter().map(|g| entry(t, g)));
            }
            CLIENT_METRICS => {
                out.extend(ctx.broker.telemetry.subscriptions.names().into_iter().map(|n| entry(t, n)));
            }
            _ => {}
        }
    }
    response.with_config_resources(out)
}
