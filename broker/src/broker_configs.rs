//! Dynamic broker configs, as Kafka sets them (IncrementalAlterConfigs and
//! AlterConfigs on the BROKER resource: `kafka-configs --entity-type brokers
//! --entity-default` for every broker, `--entity-name <id>` for one): the topic
//! defaults a topic without its own override follows, changed without a restart.
//! Durable in the metadata log (single node) or etcd (`brokerconfigs/<name>`,
//! cluster mode, followed by every broker). The precedence is Kafka's: the broker's
//! own dynamic config, then the cluster-wide default, then `tributary.toml`.
//!
//! Only the settings that take effect live are dynamic; the rest of what
//! DescribeConfigs shows for a broker is read-only (set in `tributary.toml`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tributary_config::TopicDefaults;

use crate::storage::Storage;

/// The kind of config resource, as the metadata log names it.
pub const KIND: &str = "broker";

/// A dynamic broker config: its Kafka name, the topic config it is the default of
/// (whose rules its values follow), and where it goes in the topic defaults.
pub(crate) struct Dynamic {
    pub(crate) name: &'static str,
    pub(crate) topic_name: &'static str,
    set: fn(&mut TopicDefaults, i64),
}

pub(crate) const DYNAMIC: &[Dynamic] = &[
    Dynamic { name: "log.retention.ms", topic_name: "retention.ms", set: |d, v| d.retention_ms = v },
    Dynamic { name: "log.retention.bytes", topic_name: "retention.bytes", set: |d, v| d.retention_bytes = v },
    Dynamic { name: "log.segment.bytes", topic_name: "segment.bytes", set: |d, v| d.segment_bytes = v },
    Dynamic { name: "log.roll.ms", topic_name: "segment.ms", set: |d, v| d.segment_ms = v },
    Dynamic { name: "message.max.bytes", topic_name: "max.message.bytes", set: |d, v| d.message_max_bytes = v as i32 },
];

pub(crate) fn find(name: &str) -> Option<&'static Dynamic> {
    DYNAMIC.iter().find(|d| d.name == name)
}

/// Why a change is refused: INVALID_REQUEST for a setting that cannot change at
/// runtime (Kafka's answer), INVALID_CONFIG for an unknown name or a bad value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    NotDynamic(String),
    Invalid(String),
}

/// Checks one resource's dynamic configs; `read_only` are the names DescribeConfigs
/// shows for a broker (set in `tributary.toml` only).
pub(crate) fn validate(configs: &BTreeMap<String, String>, read_only: &[String]) -> Result<(), Refusal> {
    for (key, value) in configs {
        match find(key) {
            Some(d) => crate::storage::topic_config::validate(d.topic_name, value)
                .map_err(|e| Refusal::Invalid(format!("Invalid value {value} for configuration {key}: {e}")))?,
            None if read_only.iter().any(|r| r == key) => {
                return Err(Refusal::NotDynamic(format!(
                    "Cannot update these configs dynamically: {key} (set it in tributary.toml and restart)"
                )))
            }
            None => return Err(Refusal::Invalid(format!("Unknown broker config name: {key}"))),
        }
    }
    Ok(())
}

/// The name a resource is stored under: `""` (every broker) or a broker id.
pub(crate) fn resource_name(name: &str) -> Option<String> {
    match name.trim() {
        "" => Some(String::new()),
        id => id.parse::<u32>().ok().map(|id| id.to_string()),
    }
}

/// Every broker resource's dynamic configs (`""`: the cluster-wide default), and the
/// topic defaults of this broker they make, kept applied to its storage.
#[derive(Debug)]
pub struct BrokerConfigs {
    map: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    node_id: i32,
    statics: TopicDefaults,
    storage: Arc<Storage>,
}

impl BrokerConfigs {
    pub fn new(
        all: Vec<(String, BTreeMap<String, String>)>,
        node_id: i32,
        statics: TopicDefaults,
        storage: Arc<Storage>,
    ) -> Self {
        let configs = BrokerConfigs { map: RwLock::new(BTreeMap::new()), node_id, statics, storage };
        configs.replace_all(all);
        configs
    }

    /// A resource's dynamic configs (empty: none).
    pub fn get(&self, name: &str) -> BTreeMap<String, String> {
        self.map.read().get(name).cloned().unwrap_or_default()
    }

    /// Replaces a resource's dynamic configs (empty removes them) and applies them.
    pub fn set(&self, name: &str, configs: BTreeMap<String, String>) {
        {
            let mut map = self.map.write();
            if configs.is_empty() {
                map.remove(name);
            } else {
                map.insert(name.to_string(), configs);
            }
        }
        self.apply();
    }

    pub fn replace_all(&self, all: Vec<(String, BTreeMap<String, String>)>) {
        *self.map.write() = all.into_iter().filter(|(_, c)| !c.is_empty()).collect();
        self.apply();
    }

    /// The broker resources with dynamic configs.
    pub fn names(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }

    /// This broker's value of a dynamic config, with where it comes from: its own
    /// (`Some(true)`), the cluster-wide default (`Some(false)`), or neither.
    pub(crate) fn layers(&self, name: &str) -> (Option<String>, Option<String>) {
        let map = self.map.read();
        let own = map.get(&self.node_id.to_string()).and_then(|c| c.get(name)).cloned();
        let default = map.get("").and_then(|c| c.get(name)).cloned();
        (own, default)
    }

    /// `tributary.toml`'s topic defaults.
    pub(crate) fn statics(&self) -> &TopicDefaults {
        &self.statics
    }

    /// The topic defaults of this broker: the static ones under the cluster-wide
    /// default, under its own.
    pub(crate) fn effective(&self) -> TopicDefaults {
        let mut defaults = self.statics.clone();
        for d in DYNAMIC {
            let (own, default) = self.layers(d.name);
            // Values were checked on the way in; one that no longer parses is skipped.
            if let Some(v) = own.or(default).and_then(|v| v.trim().parse::<i64>().ok()) {
                (d.set)(&mut defaults, v);
            }
        }
        defaults
    }

    fn apply(&self) {
        let effective = self.effective();
        if *self.storage.topic_defaults() != effective {
            tracing::info!(
                retention_ms = effective.retention_ms,
                retention_bytes = effective.retention_bytes,
                segment_bytes = effective.segment_bytes,
                segment_ms = effective.segment_ms,
                message_max_bytes = effective.message_max_bytes,
                "topic defaults changed by dynamic broker configs"
            );
            self.storage.set_topic_defaults(effective);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_follow_the_topic_configs_rules_and_static_settings_stay_static() {
        let read_only = vec!["node.id".to_string()];
        assert!(
            validate(&map(&[("log.retention.ms", "3600000"), ("message.max.bytes", "2000000")]), &read_only).is_ok()
        );
        assert!(matches!(validate(&map(&[("log.retention.ms", "soon")]), &read_only), Err(Refusal::Invalid(_))));
        assert!(matches!(validate(&map(&[("node.id", "3")]), &read_only), Err(Refusal::NotDynamic(_))));
        assert!(matches!(validate(&map(&[("no.such", "3")]), &read_only), Err(Refusal::Invalid(_))));
        assert_eq!(resource_name(""), Some(String::new()));
        assert_eq!(resource_name("2"), Some("2".into()));
        assert_eq!(resource_name("two"), None);
    }

    #[tokio::test]
    async fn a_brokers_own_config_wins_over_the_default_which_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = tributary_config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let storage = Storage::open(&config, Arc::new(crate::metrics::Metrics::new())).unwrap();
        storage.create_topic("t", 1, map(&[("retention.bytes", "5")])).await.unwrap();
        storage.create_topic("u", 1, BTreeMap::new()).await.unwrap();
        let statics = config.topics.clone();
        let c = BrokerConfigs::new(vec![], 0, statics.clone(), storage.clone());
        assert_eq!(*storage.topic_defaults(), statics);
        c.set("", map(&[("log.retention.ms", "1000"), ("log.retention.bytes", "77")]));
        c.set("0", map(&[("log.retention.ms", "2000")]));
        c.set("1", map(&[("log.retention.ms", "3000")]));
        assert_eq!(storage.topic_defaults().retention_ms, 2000);
        assert_eq!(storage.topic_defaults().retention_bytes, 77);
        // Topics follow, except where they override.
        let u = storage.topic("u").unwrap().config();
        assert_eq!((u.retention_ms, u.retention_bytes), (2000, 77));
        let t = storage.topic("t").unwrap().config();
        assert_eq!((t.retention_ms, t.retention_bytes), (2000, 5));
        c.set("0", BTreeMap::new());
        assert_eq!(storage.topic("u").unwrap().config().retention_ms, 1000);
        c.replace_all(vec![]);
        assert_eq!(*storage.topic_defaults(), statics);
        assert_eq!(storage.topic("u").unwrap().config().retention_ms, statics.retention_ms);
        storage.close();
    }
}
