//! Every transition of the classic state machine, with time passed in.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn settings(initial_delay: i32) -> GroupSettings {
    GroupSettings { initial_rebalance_delay_ms: initial_delay, ..GroupSettings::default() }
}

fn req(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn static_req(member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest { instance_id: Some(instance.into()), ..req(member_id) }
}

fn now_ready<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Ready(v) => v,
        Pending::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn parked<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Wait(rx) => rx,
        Pending::Ready(_) => panic!("expected the call to wait"),
    }
}

fn answered<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("the parked call has been answered")
}

/// A dynamic member joins an empty group: MEMBER_ID_REQUIRED, then the join.
fn join_new(g: &mut ClassicGroup, s: &GroupSettings, now: i64) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = now_ready(g.join(req(""), s, now));
    assert_eq!(first.error, Some(Error::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    let rx = parked(g.join(req(&first.member_id), s, now));
    (first.member_id, rx)
}

/// One member, Stable at generation 1 with assignment "a1".
fn stable_one(s: &GroupSettings) -> (ClassicGroup, String) {
    let mut g = ClassicGroup::new("g", 0);
    let (m, mut rx) = join_new(&mut g, s, 0);
    let o = answered(&mut rx);
    assert_eq!((o.error, o.generation, o.leader.as_str()), (None, 1, m.as_str()));
    assert_eq!(g.state, State::CompletingRebalance);
    let mut sync = parked(g.sync(&m, None, 1, None, None, vec![(m.clone(), Bytes::from_static(b"a1"))], 0));
    assert_eq!(answered(&mut sync).assignment, Bytes::from_static(b"a1"));
    assert_eq!(g.state, State::Stable);
    (g, m)
}

#[test]
fn a_dynamic_member_first_gets_an_id_then_joins_and_syncs() {
    let s = settings(0);
    let (g, m) = stable_one(&s);
    assert_eq!(g.generation, 1);
    assert_eq!(g.leader.as_deref(), Some(m.as_str()));
    assert_eq!(g.protocol_name.as_deref(), Some("range"));
}

#[test]
fn old_clients_join_without_member_id_required() {
    let s = settings(0);
    let mut g = ClassicGroup::new("g", 0);
    let mut rx = parked(g.join(JoinRequest { require_known_member_id: false, ..req("") }, &s, 0));
    let o = answered(&mut rx);
    assert_eq!(o.error, None);
    assert_eq!(o.members.len(), 1);
}

#[test]
fn a_second_member_triggers_a_rebalance_that_the_first_rejoins() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (m2, mut rx2) = join_new(&mut g, &s, 100);
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat(&m1, None, 1, 200), Err(Error::RebalanceInProgress));
    assert!(rx2.try_recv().is_err(), "waits for the first member");
    let mut rx1 = parked(g.join(req(&m1), &s, 300));
    let (o1, o2) = (answered(&mut rx1), answered(&mut rx2));
    assert_eq!((o1.generation, o2.generation), (2, 2));
    assert_eq!(o1.leader, m1, "the leader stays");
    assert_eq!(o1.members.len(), 2, "the leader gets every member");
    assert!(o2.members.is_empty(), "followers get none");
    assert_eq!(g.state, State::CompletingRebalance);

    // A follower's SyncGroup waits for the leader's.
    let mut s2 = parked(g.sync(&m2, None, 2, Some("consumer"), Some("range"), vec![], 400));
    assert!(s2.try_recv().is_err());
    let assignments = vec![(m1.clone(), Bytes::from_static(b"x")), (m2.clone(), Bytes::from_static(b"y"))];
    let mut s1 = parked(g.sync(&m1, None, 2, None, None, assignments, 500));
    assert_eq!(answered(&mut s1).assignment, Bytes::from_static(b"x"));
    assert_eq!(answered(&mut s2).assignment, Bytes::from_static(b"y"));
    assert_eq!(g.state, State::Stable);
    assert_eq!(g.heartbeat(&m2, None, 2, 600), Ok(()));
}

#[test]
fn heartbeat_and_sync_errors() {
    let s = settings(0);
    let (mut g, m) = stable_one(&s);
    assert_eq!(g.heartbeat(&m, None, 0, 1), Err(Error::IllegalGeneration));
    assert_eq!(g.heartbeat("nobody", None, 1, 1), Err(Error::UnknownMemberId));
    assert_eq!(now_ready(g.sync(&m, None, 7, None, None, vec![], 1)).error, Some(Error::IllegalGeneration));
    assert_eq!(
        now_ready(g.sync(&m, None, 1, Some("connect"), None, vec![], 1)).error,
        Some(Error::InconsistentGroupProtocol)
    );
    // Stable: a repeated SyncGroup gets the stored assignment.
    assert_eq!(now_ready(g.sync(&m, None, 1, None, None, vec![], 1)).assignment, Bytes::from_static(b"a1"));
}

#[test]
fn join_refusals() {
    let s = settings(0);
    let (mut g, _) = stable_one(&s);
    let bad_timeout = JoinRequest { session_timeout_ms: 10, ..req("") };
    assert_eq!(now_ready(g.join(bad_timeout, &s, 1)).error, Some(Error::InvalidSessionTimeout));
    let other_type = JoinRequest { protocol_type: "connect".into(), ..req("") };
    assert_eq!(now_ready(g.join(other_type, &s, 1)).error, Some(Error::InconsistentGroupProtocol));
    let no_common = JoinRequest { protocols: vec![("sticky".into(), Bytes::new())], ..req("") };
    assert_eq!(now_ready(g.join(no_common, &s, 1)).error, Some(Error::InconsistentGroupProtocol));
    assert_eq!(now_ready(g.join(req("unknown-id"), &s, 1)).error, Some(Error::UnknownMemberId));
    let full = GroupSettings { max_size: 1, ..settings(0) };
    assert_eq!(now_ready(g.join(req(""), &full, 1)).error, Some(Error::GroupMaxSizeReached));
}

#[test]
fn protocol_is_the_one_most_members_prefer_among_those_all_support() {
    let s = settings(0);
    let mut g = ClassicGroup::new("g", 0);
    let protocols = |names: &[&str]| names.iter().map(|n| (n.to_string(), Bytes::new())).collect::<Vec<_>>();
    let a = JoinRequest {
        protocols: protocols(&["cooperative-sticky", "range"]),
        require_known_member_id: false,
        ..req("")
    };
    let mut rx = parked(g.join(a, &s, 0));
    let la = answered(&mut rx);
    drop(parked(g.sync(&la.member_id, None, 1, None, None, vec![], 0)));
    let b = JoinRequest { protocols: protocols(&["range", "roundrobin"]), require_known_member_id: false, ..req("") };
    let mut rb = parked(g.join(b, &s, 1));
    let a_again = JoinRequest { protocols: protocols(&["cooperative-sticky", "range"]), ..req(&la.member_id) };
    let mut ra = parked(g.join(a_again, &s, 2));
    let (oa, ob) = (answered(&mut ra), answered(&mut rb));
    assert_eq!(oa.protocol_name.as_deref(), Some("range"), "the only protocol both support");
    assert_eq!(ob.protocol_name.as_deref(), Some("range"));
}

#[test]
fn a_silent_member_is_removed_at_its_session_timeout() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (m2, mut rx2) = join_new(&mut g, &s, 0);
    let mut rx1 = parked(g.join(req(&m1), &s, 0));
    answered(&mut rx1);
    answered(&mut rx2);
    drop(parked(g.sync(&m1, None, 2, None, None, vec![], 0)));
    assert_eq!(g.state, State::Stable);
    // m1 heartbeats, m2 stays silent past its session timeout.
    for t in (1000..=SESSION as i64).step_by(1000) {
        assert_eq!(g.heartbeat(&m1, None, 2, t), Ok(()));
        g.tick(&s, t);
    }
    assert!(!g.members.contains_key(&m2), "m2 expired");
    assert_eq!(g.state, State::PreparingRebalance);
    let t = SESSION as i64 + 2000;
    let mut rx = parked(g.join(req(&m1), &s, t));
    let o = answered(&mut rx);
    assert_eq!((o.generation, o.members.len()), (3, 1));
    assert_eq!(g.next_deadline().map(|d| d > t), Some(true));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (_m2, mut rx2) = join_new(&mut g, &s, 0);
    // m1 keeps its session alive but never rejoins.
    for t in (1000..REBALANCE as i64).step_by(1000) {
        assert_eq!(g.heartbeat(&m1, None, 1, t), Err(Error::RebalanceInProgress));
        g.tick(&s, t);
    }
    assert!(rx2.try_recv().is_err());
    g.tick(&s, REBALANCE as i64);
    let o = answered(&mut rx2);
    assert_eq!((o.error, o.generation, o.members.len()), (None, 2, 1));
    assert!(!g.members.contains_key(&m1));
}

#[test]
fn members_that_do_not_sync_are_dropped_at_the_rebalance_timeout() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (m2, mut rx2) = join_new(&mut g, &s, 0);
    let mut rx1 = parked(g.join(req(&m1), &s, 0));
    answered(&mut rx1);
    answered(&mut rx2);
    // Only m2 sends SyncGroup; the leader heartbeats but never syncs.
    let mut s2 = parked(g.sync(&m2, None, 2, None, None, vec![], 1));
    for t in (1000..=REBALANCE as i64).step_by(1000) {
        let _ = g.heartbeat(&m1, None, 2, t);
        g.tick(&s, t);
    }
    assert!(!g.members.contains_key(&m1), "the leader that never synced is gone");
    assert_eq!(answered(&mut s2).error, Some(Error::RebalanceInProgress));
    assert_eq!(g.state, State::PreparingRebalance);
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let s = settings(0);
    let (mut g, m) = stable_one(&s);
    assert_eq!(g.leave("nobody", None, &s, 5), Err(Error::UnknownMemberId));
    assert_eq!(g.leave(&m, None, &s, 5), Ok(()));
    assert_eq!(g.state, State::Empty);
    assert_eq!(g.generation, 2);
    assert_eq!(g.empty_since, 5);
    assert!(g.is_empty());
    // Still a consumer group (not a simple one), as Kafka lists and describes it;
    // a member of another protocol type may join it now that it is empty.
    assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(g.protocol_name, None);
    let other = JoinRequest { protocol_type: "connect".into(), ..req("") };
    assert_eq!(now_ready(g.join(other, &s, 6)).error, Some(Error::MemberIdRequired));
}

#[test]
fn a_leaving_member_completes_a_rebalance_waiting_for_it() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (_m2, mut rx2) = join_new(&mut g, &s, 0);
    assert_eq!(g.leave(&m1, None, &s, 1), Ok(()));
    let o = answered(&mut rx2);
    assert_eq!((o.generation, o.members.len()), (2, 1));
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let s = settings(0);
    let mut g = ClassicGroup::new("g", 0);
    let mut rx = parked(g.join(static_req("", "i-1"), &s, 0));
    let first = answered(&mut rx);
    assert_eq!(first.error, None, "static members need no MEMBER_ID_REQUIRED round");
    let old = first.member_id.clone();
    drop(parked(g.sync(&old, Some("i-1"), 1, None, None, vec![(old.clone(), Bytes::from_static(b"p0"))], 0)));
    assert_eq!(g.state, State::Stable);

    // The process restarts: same instance id, no member id.
    let o = now_ready(g.join(static_req("", "i-1"), &s, 10));
    assert_eq!(o.error, None);
    assert_ne!(o.member_id, old);
    assert_eq!(o.generation, 1, "no rebalance");
    assert_eq!(g.state, State::Stable);
    let new = o.member_id;
    assert_eq!(now_ready(g.sync(&new, Some("i-1"), 1, None, None, vec![], 11)).assignment, Bytes::from_static(b"p0"));
    // The old incarnation is fenced.
    assert_eq!(g.heartbeat(&old, Some("i-1"), 1, 12), Err(Error::FencedInstanceId));
    assert_eq!(g.heartbeat(&new, Some("i-1"), 1, 12), Ok(()));
    // A static member leaves by instance id.
    assert_eq!(g.leave("", Some("i-1"), &s, 13), Ok(()));
    assert_eq!(g.state, State::Empty);
}

#[test]
fn the_initial_delay_gathers_members_of_an_empty_group() {
    let s = settings(3000);
    let mut g = ClassicGroup::new("g", 0);
    let (m1, mut rx1) = join_new(&mut g, &s, 0);
    g.tick(&s, 1000);
    assert!(rx1.try_recv().is_err(), "still waiting for more members");
    let (_m2, mut rx2) = join_new(&mut g, &s, 2000);
    g.tick(&s, 4000);
    assert!(rx1.try_recv().is_err(), "the delay restarted with the second member");
    g.tick(&s, 5000);
    let o1 = answered(&mut rx1);
    let o2 = answered(&mut rx2);
    assert_eq!((o1.generation, o1.members.len(), o2.generation), (1, 2, 1));
    assert_eq!(o1.leader, m1);
}

#[test]
fn an_unused_member_id_expires() {
    let s = settings(0);
    let mut g = ClassicGroup::new("g", 0);
    let first = now_ready(g.join(req(""), &s, 0));
    assert!(!g.is_empty(), "a pending member counts");
    g.tick(&s, SESSION as i64 + 1);
    assert!(g.is_empty());
    assert_eq!(now_ready(g.join(req(&first.member_id), &s, SESSION as i64 + 2)).error, Some(Error::UnknownMemberId));
}

#[test]
fn a_retried_join_supersedes_the_first() {
    let s = settings(0);
    let (mut g, m1) = stable_one(&s);
    let (_m2, _rx2) = join_new(&mut g, &s, 0);
    let (m3, mut rx3a) = join_new(&mut g, &s, 0);
    let mut rx3b = parked(g.join(req(&m3), &s, 1));
    assert_eq!(answered(&mut rx3a).error, Some(Error::RebalanceInProgress));
    let mut rx1 = parked(g.join(req(&m1), &s, 2));
    assert_eq!(answered(&mut rx1).generation, 2);
    assert_eq!(answered(&mut rx3b).generation, 2);
}

#[test]
fn a_deleted_group_answers_its_parked_calls() {
    let s = settings(0);
    let (mut g, _m1) = stable_one(&s);
    let (_m2, mut rx2) = join_new(&mut g, &s, 0);
    g.kill();
    assert_eq!(answered(&mut rx2).error, Some(Error::CoordinatorNotAvailable));
    assert_eq!(g.state, State::Dead);
}
