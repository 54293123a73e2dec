//! Client-metrics resources (KIP-714 subscriptions), as Kafka configures them:
//! `kafka-client-metrics --alter --name N --metrics P1,P2 --interval 60000 --match
//! client_id=app.*` (IncrementalAlterConfigs on CLIENT_METRICS resources, described
//! with DescribeConfigs, listed with ListConfigResources). Durable in the metadata
//! log (single node) or etcd (`clientmetrics/<name>`, cluster mode).
//!
//! A client matches a subscription when every one of its `match` patterns (a regular
//! expression over the whole value) matches the client's property; a subscription
//! with no patterns matches every client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use regex::Regex;

/// The kind of config resource, as the metadata log names it.
pub const KIND: &str = "client-metrics";
pub(crate) const METRICS: &str = "metrics";
pub(crate) const INTERVAL_MS: &str = "interval.ms";
pub(crate) const MATCH: &str = "match";
/// Kafka's default push interval (5 min) and its bounds.
pub(crate) const INTERVAL_DEFAULT: i32 = 300_000;
const INTERVAL_MIN: i64 = 100;
const INTERVAL_MAX: i64 = 3_600_000;
/// Every metric, as a subscription's metrics list says it.
pub(crate) const ALL: &str = "*";

/// The client properties a `match` pattern may name.
pub(crate) const MATCH_KEYS: &[&str] = &[
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
];

/// One subscription, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) metrics: Vec<String>,
    pub(crate) interval_ms: i32,
    /// (property, whole-value pattern)
    pub(crate) matches: Vec<(&'static str, Regex)>,
}

impl Subscription {
    pub(crate) fn matches(&self, property: impl Fn(&str) -> String) -> bool {
        self.matches.iter().all(|(key, re)| re.is_match(&property(key)))
    }
}

/// A comma-separated list value, trimmed, without empty items.
fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Checks a subscription's configs and parses them (Kafka's rules: known keys, the
/// interval within 100 ms ..= 1 h, patterns `property=regex` over known properties).
pub(crate) fn parse(configs: &BTreeMap<String, String>) -> Result<Subscription, String> {
    let mut s = Subscription { metrics: Vec::new(), interval_ms: INTERVAL_DEFAULT, matches: Vec::new() };
    for (key, value) in configs {
        match key.as_str() {
            METRICS => s.metrics = list(value),
            INTERVAL_MS => {
                let v: i64 = value.trim().parse().map_err(|_| format!("Invalid value {value} for {INTERVAL_MS}"))?;
                if !(INTERVAL_MIN..=INTERVAL_MAX).contains(&v) {
                    return Err(format!(
                        "Invalid value {v} for {INTERVAL_MS}: it must be between {INTERVAL_MIN} and {INTERVAL_MAX}"
                    ));
                }
                s.interval_ms = v as i32;
            }
            MATCH => {
                for pattern in list(value) {
                    let (property, re) =
                        pattern.split_once('=').ok_or_else(|| format!("Illegal client matching pattern: {pattern}"))?;
                    let property = MATCH_KEYS
                        .iter()
                        .find(|k| **k == property.trim())
                        .ok_or_else(|| format!("Invalid client matching property: {}", property.trim()))?;
                    let re = re.trim();
                    if re.is_empty() {
                        return Err(format!("Illegal client matching pattern: {pattern}"));
                    }
                    let re = Regex::new(&format!("^(?:{re})$"))
                        .map_err(|e| format!("Illegal regular expression in pattern {pattern}: {e}"))?;
                    s.matches.push((property, re));
                }
            }
            other => return Err(format!("Unknown client metrics config name: {other}")),
        }
    }
    Ok(s)
}

/// Every client-metrics resource's configs (already checked), with a version that
/// moves on every change so clients are re-evaluated against the new set.
#[derive(Debug, Default)]
pub struct ClientMetricsConfigs {
    map: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    version: AtomicU64,
}

impl ClientMetricsConfigs {
    pub fn new(all: Vec<(String, BTreeMap<String, String>)>) -> Self {
        let configs = ClientMetricsConfigs::default();
        configs.replace_all(all);
        configs
    }

    /// A resource's configs (empty: none).
    pub fn get(&self, name: &str) -> BTreeMap<String, String> {
        self.map.read().get(name).cloned().unwrap_or_default()
    }

    /// Replaces a resource's configs (empty removes it).
    pub fn set(&self, name: &str, configs: BTreeMap<String, String>) {
        let mut map = self.map.write();
        if configs.is_empty() {
            map.remove(name);
        } else {
            map.insert(name.to_string(), configs);
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn replace_all(&self, all: Vec<(String, BTreeMap<String, String>)>) {
        *self.map.write() = all.into_iter().filter(|(_, c)| !c.is_empty()).collect();
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The resources, by name.
    pub fn names(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every subscription, parsed (one that no longer parses is left out and logged:
    /// it was checked when set).
    pub(crate) fn parsed(&self) -> Vec<Subscription> {
        self.map
            .read()
            .iter()
            .filter_map(|(name, configs)| {
                parse(configs).map_err(|e| tracing::warn!(subscription = %name, error = %e, "ignored")).ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn configs_are_checked_as_kafka_checks_them() {
        let s = parse(&map(&[
            (METRICS, "org.apache.kafka.producer., org.apache.kafka.consumer.fetch"),
            (INTERVAL_MS, "1000"),
            (MATCH, "client_id=app-.*,client_software_name=apache-kafka-java"),
        ]))
        .unwrap();
        assert_eq!(s.metrics, vec!["org.apache.kafka.producer.", "org.apache.kafka.consumer.fetch"]);
        assert_eq!(s.interval_ms, 1000);
        let client = |k: &str| match k {
            "client_id" => "app-1".to_string(),
            "client_software_name" => "apache-kafka-java".to_string(),
            _ => String::new(),
        };
        assert!(s.matches(client));
        // A pattern matches the whole value.
        assert!(!s.matches(|k: &str| if k == "client_id" { "my-app-1".into() } else { client(k) }));
        assert_eq!(parse(&map(&[])).unwrap().interval_ms, INTERVAL_DEFAULT);
        assert!(parse(&map(&[(MATCH, "")])).unwrap().matches(|_: &str| String::new()));
        for bad in [
            (INTERVAL_MS, "99"),
            (INTERVAL_MS, "3600001"),
            (INTERVAL_MS, "soon"),
            (MATCH, "client_id"),
            (MATCH, "client_id="),
            (MATCH, "hostname=x"),
            (MATCH, "client_id=(unclosed"),
            ("metric", "x"),
        ] {
            assert!(parse(&map(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_change_moves_the_version() {
        let c = ClientMetricsConfigs::new(vec![("a".into(), map(&[(METRICS, "*")]))]);
        let v = c.version();
        c.set("b", map(&[(METRICS, "x.")]));
        assert!(c.version() > v);
        assert_eq!(c.names(), vec!["a", "b"]);
        c.set("a", BTreeMap::new());
        assert_eq!(c.names(), vec!["b"]);
        assert_eq!(c.parsed().len(), 1);
    }
}
