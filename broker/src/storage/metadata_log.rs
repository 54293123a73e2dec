//! The internal metadata log (the KRaft idea, local): every change to streams and
//! partitions is a [`MetaRecord`] appended and fsynced before it takes effect, and
//! periodically the whole state is written as a snapshot and the log restarted.
//!
//! Records carry a sequence number and the snapshot the last one it includes, so a
//! crash between writing a snapshot and resetting the log replays nothing twice. The
//! log shares the journal's entry framing (length, CRC-32C), so a torn tail is found
//! and cut the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::journal::entry;
use super::journal::files::sync_dir;
use crate::quotas::QuotaEntity;
use crate::security::acl::Entries as AclEntries;
use crate::security::users::Credentials;

const KIND_META: u8 = 2;
const SNAPSHOT: &str = "metadata.snapshot";
const LOG: &str = "metadata.log";
/// The log is folded into a new snapshot once it holds at least this many bytes
/// and at least as many as the last snapshot: snapshots then cost at most as much
/// writing as the records they fold, whatever the state's size, and a replay at
/// start reads at most about twice the state.
const SNAPSHOT_MIN_LOG_BYTES: u64 = 4 << 20;

/// One change to the metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum MetaRecord {
    TopicCreated {
        topic: TopicRecord,
    },
    TopicDeleted {
        id: Uuid,
    },
    /// Producer ids below `up_to` may have been handed out; none is ever reused.
    ProducerIdsReserved {
        up_to: i64,
    },
    /// A topic's config overrides, replaced as a whole.
    TopicConfigsSet {
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Partitions appended to a topic (CreatePartitions).
    PartitionsAdded {
        id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    /// A partition's log start offset moved forward (DeleteRecords).
    LogStartAdvanced {
        id: Uuid,
        partition: i32,
        offset: i64,
    },
    /// An object is about to be written; until it is sealed it is garbage if found.
    UploadStarted {
        key: String,
    },
    /// An object is durable in the segment store; these segments of it now belong
    /// to their partitions (appended to their manifests).
    SegmentsSealed {
        key: String,
        segments: Vec<SealedRecord>,
    },
    /// An upload that will not be completed: its object (if any) is garbage.
    UploadAbandoned {
        key: String,
    },
    /// A partition's sealed segments ending below `below` are dropped (retention)
    /// and its log start offset moves to `log_start`.
    SegmentsDropped {
        id: Uuid,
        partition: i32,
        below: i64,
        log_start: i64,
    },
    /// A partition's sealed segments in `[from, to]` (by base offset) are replaced by
    /// `with` (compaction), all in object `key`.
    SegmentsReplaced {
        id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
        key: String,
        with: Vec<SegmentMeta>,
    },
    /// Garbage objects removed from the segment store.
    ObjectsDeleted {
        keys: Vec<String>,
    },
    /// A client quota entity's quotas, replaced as a whole (empty: removed).
    ClientQuotasSet {
        entity: QuotaEntity,
        values: BTreeMap<String, f64>,
    },
    /// A group's config overrides, replaced as a whole (empty: removed).
    GroupConfigsSet {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// A SASL user's SCRAM credentials, replaced as a whole (empty: removed).
    UserCredentialsSet {
        user: String,
        credentials: Credentials,
    },
    /// The ACLs of one resource pattern (by its key), replaced as a whole.
    AclsSet {
        pattern: String,
        entries: AclEntries,
    },
    /// The configs of one config resource of a kind that has no state of its own
    /// (`client-metrics`: KIP-714 subscriptions; `broker`: dynamic broker configs),
    /// replaced as a whole (empty: removed).
    ResourceConfigsSet {
        kind: String,
        name: String,
        configs: BTreeMap<String, String>,
    },
}

/// One segment of a sealed object, for one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SealedRecord {
    pub(crate) topic: Uuid,
    pub(crate) partition: i32,
    pub(crate) segment: SegmentMeta,
}

/// A sealed segment as a manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    /// Byte range of the segment (footer included) in its object.
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) footer_len: u32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch that holds `max_timestamp`.
    pub(crate) max_timestamp_batch: i64,
}

/// A sealed segment of a partition's manifest: its object and where in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManifestEntry {
    pub(crate) key: String,
    #[serde(flatten)]
    pub(crate) segment: SegmentMeta,
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopicRecord {
    pub(crate) name: String,
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<PartitionRecord>,
    pub(crate) configs: BTreeMap<String, String>,
}

/// A partition as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionRecord {
    /// Journal id, unique for the life of the data directory.
    pub(crate) id: u64,
    pub(crate) log_start_offset: i64,
    /// Sealed segments in offset order (the manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) segments: Vec<ManifestEntry>,
}

impl PartitionRecord {
    pub(crate) fn new(id: u64) -> Self {
        PartitionRecord { id, log_start_offset: 0, segments: Vec::new() }
    }
}

/// Everything the metadata log describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetaState {
    pub(crate) cluster_id: String,
    /// Sequence number of the last record applied.
    pub(crate) applied: u64,
    pub(crate) next_partition_id: u64,
    pub(crate) topics: BTreeMap<Uuid, TopicRecord>,
    #[serde(default)]
    pub(crate) producer_ids_reserved: i64,
    /// Objects being written, not yet sealed.
    #[serde(default)]
    pub(crate) uploading: BTreeSet<String>,
    /// Objects no manifest refers to any more, still to delete from the store.
    #[serde(default)]
    pub(crate) garbage: BTreeSet<String>,
    /// Live objects and how many manifest entries refer to each.
    #[serde(default)]
    pub(crate) objects: BTreeMap<String, u32>,
    /// Client quotas by entity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) client_quotas: Vec<(QuotaEntity, BTreeMap<String, f64>)>,
    /// Group config overrides by group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SASL users' SCRAM credentials by user.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) users: BTreeMap<String, Credentials>,
    /// ACLs by resource pattern key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) acls: BTreeMap<String, AclEntries>,
    /// Configs of the other config resources, by kind and name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) resource_configs: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

impl MetaState {
    pub(crate) fn apply(&mut self, record: &MetaRecord) {
        match record {
            MetaRecord::TopicCreated { topic } => {
                let next = topic.partitions.iter().map(|p| p.id + 1).max().unwrap_or(0);
                self.next_partition_id = self.next_partition_id.max(next);
                self.topics.insert(topic.id, topic.clone());
            }
            MetaRecord::TopicDeleted { id } => {
                if let Some(t) = self.topics.remove(id) {
                    for p in &t.partitions {
                        for e in &p.segments {
                            self.release(&e.key);
                        }
                    }
                }
            }
            MetaRecord::ProducerIdsReserved { up_to } => {
                self.producer_ids_reserved = self.producer_ids_reserved.max(*up_to);
            }
            MetaRecord::TopicConfigsSet { id, configs } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.configs = configs.clone();
                }
            }
            MetaRecord::PartitionsAdded { id, partitions } => {
                let next = partitions.iter().map(|p| p.id + 1).max().unwrap_or(0);
                self.next_partition_id = self.next_partition_id.max(next);
                if let Some(t) = self.topics.get_mut(id) {
                    t.partitions.extend(partitions.iter().cloned());
                }
            }
            MetaRecord::LogStartAdvanced { id, partition, offset } => {
                if let Some(p) = self.partition_mut(id, *partition) {
                    p.log_start_offset = p.log_start_offset.max(*offset);
                }
            }
            MetaRecord::UploadStarted { key } => {
                self.uploading.insert(key.clone());
            }
            MetaRecord::UploadAbandoned { key } => {
                self.uploading.remove(key);
                if !self.objects.contains_key(key) {
                    self.garbage.insert(key.clone());
                }
            }
            MetaRecord::SegmentsSealed { key, segments } => {
                self.uploading.remove(key);
                let mut refs = 0;
                for s in segments {
                    if let Some(p) = self.partition_mut(&s.topic, s.partition) {
                        p.segments.push(ManifestEntry { key: key.clone(), segment: s.segment.clone() });
                        refs += 1;
                    }
                }
                if refs == 0 {
                    self.garbage.insert(key.clone());
                } else {
                    *self.objects.entry(key.clone()).or_default() += refs;
                }
            }
            MetaRecord::SegmentsDropped { id, partition, below, log_start } => {
                let mut dropped = Vec::new();
                if let Some(p) = self.partition_mut(id, *partition) {
                    let n = p.segments.iter().take_while(|e| e.segment.last_offset < *below).count();
                    dropped.extend(p.segments.drain(..n).map(|e| e.key));
                    p.log_start_offset = p.log_start_offset.max(*log_start);
                }
                for key in dropped {
                    self.release(&key);
                }
            }
            MetaRecord::SegmentsReplaced { id, partition, from, to, key, with } => {
                self.uploading.remove(key);
                let mut dropped = Vec::new();
                let mut added = 0;
                if let Some(p) = self.partition_mut(id, *partition) {
                    let lo = p.segments.partition_point(|e| e.segment.base_offset < *from);
                    let hi = p.segments.partition_point(|e| e.segment.base_offset <= *to);
                    let new = with.iter().map(|s| ManifestEntry { key: key.clone(), segment: s.clone() });
                    dropped.extend(p.segments.splice(lo..hi, new).map(|e| e.key));
                    added = with.len() as u32;
                }
                if added == 0 {
                    self.garbage.insert(key.clone());
                } else {
                    *self.objects.entry(key.clone()).or_default() += added;
                }
                for k in dropped {
                    self.release(&k);
                }
            }
            MetaRecord::ObjectsDeleted { keys } => {
                for k in keys {
                    self.garbage.remove(k);
                }
            }
            MetaRecord::ClientQuotasSet { entity, values } => {
                self.client_quotas.retain(|(e, _)| e != entity);
                if !values.is_empty() {
                    self.client_quotas.push((entity.clone(), values.clone()));
                }
            }
            MetaRecord::GroupConfigsSet { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), configs.clone());
                }
            }
            MetaRecord::UserCredentialsSet { user, credentials } => {
                if credentials.is_empty() {
                    self.users.remove(user);
                } else {
                    self.users.insert(user.clone(), credentials.clone());
                }
            }
            MetaRecord::ResourceConfigsSet { kind, name, configs } => {
                let of_kind = self.resource_configs.entry(kind.clone()).or_default();
                if configs.is_empty() {
                    of_kind.remove(name);
                } else {
                    of_kind.insert(name.clone(), configs.clone());
                }
                if of_kind.is_empty() {
                    self.resource_configs.remove(kind);
                }
            }
            MetaRecord::AclsSet { pattern, entries } => {
                if entries.is_empty() {
                    self.acls.remove(pattern);
                } else {
                    self.acls.insert(pattern.clone(), entries.clone());
                }
            }
        }
    }

    fn partition_mut(&mut self, id: &Uuid, partition: i32) -> Option<&mut PartitionRecord> {
        self.topics.get_mut(id).and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
    }

    /// One manifest entry no longer refers to `key`; the last one makes it garbage.
    fn release(&mut self, key: &str) {
        if let Some(n) = self.objects.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.objects.remove(key);
                self.garbage.insert(key.to_string());
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Sequenced {
    seq: u64,
    record: MetaRecord,
}

/// The open metadata log.
#[derive(Debug)]
pub(crate) struct MetadataLog {
    dir: PathBuf,
    log: File,
    pub(crate) state: MetaState,
    /// Bytes in the log since the last snapshot (also the write position).
    log_bytes: u64,
    /// Size of the last snapshot written.
    snapshot_bytes: u64,
    /// The least log size that is folded ([`SNAPSHOT_MIN_LOG_BYTES`]; tests lower it).
    fold_at_bytes: u64,
}

impl MetadataLog {
    /// Loads the snapshot, replays the log (cutting a torn tail), folds both into a
    /// fresh snapshot and starts an empty log.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, false)
    }

    /// [`open`](Self::open); `skip_damaged` starts past damaged records that have
    /// intact ones after them instead of refusing to.
    pub(crate) fn open_with(dir: &Path, skip_damaged: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut state = match fs::read(dir.join(SNAPSHOT)) {
            Ok(bytes) => decode_snapshot(&bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => MetaState::default(),
            Err(e) => return Err(e),
        };
        if state.cluster_id.is_empty() {
            state.cluster_id = new_cluster_id();
        }
        let log_path = dir.join(LOG);
        let data = match fs::read(&log_path) {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Bytes::new(),
            Err(e) => return Err(e),
        };
        let mut valid = replay(&mut state, &data)?;
        if let Some(next) = next_record_after(&data, valid) {
            // Intact records after a bad one: damage at rest, not a torn tail.
            if !skip_damaged {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "metadata log {} is damaged at bytes {valid}..{next} and intact records follow, so this \
                         is not a torn tail; refusing to start so that no metadata is lost unnoticed. Restore the \
                         data directory from a backup, or set metadata_skip_damaged = true to start without the \
                         damaged records",
                        log_path.display()
                    ),
                ));
            }
            tracing::error!(from = valid, to = next, "metadata log damaged; starting without the damaged records");
            let mut at = next;
            loop {
                let end = at + replay(&mut state, &data.slice(at..))?;
                match next_record_after(&data, end) {
                    Some(n) => at = n,
                    None => {
                        valid = end;
                        break;
                    }
                }
            }
        }
        if valid < data.len() {
            tracing::warn!(
                intact = valid,
                total = data.len(),
                "metadata log has a torn or corrupt tail; discarding it"
            );
        }
        match write_snapshot(dir, &state) {
            Ok(snapshot_bytes) => {
                let log = OpenOptions::new().create(true).write(true).truncate(true).open(&log_path)?;
                log.sync_all()?;
                sync_dir(dir)?;
                Ok(MetadataLog {
                    dir: dir.to_path_buf(),
                    log,
                    state,
                    log_bytes: 0,
                    snapshot_bytes,
                    fold_at_bytes: SNAPSHOT_MIN_LOG_BYTES,
                })
            }
            // No room for a new snapshot (a full disk): keep the old snapshot and go
            // on appending after the intact part of the log, so the broker starts.
            Err(e) if is_no_space(&e) => {
                tracing::warn!(error = %e, "no space for a metadata snapshot; continuing the existing log");
                let mut log = OpenOptions::new().create(true).write(true).truncate(false).open(&log_path)?;
                if valid < data.len() {
                    log.set_len(valid as u64)?;
                }
                log.seek(SeekFrom::Start(valid as u64))?;
                let snapshot_bytes = fs::metadata(dir.join(SNAPSHOT)).map(|m| m.len()).unwrap_or(0);
                Ok(MetadataLog {
                    dir: dir.to_path_buf(),
                    log,
                    state,
                    log_bytes: valid as u64,
                    snapshot_bytes,
                    fold_at_bytes: SNAPSHOT_MIN_LOG_BYTES,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `record` durable, then applies it. Blocking (one write and one fsync).
    pub(crate) fn append(&mut self, record: MetaRecord) -> io::Result<()> {
        let seq = self.state.applied + 1;
        let json = serde_json::to_vec(&Sequenced { seq, record: record.clone() })
            .map_err(|e| io::Error::other(format!("cannot encode metadata record: {e}")))?;
        let mut buf = BytesMut::with_capacity(json.len() + entry::HEADER_LEN);
        entry::encode(&mut buf, KIND_META, 0, &json);
        // Written at the known end, so a write that failed half-way (a full disk)
        // is overwritten by the next record rather than left in front of it.
        self.write_at_end(&buf)?;
        self.log_bytes += buf.len() as u64;
        self.state.apply(&record);
        self.state.applied = seq;
        if self.log_bytes >= self.fold_at_bytes.max(self.snapshot_bytes) {
            // The record is durable in the log already: a failed snapshot only
            // postpones folding.
            if let Err(e) = self.fold() {
                tracing::warn!(error = %e, "cannot write a metadata snapshot; the log grows until it can");
            }
        }
        Ok(())
    }

    fn write_at_end(&mut self, buf: &[u8]) -> io::Result<()> {
        self.log.seek(SeekFrom::Start(self.log_bytes))?;
        self.log.write_all(buf)?;
        self.log.sync_data()
    }

    /// Writes the state as the snapshot and empties the log. Records carry their
    /// sequence number, so a crash between the two replays nothing twice.
    fn fold(&mut self) -> io::Result<()> {
        self.snapshot_bytes = write_snapshot(&self.dir, &self.state)?;
        self.log.set_len(0)?;
        self.log.sync_all()?;
        // The next record goes to the start of the now empty file: a write at the
        // old position would leave a hole of zeros that a scan takes for the end.
        self.log_bytes = 0;
        Ok(())
    }

    /// Folds the log once it holds `bytes` (and at least the snapshot's size).
    #[cfg(test)]
    pub(crate) fn fold_at(&mut self, bytes: u64) {
        self.fold_at_bytes = bytes;
    }

    /// Reserves `n` new partition ids (made durable by the record that uses them).
    pub(crate) fn allocate_partition_ids(&mut self, n: usize) -> Vec<u64> {
        let first = self.state.next_partition_id;
        self.state.next_partition_id += n as u64;
        (first..first + n as u64).collect()
    }
}

/// Applies the intact records of a metadata log to `state` (those after its
/// snapshot); returns the length of the intact prefix.
pub(crate) fn replay(state: &mut MetaState, data: &Bytes) -> io::Result<usize> {
    let (entries, valid) = entry::scan(data);
    for e in entries.iter().filter(|e| e.kind == KIND_META) {
        let rec: Sequenced = serde_json::from_slice(&e.payload).map_err(|err| {
            io::Error::new(io::ErrorKind::InvalidData, format!("metadata record at byte {}: {err}", e.at))
        })?;
        if rec.seq > state.applied {
            state.apply(&rec.record);
            state.applied = rec.seq;
        }
    }
    Ok(valid)
}

/// The position of the first intact record after byte `from` (found by its
/// checksum at any byte: records are not block-aligned), if any.
fn next_record_after(data: &Bytes, from: usize) -> Option<usize> {
    (from + 1..data.len()).find(|&at| entry::entry_at(data, at).is_some_and(|e| e.kind == KIND_META))
}

/// Reads a snapshot.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> io::Result<MetaState> {
    serde_json::from_slice::<MetaState>(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("metadata snapshot is unreadable: {e}")))
}

/// Writes the snapshot atomically; returns its size.
fn write_snapshot(dir: &Path, state: &MetaState) -> io::Result<u64> {
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let json = serde_json::to_vec(state).map_err(|e| io::Error::other(format!("cannot encode snapshot: {e}")))?;
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(SNAPSHOT))?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| json.len() as u64)
}

/// Whether an error says the disk (or the user's quota on it) is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) || e.kind() == io::ErrorKind::StorageFull
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(bits >> 122) as usize & 63] as char);
        bits <<= 6;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, ids: &[u64]) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: ids.iter().map(|&id| PartitionRecord::new(id)).collect(),
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn records_survive_reopen_and_deletions_stick() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (topic("a", &[0, 1]), topic("b", &[2]));
        let cluster;
        {
            let mut log = MetadataLog::open(dir.path()).unwrap();
            cluster = log.state.cluster_id.clone();
            log.append(MetaRecord::TopicCreated { topic: a.clone() }).unwrap();
            log.append(MetaRecord::TopicCreated { topic: b.clone() }).unwrap();
            log.append(MetaRecord::TopicDeleted { id: a.id }).unwrap();
        }
        let log = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.state.cluster_id, cluster);
        assert_eq!(log.state.topics.len(), 1);
        assert_eq!(log.state.topics[&b.id], b);
        assert_eq!(log.state.next_partition_id, 3);
    }

    #[test]
    fn a_torn_record_is_dropped_and_earlier_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = topic("a", &[0]);
        {
            let mut log = MetadataLog::open(dir.path()).unwrap();
            log.append(MetaRecord::TopicCreated { topic: a.clone() }).unwrap();
            log.append(MetaRecord::TopicCreated { topic: topic("b", &[1]) }).unwrap();
        }
        let path = dir.path().join(LOG);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let log = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.state.topics.len(), 1);
        assert!(log.state.topics.contains_key(&a.id));
    }

    #[test]
    fn records_after_many_snapshots_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = Vec::new();
        {
            let mut log = MetadataLog::open(dir.path()).unwrap();
            log.fold_at(2_000);
            let mut folds = 0;
            for i in 0..300u64 {
                let t = topic(&format!("t{i}"), &[i]);
                ids.push(t.id);
                log.append(MetaRecord::TopicCreated { topic: t }).unwrap();
                if log.log_bytes == 0 {
                    folds += 1;
                }
            }
            // The snapshot grows with the topics, so folds become rarer, but several
            // happened and records followed each.
            assert!(folds >= 5, "only {folds} snapshots");
            assert!(log.log_bytes > 0);
        }
        let log = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.state.topics.len(), 300);
        assert!(ids.iter().all(|id| log.state.topics.contains_key(id)));
        assert_eq!(log.state.applied, 300);
        // And the log after the reopen starts clean at byte 0.
        let bytes = fs::metadata(dir.path().join(LOG)).unwrap().len();
        assert_eq!(bytes, 0);
    }

    #[test]
    fn a_damaged_record_with_intact_ones_after_it_refuses_the_start_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (topic("a", &[0]), topic("b", &[1]), topic("c", &[2]));
        let mut ends = Vec::new();
        {
            let mut log = MetadataLog::open(dir.path()).unwrap();
            for t in [&a, &b, &c] {
                log.append(MetaRecord::TopicCreated { topic: t.clone() }).unwrap();
                ends.push(log.log_bytes as usize);
            }
        }
        let path = dir.path().join(LOG);
        let mut bytes = fs::read(&path).unwrap();
        bytes[ends[0] + 2] ^= 0x01; // the length of b's record
        fs::write(&path, &bytes).unwrap();
        let err = MetadataLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("metadata_skip_damaged"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "a refused start changes nothing");
        let log = MetadataLog::open_with(dir.path(), true).unwrap();
        assert!(log.state.topics.contains_key(&a.id) && log.state.topics.contains_key(&c.id));
        assert!(!log.state.topics.contains_key(&b.id));
    }

    #[test]
    fn replaying_a_log_already_in_the_snapshot_applies_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let a = topic("a", &[0]);
        let log_bytes;
        {
            let mut log = MetadataLog::open(dir.path()).unwrap();
            log.append(MetaRecord::TopicCreated { topic: a.clone() }).unwrap();
            log.append(MetaRecord::TopicDeleted { id: a.id }).unwrap();
            log_bytes = fs::read(dir.path().join(LOG)).unwrap();
        }
        // Crash after the snapshot was written but before the log was reset.
        MetadataLog::open(dir.path()).unwrap();
        fs::write(dir.path().join(LOG), &log_bytes).unwrap();
        let log = MetadataLog::open(dir.path()).unwrap();
        assert!(log.state.topics.is_empty());
        assert_eq!(log.state.applied, 2);
    }
}
