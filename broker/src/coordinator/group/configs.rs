//! Group configs (KIP-848): per-group overrides of the consumer protocol's session
//! timeout and heartbeat interval, set as Kafka sets them (IncrementalAlterConfigs
//! and AlterConfigs on the GROUP resource, `kafka-configs --entity-type groups`),
//! described with DescribeConfigs, durable in the metadata log (single node) or in
//! etcd (`groupconfigs/<group>`, cluster mode, followed by every broker). As on
//! Kafka, a group need not exist to be configured. A member heartbeating into a
//! group is told the group's interval and expires after the group's timeout.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

use super::GroupSettings;

/// One group config key.
#[derive(Debug)]
pub(crate) struct Def {
    pub(crate) name: &'static str,
    /// The broker-wide setting it overrides, as Kafka names it (the synonym).
    pub(crate) broker_name: &'static str,
    /// The value when the group sets none.
    pub(crate) default: fn(&GroupSettings) -> i64,
    /// What Tributary does with it, where it is not what Kafka does.
    pub(crate) doc: Option<&'static str>,
}

pub(crate) const SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
pub(crate) const HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";
const ASSIGNMENT_INTERVAL: &str = "consumer.assignment.interval.ms";

pub(crate) const DEFS: &[Def] = &[
    Def {
        name: SESSION_TIMEOUT,
        broker_name: "group.consumer.session.timeout.ms",
        default: |s| s.consumer_session_timeout_ms as i64,
        doc: None,
    },
    Def {
        name: HEARTBEAT_INTERVAL,
        broker_name: "group.consumer.heartbeat.interval.ms",
        default: |s| s.consumer_heartbeat_interval_ms as i64,
        doc: None,
    },
    Def {
        name: ASSIGNMENT_INTERVAL,
        broker_name: "group.consumer.assignment.interval.ms",
        default: |_| 1000,
        doc: Some(
            "Accepted and stored; Tributary computes a group's target assignment in the heartbeat that \
             changed it, so there is no interval to wait.",
        ),
    },
];

pub(crate) fn find(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name == name)
}

/// Checks a group's overrides as a whole (values and their relation: the heartbeat
/// interval below the session timeout), against the broker's bounds.
pub(crate) fn validate(overrides: &BTreeMap<String, String>, settings: &GroupSettings) -> Result<(), String> {
    let mut values = HashMap::new();
    for (key, value) in overrides {
        let def = find(key).ok_or_else(|| format!("Unknown group config name: {key}"))?;
        let v: i64 = value.trim().parse().map_err(|_| format!("Invalid value {value} for configuration {key}"))?;
        values.insert(def.name, v);
    }
    let get = |name: &str| values.get(name).copied().unwrap_or_else(|| (find(name).expect("known").default)(settings));
    let session = get(SESSION_TIMEOUT);
    let (lo, hi) = (settings.min_session_timeout_ms as i64, settings.max_session_timeout_ms as i64);
    if values.contains_key(SESSION_TIMEOUT) && !(lo..=hi).contains(&session) {
        return Err(format!("{SESSION_TIMEOUT} must be between {lo} and {hi} (groups.min/max_session_timeout_ms)"));
    }
    let heartbeat = get(HEARTBEAT_INTERVAL);
    if values.contains_key(HEARTBEAT_INTERVAL) && !(1..session).contains(&heartbeat) {
        return Err(format!("{HEARTBEAT_INTERVAL} must be at least 1 and below {SESSION_TIMEOUT} ({session})"));
    }
    if values.contains_key(SESSION_TIMEOUT) && heartbeat >= session {
        return Err(format!("{SESSION_TIMEOUT} must be above {HEARTBEAT_INTERVAL} ({heartbeat})"));
    }
    if values.get(ASSIGNMENT_INTERVAL).is_some_and(|v| *v < 0 || *v > i32::MAX as i64) {
        return Err(format!("{ASSIGNMENT_INTERVAL} must be between 0 and {}", i32::MAX));
    }
    Ok(())
}

/// Every group's overrides, as the metadata log or etcd hold them.
#[derive(Debug, Default)]
pub struct GroupConfigs {
    map: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

impl GroupConfigs {
    pub fn new(all: Vec<(String, BTreeMap<String, String>)>) -> Self {
        let configs = GroupConfigs::default();
        configs.replace_all(all);
        configs
    }

    /// A group's overrides (empty: none).
    pub fn get(&self, group: &str) -> BTreeMap<String, String> {
        self.map.read().get(group).cloned().unwrap_or_default()
    }

    /// Replaces a group's overrides (empty removes them).
    pub fn set(&self, group: &str, configs: BTreeMap<String, String>) {
        let mut map = self.map.write();
        if configs.is_empty() {
            map.remove(group);
        } else {
            map.insert(group.to_string(), configs);
        }
    }

    /// The groups that have overrides.
    pub fn names(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }

    pub fn replace_all(&self, all: Vec<(String, BTreeMap<String, String>)>) {
        *self.map.write() = all.into_iter().filter(|(_, c)| !c.is_empty()).collect();
    }

    /// `base` with the group's overrides applied, or `None` when it has none.
    pub(crate) fn settings_for(&self, group: &str, base: &GroupSettings) -> Option<GroupSettings> {
        let map = self.map.read();
        let overrides = map.get(group)?;
        let int = |key: &str| overrides.get(key).and_then(|v| v.trim().parse::<i32>().ok());
        let mut s = base.clone();
        if let Some(v) = int(SESSION_TIMEOUT) {
            s.consumer_session_timeout_ms = v;
        }
        if let Some(v) = int(HEARTBEAT_INTERVAL) {
            s.consumer_heartbeat_interval_ms = v;
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GroupSettings {
        GroupSettings::from_config(&tributary_config::GroupConfig::default())
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_are_checked_against_each_other_and_the_broker_bounds() {
        let s = settings();
        assert!(validate(&map(&[(SESSION_TIMEOUT, "50000"), (HEARTBEAT_INTERVAL, "6000")]), &s).is_ok());
        assert!(validate(&map(&[("no.such", "1")]), &s).unwrap_err().contains("no.such"));
        assert!(validate(&map(&[(SESSION_TIMEOUT, "soon")]), &s).is_err());
        assert!(validate(&map(&[(SESSION_TIMEOUT, "1")]), &s).unwrap_err().contains(SESSION_TIMEOUT));
        assert!(validate(&map(&[(SESSION_TIMEOUT, "50000"), (HEARTBEAT_INTERVAL, "50000")]), &s).is_err());
        assert!(validate(&map(&[(ASSIGNMENT_INTERVAL, "-1")]), &s).is_err());
    }

    #[test]
    fn a_groups_settings_carry_its_overrides() {
        let s = settings();
        let configs = GroupConfigs::new(vec![("g".into(), map(&[(HEARTBEAT_INTERVAL, "1234")]))]);
        assert!(configs.settings_for("other", &s).is_none());
        let g = configs.settings_for("g", &s).unwrap();
        assert_eq!(
            (g.consumer_heartbeat_interval_ms, g.consumer_session_timeout_ms),
            (1234, s.consumer_session_timeout_ms)
        );
        configs.set("g", BTreeMap::new());
        assert!(configs.get("g").is_empty());
    }
}
