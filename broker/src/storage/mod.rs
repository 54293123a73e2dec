//! The storage engine of one broker (DESIGN §4): topics and partitions, the shared
//! journal every append goes through, the read path (cache, then journal files), the
//! metadata log, and recovery.
//!
//! The engine speaks `Bytes`, offsets and its own types, never wire messages. It
//! promises: an append is acknowledged only once durable under the configured
//! policy; offsets per partition are dense and increase; consumers see only durable
//! data; a restart finds every acknowledged batch at its acknowledged offset.

pub(crate) mod cache;
pub(crate) mod checkpoint;
mod compaction;
mod error;
pub mod flusher;
pub mod journal;
pub(crate) mod metadata_log;
pub mod partition;
mod producer_state;
mod recovery;
mod segments;
pub mod tier_metrics;
pub mod topic_config;
pub(crate) mod txn_index;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use tributary_config::Config;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::records;
use tributary_tiering::store::{SegmentLocation, SegmentStore};
use uuid::Uuid;

use checkpoint::Checkpoint;
pub use error::StorageError;
use journal::{files::JournalFiles, writer::WriterSettings, Append, Journal};
pub use journal::{Appended, Shipment, Shipper};
use metadata_log::{ManifestEntry, MetaRecord, MetadataLog, PartitionRecord, TopicRecord};
use partition::{Chunk, Sealed};
pub use partition::{Manifest, PartitionLog, PartitionOffsets};
pub use topic_config::TopicConfig;
pub use txn_index::AbortedTxn;

use crate::metrics::Metrics;
use crate::quotas::QuotaEntity;
use crate::security::acl::Entries as AclEntries;
use crate::security::users::Credentials;

/// A topic (stream) and its partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: Vec<Arc<PartitionLog>>,
    config: RwLock<Arc<TopicConfig>>,
    /// What clients produced to any of its partitions (auto-scaling reads one
    /// counter per stream, not one per partition); shared with the grown topic.
    pub produced: Arc<Produced>,
}

/// Bytes and records clients produced, counted with relaxed adds.
#[derive(Debug, Default)]
pub struct Produced {
    bytes: std::sync::atomic::AtomicU64,
    records: std::sync::atomic::AtomicU64,
}

impl Produced {
    pub fn add(&self, bytes: u64, records: u64) {
        self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.records.fetch_add(records, std::sync::atomic::Ordering::Relaxed);
    }

    /// (bytes, records) since this broker started.
    pub fn get(&self) -> (u64, u64) {
        (self.bytes.load(std::sync::atomic::Ordering::Relaxed), self.records.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Topic {
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config.read().clone()
    }
    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
}

/// Batches read from a partition, with its offsets at the time of the read.
#[derive(Debug)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    /// The batches as one buffer, when they were read into one (from the journal):
    /// a fetch answers with it without copying them together.
    pub joined: Option<Bytes>,
    pub offsets: PartitionOffsets,
    /// For read_committed reads: aborted transactions overlapping what was read.
    pub aborted: Vec<AbortedTxn>,
}

/// An append queued in the journal; resolves once durable.
pub type PendingAppend = oneshot::Receiver<Result<Appended, StorageError>>;

/// The engine.
#[derive(Debug)]
pub struct Storage {
    /// The broker's topic defaults: `[topics]` under the dynamic broker configs.
    defaults: RwLock<Arc<tributary_config::TopicDefaults>>,
    topics: DashMap<Arc<str>, Arc<Topic>>,
    topic_ids: DashMap<Uuid, Arc<Topic>>,
    meta: Mutex<MetadataLog>,
    journal: Journal,
    durable: watch::Receiver<u64>,
    cache_total: Arc<AtomicU64>,
    cluster_id: String,
    /// (next producer id to hand out, end of the durably reserved block)
    producer_ids: Mutex<(i64, i64)>,
    /// Cluster mode: where blocks of producer ids come from instead of the metadata
    /// log (etcd, so no two brokers hand out the same id).
    producer_id_source: std::sync::OnceLock<Arc<dyn ProducerIdSource>>,
    /// One refill from the source at a time.
    producer_id_refill: tokio::sync::Mutex<()>,
    /// The segment store (tier 2).
    store: SegmentStore,
    /// Whether the journal was over its bound at the flusher's last round (so it
    /// logs the change once, not every round).
    journal_full: AtomicBool,
    journal_limit: u64,
    journal_dir: PathBuf,
    /// The position of the last journal checkpoint, and the journal growth after
    /// which the next one is taken (`journal.checkpoint_bytes`).
    checkpointed: AtomicU64,
    checkpoint_bytes: u64,
    metrics: Arc<Metrics>,
    /// Compaction bookkeeping of compacted partitions, by journal id.
    compaction: Mutex<HashMap<u64, compaction::CleanState>>,
    /// Cluster mode: the slot of the journal-object shipper the writer uses.
    shipper: Option<Arc<std::sync::OnceLock<Arc<dyn Shipper>>>>,
    /// Cluster mode: told of every seal.
    pub(crate) seal_hook: std::sync::OnceLock<Arc<dyn SealHook>>,
    /// The data directory's lock, held for the life of the engine.
    _lock: std::fs::File,
}

/// Producer ids reserved per metadata record.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A block of producer ids `[start, end)`, or why none could be reserved.
pub type ProducerIdBlock<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(i64, i64), String>> + Send + 'a>>;

/// Cluster mode: told after a partition sealed segments (its manifest changed).
pub trait SealHook: Send + Sync + std::fmt::Debug {
    fn sealed(&self, partition: &Arc<PartitionLog>);
}

/// Hands out blocks of producer ids no other broker will use.
pub trait ProducerIdSource: Send + Sync + std::fmt::Debug {
    fn reserve(&self) -> ProducerIdBlock<'_>;
}

impl Storage {
    /// Opens the data directory: recovery, then the journal writer. Blocking.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<Self>, StorageError> {
        Self::open_with_faults(config, metrics, None)
    }

    /// [`open`](Self::open), with faults injected into the journal writer (tests).
    pub fn open_with_faults(
        config: &Config,
        metrics: Arc<Metrics>,
        faults: Option<journal::faults::Faults>,
    ) -> Result<Arc<Self>, StorageError> {
        let data_dir: PathBuf = config.data_dir.clone();
        let lock = lock_data_dir(&data_dir)?;
        if config.cluster.enabled() {
            // Cluster mode: the local disk is only a cache. What this broker owns it
            // rebuilds from the object store (what it wrote and never acknowledged must
            // not come back), and the catalog comes from etcd.
            for dir in ["meta", "journal"] {
                match std::fs::remove_dir_all(data_dir.join(dir)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(format!("clearing the local cache {dir}"))(e)),
                }
            }
        }
        let op = tributary_tiering::operator(&config.storage, &data_dir)
            .map_err(|e| StorageError::SegmentStore(e.to_string()))?;
        let mut store = SegmentStore::new(
            op,
            config.storage.block_cache_bytes,
            config.storage.block_bytes,
            config.storage.read_ahead_blocks,
        );
        if let Some(root) = tributary_tiering::local_root(&config.storage, &data_dir) {
            store = store.with_local_writes(root);
        }
        let mut meta = MetadataLog::open_with(&data_dir.join("meta"), config.metadata_skip_damaged)
            .map_err(StorageError::io("opening metadata log"))?;
        // Uploads a crash interrupted will not be sealed: their objects are garbage.
        for key in meta.state.uploading.clone() {
            if let Err(e) = meta.append(MetaRecord::UploadAbandoned { key: key.clone() }) {
                // A full disk: the next start abandons it; starting matters more.
                tracing::warn!(error = %e, key, "cannot record an interrupted upload as abandoned");
                break;
            }
        }
        let defaults = config.topics.clone();
        let topics = DashMap::new();
        let topic_ids = DashMap::new();
        let mut by_journal_id = HashMap::new();
        let mut keys = HashMap::new();
        for record in meta.state.topics.values() {
            let topic = Arc::new(build_topic(record, &defaults, &mut keys));
            for p in &topic.partitions {
                by_journal_id.insert(p.id, p.clone());
            }
            topics.insert(topic.name.clone(), topic.clone());
            topic_ids.insert(topic.id, topic);
        }
        let files = Arc::new(
            JournalFiles::new(&data_dir.join("journal")).map_err(StorageError::io("opening journal directory"))?,
        );
        let checkpoint = match Checkpoint::read(&data_dir.join("journal")) {
            Ok(c) => c,
            // Without it the whole journal is replayed, which rebuilds everything the
            // journal still holds; only producer state of deleted files is lost.
            Err(e) => {
                tracing::error!(error = %e, "journal checkpoint unreadable; replaying the whole journal instead");
                None
            }
        };
        let from = checkpoint.as_ref().map_or(0, |c| c.position);
        let through = checkpoint.map(|c| c.restore(&by_journal_id, crate::clock::now_ms())).unwrap_or_default();
        let replayed = recovery::replay_journal(&files, &by_journal_id, &through, from, &metrics)?;
        metrics.journal_recovery_bytes.set(replayed.scanned_bytes as i64);
        tracing::info!(
            topics = topics.len(),
            partitions = by_journal_id.len(),
            batches = replayed.batches,
            bytes = replayed.bytes,
            checkpoint_position = from,
            scanned = replayed.scanned_bytes,
            "recovered"
        );
        let cache = cache::CacheBudget::new(config.cache.partition_bytes, config.cache.total_bytes, metrics.clone());
        let cache_total = cache.total.clone();
        let (durable_tx, durable) = watch::channel(0u64);
        let shipper = config.cluster.enabled().then(|| Arc::new(std::sync::OnceLock::new()));
        let journal = Journal::start(
            files,
            replayed.start,
            WriterSettings {
                durability: config.journal.durability,
                file_bytes: config.journal.file_bytes,
                group_commit_bytes: config.journal.group_commit_bytes,
                faults,
                shipper: shipper.clone(),
            },
            Duration::from_millis(config.journal.fsync_interval_ms),
            config.journal.queue_depth,
            cache,
            durable_tx,
            metrics.clone(),
        )
        .map_err(StorageError::io("starting journal writer"))?;
        let cluster_id = meta.state.cluster_id.clone();
        let reserved = meta.state.producer_ids_reserved;
        Ok(Arc::new(Storage {
            defaults: RwLock::new(Arc::new(defaults)),
            topics,
            topic_ids,
            meta: Mutex::new(meta),
            journal,
            durable,
            cache_total,
            cluster_id,
            producer_ids: Mutex::new((reserved, reserved)),
            producer_id_source: std::sync::OnceLock::new(),
            producer_id_refill: tokio::sync::Mutex::new(()),
            store,
            journal_full: AtomicBool::new(false),
            journal_limit: config.journal.max_bytes,
            journal_dir: data_dir.join("journal"),
            checkpointed: AtomicU64::new(from),
            checkpoint_bytes: config.journal.checkpoint_bytes,
            metrics,
            compaction: Mutex::new(HashMap::new()),
            shipper,
            seal_hook: std::sync::OnceLock::new(),
            _lock: lock,
        }))
    }

    /// The segment store.
    pub fn segment_store(&self) -> &SegmentStore {
        &self.store
    }

    /// Refuses client appends while the journal is over its bound (the segment
    /// store is not taking uploads, or the flusher is behind): a retriable error,
    /// never a hang. Read from the journal itself on every produce, so the bound
    /// holds even while the flusher is backing off from a failing store.
    pub fn check_room(&self) -> Result<(), StorageError> {
        if let Some(refused) = self.journal.health.refusal() {
            return Err(refused);
        }
        let bytes = self.journal.files.total_bytes();
        if bytes > self.journal_limit {
            return Err(StorageError::JournalFull { bytes, limit: self.journal_limit });
        }
        Ok(())
    }

    /// Whether the journal is over `journal.max_bytes` now, or its disk is full.
    pub(crate) fn journal_is_full(&self) -> bool {
        self.journal.files.total_bytes() > self.journal_limit || self.journal.health.disk_full()
    }

    /// Whether the journal takes appends now (false while a failed write, such as
    /// one on a full disk, is being retried).
    pub fn writable(&self) -> bool {
        self.journal.health.writable()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn topic_defaults(&self) -> Arc<tributary_config::TopicDefaults> {
        self.defaults.read().clone()
    }

    /// Replaces the topic defaults (dynamic broker configs changed) and re-resolves
    /// every topic's configs over them: a topic without its own override follows at
    /// once (retention, segment size and roll, the largest batch).
    pub fn set_topic_defaults(&self, defaults: tributary_config::TopicDefaults) {
        // Under the metadata lock, as topic config changes are, so that neither
        // resolves over defaults the other just replaced.
        let _meta = self.meta.lock();
        let defaults = Arc::new(defaults);
        *self.defaults.write() = defaults.clone();
        for topic in self.topics.iter() {
            let overrides = topic.config().overrides.clone();
            *topic.config.write() = Arc::new(TopicConfig::resolve(overrides, &defaults));
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.topic_ids.get(id).map(|t| t.clone())
    }

    /// All topics, sorted by name.
    /// Forgets, in every partition led here, the idempotent producers idle for
    /// `expiration_ms` with no transaction open there (`producer.id.expiration.ms`).
    /// Returns how many entries went.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let mut gone = 0;
        for topic in self.topics() {
            for partition in &topic.partitions {
                if partition.is_fenced() {
                    continue;
                }
                gone += partition.state.lock().expire_producers(now_ms, expiration_ms);
            }
        }
        gone
    }

    /// Runs [`expire_producers`](Self::expire_producers) every `every` until
    /// `shutdown`.
    pub async fn run_producer_expiry(
        self: Arc<Self>,
        expiration_ms: i64,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            let gone =
                tokio::task::spawn_blocking(move || this.expire_producers(crate::clock::now_ms(), expiration_ms))
                    .await
                    .unwrap_or(0);
            if gone > 0 {
                tracing::info!(producers = gone, "expired idle producer ids (producer.id.expiration.ms)");
            }
        }
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.iter().map(|t| t.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates a topic durably. `configs` must already be validated.
    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        self.create_topic_as(name, Uuid::new_v4(), partitions, configs).await
    }

    /// Creates a topic with a given id (cluster mode: the id etcd holds, the same on
    /// every broker).
    pub async fn create_topic_as(
        self: &Arc<Self>,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            if this.topics.contains_key(name.as_str()) {
                return Err(StorageError::TopicExists(name));
            }
            let ids = meta.allocate_partition_ids(partitions.max(0) as usize);
            let record = TopicRecord {
                name: name.clone(),
                id,
                partitions: ids.into_iter().map(PartitionRecord::new).collect(),
                configs,
            };
            meta.append(MetaRecord::TopicCreated { topic: record.clone() })
                .map_err(StorageError::io("writing metadata log"))?;
            let topic = Arc::new(build_topic(&record, &this.topic_defaults(), &mut HashMap::new()));
            this.topics.insert(topic.name.clone(), topic.clone());
            this.topic_ids.insert(topic.id, topic.clone());
            Ok(topic)
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// A topic the broker keeps for itself (compacted), created with `partitions`
    /// if it does not exist yet.
    pub async fn internal_topic(self: &Arc<Self>, name: &str, partitions: i32) -> Result<Arc<Topic>, StorageError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        // The same id on every broker of a cluster (journal objects and partition
        // histories name topics by id), derived from the name.
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("tributary/{name}").as_bytes());
        match self.create_topic_as(name, id, partitions, configs).await {
            Err(StorageError::TopicExists(_)) => {
                self.topic(name).ok_or_else(|| StorageError::UnknownTopic(name.into()))
            }
            other => other,
        }
    }

    /// Calls `f` with every record of a partition, from its log start to its high
    /// watermark, in offset order, with the header of the batch that holds it.
    pub async fn replay_records(
        &self,
        partition: &Arc<PartitionLog>,
        mut f: impl FnMut(&BatchHeader, &Bytes, records::RecordView),
    ) -> Result<(), StorageError> {
        let mut offset = partition.offsets().log_start_offset;
        loop {
            let read = self.read(partition, offset, 1 << 20, true).await?;
            if read.batches.is_empty() {
                return Ok(());
            }
            for batch in &read.batches {
                let corrupt = |reason: String| StorageError::Corrupt { position: 0, reason };
                let header = BatchHeader::parse(batch).map_err(|e| corrupt(e.to_string()))?;
                offset = header.last_offset() + 1;
                for record in records::read(&header, batch).map_err(|e| corrupt(e.to_string()))? {
                    f(&header, batch, record);
                }
            }
        }
    }

    /// Deletes a topic durably; its journal data is ignored from then on.
    pub async fn delete_topic(self: &Arc<Self>, id: Uuid) -> Result<(), StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            let Some((_, topic)) = this.topic_ids.remove(&id) else {
                return Err(StorageError::UnknownPartition);
            };
            if let Err(e) = meta.append(MetaRecord::TopicDeleted { id }) {
                this.topic_ids.insert(id, topic);
                return Err(StorageError::io("writing metadata log")(e));
            }
            this.topics.remove(&topic.name);
            for p in &topic.partitions {
                let freed = p.mark_deleted();
                this.cache_total.fetch_sub(freed, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Client quotas as the metadata log holds them.
    pub fn client_quotas(&self) -> Vec<(QuotaEntity, BTreeMap<String, f64>)> {
        self.meta.lock().state.client_quotas.clone()
    }

    /// Every group's config overrides.
    pub fn group_configs(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.meta.lock().state.group_configs.iter().map(|(g, c)| (g.clone(), c.clone())).collect()
    }

    /// Replaces a group's config overrides durably (empty removes them). `configs`
    /// must already be validated.
    pub async fn set_group_configs(
        self: &Arc<Self>,
        group: String,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.record(MetaRecord::GroupConfigsSet { group, configs }).await
    }

    /// Every config resource of `kind` (`client-metrics`, `broker`) with its configs.
    pub fn resource_configs(&self, kind: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let meta = self.meta.lock();
        meta.state.resource_configs.get(kind).map_or_else(Vec::new, |m| m.clone().into_iter().collect())
    }

    /// Replaces a config resource's configs durably (empty removes them). `configs`
    /// must already be validated.
    pub async fn set_resource_configs(
        self: &Arc<Self>,
        kind: &str,
        name: String,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.record(MetaRecord::ResourceConfigsSet { kind: kind.to_string(), name, configs }).await
    }

    /// Every SASL user's SCRAM credentials.
    pub fn user_credentials(&self) -> Vec<(String, Credentials)> {
        self.meta.lock().state.users.iter().map(|(u, c)| (u.clone(), c.clone())).collect()
    }

    /// Replaces a user's SCRAM credentials durably (empty removes the user).
    pub async fn set_user_credentials(
        self: &Arc<Self>,
        user: String,
        credentials: Credentials,
    ) -> Result<(), StorageError> {
        self.record(MetaRecord::UserCredentialsSet { user, credentials }).await
    }

    /// Every resource pattern's ACLs.
    pub fn acls(&self) -> Vec<(String, AclEntries)> {
        self.meta.lock().state.acls.iter().map(|(p, e)| (p.clone(), e.clone())).collect()
    }

    /// Replaces a resource pattern's ACLs durably (empty removes them).
    pub async fn set_acls(self: &Arc<Self>, pattern: String, entries: AclEntries) -> Result<(), StorageError> {
        self.record(MetaRecord::AclsSet { pattern, entries }).await
    }

    /// Replaces a client quota entity's quotas durably (empty removes it). `values`
    /// must already be validated.
    pub async fn set_client_quotas(
        self: &Arc<Self>,
        entity: QuotaEntity,
        values: BTreeMap<String, f64>,
    ) -> Result<(), StorageError> {
        self.record(MetaRecord::ClientQuotasSet { entity, values }).await
    }

    /// Replaces a topic's config overrides durably; they apply at once. `configs`
    /// must already be validated.
    pub async fn set_topic_configs(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let this = self.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            if !this.topic_ids.contains_key(&topic.id) {
                return Err(StorageError::UnknownTopic(topic.name.to_string()));
            }
            meta.append(MetaRecord::TopicConfigsSet { id: topic.id, configs: configs.clone() })
                .map_err(StorageError::io("writing metadata log"))?;
            *topic.config.write() = Arc::new(TopicConfig::resolve(configs, &this.topic_defaults()));
            Ok(())
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Grows a topic to `count` partitions durably; the new ones are usable at once.
    pub async fn add_partitions(self: &Arc<Self>, name: &str, count: i32) -> Result<Arc<Topic>, StorageError> {
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            let old = this.topic(&name).ok_or_else(|| StorageError::UnknownTopic(name.clone()))?;
            let have = old.partitions.len();
            let more = (count.max(0) as usize).saturating_sub(have);
            let ids = meta.allocate_partition_ids(more);
            let records: Vec<PartitionRecord> = ids.into_iter().map(PartitionRecord::new).collect();
            meta.append(MetaRecord::PartitionsAdded { id: old.id, partitions: records.clone() })
                .map_err(StorageError::io("writing metadata log"))?;
            // Crash tests: durable, not yet served.
            flusher::failpoint("partitions-added");
            let mut partitions = old.partitions.clone();
            for (i, r) in records.iter().enumerate() {
                partitions.push(Arc::new(PartitionLog::new(r.id, old.name.clone(), (have + i) as i32, 0)));
            }
            let topic = Arc::new(Topic {
                name: old.name.clone(),
                id: old.id,
                partitions,
                config: RwLock::new(old.config()),
                produced: old.produced.clone(),
            });
            this.topics.insert(topic.name.clone(), topic.clone());
            this.topic_ids.insert(topic.id, topic.clone());
            Ok(topic)
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Moves a partition's log start offset to `offset` (-1: the high watermark)
    /// durably; records below it are gone for readers. Returns the new log start.
    pub async fn delete_records(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        partition: &Arc<PartitionLog>,
        offset: i64,
    ) -> Result<i64, StorageError> {
        let this = self.clone();
        let topic_id = topic.id;
        let partition = partition.clone();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            let offsets = partition.offsets();
            let target = if offset == -1 { offsets.high_watermark } else { offset };
            if target < 0 || target > offsets.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: offsets.log_start_offset,
                    high_watermark: offsets.high_watermark,
                });
            }
            if target <= offsets.log_start_offset {
                return Ok(offsets.log_start_offset);
            }
            meta.append(MetaRecord::LogStartAdvanced { id: topic_id, partition: partition.index, offset: target })
                .map_err(StorageError::io("writing metadata log"))?;
            let mut st = partition.state.lock();
            st.log_start_offset = st.log_start_offset.max(target);
            Ok(st.log_start_offset)
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// A producer id never handed out before, even across crashes: ids come from
    /// blocks reserved in the metadata log before any of them is used.
    /// From now on, producer ids come in blocks from `source` (cluster mode).
    pub fn set_producer_id_source(&self, source: Arc<dyn ProducerIdSource>) {
        let _ = self.producer_id_source.set(source);
        *self.producer_ids.lock() = (0, 0);
    }

    pub async fn allocate_producer_id(self: &Arc<Self>) -> Result<i64, StorageError> {
        {
            let mut ids = self.producer_ids.lock();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        if let Some(source) = self.producer_id_source.get() {
            let _refill = self.producer_id_refill.lock().await;
            {
                let mut ids = self.producer_ids.lock();
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
            }
            let (start, end) = source.reserve().await.map_err(StorageError::JournalFailed)?;
            let mut ids = self.producer_ids.lock();
            *ids = (start + 1, end);
            return Ok(start);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut meta = this.meta.lock();
            let mut ids = this.producer_ids.lock();
            if ids.0 >= ids.1 {
                let up_to = ids.1 + PRODUCER_ID_BLOCK;
                meta.append(MetaRecord::ProducerIdsReserved { up_to })
                    .map_err(StorageError::io("writing metadata log"))?;
                ids.1 = up_to;
            }
            ids.0 += 1;
            Ok(ids.0 - 1)
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// Queues validated batches for a partition. Returns once the journal has taken
    /// them, in call order; await the result for the assigned offsets.
    pub async fn submit(
        &self,
        partition: &Arc<PartitionLog>,
        batches: Vec<(BatchHeader, Bytes)>,
        log_append_time: bool,
    ) -> Result<PendingAppend, StorageError> {
        let partition = partition.clone();
        self.journal
            .submit(move |reply| Append {
                partition,
                batches,
                log_append_time,
                recovered: false,
                reply,
                queued_at: std::time::Instant::now(),
            })
            .await
    }

    /// Cluster mode: appends batches recovered from the object store while taking a
    /// partition over, with their offsets (the first must be the log end) and leader
    /// epochs as they are; taken on a fenced partition.
    pub async fn submit_recovered(
        &self,
        partition: &Arc<PartitionLog>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<PendingAppend, StorageError> {
        let partition = partition.clone();
        self.journal
            .submit(move |reply| Append {
                partition,
                batches,
                log_append_time: false,
                recovered: true,
                reply,
                queued_at: std::time::Instant::now(),
            })
            .await
    }

    /// Cluster mode: where group commits go to become durable (journal objects);
    /// appends are refused until it is set.
    pub fn set_shipper(&self, shipper: Arc<dyn Shipper>) {
        if let Some(slot) = &self.shipper {
            let _ = slot.set(shipper);
        }
    }

    /// Cluster mode: who is told of seals.
    pub fn set_seal_hook(&self, hook: Arc<dyn SealHook>) {
        let _ = self.seal_hook.set(hook);
    }

    /// Cluster mode: empties a partition's log before it is rebuilt from the object
    /// store (its local contents are only a cache of what some owner wrote).
    pub fn reset_partition(&self, partition: &PartitionLog, manifest: Option<&Manifest>) {
        let freed = partition.reset(manifest);
        self.cache_total.fetch_sub(freed, Ordering::Relaxed);
        self.compaction.lock().remove(&partition.id);
    }

    /// Reads whole batches from `offset` up to `max_bytes` (at least one batch when
    /// `at_least_one`).
    pub async fn read(
        &self,
        partition: &Arc<PartitionLog>,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.read_isolated(partition, offset, max_bytes, at_least_one, false).await
    }

    /// [`read`](Self::read), with `committed` (read_committed): only below the last
    /// stable offset, with the aborted transactions in the range read.
    pub async fn read_isolated(
        &self,
        partition: &Arc<PartitionLog>,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        committed: bool,
    ) -> Result<ReadResult, StorageError> {
        let mut from = offset;
        let mut attempts = 0;
        let ((batches, joined), offsets) = loop {
            attempts += 1;
            let (chunks, offsets) = partition.plan_read(from, max_bytes, at_least_one, committed)?;
            let mut skip_to = None;
            let loaded = match chunks.as_slice() {
                [Chunk::Sealed { segment, offset, end, max_bytes, at_least_one }] => {
                    segments::read(&self.store, segment, *offset, *end, *max_bytes, *at_least_one).await.map(|r| {
                        // Only when the whole rest of the segment held nothing to read
                        // (compaction emptied it), never when the byte limit stopped
                        // the read: skipping then would skip data.
                        if r.batches.is_empty() && r.passed_end {
                            skip_to = Some(segment.last_offset + 1);
                        }
                        (r.batches, None)
                    })
                }
                c if c.iter().any(|c| matches!(c, Chunk::Journal { .. })) => self.load_journal(chunks).await,
                _ => self.load(chunks).await.map(|b| (b, None)),
            };
            match loaded {
                // The rest of a compacted segment is empty: go on after it.
                Ok(_) if attempts < 16 && skip_to.is_some() => from = skip_to.unwrap_or(from),
                Ok(b) => break (b, offsets),
                // The flusher sealed the batches and removed their journal file
                // between planning and reading, or compaction replaced the segment.
                Err(StorageError::Io { .. } | StorageError::SegmentStore(_)) if attempts < 3 => {}
                Err(e) => return Err(e),
            }
        };
        let aborted = match (committed, batches.last().and_then(|b| BatchHeader::parse(b).ok())) {
            (true, Some(last)) => partition.aborted_in(offset, last.last_offset()),
            _ => Vec::new(),
        };
        Ok(ReadResult { batches, joined, offsets, aborted })
    }

    async fn load(&self, mut chunks: Vec<Chunk>) -> Result<Vec<Bytes>, StorageError> {
        match chunks.as_slice() {
            [Chunk::Sealed { .. } | Chunk::SealedAtTime { .. }] => {
                return match chunks.remove(0) {
                    Chunk::Sealed { segment, offset, end, max_bytes, at_least_one } => {
                        Ok(segments::read(&self.store, &segment, offset, end, max_bytes, at_least_one).await?.batches)
                    }
                    Chunk::SealedAtTime { segment, timestamp } => {
                        Ok(segments::batch_at_time(&self.store, &segment, timestamp).await?.into_iter().collect())
                    }
                    _ => Ok(Vec::new()),
                };
            }
            c if c.iter().all(|c| matches!(c, Chunk::Cached(_))) => {
                return Ok(chunks
                    .into_iter()
                    .filter_map(|c| match c {
                        Chunk::Cached(b) => Some(b),
                        _ => None,
                    })
                    .collect());
            }
            _ => {}
        }
        Ok(self.load_journal(chunks).await?.0)
    }

    /// Reads a run of batches to seal: cached ones as they are, the rest from the
    /// journal with direct I/O where that pays ([`JournalFiles::read_ranges`]).
    pub(crate) async fn load_for_sealing(&self, chunks: Vec<Chunk>) -> Result<Vec<Bytes>, StorageError> {
        let ranges: Vec<(u64, usize)> = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Journal { position, len } => Some((*position, *len as usize)),
                _ => None,
            })
            .collect();
        let mut read = if ranges.is_empty() {
            Vec::new().into_iter()
        } else {
            let files = self.journal.files.clone();
            let first = ranges[0].0;
            tokio::task::spawn_blocking(move || files.read_ranges(&ranges))
                .await
                .map_err(|_| StorageError::ShuttingDown)?
                .map_err(StorageError::io(format!("reading journal from position {first} to seal it")))?
                .into_iter()
        };
        chunks
            .into_iter()
            .map(|c| match c {
                Chunk::Cached(b) => Ok(b),
                Chunk::Journal { .. } => {
                    read.next().ok_or_else(|| StorageError::SegmentStore("a journal range read short".into()))
                }
                Chunk::Sealed { .. } | Chunk::SealedAtTime { .. } => {
                    Err(StorageError::SegmentStore("a sealed read planned with journal reads".into()))
                }
            })
            .collect()
    }

    /// Reads planned journal chunks (with cached ones among them) into one buffer:
    /// one allocation, and the batches are slices of it. Returns the batches and,
    /// when every one came from the journal, the buffer itself: their concatenation,
    /// which a fetch answers with as it is.
    async fn load_journal(&self, chunks: Vec<Chunk>) -> Result<(Vec<Bytes>, Option<Bytes>), StorageError> {
        let files = self.journal.files.clone();
        tokio::task::spawn_blocking(move || {
            let journal_len = |c: &Chunk| if let Chunk::Journal { len, .. } = c { *len as usize } else { 0 };
            let total: usize = chunks.iter().map(journal_len).sum();
            let mut buf = BytesMut::zeroed(total);
            let mut at = 0;
            for c in &chunks {
                match c {
                    Chunk::Journal { position, len } => {
                        let end = at + *len as usize;
                        files
                            .read_into(*position, &mut buf[at..end])
                            .map_err(StorageError::io(format!("reading journal at position {position}")))?;
                        at = end;
                    }
                    Chunk::Cached(_) => {}
                    Chunk::Sealed { .. } | Chunk::SealedAtTime { .. } => {
                        return Err(StorageError::SegmentStore("a sealed read planned with journal reads".into()));
                    }
                }
            }
            let all_journal = chunks.iter().all(|c| matches!(c, Chunk::Journal { .. }));
            let parent = buf.freeze();
            let mut at = 0;
            let batches = chunks
                .into_iter()
                .map(|c| match c {
                    Chunk::Cached(b) => b,
                    c => {
                        let len = journal_len(&c);
                        at += len;
                        parent.slice(at - len..at)
                    }
                })
                .collect();
            Ok((batches, all_journal.then_some(parent)))
        })
        .await
        .map_err(|_| StorageError::ShuttingDown)?
    }

    /// The earliest offset whose timestamp is at or after `timestamp`, with that
    /// record's timestamp; `None` when there is none.
    pub async fn offset_for_timestamp(
        &self,
        partition: &Arc<PartitionLog>,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let Some(chunk) = partition.locate_timestamp(timestamp) else {
            return Ok(None);
        };
        let log_start = partition.offsets().log_start_offset;
        let Some(batch) = self.load(vec![chunk]).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(records_of(&batch)?
            .into_iter()
            .find(|r| r.timestamp >= timestamp && r.offset >= log_start)
            .map(|r| (r.offset, r.timestamp)))
    }

    /// The offset and timestamp of the record with the largest timestamp.
    pub async fn max_timestamp(&self, partition: &Arc<PartitionLog>) -> Result<Option<(i64, i64)>, StorageError> {
        let Some(chunk) = partition.locate_max_timestamp() else {
            return Ok(None);
        };
        let Some(batch) = self.load(vec![chunk]).await?.into_iter().next() else {
            return Ok(None);
        };
        let recs = records_of(&batch)?;
        let max = recs.iter().map(|r| r.timestamp).max();
        Ok(recs.into_iter().find(|r| Some(r.timestamp) == max).map(|r| (r.offset, r.timestamp)))
    }

    /// Changes whenever more data becomes durable somewhere (for long polls).
    pub fn durable_changes(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Stops the journal after writing and syncing everything queued. Blocking.
    pub fn close(&self) {
        self.journal.close();
    }
}

/// Locks the data directory (`.lock`, as Kafka does) so that a second broker on the
/// same directory is refused instead of writing the same files. The lock is the
/// kernel's (flock), so it goes with the process, also on SIGKILL.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StorageError> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).map_err(StorageError::io(format!("creating data directory {}", dir.display())))?;
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StorageError::io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
            return Err(StorageError::DataDirLocked(format!(
                "data directory {} is in use by another broker{who}; stop it or give this broker another data_dir",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StorageError::io(format!("locking {}", path.display()))(e));
        }
    }
    // Who holds it, for the message above; on a full disk this may fail, and the
    // lock holds all the same.
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

fn records_of(batch: &Bytes) -> Result<Vec<records::RecordView>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { position: 0, reason };
    let header = BatchHeader::parse(batch).map_err(|e| corrupt(e.to_string()))?;
    records::read(&header, batch).map_err(|e| corrupt(e.to_string()))
}

/// A manifest entry as a partition holds it; `keys` shares one name between the
/// segments of a pack.
fn sealed_of(e: &ManifestEntry, keys: &mut HashMap<String, Arc<str>>) -> Sealed {
    let key = keys.entry(e.key.clone()).or_insert_with(|| Arc::from(e.key.as_str())).clone();
    let s = &e.segment;
    Sealed {
        loc: SegmentLocation { key, start: s.start, len: s.len, footer_len: s.footer_len },
        base_offset: s.base_offset,
        last_offset: s.last_offset,
        max_timestamp: s.max_timestamp,
        max_timestamp_batch: s.max_timestamp_batch,
    }
}

fn build_topic(
    record: &TopicRecord,
    defaults: &tributary_config::TopicDefaults,
    keys: &mut HashMap<String, Arc<str>>,
) -> Topic {
    let name: Arc<str> = Arc::from(record.name.as_str());
    Topic {
        partitions: record
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let sealed = p.segments.iter().map(|e| sealed_of(e, keys)).collect();
                Arc::new(PartitionLog::restored(p.id, name.clone(), i as i32, p.log_start_offset, sealed))
            })
            .collect(),
        name,
        id: record.id,
        config: RwLock::new(Arc::new(TopicConfig::resolve(record.configs.clone(), defaults))),
        produced: Arc::default(),
    }
}
