//! The consumer group protocol of KIP-848 (`group.protocol=consumer`).
//!
//! Members heartbeat with their subscription and the partitions they own; the
//! coordinator keeps a group epoch (bumped by any change of members, subscriptions
//! or subscribed topics' partitions), a target assignment computed by a server-side
//! [`assignor`](super::assignor) for that epoch, and moves each member toward its
//! target without two members ever owning a partition:
//!
//! ```text
//!   member behind the target epoch
//!     ├─ owns partitions not in its target ─▶ UnrevokedPartitions: told to give
//!     │                                        them up, epoch unchanged; waits for
//!     │                                        a heartbeat that no longer owns them
//!     └─ otherwise ─▶ epoch := target epoch, gets every target partition no other
//!                     member still holds ─▶ Stable, or UnreleasedPartitions until
//!                     the others release the rest
//! ```
//! A member that does not heartbeat within the session timeout, or does not revoke
//! within its rebalance timeout, is removed. Static members (group.instance.id) that
//! leave with epoch -2 keep their assignment for a successor with the same instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::assignor::{self, Assignment, AssignorMember};
use super::{GroupSettings, TopicLookup};
use crate::errors::Error;

/// Where a member is on its way to the target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

/// A ConsumerGroupHeartbeat call, stripped of the wire.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatRequest {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    pub(crate) subscribed_topic_regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    pub(crate) owned: Option<Assignment>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

/// What a heartbeat is answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatOutcome {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) heartbeat_interval_ms: i32,
    /// The member's full assignment, sent when it changed.
    pub(crate) assignment: Option<Assignment>,
}

/// A member of a consumer-protocol group.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) server_assignor: Option<String>,
    pub(crate) subscribed_names: Vec<String>,
    pub(crate) subscribed_regex: Option<String>,
    regex: Option<regex::Regex>,
    pub(crate) member_epoch: i32,
    previous_epoch: i32,
    pub(crate) state: MemberState,
    /// Partitions the member owns or is being given.
    pub(crate) assigned: Assignment,
    /// Partitions the member was told to give up and has not yet.
    pub(crate) revoking: Assignment,
    /// The member epoch at which each held partition was given to it (KIP-1251):
    /// a commit with an older epoch is accepted for a partition held since then.
    assigned_at: BTreeMap<(Uuid, i32), i32>,
    expires_at: i64,
    revoke_deadline: Option<i64>,
    last_sent: Option<Assignment>,
    /// A static member that left with epoch -2: its assignment waits for its instance.
    left: bool,
}

/// One consumer-protocol group.
#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    pub(crate) id: String,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    statics: HashMap<String, String>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// Subscribed topics as last seen: name -> (id, partitions).
    subscribed: BTreeMap<String, (Uuid, i32)>,
    pub(crate) assignor: String,
    pub(crate) empty_since: i64,
}

type Refusal = (Error, Option<String>);

fn refuse(e: Error, message: impl Into<String>) -> Refusal {
    (e, Some(message.into()))
}

impl ConsumerGroup {
    pub(crate) fn new(id: &str, settings: &GroupSettings, now: i64) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            target: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            assignor: settings.assignors.first().cloned().unwrap_or_else(|| "uniform".into()),
            empty_since: now,
        }
    }

    /// "Empty", "Assigning", "Reconciling" or "Stable" (as Kafka names them).
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Topic names the members subscribe to by name or through their regex.
    pub(crate) fn subscribed_names(&self) -> Vec<String> {
        self.subscribed.keys().cloned().collect()
    }

    /// Handles one heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        settings: &GroupSettings,
        topics: &dyn TopicLookup,
        now: i64,
    ) -> Result<HeartbeatOutcome, Refusal> {
        let leaving = req.member_epoch == -1 || req.member_epoch == -2;
        if req.member_id.is_empty() && req.member_epoch != 0 {
            return Err(refuse(Error::InvalidRequest, "MemberId can't be empty."));
        }
        if leaving {
            return self.leave(&req, now);
        }
        if req.member_epoch < 0 {
            return Err(refuse(Error::InvalidRequest, format!("MemberEpoch {} is invalid.", req.member_epoch)));
        }
        if let Some(a) = req.server_assignor.as_deref() {
            if !assignor::known(a) || !settings.assignors.iter().any(|s| s == a) {
                return Err(refuse(Error::UnsupportedAssignor, format!("ServerAssignor {a} is not supported.")));
            }
        }
        let regex = match req.subscribed_topic_regex.as_deref() {
            Some(r) if !r.is_empty() => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| refuse(Error::InvalidRegularExpression, format!("Invalid regex {r:?}: {e}")))?,
            ),
            _ => None,
        };
        let member_id = if req.member_epoch == 0 {
            self.join(&req, settings, regex.clone(), now)?
        } else {
            self.check_epoch(&req)?;
            req.member_id.clone()
        };
        let member = self.members.get_mut(&member_id).expect("invariant: joined or checked above");
        member.expires_at = now + settings.consumer_session_timeout_ms as i64;
        if req.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        let mut changed = false;
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.subscribed_names {
                member.subscribed_names = names;
                changed = true;
            }
        }
        if req.subscribed_topic_regex.is_some() && req.subscribed_topic_regex != member.subscribed_regex {
            member.subscribed_regex = req.subscribed_topic_regex.clone().filter(|r| !r.is_empty());
            member.regex = regex;
            changed = true;
        }
        if req.server_assignor.is_some() && req.server_assignor != member.server_assignor {
            member.server_assignor = req.server_assignor.clone();
            changed = true;
        }
        if req.rack_id.is_some() {
            member.rack_id = req.rack_id.clone();
        }
        if changed {
            self.group_epoch += 1;
        }
        self.refresh_subscribed(topics);
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(settings);
        }
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let member = self.members.get_mut(&member_id).expect("invariant: still a member");
        let send = member.last_sent.as_ref() != Some(&member.assigned)
            || req.owned.as_ref().is_some_and(|o| !same(o, &member.assigned));
        let assignment = send.then(|| member.assigned.clone());
        if send {
            member.last_sent = Some(member.assigned.clone());
        }
        Ok(HeartbeatOutcome {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: settings.consumer_heartbeat_interval_ms,
            assignment,
        })
    }

    fn join(
        &mut self,
        req: &HeartbeatRequest,
        settings: &GroupSettings,
        regex: Option<regex::Regex>,
        now: i64,
    ) -> Result<String, Refusal> {
        if req.rebalance_timeout_ms <= 0 && req.rebalance_timeout_ms != -1 {
            return Err(refuse(Error::InvalidRequest, "RebalanceTimeoutMs must be provided in first request."));
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return Err(refuse(Error::InvalidRequest, "SubscribedTopicNames must be set in first request."));
        }
        let member_id =
            if req.member_id.is_empty() { Uuid::new_v4().simple().to_string() } else { req.member_id.clone() };
        let mut inherited: Option<ConsumerMember> = None;
        if let Some(instance) = &req.instance_id {
            if let Some(old_id) = self.statics.get(instance).cloned() {
                let old = self.members.get(&old_id).expect("invariant: statics point at members");
                if !old.left && old_id != member_id {
                    return Err(refuse(
                        Error::UnreleasedInstanceId,
                        format!("Static member {instance} is still in use by member {old_id}."),
                    ));
                }
                inherited = self.members.remove(&old_id);
            }
        }
        if inherited.is_none() {
            if let Some(old) = self.members.remove(&member_id) {
                // A known member joining again lost its state (it was fenced): it
                // owns nothing now.
                tracing::debug!(group = %self.id, member = %member_id, epoch = old.member_epoch, "member rejoins");
                self.group_epoch += 1;
            } else if self.members.len() >= settings.max_size {
                return Err(refuse(
                    Error::GroupMaxSizeReached,
                    format!("The group has reached its maximum size of {}.", settings.max_size),
                ));
            }
        }
        let member = match inherited {
            // A static member's successor takes over its assignment and epoch.
            Some(old) => ConsumerMember {
                member_id: member_id.clone(),
                left: false,
                last_sent: None,
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                regex: regex.clone(),
                revoke_deadline: None,
                ..old
            },
            None => {
                self.group_epoch += 1;
                ConsumerMember {
                    member_id: member_id.clone(),
                    instance_id: req.instance_id.clone(),
                    rack_id: req.rack_id.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    rebalance_timeout_ms: req.rebalance_timeout_ms.max(0),
                    server_assignor: None,
                    subscribed_names: Vec::new(),
                    subscribed_regex: None,
                    regex: None,
                    member_epoch: 0,
                    previous_epoch: -1,
                    state: MemberState::Stable,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    assigned_at: BTreeMap::new(),
                    expires_at: now,
                    revoke_deadline: None,
                    last_sent: None,
                    left: false,
                }
            }
        };
        if let Some(instance) = &req.instance_id {
            self.statics.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        Ok(member_id)
    }

    fn check_epoch(&self, req: &HeartbeatRequest) -> Result<(), Refusal> {
        let member = self.members.get(&req.member_id).filter(|m| !m.left).ok_or_else(|| {
            refuse(Error::UnknownMemberId, format!("Member {} is not a member of the group.", req.member_id))
        })?;
        if let Some(instance) = &req.instance_id {
            if self.statics.get(instance) != Some(&req.member_id) {
                return Err(refuse(Error::FencedInstanceId, format!("Static member {instance} was replaced.")));
            }
        }
        let tolerated = req.member_epoch == member.previous_epoch
            && req.owned.as_ref().is_none_or(|o| is_subset(o, &member.assigned));
        if req.member_epoch != member.member_epoch && !tolerated {
            return Err(refuse(
                Error::FencedMemberEpoch,
                format!("The member epoch {} is not the current one ({}).", req.member_epoch, member.member_epoch),
            ));
        }
        Ok(())
    }

    fn leave(&mut self, req: &HeartbeatRequest, now: i64) -> Result<HeartbeatOutcome, Refusal> {
        let id = match &req.instance_id {
            Some(instance) => self.statics.get(instance).cloned().unwrap_or_else(|| req.member_id.clone()),
            None => req.member_id.clone(),
        };
        if !self.members.contains_key(&id) {
            return Err(refuse(Error::UnknownMemberId, format!("Member {id} is not a member of the group.")));
        }
        if id != req.member_id && !req.member_id.is_empty() {
            return Err(refuse(Error::FencedInstanceId, "The static member was replaced."));
        }
        if req.member_epoch == -2 && req.instance_id.is_some() {
            // A static member leaving for a while: its partitions wait for it.
            let m = self.members.get_mut(&id).expect("invariant: checked above");
            m.left = true;
        } else {
            self.remove(&id, now);
        }
        Ok(HeartbeatOutcome {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member; its partitions become free for the others.
    fn remove(&mut self, member_id: &str, now: i64) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(instance) = &m.instance_id {
                if self.statics.get(instance).map(String::as_str) == Some(member_id) {
                    self.statics.remove(instance);
                }
            }
            self.target.remove(member_id);
            self.group_epoch += 1;
            if self.members.is_empty() {
                self.empty_since = now;
            }
        }
    }

    /// Resolves subscriptions against the topics that exist; a change (a topic
    /// created, deleted or grown) bumps the group epoch.
    fn refresh_subscribed(&mut self, topics: &dyn TopicLookup) {
        let mut names: BTreeSet<String> = self.members.values().flat_map(|m| m.subscribed_names.clone()).collect();
        if self.members.values().any(|m| m.regex.is_some()) {
            for name in topics.names() {
                if self.members.values().any(|m| m.regex.as_ref().is_some_and(|r| r.is_match(&name))) {
                    names.insert(name);
                }
            }
        }
        let resolved: BTreeMap<String, (Uuid, i32)> =
            names.into_iter().filter_map(|n| topics.topic(&n).map(|t| (n, t))).collect();
        if resolved != self.subscribed {
            self.subscribed = resolved;
            self.group_epoch += 1;
        }
    }

    fn compute_target(&mut self, settings: &GroupSettings) {
        let name = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .or_else(|| settings.assignors.first().cloned())
            .unwrap_or_else(|| "uniform".into());
        let topics: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        let members: Vec<AssignorMember> = self
            .members
            .values()
            .map(|m| AssignorMember {
                id: m.member_id.clone(),
                subscribed: self
                    .subscribed
                    .iter()
                    .filter(|(n, _)| m.subscribed_names.contains(n) || m.regex.as_ref().is_some_and(|r| r.is_match(n)))
                    .map(|(_, (id, _))| *id)
                    .collect(),
                current: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        self.target = assignor::assign(&name, &members, &topics);
        self.assignor = name;
        self.assignment_epoch = self.group_epoch;
    }

    /// Whether another member owns (or is still giving up) a partition.
    fn held_by_other(&self, member_id: &str, topic: &Uuid, partition: i32) -> bool {
        self.members.values().any(|m| {
            m.member_id != member_id
                && (m.assigned.get(topic).is_some_and(|s| s.contains(&partition))
                    || m.revoking.get(topic).is_some_and(|s| s.contains(&partition)))
        })
    }

    /// Moves one member toward its target assignment (see the module docs).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let member = self.members.get(member_id).expect("invariant: caller checked");
        if member.state == MemberState::UnrevokedPartitions {
            let still_owned = owned.is_none_or(|o| intersects(o, &member.revoking));
            if still_owned {
                return;
            }
        }
        if member.member_epoch == target_epoch && member.state == MemberState::Stable {
            return;
        }
        let keep = intersect(&member.assigned, &target);
        let revoke = minus(&member.assigned, &target);
        if !is_empty(&revoke) {
            let timeout = member.rebalance_timeout_ms as i64;
            let m = self.members.get_mut(member_id).expect("invariant: caller checked");
            m.assigned = keep;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline = Some(now + timeout);
            return;
        }
        let wanted = minus(&target, &member.assigned);
        let mut free = keep;
        let mut unreleased = false;
        for (topic, parts) in &wanted {
            for &p in parts {
                if self.held_by_other(member_id, topic, p) {
                    unreleased = true;
                } else {
                    free.entry(*topic).or_default().insert(p);
                }
            }
        }
        let m = self.members.get_mut(member_id).expect("invariant: caller checked");
        let mut assigned_at = BTreeMap::new();
        for (topic, parts) in &free {
            for &p in parts {
                let since = m.assigned_at.get(&(*topic, p)).copied().unwrap_or(target_epoch);
                assigned_at.insert((*topic, p), since);
            }
        }
        m.assigned_at = assigned_at;
        m.assigned = free;
        m.revoking.clear();
        m.revoke_deadline = None;
        if m.member_epoch != target_epoch {
            m.previous_epoch = m.member_epoch;
            m.member_epoch = target_epoch;
        }
        m.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    }

    /// Whether `member_id` may commit offsets of `partitions` with `epoch`: its
    /// current epoch, or (KIP-1251) an older one for partitions it has held since
    /// that epoch, so that a commit racing a heartbeat answer is not refused.
    pub(crate) fn check_commit(&self, member_id: &str, epoch: i32, partitions: &[(Uuid, i32)]) -> Result<(), Error> {
        let m = self.members.get(member_id).filter(|m| !m.left).ok_or(Error::UnknownMemberId)?;
        if epoch == m.member_epoch {
            return Ok(());
        }
        if epoch > m.member_epoch {
            return Err(Error::StaleMemberEpoch);
        }
        let held_since = |tp: &(Uuid, i32)| {
            m.assigned_at
                .get(tp)
                .copied()
                .or_else(|| m.revoking.get(&tp.0).filter(|s| s.contains(&tp.1)).map(|_| i32::MIN))
        };
        if partitions.iter().all(|tp| held_since(tp).is_some_and(|since| epoch >= since)) {
            Ok(())
        } else {
            Err(Error::StaleMemberEpoch)
        }
    }

    /// Removes members past their session or revocation deadline.
    pub(crate) fn tick(&mut self, now: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expires_at <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "consumer member expired");
            self.remove(&id, now);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.members.values().flat_map(|m| [Some(m.expires_at), m.revoke_deadline]).flatten().min()
    }
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(|s| s.is_empty())
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let other = b.get(t)?;
            let both: BTreeSet<i32> = ps.intersection(other).copied().collect();
            (!both.is_empty()).then_some((*t, both))
        })
        .collect()
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let rest: BTreeSet<i32> = match b.get(t) {
                Some(other) => ps.difference(other).copied().collect(),
                None => ps.clone(),
            };
            (!rest.is_empty()).then_some((*t, rest))
        })
        .collect()
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    !is_empty(&intersect(a, b))
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    is_empty(&minus(a, b))
}

/// Equal as sets of partitions (empty topic entries ignored).
fn same(a: &Assignment, b: &Assignment) -> bool {
    is_subset(a, b) && is_subset(b, a)
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
