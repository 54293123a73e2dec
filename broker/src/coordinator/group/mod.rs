//! The group coordinator (DESIGN §6). One broker coordinates every group.
//!
//! # Layout
//! - [`classic`]: the classic protocol's rebalance state machine (JoinGroup,
//!   SyncGroup, Heartbeat, LeaveGroup), pure apart from the channels of parked calls.
//! - [`consumer`]: the consumer protocol of KIP-848 (ConsumerGroupHeartbeat): member
//!   epochs, target assignment, and the revoke-before-assign reconciliation.
//! - [`assignor`]: the server-side assignors of the consumer protocol (uniform, range).
//! - `offsets`: OffsetCommit / OffsetFetch / OffsetDelete and their expiry.
//! - [`records`]: the `__consumer_offsets` record schemas.
//!
//! State lives in one map of groups, each behind its own lock (never held across an
//! await). Committed offsets are records of the internal `__consumer_offsets` topic,
//! written through the journal like any produce (group commit, fsync), and replayed
//! from it at start; a timer task applies session, rebalance and retention deadlines.

pub(crate) mod assignor;
pub(crate) mod classic;
pub mod configs;
pub(crate) mod consumer;
mod ids;
pub mod lag;
pub(crate) mod offsets;
pub(crate) mod records;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tributary_config::GroupConfig;

use crate::clock::Clock;
use crate::errors::Error;
use crate::metrics::Metrics;
use crate::storage::Storage;
use classic::{ClassicGroup, JoinOutcome, JoinRequest, Pending, SyncOutcome};
use consumer::ConsumerGroup;
use records::Committed;

/// Name of the internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinator's settings, from `[groups]`.
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub(crate) initial_rebalance_delay_ms: i32,
    pub(crate) min_session_timeout_ms: i32,
    pub(crate) max_session_timeout_ms: i32,
    pub(crate) max_size: usize,
    pub(crate) consumer_heartbeat_interval_ms: i32,
    pub(crate) consumer_session_timeout_ms: i32,
    pub(crate) assignors: Vec<String>,
    pub(crate) offsets_retention_ms: i64,
    pub(crate) offsets_partitions: i32,
    pub(crate) offset_metadata_max_bytes: usize,
}

impl GroupSettings {
    pub(crate) fn from_config(c: &GroupConfig) -> Self {
        let i = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        GroupSettings {
            initial_rebalance_delay_ms: i(c.initial_rebalance_delay_ms),
            min_session_timeout_ms: i(c.min_session_timeout_ms),
            max_session_timeout_ms: i(c.max_session_timeout_ms),
            max_size: c.max_size as usize,
            consumer_heartbeat_interval_ms: i(c.consumer_heartbeat_interval_ms),
            consumer_session_timeout_ms: i(c.consumer_session_timeout_ms),
            assignors: c.consumer_assignors.clone(),
            offsets_retention_ms: (c.offsets_retention_minutes as i64).saturating_mul(60_000),
            offsets_partitions: i(c.offsets_partitions),
            offset_metadata_max_bytes: c.offset_metadata_max_bytes as usize,
        }
    }
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self::from_config(&GroupConfig::default())
    }
}

/// Which protocol a group speaks. A group with no members (only offsets) is an
/// empty classic group, which a consumer-protocol member may take over.
#[derive(Debug)]
pub(crate) enum Protocol {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// A committed offset with the position of its record in `__consumer_offsets`
/// (later records win, whatever order their writers finish in).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) committed: Committed,
    pub(crate) log_offset: i64,
}

/// Offsets one producer committed inside its open transaction.
pub(crate) type PendingOffsets = Vec<((String, i32), Stored)>;

/// One group: its membership and its committed offsets.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) protocol: Protocol,
    pub(crate) offsets: BTreeMap<(String, i32), Stored>,
    /// Offsets committed inside open transactions, by producer id: visible only
    /// once the transaction commits.
    pub(crate) pending: std::collections::HashMap<i64, PendingOffsets>,
}

impl Group {
    fn new_classic(id: &str, now: i64) -> Self {
        Group {
            protocol: Protocol::Classic(ClassicGroup::new(id, now)),
            offsets: BTreeMap::new(),
            pending: Default::default(),
        }
    }

    /// Ends a transaction's offsets: applied on commit, dropped on abort.
    pub(crate) fn end_transaction(&mut self, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending.remove(&producer_id) else { return };
        if !commit {
            return;
        }
        for (k, stored) in pending {
            if self.offsets.get(&k).is_none_or(|s| s.log_offset < stored.log_offset) {
                self.offsets.insert(k, stored);
            }
        }
    }

    /// No members, none joining.
    pub(crate) fn is_empty(&self) -> bool {
        match &self.protocol {
            Protocol::Classic(g) => g.is_empty(),
            Protocol::Consumer(g) => g.members.is_empty(),
        }
    }

    /// The state name DescribeGroups / ListGroups show.
    pub(crate) fn state_name(&self) -> &'static str {
        match &self.protocol {
            Protocol::Classic(g) => g.state.name(),
            Protocol::Consumer(g) => g.state_name(),
        }
    }

    /// "classic" or "consumer" (ListGroups v5 group type).
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.protocol {
            Protocol::Classic(_) => "classic",
            Protocol::Consumer(_) => "consumer",
        }
    }

    /// Protocol type shown by ListGroups ("consumer" for both kinds of consumers).
    pub(crate) fn protocol_type(&self) -> String {
        match &self.protocol {
            Protocol::Classic(g) => g.protocol_type.clone().unwrap_or_default(),
            Protocol::Consumer(_) => "consumer".into(),
        }
    }

    fn empty_since(&self) -> i64 {
        match &self.protocol {
            Protocol::Classic(g) => g.empty_since,
            Protocol::Consumer(g) => g.empty_since,
        }
    }

    fn next_deadline(&self) -> Option<i64> {
        match &self.protocol {
            Protocol::Classic(g) => g.next_deadline(),
            Protocol::Consumer(g) => g.next_deadline(),
        }
    }

    fn tick(&mut self, settings: &GroupSettings, now: i64) {
        match &mut self.protocol {
            Protocol::Classic(g) => g.tick(settings, now),
            Protocol::Consumer(g) => g.tick(now),
        }
    }
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) group_id: String,
    pub(crate) protocol_type: String,
    pub(crate) state: &'static str,
    pub(crate) group_type: &'static str,
}

/// The coordinator.
#[derive(Debug)]
pub struct GroupCoordinator {
    pub(crate) storage: Arc<Storage>,
    pub(crate) settings: GroupSettings,
    pub(crate) groups: DashMap<String, Arc<Mutex<Group>>>,
    loaded: AtomicBool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    owner: std::sync::OnceLock<crate::coordinator::Ownership>,
    /// Classic groups whose generation or protocol type changed since their
    /// metadata record was last written (the timer writes them).
    meta_due: DashSet<String>,
    /// Per-group config overrides (KIP-848 group configs).
    pub configs: Arc<configs::GroupConfigs>,
}

impl GroupCoordinator {
    pub fn new(storage: Arc<Storage>, config: &GroupConfig, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let storage_configs = storage.group_configs();
        Arc::new(GroupCoordinator {
            storage,
            settings: GroupSettings::from_config(config),
            groups: DashMap::new(),
            loaded: AtomicBool::new(false),
            clock,
            metrics,
            owner: std::sync::OnceLock::new(),
            meta_due: DashSet::new(),
            configs: Arc::new(configs::GroupConfigs::new(storage_configs)),
        })
    }

    /// Loads committed offsets from `__consumer_offsets` (creating it on first
    /// start); until this finishes, group APIs answer COORDINATOR_LOAD_IN_PROGRESS.
    pub async fn load(&self) -> anyhow::Result<()> {
        let loaded = self.load_offsets().await?;
        self.loaded.store(true, Ordering::Release);
        tracing::info!(groups = self.groups.len(), offsets = loaded, "group coordinator loaded");
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// COORDINATOR_LOAD_IN_PROGRESS until [`load`](Self::load) is done.
    pub(crate) fn ready(&self) -> Result<(), Error> {
        if self.is_loaded() {
            Ok(())
        } else {
            Err(Error::CoordinatorLoadInProgress)
        }
    }

    /// Loaded, and the coordinator of `group` (cluster mode: this broker owns the
    /// group's `__consumer_offsets` partition), or NOT_COORDINATOR so the client asks
    /// FindCoordinator again.
    pub(crate) fn serves(&self, group: &str) -> Result<(), Error> {
        self.ready()?;
        match self.owner.get() {
            Some(owns) if !(owns.0)(self.offsets_partition_index(group)?) => Err(Error::NotCoordinator),
            _ => Ok(()),
        }
    }

    /// Cluster mode: `owns(partition)` says whether this broker owns that
    /// `__consumer_offsets` partition now.
    pub fn set_owner(&self, owns: crate::coordinator::Ownership) {
        let _ = self.owner.set(owns);
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.get(id).map(|g| g.clone())
    }

    fn group_or_new(&self, id: &str) -> Arc<Mutex<Group>> {
        let now = self.now();
        self.groups.entry(id.to_string()).or_insert_with(|| Arc::new(Mutex::new(Group::new_classic(id, now)))).clone()
    }

    /// Applies expired deadlines every `period` until shutdown, and offsets retention
    /// once a minute.
    pub async fn run_timers(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = self.now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // What changed since the last tick, before the journal closes.
                    if self.is_loaded() {
                        self.write_group_metadata().await;
                    }
                    return;
                }
                _ = ticker.tick() => {}
            }
            self.tick();
            if self.is_loaded() {
                self.write_group_metadata().await;
            }
            let now = self.now();
            if self.is_loaded() && now - last_expiry >= 60_000 {
                last_expiry = now;
                self.expire_offsets().await;
            }
        }
    }

    /// Applies every deadline that has passed.
    pub(crate) fn tick(&self) {
        let now = self.now();
        let due: Vec<Arc<Mutex<Group>>> = self
            .groups
            .iter()
            .filter(|g| g.lock().next_deadline().is_some_and(|d| d <= now))
            .map(|g| g.clone())
            .collect();
        for g in due {
            let mut g = g.lock();
            if self.with_classic(&mut g, |c| c.tick(&self.settings, now)).is_none() {
                g.tick(&self.settings, now);
            }
        }
    }

    // ---- classic protocol -------------------------------------------------------

    /// Runs `f` on a classic group, counting a completed generation and noting a
    /// changed generation or protocol type for the group's metadata record.
    fn with_classic<T>(&self, g: &mut Group, f: impl FnOnce(&mut ClassicGroup) -> T) -> Option<T> {
        let Protocol::Classic(c) = &mut g.protocol else { return None };
        let before = c.generation;
        let had_type = c.protocol_type.is_some();
        let out = f(c);
        if c.generation != before && !c.members.is_empty() {
            self.metrics.rebalances.with_label_values(&["classic"]).inc();
        }
        if c.generation != before || c.protocol_type.is_some() != had_type {
            self.meta_due.insert(c.id.clone());
        }
        Some(out)
    }

    /// Writes the metadata record of every classic group noted since the last call
    /// (its state now), so that a restart finds its protocol type and generation.
    /// A group no longer here gets nothing: its tombstone went with its removal.
    pub(crate) async fn write_group_metadata(&self) {
        let due: Vec<String> = self.meta_due.iter().map(|g| g.key().clone()).collect();
        for id in due {
            self.meta_due.remove(&id);
            if self.serves(&id).is_err() {
                continue;
            }
            let Some(meta) = self.group(&id).and_then(|g| match &g.lock().protocol {
                Protocol::Classic(c) => c.metadata_record(self.now()),
                Protocol::Consumer(_) => None,
            }) else {
                continue;
            };
            let record = (Some(records::encode_group_key(&id)), Some(records::encode_group_value(&meta)));
            if let Err(e) = self.append(&id, vec![record]).await {
                tracing::debug!(group = %id, error = ?e, "group metadata not written; retrying");
                self.meta_due.insert(id);
            }
        }
    }

    /// The tombstone of a removed group's metadata record, if it had one.
    pub(crate) async fn write_group_tombstone(&self, id: &str) {
        if let Err(e) = self.append(id, vec![(Some(records::encode_group_key(id)), None)]).await {
            tracing::warn!(group = %id, error = ?e, "group metadata tombstone not written");
        }
    }

    pub(crate) async fn join(&self, group_id: &str, req: JoinRequest) -> JoinOutcome {
        let member_id = req.member_id.clone();
        let fail =
            |e| JoinOutcome { error: Some(e), generation: -1, member_id: member_id.clone(), ..Default::default() };
        if let Err(e) = self.serves(group_id) {
            return fail(e);
        }
        if group_id.is_empty() {
            return fail(Error::InvalidGroupId);
        }
        let group = self.group_or_new(group_id);
        let pending = {
            let mut g = group.lock();
            let now = self.now();
            match self.with_classic(&mut g, |c| c.join(req, &self.settings, now)) {
                Some(p) => p,
                None => return fail(Error::InconsistentGroupProtocol),
            }
        };
        match pending {
            Pending::Ready(o) => o,
            Pending::Wait(rx) => rx.await.unwrap_or_else(|_| fail(Error::CoordinatorNotAvailable)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> SyncOutcome {
        let fail = |e| SyncOutcome { error: Some(e), ..Default::default() };
        if let Err(e) = self.serves(group_id) {
            return fail(e);
        }
        let Some(group) = self.group(group_id) else {
            return fail(Error::UnknownMemberId);
        };
        let pending = {
            let mut g = group.lock();
            let now = self.now();
            match &mut g.protocol {
                Protocol::Classic(c) => {
                    c.sync(member_id, instance_id, generation, protocol_type, protocol_name, assignments, now)
                }
                Protocol::Consumer(_) => return fail(Error::UnknownMemberId),
            }
        };
        match pending {
            Pending::Ready(o) => o,
            Pending::Wait(rx) => rx.await.unwrap_or_else(|_| fail(Error::CoordinatorNotAvailable)),
        }
    }

    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), Error> {
        self.serves(group_id)?;
        let group = self.group(group_id).ok_or(Error::UnknownMemberId)?;
        let mut g = group.lock();
        let now = self.now();
        match &mut g.protocol {
            Protocol::Classic(c) => c.heartbeat(member_id, instance_id, generation, now),
            Protocol::Consumer(_) => Err(Error::UnknownMemberId),
        }
    }

    /// Members leave; one result per member, in order.
    pub(crate) fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        self.serves(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Ok(members.iter().map(|_| Err(Error::UnknownMemberId)).collect());
        };
        let mut g = group.lock();
        let now = self.now();
        let out = self.with_classic(&mut g, |c| {
            members.iter().map(|(id, instance)| c.leave(id, instance.as_deref(), &self.settings, now)).collect()
        });
        Ok(out.unwrap_or_else(|| members.iter().map(|_| Err(Error::UnknownMemberId)).collect()))
    }

    // ---- consumer protocol (KIP-848) ---------------------------------------------

    pub(crate) fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: consumer::HeartbeatRequest,
    ) -> Result<consumer::HeartbeatOutcome, (Error, Option<String>)> {
        self.serves(group_id).map_err(|e| (e, None))?;
        if group_id.is_empty() {
            return Err((Error::InvalidGroupId, Some("GroupId can't be empty.".into())));
        }
        let now = self.now();
        let group = if req.member_epoch == 0 {
            self.group_or_new(group_id)
        } else {
            self.group(group_id).ok_or((Error::UnknownMemberId, None))?
        };
        let mut g = group.lock();
        if let Protocol::Classic(c) = &g.protocol {
            if !c.is_empty() {
                return Err((
                    Error::GroupIdNotFound,
                    Some(format!("Group {group_id} is a classic group with members.")),
                ));
            }
            if req.member_epoch != 0 {
                return Err((Error::UnknownMemberId, None));
            }
            // An empty classic group (offsets only) becomes a consumer group.
            g.protocol = Protocol::Consumer(ConsumerGroup::new(group_id, &self.settings, now));
        }
        let Protocol::Consumer(c) = &mut g.protocol else { unreachable!("converted above") };
        let before = c.assignment_epoch;
        let overridden = self.configs.settings_for(group_id, &self.settings);
        let out = c.heartbeat(req, overridden.as_ref().unwrap_or(&self.settings), self.storage.as_ref(), now);
        if c.assignment_epoch != before {
            self.metrics.rebalances.with_label_values(&["consumer"]).inc();
        }
        out
    }

    // ---- admin ------------------------------------------------------------------

    pub(crate) fn list(&self) -> Result<Vec<Listing>, Error> {
        self.ready()?;
        let mut out: Vec<Listing> = self
            .groups
            .iter()
            .map(|entry| {
                let g = entry.value().lock();
                Listing {
                    group_id: entry.key().clone(),
                    protocol_type: g.protocol_type(),
                    state: g.state_name(),
                    group_type: g.type_name(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Deletes empty groups and their offsets; one result per group, in order.
    pub(crate) async fn delete_groups(&self, ids: &[String]) -> Vec<Result<(), Error>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.delete_group(id).await);
        }
        out
    }

    async fn delete_group(&self, id: &str) -> Result<(), Error> {
        self.ready()?;
        let group = self.group(id).ok_or(Error::GroupIdNotFound)?;
        let keys: Vec<(String, i32)> = {
            let g = group.lock();
            if !g.is_empty() {
                return Err(Error::NonEmptyGroup);
            }
            g.offsets.keys().cloned().collect()
        };
        if !keys.is_empty() {
            self.write_tombstones(id, &keys).await?;
        }
        let had_metadata = {
            let mut g = group.lock();
            if !g.is_empty() {
                return Err(Error::NonEmptyGroup);
            }
            let had = matches!(&g.protocol, Protocol::Classic(c) if c.protocol_type.is_some());
            if let Protocol::Classic(c) = &mut g.protocol {
                c.kill();
            }
            had
        };
        self.groups.remove(id);
        self.meta_due.remove(id);
        if had_metadata {
            self.write_group_tombstone(id).await;
        }
        Ok(())
    }
}

/// How a consumer-protocol group sees topics: by name, with id and partition count.
pub(crate) trait TopicLookup {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)>;
    fn names(&self) -> Vec<String>;
    fn name_of(&self, id: &uuid::Uuid) -> Option<String>;
}

impl TopicLookup for Storage {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        Storage::topic(self, name).map(|t| (t.id, t.partitions.len() as i32))
    }
    /// Every topic, internal ones too: Kafka resolves a KIP-848 regex against every
    /// topic name (`__consumer_offsets` included when the regex names it), found by
    /// franz-go's Test848RegexBrokerResolves.
    fn names(&self) -> Vec<String> {
        self.topics().iter().map(|t| t.name.to_string()).collect()
    }
    fn name_of(&self, id: &uuid::Uuid) -> Option<String> {
        self.topic_by_id(id).map(|t| t.name.to_string())
    }
}
