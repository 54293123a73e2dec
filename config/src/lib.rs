//! Tributary's configuration: one TOML file, overridden by `TRIBUTARY_*` environment
//! variables, overridden in turn by command-line flags.
//!
//! Every key has its default in [`Config::default`] (and the documented example
//! `tributary.toml` at the repository root). A key `a.b_c` is set from the environment
//! as `TRIBUTARY_A_B_C`. [`load`] returns every problem at once, each naming its key
//! and the allowed values, so that a bad deployment is refused at start with a message
//! an operator can act on.

mod layers;
mod security;
mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::{load, Sources};
pub use security::{
    valid_scope, ClientAuth, ListenerConfig, OAuthConfig, ScopesConfig, SecurityConfig, SecurityProtocol, TlsConfig,
    SASL_MECHANISMS,
};

/// The whole configuration tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka listener, HOST:PORT.
    pub listen: String,
    /// HOST:PORT given to clients in Metadata; empty means the listen address.
    pub advertised_listener: String,
    /// HTTP listener for /metrics and /health, HOST:PORT.
    pub http_listen: String,
    /// Directory for the journal, metadata log and local segment store.
    pub data_dir: PathBuf,
    /// This broker's node id; unique per broker in a cluster. In cluster mode -1
    /// means "take the lowest free id from etcd".
    pub node_id: i32,
    /// Log filter (`tracing` directives); `RUST_LOG` wins when set.
    pub log_level: String,
    /// Start even though the metadata log has damaged records with intact ones
    /// after them, leaving the damaged ones out (by default such a start is refused,
    /// so that no metadata is lost without an operator deciding it).
    pub metadata_skip_damaged: bool,
    pub journal: JournalConfig,
    pub topics: TopicDefaults,
    pub limits: Limits,
    pub cache: CacheConfig,
    pub groups: GroupConfig,
    pub transactions: TransactionConfig,
    pub storage: StorageConfig,
    pub quotas: QuotaConfig,
    pub telemetry: TelemetryConfig,
    pub cluster: ClusterConfig,
    pub security: SecurityConfig,
    /// Listeners besides `listen`, each with its own security protocol.
    pub listeners: Vec<ListenerConfig>,
}

/// The transaction coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionConfig {
    /// Longest `transaction.timeout.ms` a producer may ask for
    /// (`transaction.max.timeout.ms`); a longer one gets INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
    /// How often open transactions are checked against their timeout (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub abort_timed_out_interval_ms: u64,
    /// The `transaction.version` feature finalized in ApiVersions: 2 makes Kafka 4.x
    /// clients use transactions v2 (KIP-890: partitions and offsets join a
    /// transaction by themselves, the epoch bumps with every end); 1 keeps every
    /// client on v1. Both are served either way.
    pub version: i16,
    /// A transactional id with no transaction open that nothing used for this long
    /// is forgotten (Kafka's `transactional.id.expiration.ms`, 7 days): its state is
    /// removed from `__transaction_state` with a tombstone.
    pub id_expiration_ms: i64,
    /// How often transactional ids are checked against `id_expiration_ms` (Kafka's
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, 1 h).
    pub remove_expired_interval_ms: u64,
    /// A producer id that wrote nothing to a partition for this long, with no
    /// transaction open there, is dropped from the partition's idempotence state
    /// (Kafka's `producer.id.expiration.ms`, 1 day).
    pub producer_id_expiration_ms: i64,
    /// How often partitions are checked against `producer_id_expiration_ms` (Kafka's
    /// `producer.id.expiration.check.interval.ms`, 10 min).
    pub producer_id_expiration_check_interval_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            max_timeout_ms: 15 * 60 * 1000,
            abort_timed_out_interval_ms: 1000,
            version: 2,
            id_expiration_ms: 7 * 24 * 3600 * 1000,
            remove_expired_interval_ms: 3600 * 1000,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            producer_id_expiration_check_interval_ms: 600 * 1000,
        }
    }
}

/// Cluster mode: brokers that share etcd (metadata, membership, placement) and the
/// segment store (all data). Off while `etcd_endpoints` is empty: a single broker
/// with no external service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// etcd endpoints (`http://HOST:PORT`); non-empty turns cluster mode on.
    pub etcd_endpoints: Vec<String>,
    /// This cluster's name: every etcd key is under `/tributary/<name>/`, so several
    /// clusters can share one etcd.
    pub name: String,
    /// TTL of this broker's etcd lease: a broker that has not renewed it for this
    /// long is taken as gone and its partitions move (seconds, as etcd counts).
    pub lease_ttl_secs: u64,
    /// Deadline of one etcd request.
    pub etcd_timeout_ms: u64,
    /// c = 1 + epsilon in consistent hashing with bounded loads: no broker carries
    /// more than ceil(c x total load x weight / total weight).
    pub balance_factor: f64,
    /// This broker's rack (availability zone), told to clients in Metadata.
    pub rack: String,
    /// This broker's share of the load relative to the others' (1 ..= 100).
    pub weight: u32,
    /// How often the controller sweeps the object store for journal objects,
    /// segments and manifests no partition needs any more (seconds).
    pub sweep_interval_secs: u64,
    /// How long a segment or manifest no partition names stays before the sweeper
    /// deletes it (seconds): covers a seal whose manifest is not published yet and
    /// reads still in flight on a replaced segment.
    pub sweep_grace_secs: u64,
    /// How often each broker measures the produce rate of the partitions it leads
    /// and the controller looks at the measured loads (seconds).
    pub load_interval_secs: u64,
    /// The produce rate (bytes per second) that weighs as much as one more
    /// partition in placement: a partition at n units weighs 1 + n (n rounded down
    /// to a power of two).
    pub load_unit_bytes: u64,
}

impl ClusterConfig {
    /// Whether this broker runs in cluster mode.
    pub fn enabled(&self) -> bool {
        !self.etcd_endpoints.is_empty()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            etcd_endpoints: Vec::new(),
            name: "default".into(),
            lease_ttl_secs: 10,
            etcd_timeout_ms: 5000,
            balance_factor: 1.25,
            rack: String::new(),
            weight: 1,
            sweep_interval_secs: 60,
            sweep_grace_secs: 900,
            load_interval_secs: 10,
            load_unit_bytes: 65_536,
        }
    }
}

/// Client quotas (Kafka's `producer_byte_rate` / `consumer_byte_rate`, set with
/// AlterClientQuotas): how rates are measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Length of one rate sample (`quota.window.size.seconds`, in ms).
    pub window_ms: u64,
    /// Samples a rate is measured over (`quota.window.num`); a new client may burst
    /// up to `window_samples - 1` windows' worth of its quota before it is throttled.
    pub window_samples: u32,
}

/// Client telemetry (KIP-714): what clients may push. What they are asked to push
/// is set with client-metrics resources (`kafka-client-metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Largest PushTelemetry payload taken (Kafka's `telemetry.max.bytes`).
    pub max_bytes: i32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { max_bytes: 1024 * 1024 }
    }
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge only once the journal write is fsynced (group-committed).
    Fsync,
    /// Acknowledge once written; fsync every `journal.fsync_interval_ms`.
    Interval,
}

/// The shared write-ahead journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub durability: Durability,
    /// With `durability = "interval"`: milliseconds between fsyncs.
    pub fsync_interval_ms: u64,
    /// Size at which a journal file is closed and a new one started.
    pub file_bytes: u64,
    /// Most bytes one group commit writes before it fsyncs.
    pub group_commit_bytes: u64,
    /// Depth of the queue in front of the journal writer (backpressure).
    pub queue_depth: usize,
    /// Bound on the journal's files: past three quarters of it the flusher seals
    /// whatever holds the oldest file; past it, producers get a retriable error.
    pub max_bytes: u64,
    /// Journal growth after which what a replay would rebuild is checkpointed, so a
    /// start reads at most about this much journal whatever the journal holds.
    pub checkpoint_bytes: u64,
}

/// Defaults for topics, and what applies to topic creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// Create a topic when a client asks Metadata for one that does not exist.
    pub auto_create: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// Largest record batch accepted (`max.message.bytes` default).
    pub message_max_bytes: i32,
    /// Default `retention.ms` (-1: forever).
    pub retention_ms: i64,
    /// Default `retention.bytes` (-1: unbounded).
    pub retention_bytes: i64,
    /// Default `segment.bytes`.
    pub segment_bytes: i64,
    /// Default `segment.ms`.
    pub segment_ms: i64,
    /// Default `tributary.scaling.policy` (auto-created topics and topics without
    /// the override): `fixed`, `bytes` or `records`.
    pub scaling_policy: String,
    /// Default `tributary.scaling.target`: bytes/s or records/s per partition.
    pub scaling_target: i64,
    /// Default `tributary.scaling.factor`: most growth of one step (x factor).
    pub scaling_factor: f64,
    /// Default `tributary.scaling.max.partitions`.
    pub scaling_max_partitions: i32,
    /// Default `tributary.scaling.window.ms`: how long the rate must exceed the target.
    pub scaling_window_ms: i64,
    /// Default `tributary.scaling.cooldown.ms`: least time between two steps.
    pub scaling_cooldown_ms: i64,
    /// How often the scaler measures every scaled stream's rate (ms).
    pub scaling_sample_ms: u64,
    /// Windows of the per-partition produce rates in `/metrics` (ms; Pravega's 2, 5
    /// and 10 minutes by default).
    pub rate_windows_ms: Vec<u64>,
    /// How often the per-partition produce rates are sampled (ms).
    pub rate_sample_ms: u64,
}

/// Protection against clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request frame (`socket.request.max.bytes`).
    pub socket_request_max_bytes: u64,
    /// Requests one connection may have in flight before the broker stops reading.
    pub max_in_flight_per_connection: usize,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Most simultaneous connections from one address (`max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// Per-address limits that replace `max_connections_per_ip`
    /// (`max.connections.per.ip.overrides`); these addresses may also use the
    /// reserved connections.
    pub max_connections_per_ip_overrides: std::collections::BTreeMap<String, usize>,
    /// The last connections under `max_connections`, kept for the addresses in
    /// `max_connections_per_ip_overrides` (an operator can always connect).
    pub reserved_connections: usize,
    /// A connection with no request for this long is closed
    /// (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A request whose first bytes arrived must be complete within this long, or the
    /// connection is closed (a client that stops half-way holds no memory).
    pub request_read_timeout_ms: u64,
    /// Most bytes of requests being read, over all connections
    /// (`queued.max.request.bytes`); reading waits while they are taken.
    pub queued_max_request_bytes: u64,
    /// Most partitions one DescribeTopicPartitions answer describes
    /// (`max.request.partition.size.limit`); the client pages through the rest.
    pub max_request_partition_size_limit: i32,
}

/// The in-memory cache of recent batches that serves tailing consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most bytes of recent batches kept per partition.
    pub partition_bytes: u64,
    /// Most bytes kept over all partitions.
    pub total_bytes: u64,
}

/// The segment store (tier 2), reached through OpenDAL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// "fs" (a directory), "s3", or another OpenDAL service of
    /// [`OTHER_SEGMENT_STORE_BACKENDS`] configured through `options`.
    pub backend: String,
    /// With `fs`: the directory; empty means `<data_dir>/segments`.
    pub fs_root: String,
    /// Attempts of a failed store operation before it is reported.
    pub retry_max_times: u32,
    /// First retry delay; it doubles (with jitter) up to `retry_max_delay_ms`.
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// How often the flusher looks for data to seal, retention and garbage.
    pub flush_interval_ms: u64,
    /// A partition with less than this to seal shares a pack object with others.
    pub pack_threshold_bytes: u64,
    /// Most bytes of one pack object.
    pub pack_bytes: u64,
    /// Bytes of sealed-segment blocks kept in memory for readers.
    pub block_cache_bytes: u64,
    /// Size of one block read from the store (and read ahead).
    pub block_bytes: u64,
    /// Blocks fetched ahead of a sequential reader of sealed data.
    pub read_ahead_blocks: u64,
    /// Sealing streams objects to the store in parts of this size (multipart
    /// uploads on S3, whose parts are at least 5 MiB).
    pub upload_part_bytes: u64,
    /// Parts of one upload in flight; an upload holds about
    /// `(upload_concurrency + 1) × upload_part_bytes` of memory.
    pub upload_concurrency: usize,
    pub s3: S3Config,
    /// For a backend other than "fs" and "s3": the OpenDAL service's own options
    /// (`bucket`, `root`, `credential`, `endpoint`, `account_name`, ... as OpenDAL
    /// names them), passed through as given.
    pub options: std::collections::BTreeMap<String, String>,
}

/// The OpenDAL services besides "fs" and "s3" a segment store can be, configured
/// through `storage.options`.
pub const OTHER_SEGMENT_STORE_BACKENDS: &[&str] = &["gcs", "azblob", "memory"];

/// The `s3` backend: any S3-compatible service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Service endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO URL.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Key prefix inside the bucket.
    pub root: String,
    /// Empty: taken from the environment (AWS_ACCESS_KEY_ID, ...) by OpenDAL.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Address buckets as `bucket.endpoint` instead of `endpoint/bucket` (path style).
    pub virtual_host_style: bool,
}

/// The group coordinator: consumer groups of both protocols and committed offsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Classic protocol: how long the first rebalance of an empty group waits for
    /// more members (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u32,
    /// Smallest session timeout a classic member may ask for.
    pub min_session_timeout_ms: u32,
    /// Largest session timeout a classic member may ask for.
    pub max_session_timeout_ms: u32,
    /// Most members in one group (`group.max.size`).
    pub max_size: u32,
    /// Consumer protocol (KIP-848): heartbeat interval given to members.
    pub consumer_heartbeat_interval_ms: u32,
    /// Consumer protocol: a member that does not heartbeat this long is removed.
    pub consumer_session_timeout_ms: u32,
    /// Consumer protocol: server-side assignors, the first being the default.
    pub consumer_assignors: Vec<String>,
    /// Committed offsets of an empty group expire this long after it became empty
    /// (`offsets.retention.minutes`).
    pub offsets_retention_minutes: u64,
    /// Partitions of the internal `__consumer_offsets` topic, set when it is created.
    pub offsets_partitions: u32,
    /// Longest metadata string accepted with a committed offset.
    pub offset_metadata_max_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9092".into(),
            advertised_listener: String::new(),
            http_listen: "127.0.0.1:9644".into(),
            data_dir: PathBuf::from("./data"),
            node_id: 0,
            log_level: "info".into(),
            metadata_skip_damaged: false,
            journal: JournalConfig::default(),
            topics: TopicDefaults::default(),
            limits: Limits::default(),
            cache: CacheConfig::default(),
            groups: GroupConfig::default(),
            transactions: TransactionConfig::default(),
            storage: StorageConfig::default(),
            quotas: QuotaConfig::default(),
            telemetry: TelemetryConfig::default(),
            cluster: ClusterConfig::default(),
            security: SecurityConfig::default(),
            listeners: Vec::new(),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig { window_ms: 1000, window_samples: 11 }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            durability: Durability::Fsync,
            fsync_interval_ms: 5,
            file_bytes: 256 * 1024 * 1024,
            group_commit_bytes: 8 * 1024 * 1024,
            queue_depth: 4096,
            max_bytes: 4 * 1024 * 1024 * 1024,
            checkpoint_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            auto_create: true,
            num_partitions: 1,
            message_max_bytes: 1024 * 1024 + 12,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 64 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            scaling_policy: "fixed".into(),
            scaling_target: 1024 * 1024,
            scaling_factor: 2.0,
            scaling_max_partitions: 64,
            scaling_window_ms: 300_000,
            scaling_cooldown_ms: 600_000,
            scaling_sample_ms: 1000,
            rate_windows_ms: vec![120_000, 300_000, 600_000],
            rate_sample_ms: 10_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_in_flight_per_connection: 64,
            max_connections: 10_000,
            max_connections_per_ip: 2_000,
            max_connections_per_ip_overrides: Default::default(),
            reserved_connections: 32,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
            max_request_partition_size_limit: 2000,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { partition_bytes: 4 * 1024 * 1024, total_bytes: 512 * 1024 * 1024 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "fs".into(),
            fs_root: String::new(),
            retry_max_times: 8,
            retry_min_delay_ms: 100,
            retry_max_delay_ms: 10_000,
            flush_interval_ms: 1000,
            pack_threshold_bytes: 4 * 1024 * 1024,
            pack_bytes: 64 * 1024 * 1024,
            block_cache_bytes: 256 * 1024 * 1024,
            block_bytes: 1024 * 1024,
            read_ahead_blocks: 8,
            upload_part_bytes: 8 * 1024 * 1024,
            upload_concurrency: 2,
            s3: S3Config::default(),
            options: Default::default(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            root: "/".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            virtual_host_style: false,
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: 100_000,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45_000,
            consumer_assignors: vec!["uniform".into(), "range".into()],
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_partitions: 16,
            offset_metadata_max_bytes: 4096,
        }
    }
}

impl Config {
    /// The address clients are told to connect to.
    pub fn advertised(&self) -> &str {
        if self.advertised_listener.is_empty() {
            &self.listen
        } else {
            &self.advertised_listener
        }
    }
}

/// Why the configuration was refused: every problem found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}
