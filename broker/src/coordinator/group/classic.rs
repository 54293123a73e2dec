//! The classic group protocol's state machine (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), as the Kafka protocol guide and KIP-345 / KIP-394 describe it:
//!
//! ```text
//!            join / leave / expiry                 all members joined
//!   Empty ─────────────────────────▶ Preparing ─────────────────────────▶ Completing
//!     ▲                              Rebalance      (or rebalance timeout)  Rebalance
//!     │ last member gone                ▲  ▲                                   │
//!     └─────────────────────────────────┘  │ join with new protocols,          │ leader's
//!                                          │ leave, session expiry,            │ SyncGroup
//!                                          │ sync timeout                      ▼
//!                                          └──────────────────────────────── Stable
//! ```
//!
//! The machine is pure: every call takes the current time, and parked JoinGroup /
//! SyncGroup calls are answered through oneshot channels when the phase completes.
//! [`ClassicGroup::tick`] applies every deadline that has passed (session expiry,
//! the end of the join phase, the sync timeout, unjoined pending members), so tests
//! drive timeouts by passing times instead of sleeping.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::ids::new_member_id;
use super::records::{GroupMeta, MemberMeta};
use super::GroupSettings;
use crate::errors::Error;

/// Where a classic group is in its rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup call, stripped of the wire.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a dynamic member without an id is first given one
    /// (MEMBER_ID_REQUIRED) and must join again with it.
    pub(crate) require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining may skip the assignment.
    pub(crate) supports_skip_assignment: bool,
}

/// What a JoinGroup call is answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JoinOutcome {
    pub(crate) error: Option<Error>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) skip_assignment: bool,
    pub(crate) member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(e: Error, member_id: &str) -> Self {
        JoinOutcome { error: Some(e), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// What a SyncGroup call is answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SyncOutcome {
    pub(crate) error: Option<Error>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncOutcome {
    fn error(e: Error) -> Self {
        SyncOutcome { error: Some(e), ..Default::default() }
    }
}

/// An answer now, or one that arrives when the phase completes.
#[derive(Debug)]
pub(crate) enum Pending<T> {
    Ready(T),
    Wait(oneshot::Receiver<T>),
}

/// A member of a classic group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Session deadline: the member is removed if it does not heartbeat by then.
    expires_at: i64,
    supports_skip_assignment: bool,
}

impl Member {
    /// The metadata this member gave for `protocol`.
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// One classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, i64>,
    /// group.instance.id -> member id of static members.
    statics: HashMap<String, String>,
    /// End of the join phase (PreparingRebalance) or of the sync phase.
    phase_deadline: Option<i64>,
    /// While the group is first filled: the join phase ends this long after the last
    /// new member (group.initial.rebalance.delay.ms), up to the rebalance timeout.
    initial_delay_until: Option<i64>,
    /// When the group last became Empty (offsets retention counts from there).
    pub(crate) empty_since: i64,
}

impl ClassicGroup {
    pub(crate) fn new(id: &str, now: i64) -> Self {
        ClassicGroup {
            id: id.to_string(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            phase_deadline: None,
            initial_delay_until: None,
            empty_since: now,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// The group as its metadata record states it (Kafka's GroupMetadataValue), or
    /// `None` while no member ever gave it a protocol type.
    pub(crate) fn metadata_record(&self, now: i64) -> Option<GroupMeta> {
        let protocol_type = self.protocol_type.clone()?;
        let protocol = self.protocol_name.clone().filter(|_| !self.members.is_empty());
        let members = self
            .members
            .values()
            .map(|m| MemberMeta {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupMeta {
            protocol_type,
            generation: self.generation,
            leader: self.leader.clone().filter(|_| !self.members.is_empty()),
            protocol,
            timestamp: now,
            members,
        })
    }

    /// The member that `instance_id` (if any) and `member_id` name, or the error
    /// the protocol gives when they disagree.
    pub(crate) fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), Error> {
        if let Some(instance) = instance_id {
            match self.statics.get(instance) {
                Some(current) if current != member_id => return Err(Error::FencedInstanceId),
                None if !self.members.contains_key(member_id) => return Err(Error::UnknownMemberId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(Error::UnknownMemberId);
        }
        Ok(())
    }

    /// Protocols every member (and the candidate) supports, in the candidate's order.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    // ---- JoinGroup --------------------------------------------------------------

    pub(crate) fn join(&mut self, req: JoinRequest, settings: &GroupSettings, now: i64) -> Pending<JoinOutcome> {
        if req.session_timeout_ms < settings.min_session_timeout_ms
            || req.session_timeout_ms > settings.max_session_timeout_ms
        {
            return Pending::Ready(JoinOutcome::error(Error::InvalidSessionTimeout, &req.member_id));
        }
        if self.state == State::Dead {
            return Pending::Ready(JoinOutcome::error(Error::CoordinatorNotAvailable, &req.member_id));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Pending::Ready(JoinOutcome::error(Error::InconsistentGroupProtocol, &req.member_id));
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(req, settings, now)
        } else {
            self.join_known_member(req, settings, now)
        }
    }

    fn join_unknown_member(&mut self, req: JoinRequest, settings: &GroupSettings, now: i64) -> Pending<JoinOutcome> {
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.statics.get(&instance).cloned() {
                return self.replace_static_member(&old_id, req, settings, now);
            }
        }
        if self.members.len() + self.pending.len() >= settings.max_size {
            return Pending::Ready(JoinOutcome::error(Error::GroupMaxSizeReached, ""));
        }
        let member_id = new_member_id(&req.client_id, req.instance_id.as_deref());
        if req.instance_id.is_none() && req.require_known_member_id {
            self.pending.insert(member_id.clone(), now + req.session_timeout_ms as i64);
            return Pending::Ready(JoinOutcome::error(Error::MemberIdRequired, &member_id));
        }
        self.add_member_and_rebalance(member_id, req, settings, now)
    }

    fn join_known_member(&mut self, req: JoinRequest, settings: &GroupSettings, now: i64) -> Pending<JoinOutcome> {
        let member_id = req.member_id.clone();
        if self.pending.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, req, settings, now);
        }
        if let Err(e) = self.check_member(&member_id, req.instance_id.as_deref()) {
            return Pending::Ready(JoinOutcome::error(e, &member_id));
        }
        let member = self.members.get_mut(&member_id).expect("invariant: check_member found it");
        member.expires_at = now + req.session_timeout_ms as i64;
        let unchanged = member.protocols == req.protocols;
        match self.state {
            State::PreparingRebalance => {
                let (tx, rx) = oneshot::channel();
                update_member(member, &req, tx);
                self.maybe_complete_join(settings, now);
                Pending::Wait(rx)
            }
            State::CompletingRebalance if unchanged => Pending::Ready(self.join_outcome_for(&member_id)),
            State::Stable if unchanged && self.leader.as_ref() != Some(&member_id) => {
                // The member missed the join answer (or rejoins for nothing): it gets
                // the current generation again. A leader rejoining asks for a rebalance.
                Pending::Ready(self.join_outcome_for(&member_id))
            }
            State::CompletingRebalance | State::Stable => {
                let (tx, rx) = oneshot::channel();
                update_member(member, &req, tx);
                self.prepare_rebalance(settings, now);
                Pending::Wait(rx)
            }
            State::Empty | State::Dead => Pending::Ready(JoinOutcome::error(Error::UnknownMemberId, &member_id)),
        }
    }

    /// A static member rejoined without its member id (it restarted): it takes a new
    /// id, and the old id is fenced. A stable group keeps its assignment: no rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        req: JoinRequest,
        settings: &GroupSettings,
        now: i64,
    ) -> Pending<JoinOutcome> {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(
                new_member_id(&req.client_id, req.instance_id.as_deref()),
                req,
                settings,
                now,
            );
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(Error::FencedInstanceId, old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(Error::FencedInstanceId));
        }
        let new_id = new_member_id(&req.client_id, req.instance_id.as_deref());
        let protocols_changed = member.protocols != req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.expires_at = now + req.session_timeout_ms as i64;
        member.supports_skip_assignment = req.supports_skip_assignment;
        if let Some(instance) = &req.instance_id {
            self.statics.insert(instance.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            State::Stable | State::CompletingRebalance if !protocols_changed => {
                member.protocols = req.protocols;
                self.members.insert(new_id.clone(), member);
                let mut outcome = self.join_outcome_for(&new_id);
                if was_leader {
                    // KIP-814: a static leader that restarted need not assign again.
                    outcome.skip_assignment = req.supports_skip_assignment;
                    outcome.members = if req.supports_skip_assignment { self.member_list() } else { Vec::new() };
                }
                Pending::Ready(outcome)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                member.protocols = req.protocols.clone();
                member.join_waiter = Some(tx);
                self.members.insert(new_id, member);
                if self.state == State::PreparingRebalance {
                    self.maybe_complete_join(settings, now);
                } else {
                    self.prepare_rebalance(settings, now);
                }
                Pending::Wait(rx)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        settings: &GroupSettings,
        now: i64,
    ) -> Pending<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.statics.insert(instance.clone(), member_id.clone());
        }
        // The first member to join leads (Kafka's rule), until it leaves.
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                expires_at: now + req.session_timeout_ms as i64,
                supports_skip_assignment: req.supports_skip_assignment,
            },
        );
        match self.state {
            State::PreparingRebalance => {
                if let Some(until) = self.initial_delay_until {
                    // Another member arrived while the group is being filled: wait a
                    // little longer for the rest, within the rebalance timeout.
                    let delay = settings.initial_rebalance_delay_ms as i64;
                    let cap = self.phase_deadline.unwrap_or(until);
                    self.initial_delay_until = Some((now + delay).min(cap));
                }
                self.maybe_complete_join(settings, now);
            }
            _ => self.prepare_rebalance(settings, now),
        }
        Pending::Wait(rx)
    }

    /// Enters PreparingRebalance: every member must join again.
    fn prepare_rebalance(&mut self, settings: &GroupSettings, now: i64) {
        if self.state == State::CompletingRebalance {
            // Assignments of the abandoned generation are void.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(Error::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0) as i64;
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        self.phase_deadline = Some(now + rebalance_timeout);
        self.initial_delay_until = if was_empty && settings.initial_rebalance_delay_ms > 0 {
            Some(now + (settings.initial_rebalance_delay_ms as i64).min(rebalance_timeout))
        } else {
            None
        };
        self.maybe_complete_join(settings, now);
    }

    /// Ends the join phase once every member has joined (and no member id handed out
    /// is still expected), unless the initial delay is still running.
    fn maybe_complete_join(&mut self, settings: &GroupSettings, now: i64) {
        if self.state != State::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|until| now < until) {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if all_joined || self.phase_deadline.is_some_and(|d| now >= d) || self.initial_delay_until.is_some() {
            self.complete_join(settings, now);
        }
    }

    fn complete_join(&mut self, _settings: &GroupSettings, now: i64) {
        // Members that did not join in time leave the group.
        let gone: Vec<String> =
            self.members.iter().filter(|(_, m)| m.join_waiter.is_none()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.remove_member_quietly(&id);
        }
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty(now);
            return;
        }
        self.protocol_name = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        // Members must send SyncGroup within the rebalance timeout.
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0) as i64;
        self.phase_deadline = Some(now + timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome_for(&id);
            let member = self.members.get_mut(&id).expect("invariant: id from members");
            member.expires_at = now + member.session_timeout_ms as i64;
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(outcome);
            }
        }
    }

    /// No members left. The protocol type stays (an empty consumer group is still
    /// listed and described as one, as Kafka does); the next first member sets it.
    fn become_empty(&mut self, now: i64) {
        self.state = State::Empty;
        self.leader = None;
        self.protocol_name = None;
        self.phase_deadline = None;
        self.initial_delay_until = None;
        self.empty_since = now;
    }

    /// The protocol every member supports with the most votes (each member votes for
    /// the first of its protocols that everyone supports); ties go to the leader's
    /// preference order.
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes.into_iter().find(|(n, _)| *n == best).map(|(_, c)| c.clone())
    }

    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members.values().map(|m| (m.member_id.clone(), m.instance_id.clone(), m.metadata(&protocol))).collect()
    }

    fn join_outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            members: if leader == member_id { self.member_list() } else { Vec::new() },
            leader,
            skip_assignment: false,
            member_id: member_id.to_string(),
        }
    }

    // ---- SyncGroup --------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Pending<SyncOutcome> {
        if matches!(self.state, State::Empty | State::Dead) {
            return Pending::Ready(SyncOutcome::error(Error::UnknownMemberId));
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return Pending::Ready(SyncOutcome::error(e));
        }
        if generation != self.generation {
            return Pending::Ready(SyncOutcome::error(Error::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref())
        {
            return Pending::Ready(SyncOutcome::error(Error::InconsistentGroupProtocol));
        }
        let outcome = |g: &Self, a: Bytes| SyncOutcome {
            error: None,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            assignment: a,
        };
        match self.state {
            State::PreparingRebalance => Pending::Ready(SyncOutcome::error(Error::RebalanceInProgress)),
            State::Stable => {
                let member = self.members.get_mut(member_id).expect("invariant: checked above");
                member.expires_at = now + member.session_timeout_ms as i64;
                let a = member.assignment.clone();
                Pending::Ready(outcome(self, a))
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                {
                    let member = self.members.get_mut(member_id).expect("invariant: checked above");
                    member.expires_at = now + member.session_timeout_ms as i64;
                    member.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = State::Stable;
                    self.phase_deadline = None;
                    let answers: Vec<(String, Bytes)> =
                        self.members.values().map(|m| (m.member_id.clone(), m.assignment.clone())).collect();
                    for (id, a) in answers {
                        let o = outcome(self, a);
                        if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                            let _ = w.send(o);
                        }
                    }
                }
                Pending::Wait(rx)
            }
            State::Empty | State::Dead => unreachable!("handled above"),
        }
    }

    // ---- Heartbeat --------------------------------------------------------------

    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), Error> {
        if matches!(self.state, State::Empty | State::Dead) {
            return Err(Error::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(Error::IllegalGeneration);
        }
        let member = self.members.get_mut(member_id).expect("invariant: checked above");
        member.expires_at = now + member.session_timeout_ms as i64;
        match self.state {
            State::PreparingRebalance => Err(Error::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    // ---- LeaveGroup -------------------------------------------------------------

    /// One member leaves, named by member id or (static members) by instance id.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        settings: &GroupSettings,
        now: i64,
    ) -> Result<(), Error> {
        let id = match instance_id {
            Some(instance) => match self.statics.get(instance) {
                None => return Err(Error::UnknownMemberId),
                Some(current) if !member_id.is_empty() && current != member_id => return Err(Error::FencedInstanceId),
                Some(current) => current.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(settings, now);
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(Error::UnknownMemberId);
        }
        self.remove_member(&id, settings, now);
        Ok(())
    }

    /// Removes a member and rebalances what remains.
    fn remove_member(&mut self, member_id: &str, settings: &GroupSettings, now: i64) {
        self.remove_member_quietly(member_id);
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(settings, now),
            State::PreparingRebalance => self.maybe_complete_join(settings, now),
            State::Empty | State::Dead => {}
        }
    }

    fn remove_member_quietly(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.remove(member_id) {
            if let Some(instance) = &m.instance_id {
                if self.statics.get(instance).map(String::as_str) == Some(member_id) {
                    self.statics.remove(instance);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(Error::UnknownMemberId, member_id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(Error::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    // ---- Time -------------------------------------------------------------------

    /// Applies every deadline that has passed by `now`.
    pub(crate) fn tick(&mut self, settings: &GroupSettings, now: i64) {
        self.pending.retain(|_, expires| *expires > now);
        // A member parked in JoinGroup or SyncGroup cannot heartbeat: the phase
        // deadline governs it, not its session.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expires_at <= now && m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired");
            self.remove_member(&id, settings, now);
        }
        match self.state {
            State::PreparingRebalance => self.maybe_complete_join(settings, now),
            State::CompletingRebalance if self.phase_deadline.is_some_and(|d| now >= d) => {
                // Members that never sent SyncGroup are gone; the rest start over.
                let silent: Vec<String> =
                    self.members.values().filter(|m| m.sync_waiter.is_none()).map(|m| m.member_id.clone()).collect();
                for id in silent {
                    self.remove_member_quietly(&id);
                }
                if self.members.is_empty() {
                    self.generation += 1;
                    self.become_empty(now);
                } else {
                    self.prepare_rebalance(settings, now);
                }
            }
            _ => {}
        }
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let members =
            self.members.values().filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none()).map(|m| m.expires_at);
        let phase = match self.state {
            State::PreparingRebalance => [self.phase_deadline, self.initial_delay_until].into_iter().flatten().min(),
            State::CompletingRebalance => self.phase_deadline,
            _ => None,
        };
        members.chain(self.pending.values().copied()).chain(phase).min()
    }

    /// Marks the group deleted: every parked call is told the coordinator moved.
    pub(crate) fn kill(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            if let Some(mut m) = self.members.remove(&id) {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(JoinOutcome::error(Error::CoordinatorNotAvailable, &id));
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(Error::CoordinatorNotAvailable));
                }
            }
        }
        self.state = State::Dead;
    }
}

fn update_member(member: &mut Member, req: &JoinRequest, waiter: oneshot::Sender<JoinOutcome>) {
    member.protocols = req.protocols.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.supports_skip_assignment = req.supports_skip_assignment;
    if let Some(old) = member.join_waiter.replace(waiter) {
        // A retried JoinGroup supersedes the first; that one is told to retry.
        let _ = old.send(JoinOutcome::error(Error::RebalanceInProgress, &member.member_id));
    }
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
