//! Topic configuration: the Kafka topic config keys Tributary knows, their types,
//! ranges and defaults (from the broker's `[topics]` section), validation of
//! overrides, and the resolved values the engine and handlers act on.

use std::collections::BTreeMap;

use tributary_config::TopicDefaults;
use tributary_protocol::batch::Compression;

/// The value type of a config key, with its allowed values.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Long {
        min: i64,
        max: i64,
    },
    Bool,
    Double {
        min: f64,
        max: f64,
    },
    OneOf(&'static [&'static str]),
    /// A comma-separated list of the given values.
    ListOf(&'static [&'static str]),
    Text,
}

/// One known topic config key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Default value as Kafka renders it.
    pub default: fn(&TopicDefaults) -> String,
    /// What Tributary does with the value.
    pub effect: Effect,
    /// Kafka's config type name, for DescribeConfigs v3+.
    pub type_name: ConfigType,
}

/// What setting a key does in Tributary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Acted on as Kafka acts on it.
    Honoured,
    /// Tributary's own key, acted on as its documentation says.
    Own(&'static str),
    /// Accepted and stored, with nothing to act on: Tributary's design already gives
    /// what the key asks for, or the key is about machinery it does not have (why).
    Moot(&'static str),
}

impl Effect {
    /// The note DescribeConfigs gives as the key's documentation.
    pub fn note(&self) -> Option<&'static str> {
        match self {
            Effect::Honoured => None,
            Effect::Own(why) | Effect::Moot(why) => Some(why),
        }
    }
}

/// Config types as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Kafka's default `max.decompressed.message.bytes` (the largest array a JVM makes).
pub const MAX_DECOMPRESSED: i64 = i32::MAX as i64 - 8;
const I32: i64 = i32::MAX as i64;

macro_rules! def {
    ($name:literal, $kind:expr, $ty:ident, $effect:expr, $default:expr) => {
        ConfigDef { name: $name, kind: $kind, default: $default, effect: $effect, type_name: ConfigType::$ty }
    };
}

const H: Effect = Effect::Honoured;
const FSYNCED: Effect = Effect::Moot("every acknowledged batch is already fsynced by the journal's group commit");
const NO_LOG_FILES: Effect = Effect::Moot(
    "Tributary has no per-partition log or index files: batches go to the shared journal, then to sealed segments",
);
const ONE_REPLICA: Effect =
    Effect::Moot("a partition has one durable copy and no followers: there is no replication to throttle or elect");
const SEALED_TOGETHER: Effect =
    Effect::Moot("one flusher seals due partitions together into shared objects: there is no roll storm to spread");
const ALWAYS_TIERED: Effect =
    Effect::Moot("sealed segments always go to the segment store; the journal holds only what is not sealed yet");
const CODEC_LEVEL: Effect = Effect::Moot(
    "a batch recompressed into the topic's compression.type gets a fixed level: gzip's and zstd's are Kafka's \
     defaults (6 and 3), lz4's is 4 (Kafka's default is 9)",
);
const NO_SHARE_GROUPS: Effect =
    Effect::Moot("Tributary has no share groups (KIP-932), so no dead-letter queue for them");

/// Every topic config key Tributary accepts.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def!("cleanup.policy", Kind::ListOf(&["delete", "compact"]), List, H, |_| "delete".into()),
    def!(
        "compression.type",
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        String,
        H,
        |_| "producer".into()
    ),
    def!("compression.gzip.level", Kind::Long { min: -1, max: 9 }, Int, CODEC_LEVEL, |_| "-1".into()),
    def!("compression.lz4.level", Kind::Long { min: 1, max: 17 }, Int, CODEC_LEVEL, |_| "9".into()),
    def!("compression.zstd.level", Kind::Long { min: -131072, max: 22 }, Int, CODEC_LEVEL, |_| "3".into()),
    def!("delete.retention.ms", Kind::Long { min: 0, max: i64::MAX }, Long, H, |_| DAY_MS.to_string()),
    def!("errors.deadletterqueue.group.enable", Kind::Bool, Boolean, NO_SHARE_GROUPS, |_| "false".into()),
    def!("file.delete.delay.ms", Kind::Long { min: 0, max: i64::MAX }, Long, NO_LOG_FILES, |_| "60000".into()),
    def!("flush.messages", Kind::Long { min: 1, max: i64::MAX }, Long, FSYNCED, |_| i64::MAX.to_string()),
    def!("flush.ms", Kind::Long { min: 0, max: i64::MAX }, Long, FSYNCED, |_| i64::MAX.to_string()),
    def!("index.interval.bytes", Kind::Long { min: 0, max: I32 }, Int, NO_LOG_FILES, |_| "4096".into()),
    def!("max.compaction.lag.ms", Kind::Long { min: 1, max: i64::MAX }, Long, H, |_| i64::MAX.to_string()),
    def!("max.decompressed.message.bytes", Kind::Long { min: 0, max: I32 }, Int, H, |_| MAX_DECOMPRESSED.to_string()),
    def!("max.message.bytes", Kind::Long { min: 0, max: I32 }, Int, H, |d| d.message_max_bytes.to_string()),
    def!("message.timestamp.after.max.ms", Kind::Long { min: 0, max: i64::MAX }, Long, H, |_| "3600000".into()),
    def!("message.timestamp.before.max.ms", Kind::Long { min: 0, max: i64::MAX }, Long, H, |_| i64::MAX.to_string()),
    def!("message.timestamp.type", Kind::OneOf(&["CreateTime", "LogAppendTime"]), String, H, |_| "CreateTime".into()),
    def!("min.cleanable.dirty.ratio", Kind::Double { min: 0.0, max: 1.0 }, Double, H, |_| "0.5".into()),
    def!("min.compaction.lag.ms", Kind::Long { min: 0, max: i64::MAX }, Long, H, |_| "0".into()),
    def!("min.insync.replicas", Kind::Long { min: 1, max: I32 }, Int, H, |_| "1".into()),
    def!("preallocate", Kind::Bool, Boolean, NO_LOG_FILES, |_| "false".into()),
    def!("retention.bytes", Kind::Long { min: -1, max: i64::MAX }, Long, H, |d| d.retention_bytes.to_string()),
    def!("retention.ms", Kind::Long { min: -1, max: i64::MAX }, Long, H, |d| d.retention_ms.to_string()),
    def!("segment.bytes", Kind::Long { min: 14, max: I32 }, Int, H, |d| d.segment_bytes.to_string()),
    def!("segment.index.bytes", Kind::Long { min: 4, max: I32 }, Int, NO_LOG_FILES, |_| "10485760".into()),
    def!("segment.jitter.ms", Kind::Long { min: 0, max: i64::MAX }, Long, SEALED_TOGETHER, |_| "0".into()),
    def!("segment.ms", Kind::Long { min: 1, max: i64::MAX }, Long, H, |d| d.segment_ms.to_string()),
    def!("unclean.leader.election.enable", Kind::Bool, Boolean, ONE_REPLICA, |_| "false".into()),
    def!("remote.storage.enable", Kind::Bool, Boolean, ALWAYS_TIERED, |_| "true".into()),
    def!("local.retention.ms", Kind::Long { min: -2, max: i64::MAX }, Long, ALWAYS_TIERED, |_| "-2".into()),
    def!("local.retention.bytes", Kind::Long { min: -2, max: i64::MAX }, Long, ALWAYS_TIERED, |_| "-2".into()),
    def!("remote.copy.lag.bytes", Kind::Long { min: -1, max: i64::MAX }, Long, ALWAYS_TIERED, |_| "-1".into()),
    def!("remote.copy.lag.ms", Kind::Long { min: -1, max: i64::MAX }, Long, ALWAYS_TIERED, |_| "0".into()),
    def!("remote.log.copy.disable", Kind::Bool, Boolean, ALWAYS_TIERED, |_| "false".into()),
    def!("remote.log.delete.on.disable", Kind::Bool, Boolean, ALWAYS_TIERED, |_| "false".into()),
    def!("follower.replication.throttled.replicas", Kind::Text, List, ONE_REPLICA, |_| String::new()),
    def!("leader.replication.throttled.replicas", Kind::Text, List, ONE_REPLICA, |_| String::new()),
    def!(
        "tributary.scaling.policy",
        Kind::OneOf(&["fixed", "bytes", "records"]),
        String,
        Effect::Own(
            "Auto-scaling: fixed (never grows), bytes or records (grows when the partitions sustain more than \
             tributary.scaling.target bytes/s or records/s each for tributary.scaling.window.ms). Partitions are \
             never removed; a keyed producer keeps per-key order within each side of a growth, not across it."
        ),
        |d| d.scaling_policy.clone()
    ),
    def!(
        "tributary.scaling.target",
        Kind::Long { min: 1, max: i64::MAX },
        Long,
        Effect::Own("Auto-scaling: the rate per partition to stay under, in bytes/s or records/s after the policy."),
        |d| d.scaling_target.to_string()
    ),
    def!(
        "tributary.scaling.factor",
        Kind::Double { min: 1.000001, max: 16.0 },
        Double,
        Effect::Own("Auto-scaling: one step grows the partition count at most this many times (1 < factor <= 16)."),
        |d| d.scaling_factor.to_string()
    ),
    def!(
        "tributary.scaling.max.partitions",
        Kind::Long { min: 1, max: 100_000 },
        Int,
        Effect::Own("Auto-scaling: the stream never grows past this many partitions."),
        |d| d.scaling_max_partitions.to_string()
    ),
    def!(
        "tributary.scaling.window.ms",
        Kind::Long { min: 100, max: i64::MAX },
        Long,
        Effect::Own("Auto-scaling: how long the rate must stay above the target before the stream grows."),
        |d| d.scaling_window_ms.to_string()
    ),
    def!(
        "tributary.scaling.cooldown.ms",
        Kind::Long { min: 0, max: i64::MAX },
        Long,
        Effect::Own("Auto-scaling: the least time between two growth steps of the stream."),
        |d| d.scaling_cooldown_ms.to_string()
    ),
];

/// Looks up a key.
pub fn find(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one override; the error says what is allowed.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let ok = match def.kind {
        Kind::Long { min, max } => value.trim().parse::<i64>().is_ok_and(|v| (min..=max).contains(&v)),
        Kind::Bool => matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false"),
        Kind::Double { min, max } => value.trim().parse::<f64>().is_ok_and(|v| v >= min && v <= max),
        Kind::OneOf(allowed) => allowed.contains(&value.trim()),
        Kind::ListOf(allowed) => !value.trim().is_empty() && value.split(',').all(|v| allowed.contains(&v.trim())),
        Kind::Text => true,
    };
    if ok {
        return Ok(());
    }
    let allowed = match def.kind {
        Kind::Long { min, max } => format!("an integer in [{min}, {max}]"),
        Kind::Bool => "true or false".into(),
        Kind::Double { min, max } => format!("a number in [{min}, {max}]"),
        Kind::OneOf(v) => format!("one of {}", v.join(", ")),
        Kind::ListOf(v) => format!("a comma-separated list of {}", v.join(", ")),
        Kind::Text => "text".into(),
    };
    Err(format!("invalid value {value:?} for {name}: must be {allowed}"))
}

/// The values the engine and the handlers act on.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Overrides set on the topic, as given.
    pub overrides: BTreeMap<String, String>,
    pub max_message_bytes: i32,
    /// `max.decompressed.message.bytes`: what one batch may decompress to.
    pub max_decompressed_bytes: i64,
    pub log_append_time: bool,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// `cleanup.policy` has `delete`: retention by time and size applies.
    pub delete: bool,
    /// `cleanup.policy` has `compact`: sealed segments keep the latest value per key.
    pub compact: bool,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// A record is compacted away no sooner than this after its timestamp.
    pub min_compaction_lag_ms: i64,
    /// Dirty data older than this is compacted whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// acks=all produces need this many in-sync replicas (Tributary has one).
    pub min_insync_replicas: i64,
    /// CreateTime timestamps must lie within [now - before, now + after].
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// Auto-scaling (`tributary.scaling.*`).
    pub scaling: Scaling,
    /// `compression.type`: the codec batches are stored with (recompressed when a
    /// batch has another), or `None` for `producer` (stored as sent).
    pub compression: Option<Compression>,
}

/// What a stream's scaling policy measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingPolicy {
    Fixed,
    Bytes,
    Records,
}

/// A stream's auto-scaling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub policy: ScalingPolicy,
    pub target: i64,
    pub factor: f64,
    pub max_partitions: i32,
    pub window_ms: i64,
    pub cooldown_ms: i64,
}

impl TopicConfig {
    /// Resolves overrides over the broker defaults. Overrides are validated on the way
    /// in, so a value that does not parse here falls back to the default.
    pub fn resolve(overrides: BTreeMap<String, String>, defaults: &TopicDefaults) -> Self {
        let long = |k: &str, d: i64| overrides.get(k).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(d);
        let policy: Vec<String> = overrides
            .get("cleanup.policy")
            .map_or_else(|| vec!["delete".to_string()], |v| v.split(',').map(|p| p.trim().to_string()).collect());
        TopicConfig {
            max_message_bytes: long("max.message.bytes", defaults.message_max_bytes as i64) as i32,
            max_decompressed_bytes: long("max.decompressed.message.bytes", MAX_DECOMPRESSED),
            log_append_time: overrides.get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime"),
            retention_ms: long("retention.ms", defaults.retention_ms),
            retention_bytes: long("retention.bytes", defaults.retention_bytes),
            segment_bytes: long("segment.bytes", defaults.segment_bytes).max(1) as u64,
            segment_ms: long("segment.ms", defaults.segment_ms),
            delete: policy.iter().any(|p| p == "delete"),
            compact: policy.iter().any(|p| p == "compact"),
            delete_retention_ms: long("delete.retention.ms", 24 * 3600 * 1000),
            min_cleanable_dirty_ratio: overrides
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.5),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
            min_insync_replicas: long("min.insync.replicas", 1),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", 3_600_000),
            scaling: Scaling {
                policy: match overrides.get("tributary.scaling.policy").unwrap_or(&defaults.scaling_policy).as_str() {
                    "bytes" => ScalingPolicy::Bytes,
                    "records" => ScalingPolicy::Records,
                    _ => ScalingPolicy::Fixed,
                },
                target: long("tributary.scaling.target", defaults.scaling_target).max(1),
                factor: overrides
                    .get("tributary.scaling.factor")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(defaults.scaling_factor),
                max_partitions: long("tributary.scaling.max.partitions", defaults.scaling_max_partitions as i64) as i32,
                window_ms: long("tributary.scaling.window.ms", defaults.scaling_window_ms),
                cooldown_ms: long("tributary.scaling.cooldown.ms", defaults.scaling_cooldown_ms),
            },
            compression: match overrides.get("compression.type").map(|v| v.trim()) {
                Some("uncompressed") => Some(Compression::None),
                Some("gzip") => Some(Compression::Gzip),
                Some("snappy") => Some(Compression::Snappy),
                Some("lz4") => Some(Compression::Lz4),
                Some("zstd") => Some(Compression::Zstd),
                _ => None,
            },
            overrides,
        }
    }

    /// The effective value of a key and whether it is a topic override.
    pub fn value(&self, def: &ConfigDef, defaults: &TopicDefaults) -> (String, bool) {
        match self.overrides.get(def.name) {
            Some(v) => (v.clone(), true),
            None => ((def.default)(defaults), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_good_values_and_names_the_rule_for_bad_ones() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        let e = validate("retention.ms", "soon").unwrap_err();
        assert!(e.contains("retention.ms") && e.contains("integer"), "{e}");
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.key", "1").unwrap_err().contains("unknown"));
        // compression.type takes Kafka's values.
        assert!(validate("compression.type", "producer").is_ok());
        assert!(validate("compression.type", "gzip").is_ok());
        let e = validate("compression.type", "brotli").unwrap_err();
        assert!(e.contains("compression.type") && e.contains("zstd"), "{e}");
        // A moot key is accepted.
        assert!(validate("flush.ms", "1000").is_ok());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let d = TopicDefaults::default();
        let mut o = BTreeMap::new();
        o.insert("max.message.bytes".to_string(), "2048".to_string());
        o.insert("message.timestamp.type".to_string(), "LogAppendTime".to_string());
        let c = TopicConfig::resolve(o, &d);
        assert_eq!(c.max_message_bytes, 2048);
        assert!(c.log_append_time);
        assert_eq!(c.retention_ms, d.retention_ms);
    }
}
