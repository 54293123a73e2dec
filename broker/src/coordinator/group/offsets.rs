//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, deletion with a topic
//! or a group, and expiry after `offsets.retention.minutes`.
//!
//! A commit is validated against the group (member, generation or member epoch),
//! written as records of `__consumer_offsets` (one batch, through the journal: group
//! commit and fsync like any acks=all produce), and applied to the group's map only
//! once durable. Each stored offset remembers its record's position, so a slower
//! writer never overwrites a newer commit. At start the topic is replayed in order.

use std::sync::Arc;

use bytes::Bytes;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::build::{build, BatchSpec};

use super::records::{self, decode_key, decode_value, encode_key, encode_value, Committed, OffsetKey};
use super::{Group, GroupCoordinator, Protocol, Stored, OFFSETS_TOPIC};
use crate::errors::{self, Error};
use crate::storage::txn_index::{mark_of, TxnMark};
use crate::storage::PartitionLog;

/// An OffsetCommit call, stripped of the wire.
#[derive(Debug, Clone)]
pub(crate) struct CommitRequest {
    pub(crate) group_id: String,
    /// Generation (classic) or member epoch (consumer protocol); -1 for a commit
    /// from outside group management.
    pub(crate) generation: i32,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) offsets: Vec<(String, i32, Committed)>,
}

/// A commit checked partition by partition: one result each, and the records and
/// offsets of the accepted ones.
struct Prepared {
    results: Vec<Result<(), Error>>,
    records: Vec<(Option<Bytes>, Option<Bytes>)>,
    accepted: Vec<((String, i32), Committed)>,
}

/// The committed offset of each asked partition (`None`: nothing committed).
pub(crate) type Fetched = Vec<(String, i32, Option<Committed>)>;

impl GroupCoordinator {
    /// Index of the `__consumer_offsets` partition that holds `group`'s records.
    pub(crate) fn offsets_partition_index(&self, group: &str) -> Result<i32, Error> {
        Ok(self.offsets_partition(group)?.index)
    }

    /// Ends the transactional offsets of `producer_id` in every group of
    /// `__consumer_offsets` partition `index` (its marker is durable there).
    pub(crate) fn end_transaction_in_partition(&self, index: i32, producer_id: i64, commit: bool) {
        for g in self.groups.iter() {
            if self.offsets_partition_index(g.key()).is_ok_and(|i| i == index) {
                g.value().lock().end_transaction(producer_id, commit);
            }
        }
    }

    /// TxnOffsetCommit: offsets written now, visible when the transaction commits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn commit_in_transaction(
        &self,
        req: CommitRequest,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        self.serves(&req.group_id)?;
        let group = match self.group(&req.group_id) {
            Some(g) => g,
            None => self.group_or_new(&req.group_id),
        };
        if req.generation >= 0 || !req.member_id.is_empty() {
            // v3+: a consumer-group-aware producer is fenced like a member.
            check_commit(&group.lock(), &req, &self.topic_ids(&req))?;
        }
        let now = self.now();
        let Prepared { results, records, accepted } = self.prepare(&req, now);
        if records.is_empty() {
            return Ok(results);
        }
        let spec = BatchSpec {
            producer_id,
            producer_epoch,
            base_sequence: -1,
            transactional: true,
            control: false,
            timestamp: now,
        };
        let base = self.append_with(&req.group_id, &spec, records).await?;
        let mut g = group.lock();
        let pending = g.pending.entry(producer_id).or_default();
        for (i, (k, committed)) in accepted.into_iter().enumerate() {
            pending.push((k, Stored { committed, log_offset: base + i as i64 }));
        }
        Ok(results)
    }

    /// The committed partitions of a request by topic id (what KIP-1251 checks).
    fn topic_ids(&self, req: &CommitRequest) -> Vec<(uuid::Uuid, i32)> {
        req.offsets.iter().filter_map(|(t, p, _)| self.storage.topic(t).map(|topic| (topic.id, *p))).collect()
    }

    /// Validates each offset of a commit and encodes the accepted ones.
    fn prepare(&self, req: &CommitRequest, now: i64) -> Prepared {
        let mut prepared =
            Prepared { results: Vec::with_capacity(req.offsets.len()), records: Vec::new(), accepted: Vec::new() };
        for (topic, partition, committed) in &req.offsets {
            let known = self.storage.topic(topic).is_some_and(|t| t.partition(*partition).is_some());
            let result = if !known {
                Err(Error::UnknownTopicOrPartition)
            } else if committed.metadata.len() > self.settings.offset_metadata_max_bytes {
                Err(Error::OffsetMetadataTooLarge)
            } else {
                let committed = Committed { commit_timestamp: now, ..committed.clone() };
                let key = OffsetKey { group: req.group_id.clone(), topic: topic.clone(), partition: *partition };
                prepared.records.push((Some(encode_key(&key)), Some(encode_value(&committed))));
                prepared.accepted.push(((topic.clone(), *partition), committed));
                Ok(())
            };
            prepared.results.push(result);
        }
        prepared
    }

    /// The `__consumer_offsets` partition that holds `group`'s records.
    fn offsets_partition(&self, group: &str) -> Result<Arc<PartitionLog>, Error> {
        let topic = self.storage.topic(OFFSETS_TOPIC).ok_or(Error::CoordinatorNotAvailable)?;
        let n = topic.partitions.len().max(1) as u32;
        let index = (crc32c::crc32c(group.as_bytes()) % n) as i32;
        topic.partition(index).cloned().ok_or(Error::CoordinatorNotAvailable)
    }

    /// Creates `__consumer_offsets` if needed and replays it. Returns offsets loaded.
    pub(super) async fn load_offsets(&self) -> anyhow::Result<usize> {
        let topic = self.storage.internal_topic(OFFSETS_TOPIC, self.settings.offsets_partitions).await?;
        let mut total = 0;
        for partition in &topic.partitions {
            total += self.replay_partition(partition).await?;
        }
        Ok(total)
    }

    /// Cluster mode: this broker now owns `__consumer_offsets` partition `index`
    /// (rebuilt from the object store): forget what it knew of its groups and
    /// replay it. Returns offsets loaded.
    pub async fn load_partition(&self, index: i32) -> anyhow::Result<usize> {
        self.unload_partition(index);
        let topic = self.storage.topic(OFFSETS_TOPIC).ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC} missing"))?;
        let partition = topic.partition(index).ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC}-{index} missing"))?;
        self.replay_partition(partition).await
    }

    /// Cluster mode: `__consumer_offsets` partition `index` went to another broker:
    /// its groups are coordinated there now.
    pub fn unload_partition(&self, index: i32) {
        self.groups.retain(|name, _| self.offsets_partition_index(name) != Ok(index));
    }

    /// Replays one partition of `__consumer_offsets` into the groups it holds.
    async fn replay_partition(&self, partition: &Arc<PartitionLog>) -> anyhow::Result<usize> {
        let now = self.now();
        let index = partition.index;
        self.storage
            .replay_records(partition, |header, batch, record| match mark_of(header, batch) {
                // A marker's (only) record ends the producer's pending offsets.
                Some(TxnMark::End { producer_id, commit }) => {
                    self.end_transaction_in_partition(index, producer_id, commit)
                }
                Some(TxnMark::Data { producer_id }) => {
                    self.replay_pending(producer_id, record.offset, record.key, record.value)
                }
                None if header.is_control() => {}
                None => self.replay(record.offset, record.key, record.value, now),
            })
            .await?;
        // A group loaded from its offsets counts as empty since its last commit.
        let mut total = 0;
        let mine = |name: &str| self.offsets_partition_index(name).is_ok_and(|i| i == index);
        for entry in self.groups.iter() {
            if !mine(entry.key()) {
                continue;
            }
            let mut g = entry.value().lock();
            total += g.offsets.len();
            let last = g.offsets.values().map(|s| s.committed.commit_timestamp).max().unwrap_or(now);
            if let Protocol::Classic(c) = &mut g.protocol {
                c.empty_since = last;
            }
        }
        self.groups.retain(|name, g| {
            if !mine(name) {
                return true;
            }
            let g = g.lock();
            let described = matches!(&g.protocol, Protocol::Classic(c) if c.protocol_type.is_some());
            !g.offsets.is_empty() || !g.pending.is_empty() || described
        });
        Ok(total)
    }

    fn replay_pending(&self, producer_id: i64, log_offset: i64, key: Option<Bytes>, value: Option<Bytes>) {
        let (Some(key), Some(committed)) = (key.and_then(decode_key), value.and_then(decode_value)) else {
            return;
        };
        let group = self.group_or_new(&key.group);
        let mut g = group.lock();
        g.pending.entry(producer_id).or_default().push(((key.topic, key.partition), Stored { committed, log_offset }));
    }

    fn replay(&self, log_offset: i64, key: Option<Bytes>, value: Option<Bytes>, now: i64) {
        let Some(key) = key else { return };
        if let Some(group) = records::decode_group_key(key.clone()) {
            // A classic group's metadata: its protocol type and generation, the
            // group Empty until its members join again; a tombstone forgets them.
            let meta = value.and_then(records::decode_group_value);
            if meta.is_none() && self.group(&group).is_none() {
                return;
            }
            let entry = self.group_or_new(&group);
            let mut g = entry.lock();
            if let Protocol::Classic(c) = &mut g.protocol {
                match meta {
                    Some((protocol_type, generation)) => {
                        c.protocol_type = (!protocol_type.is_empty()).then_some(protocol_type);
                        c.generation = generation;
                    }
                    None => {
                        c.protocol_type = None;
                        c.generation = 0;
                    }
                }
            }
            return;
        }
        let Some(key) = decode_key(key) else {
            return;
        };
        let group = self.group_or_new(&key.group);
        let mut g = group.lock();
        let k = (key.topic, key.partition);
        match value.and_then(decode_value) {
            Some(committed) => {
                g.offsets.insert(k, Stored { committed, log_offset });
            }
            None => {
                g.offsets.remove(&k);
            }
        }
        let _ = now;
    }

    /// Appends records to the group's offsets partition; returns the first offset.
    pub(super) async fn append(&self, group: &str, records: Vec<(Option<Bytes>, Option<Bytes>)>) -> Result<i64, Error> {
        self.append_with(group, &BatchSpec::plain(self.now()), records).await
    }

    async fn append_with(
        &self,
        group: &str,
        spec: &BatchSpec,
        records: Vec<(Option<Bytes>, Option<Bytes>)>,
    ) -> Result<i64, Error> {
        let partition = self.offsets_partition(group)?;
        let batch = build(spec, &records).map_err(|_| Error::UnknownServerError)?;
        let header = BatchHeader::parse(&batch).map_err(|_| Error::UnknownServerError)?;
        let pending =
            self.storage.submit(&partition, vec![(header, batch)], false).await.map_err(|e| errors::coordinator(&e))?;
        let appended =
            pending.await.map_err(|_| Error::CoordinatorNotAvailable)?.map_err(|e| errors::coordinator(&e))?;
        Ok(appended.base_offset)
    }

    /// Writes tombstones for `keys` of `group` and drops them from its map.
    pub(super) async fn write_tombstones(&self, group: &str, keys: &[(String, i32)]) -> Result<(), Error> {
        let records = keys
            .iter()
            .map(|(topic, partition)| {
                let key = OffsetKey { group: group.to_string(), topic: topic.clone(), partition: *partition };
                (Some(encode_key(&key)), None)
            })
            .collect();
        let base = self.append(group, records).await?;
        if let Some(g) = self.group(group) {
            let mut g = g.lock();
            for (i, k) in keys.iter().enumerate() {
                if g.offsets.get(k).is_some_and(|s| s.log_offset < base + i as i64) {
                    g.offsets.remove(k);
                }
            }
        }
        Ok(())
    }

    /// OffsetCommit. `Err` applies to every partition; otherwise one result each.
    pub(crate) async fn commit(&self, req: CommitRequest) -> Result<Vec<Result<(), Error>>, Error> {
        self.serves(&req.group_id)?;
        if req.group_id.is_empty() {
            return Err(Error::InvalidGroupId);
        }
        let group = match self.group(&req.group_id) {
            Some(g) => g,
            None if req.generation < 0 => self.group_or_new(&req.group_id),
            None => return Err(Error::IllegalGeneration),
        };
        check_commit(&group.lock(), &req, &self.topic_ids(&req))?;
        let Prepared { results, records, accepted } = self.prepare(&req, self.now());
        if records.is_empty() {
            return Ok(results);
        }
        let base = self.append(&req.group_id, records).await?;
        let mut g = group.lock();
        for (i, (k, committed)) in accepted.into_iter().enumerate() {
            let log_offset = base + i as i64;
            if g.offsets.get(&k).is_none_or(|s| s.log_offset < log_offset) {
                g.offsets.insert(k, Stored { committed, log_offset });
            }
        }
        self.metrics.offset_commits.inc_by(results.iter().filter(|r| r.is_ok()).count() as u64);
        Ok(results)
    }

    /// OffsetFetch for one group: `topics` None means every committed partition.
    /// `member` (OffsetFetch v9+) is checked against a consumer-protocol group.
    #[cfg(test)]
    pub(crate) fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        member: Option<(&str, i32)>,
    ) -> Result<Fetched, Error> {
        self.fetch_offsets_stable(group_id, topics, member, false)
    }

    /// OffsetFetch; with `require_stable` (v7+), partitions with offsets committed in
    /// an open transaction answer UNSTABLE_OFFSET_COMMIT (retriable).
    pub(crate) fn fetch_offsets_stable(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        member: Option<(&str, i32)>,
        require_stable: bool,
    ) -> Result<Fetched, Error> {
        self.serves(group_id)?;
        if require_stable {
            if let Some(group) = self.group(group_id) {
                let g = group.lock();
                let unstable = g.pending.values().flatten().any(|((t, p), _)| {
                    topics.as_ref().is_none_or(|ts| ts.iter().any(|(name, ps)| name == t && ps.contains(p)))
                });
                if unstable {
                    return Err(Error::UnstableOffsetCommit);
                }
            }
        }
        let Some(group) = self.group(group_id) else {
            return Ok(topics
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p, None)))
                .collect());
        };
        let g = group.lock();
        if let (Some((member_id, epoch)), Protocol::Consumer(c)) = (member, &g.protocol) {
            let m = c.members.get(member_id).ok_or(Error::UnknownMemberId)?;
            if m.member_epoch != epoch {
                return Err(Error::StaleMemberEpoch);
            }
        }
        Ok(match topics {
            None => g.offsets.iter().map(|((t, p), s)| (t.clone(), *p, Some(s.committed.clone()))).collect(),
            Some(topics) => topics
                .into_iter()
                .flat_map(|(t, ps)| {
                    let g = &g;
                    ps.into_iter().map(move |p| {
                        let c = g.offsets.get(&(t.clone(), p)).map(|s| s.committed.clone());
                        (t.clone(), p, c)
                    })
                })
                .collect(),
        })
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not
    /// consume. `Err` is the group-level error; otherwise one result per partition.
    pub(crate) async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        self.serves(group_id)?;
        let group = self.group(group_id).ok_or(Error::GroupIdNotFound)?;
        let (results, keys) = {
            let g = group.lock();
            let subscribed = subscribed_topics(&g)?;
            let mut keys = Vec::new();
            let results: Vec<Result<(), Error>> = partitions
                .iter()
                .map(|(t, p)| {
                    if subscribed.iter().any(|s| s == t) {
                        return Err(Error::GroupSubscribedToTopic);
                    }
                    if self.storage.topic(t).is_none_or(|topic| topic.partition(*p).is_none()) {
                        return Err(Error::UnknownTopicOrPartition);
                    }
                    if g.offsets.contains_key(&(t.clone(), *p)) {
                        keys.push((t.clone(), *p));
                    }
                    Ok(())
                })
                .collect();
            (results, keys)
        };
        if !keys.is_empty() {
            self.write_tombstones(group_id, &keys).await?;
        }
        Ok(results)
    }

    /// Drops the committed offsets of a deleted topic from every group.
    pub(crate) async fn topic_deleted(&self, topic: &str) {
        let affected: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .iter()
            .filter_map(|e| {
                let g = e.value().lock();
                let keys: Vec<_> = g.offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
                (!keys.is_empty()).then(|| (e.key().clone(), keys))
            })
            .collect();
        for (group, keys) in affected {
            if let Err(e) = self.write_tombstones(&group, &keys).await {
                tracing::warn!(%group, %topic, error = ?e, "cannot delete offsets of deleted topic");
            }
        }
    }

    /// Expires offsets of groups that have been empty for the retention period
    /// (counted from the later of the group becoming empty and the commit), and
    /// forgets empty groups that have nothing left.
    pub(crate) async fn expire_offsets(&self) {
        let now = self.now();
        let retention = self.settings.offsets_retention_ms;
        let expired: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .iter()
            .filter_map(|e| {
                let g = e.value().lock();
                if !g.is_empty() {
                    return None;
                }
                let since = g.empty_since();
                let keys: Vec<_> = g
                    .offsets
                    .iter()
                    .filter(|(_, s)| s.committed.commit_timestamp.max(since).saturating_add(retention) <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                (!keys.is_empty()).then(|| (e.key().clone(), keys))
            })
            .collect();
        for (group, keys) in expired {
            match self.write_tombstones(&group, &keys).await {
                Ok(()) => tracing::info!(%group, offsets = keys.len(), "expired committed offsets"),
                Err(e) => tracing::warn!(%group, error = ?e, "cannot expire offsets"),
            }
        }
        let mut gone = Vec::new();
        self.groups.retain(|id, g| {
            let g = g.lock();
            let keep = !(g.is_empty() && g.offsets.is_empty());
            if !keep && matches!(&g.protocol, Protocol::Classic(c) if c.protocol_type.is_some()) {
                gone.push(id.clone());
            }
            keep
        });
        for id in gone {
            self.write_group_tombstone(&id).await;
        }
    }

    /// Lag of every committed offset: (group, topic, partition, high watermark -
    /// committed offset), never negative.
    pub fn lag(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for e in self.groups.iter() {
            let g = e.value().lock();
            for ((topic, partition), s) in &g.offsets {
                let Some(hw) =
                    self.storage.topic(topic).and_then(|t| t.partition(*partition).map(|p| p.offsets().high_watermark))
                else {
                    continue;
                };
                out.push((e.key().clone(), topic.clone(), *partition, (hw - s.committed.offset).max(0)));
            }
        }
        out
    }
}

/// Whether `req` may commit for this group.
///
/// A commit with a negative generation (member epoch) comes from an admin client or
/// from a consumer that assigns its partitions itself (librdkafka sends its own
/// member id with it after `assign()`): as Kafka, it is taken while the group has no
/// members, whatever member id it carries.
fn check_commit(g: &Group, req: &CommitRequest, partitions: &[(uuid::Uuid, i32)]) -> Result<(), Error> {
    let outside = req.generation < 0 && req.member_id.is_empty() && req.instance_id.is_none();
    match &g.protocol {
        Protocol::Classic(c) => {
            use super::classic::State;
            if c.state == State::Dead {
                return Err(Error::CoordinatorNotAvailable);
            }
            if req.generation < 0 && c.state == State::Empty {
                return Ok(());
            }
            if outside {
                // Without member id and generation, only an empty group takes commits.
                return Err(Error::UnknownMemberId);
            }
            c.check_member(&req.member_id, req.instance_id.as_deref())?;
            if req.generation != c.generation {
                return Err(Error::IllegalGeneration);
            }
            if c.state == State::CompletingRebalance {
                return Err(Error::RebalanceInProgress);
            }
            Ok(())
        }
        Protocol::Consumer(c) => {
            if req.generation < 0 && c.members.is_empty() {
                return Ok(());
            }
            if outside {
                return Err(Error::UnknownMemberId);
            }
            c.check_commit(&req.member_id, req.generation, partitions)
        }
    }
}

/// Topics the group's members consume (an empty list for an empty group).
fn subscribed_topics(g: &Group) -> Result<Vec<String>, Error> {
    match &g.protocol {
        Protocol::Classic(c) => {
            if c.is_empty() {
                return Ok(Vec::new());
            }
            if c.protocol_type.as_deref() != Some("consumer") {
                return Err(Error::NonEmptyGroup);
            }
            let protocol = c.protocol_name.clone().unwrap_or_default();
            let mut topics: Vec<String> =
                c.members.values().flat_map(|m| consumer_subscription_topics(&m.metadata(&protocol))).collect();
            topics.sort();
            topics.dedup();
            Ok(topics)
        }
        Protocol::Consumer(c) => Ok(c.subscribed_names()),
    }
}

/// The topics of a ConsumerProtocolSubscription (any version): i16 version, then an
/// array of strings.
pub(crate) fn consumer_subscription_topics(metadata: &Bytes) -> Vec<String> {
    use bytes::Buf;
    let mut b = metadata.clone();
    if b.remaining() < 6 {
        return Vec::new();
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize {
            break;
        }
        if let Ok(s) = String::from_utf8(b.split_to(len as usize).to_vec()) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
