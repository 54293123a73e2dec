//! The consumer protocol's reconciliation, with time passed in and a fake topic view.

use std::cell::RefCell;

use super::*;

#[derive(Default)]
struct Topics(RefCell<BTreeMap<String, (Uuid, i32)>>);

impl Topics {
    fn with(topics: &[(&str, i32)]) -> Self {
        let t = Topics::default();
        for (name, n) in topics {
            t.0.borrow_mut().insert(name.to_string(), (Uuid::new_v4(), *n));
        }
        t
    }
    fn id(&self, name: &str) -> Uuid {
        self.0.borrow()[name].0
    }
    fn grow(&self, name: &str, n: i32) {
        self.0.borrow_mut().get_mut(name).unwrap().1 = n;
    }
    fn add(&self, name: &str, n: i32) {
        self.0.borrow_mut().insert(name.to_string(), (Uuid::new_v4(), n));
    }
}

impl TopicLookup for Topics {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.borrow().get(name).copied()
    }
    fn names(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }
    fn name_of(&self, id: &Uuid) -> Option<String> {
        self.0.borrow().iter().find(|(_, (i, _))| i == id).map(|(n, _)| n.clone())
    }
}

fn settings() -> GroupSettings {
    GroupSettings { consumer_session_timeout_ms: 45_000, ..GroupSettings::default() }
}

fn join(member: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatRequest {
    HeartbeatRequest { member_id: member.into(), member_epoch: epoch, owned: owned.cloned(), ..Default::default() }
}

fn count(a: &Assignment) -> usize {
    a.values().map(|s| s.len()).sum()
}

/// No partition is held (owned or being revoked) by two members.
fn assert_exclusive(g: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for a in [&m.assigned, &m.revoking] {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}/{p} held twice");
                }
            }
        }
    }
}

/// Heartbeats every member (reporting what it was last given) until nothing moves.
fn settle(g: &mut ConsumerGroup, s: &GroupSettings, topics: &Topics, now: i64) -> BTreeMap<String, Assignment> {
    let mut owned: BTreeMap<String, (i32, Assignment)> =
        g.members.values().map(|m| (m.member_id.clone(), (m.member_epoch, m.assigned.clone()))).collect();
    for _ in 0..10 {
        for (id, (epoch, have)) in owned.iter_mut() {
            let o = g.heartbeat(beat(id, *epoch, Some(have)), s, topics, now).unwrap();
            *epoch = o.member_epoch;
            if let Some(a) = o.assignment {
                *have = a;
            }
            assert_exclusive(g);
        }
    }
    assert_eq!(g.state_name(), "Stable");
    owned.into_iter().map(|(id, (_, a))| (id, a)).collect()
}

#[test]
fn a_single_member_gets_every_partition() {
    let s = settings();
    let topics = Topics::with(&[("t", 6)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let o = g.heartbeat(join("m1", &["t"]), &s, &topics, 0).unwrap();
    assert_eq!(o.member_epoch, g.group_epoch);
    assert_eq!(o.heartbeat_interval_ms, s.consumer_heartbeat_interval_ms);
    let a = o.assignment.expect("the first answer carries the assignment");
    assert_eq!(a[&topics.id("t")], (0..6).collect());
    assert_eq!(g.state_name(), "Stable");
    // Nothing changed: no assignment in the answer.
    let again = g.heartbeat(beat("m1", o.member_epoch, None), &s, &topics, 100).unwrap();
    assert_eq!(again.assignment, None);
}

#[test]
fn a_joining_member_gets_partitions_only_after_the_owner_revokes_them() {
    let s = settings();
    let topics = Topics::with(&[("t", 6)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let o1 = g.heartbeat(join("m1", &["t"]), &s, &topics, 0).unwrap();
    let all = o1.assignment.unwrap();

    let o2 = g.heartbeat(join("m2", &["t"]), &s, &topics, 10).unwrap();
    assert_eq!(count(&o2.assignment.clone().unwrap()), 0, "m1 still owns everything");
    assert_eq!(g.members["m2"].state, MemberState::UnreleasedPartitions);
    assert_exclusive(&g);

    // m1 is told to keep three; its epoch waits until it has revoked the rest.
    let r1 = g.heartbeat(beat("m1", o1.member_epoch, None), &s, &topics, 20).unwrap();
    let kept = r1.assignment.unwrap();
    assert_eq!(count(&kept), 3);
    assert_eq!(r1.member_epoch, o1.member_epoch);
    assert_eq!(g.members["m1"].state, MemberState::UnrevokedPartitions);
    // Still owning everything: nothing moves.
    let r1b = g.heartbeat(beat("m1", o1.member_epoch, Some(&all)), &s, &topics, 25).unwrap();
    assert_eq!(r1b.member_epoch, o1.member_epoch);
    let o2b = g.heartbeat(beat("m2", o2.member_epoch, None), &s, &topics, 26).unwrap();
    assert_eq!(o2b.assignment, None);
    // m1 revokes: it moves to the new epoch, and m2 then gets the rest.
    let r1c = g.heartbeat(beat("m1", o1.member_epoch, Some(&kept)), &s, &topics, 30).unwrap();
    assert_eq!(r1c.member_epoch, g.group_epoch);
    let o2c = g.heartbeat(beat("m2", o2.member_epoch, None), &s, &topics, 40).unwrap();
    let given = o2c.assignment.unwrap();
    assert_eq!(count(&given), 3);
    assert_exclusive(&g);
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn three_members_share_six_partitions_and_a_leaver_frees_its_share() {
    let s = settings();
    let topics = Topics::with(&[("t", 6)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    for m in ["a", "b", "c"] {
        g.heartbeat(join(m, &["t"]), &s, &topics, 0).unwrap();
    }
    let owned = settle(&mut g, &s, &topics, 1);
    assert!(owned.values().all(|a| count(a) == 2), "{owned:?}");

    let epoch = g.members["c"].member_epoch;
    let left = g.heartbeat(HeartbeatRequest { member_epoch: -1, ..beat("c", epoch, None) }, &s, &topics, 2).unwrap();
    assert_eq!(left.member_epoch, -1);
    let owned = settle(&mut g, &s, &topics, 3);
    assert_eq!(owned.len(), 2);
    assert!(owned.values().all(|a| count(a) == 3), "{owned:?}");
}

#[test]
fn errors_of_a_heartbeat() {
    let s = settings();
    let topics = Topics::with(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let o = g.heartbeat(join("m1", &["t"]), &s, &topics, 0).unwrap();
    let err = |r: Result<HeartbeatOutcome, Refusal>| r.unwrap_err().0;
    assert_eq!(err(g.heartbeat(beat("m1", o.member_epoch + 5, None), &s, &topics, 1)), Error::FencedMemberEpoch);
    assert_eq!(err(g.heartbeat(beat("ghost", 3, None), &s, &topics, 1)), Error::UnknownMemberId);
    assert_eq!(err(g.heartbeat(beat("", 3, None), &s, &topics, 1)), Error::InvalidRequest);
    let no_sub = HeartbeatRequest { subscribed_topic_names: None, ..join("m2", &[]) };
    assert_eq!(err(g.heartbeat(no_sub, &s, &topics, 1)), Error::InvalidRequest);
    let bad_assignor = HeartbeatRequest { server_assignor: Some("sticky".into()), ..join("m3", &["t"]) };
    assert_eq!(err(g.heartbeat(bad_assignor, &s, &topics, 1)), Error::UnsupportedAssignor);
    let bad_regex = HeartbeatRequest { subscribed_topic_regex: Some("(".into()), ..join("m4", &[]) };
    assert_eq!(err(g.heartbeat(bad_regex, &s, &topics, 1)), Error::InvalidRegularExpression);
}

#[test]
fn a_silent_member_expires_and_one_that_does_not_revoke_is_removed() {
    let s = settings();
    let topics = Topics::with(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    g.heartbeat(join("a", &["t"]), &s, &topics, 0).unwrap();
    // b joins; a is asked to revoke but never answers.
    g.heartbeat(join("b", &["t"]), &s, &topics, 0).unwrap();
    let a_epoch = g.members["a"].member_epoch;
    g.heartbeat(beat("a", a_epoch, None), &s, &topics, 1).unwrap();
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    // b keeps heartbeating; a's rebalance timeout (30 s) passes first.
    for t in (1000..=31_000).step_by(1000) {
        let e = g.members["b"].member_epoch;
        g.heartbeat(beat("b", e, None), &s, &topics, t).unwrap();
        g.tick(t);
    }
    assert!(!g.members.contains_key("a"), "a did not revoke in time");
    let e = g.members["b"].member_epoch;
    let o = g.heartbeat(beat("b", e, None), &s, &topics, 32_000).unwrap();
    assert_eq!(count(&o.assignment.unwrap()), 4);
    // b now stays silent past its session timeout.
    g.tick(32_000 + s.consumer_session_timeout_ms as i64);
    assert!(g.members.is_empty());
    assert_eq!(g.state_name(), "Empty");
    assert_eq!(g.next_deadline(), None);
}

#[test]
fn a_static_member_that_leaves_for_a_while_gets_its_partitions_back() {
    let s = settings();
    let topics = Topics::with(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let j = |id: &str| HeartbeatRequest { instance_id: Some("i-1".into()), ..join(id, &["t"]) };
    g.heartbeat(j("old"), &s, &topics, 0).unwrap();
    g.heartbeat(join("other", &["t"]), &s, &topics, 0).unwrap();
    let before = settle(&mut g, &s, &topics, 1);
    let epoch = g.members["old"].member_epoch;
    let group_epoch = g.group_epoch;

    let leave = HeartbeatRequest { member_epoch: -2, instance_id: Some("i-1".into()), ..beat("old", epoch, None) };
    assert_eq!(g.heartbeat(leave, &s, &topics, 2).unwrap().member_epoch, -2);
    assert_eq!(g.group_epoch, group_epoch, "a temporary leave does not rebalance");
    // The same instance comes back under a new member id.
    let o = g.heartbeat(j("new"), &s, &topics, 3).unwrap();
    assert_eq!(o.member_epoch, epoch);
    assert_eq!(o.assignment.as_ref(), Some(&before["old"]));
    assert!(!g.members.contains_key("old"));
    // While "new" is active, another process with the same instance is refused.
    let err = g.heartbeat(j("third"), &s, &topics, 4).unwrap_err().0;
    assert_eq!(err, Error::UnreleasedInstanceId);
}

#[test]
fn new_partitions_and_topics_matching_a_regex_are_assigned() {
    let s = settings();
    let topics = Topics::with(&[("orders-eu", 2), ("payments", 2)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let req = HeartbeatRequest {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("orders-.*".into()),
        ..join("m", &[])
    };
    let o = g.heartbeat(req, &s, &topics, 0).unwrap();
    assert_eq!(count(&o.assignment.unwrap()), 2, "only orders-eu matches");
    assert_eq!(g.subscribed_names(), vec!["orders-eu".to_string()]);

    topics.add("orders-us", 3);
    topics.grow("orders-eu", 4);
    let o2 = g.heartbeat(beat("m", o.member_epoch, None), &s, &topics, 1).unwrap();
    assert!(o2.member_epoch > o.member_epoch);
    let a = o2.assignment.unwrap();
    assert_eq!(count(&a), 7);
    assert!(!a.contains_key(&topics.id("payments")));
}

#[test]
fn the_range_assignor_is_used_when_a_member_asks_for_it() {
    let s = settings();
    let topics = Topics::with(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    for m in ["a", "b"] {
        let req = HeartbeatRequest { server_assignor: Some("range".into()), ..join(m, &["t"]) };
        g.heartbeat(req, &s, &topics, 0).unwrap();
    }
    let owned = settle(&mut g, &s, &topics, 1);
    assert_eq!(g.assignor, "range");
    assert_eq!(owned["a"][&topics.id("t")], BTreeSet::from([0, 1]));
    assert_eq!(owned["b"][&topics.id("t")], BTreeSet::from([2, 3]));
}

#[test]
fn a_lost_answer_is_tolerated_at_the_previous_epoch() {
    let s = settings();
    let topics = Topics::with(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g", &s, 0);
    let o1 = g.heartbeat(join("a", &["t"]), &s, &topics, 0).unwrap();
    g.heartbeat(join("b", &["t"]), &s, &topics, 0).unwrap();
    let r = g.heartbeat(beat("a", o1.member_epoch, None), &s, &topics, 1).unwrap();
    let kept = r.assignment.unwrap();
    let moved = g.heartbeat(beat("a", o1.member_epoch, Some(&kept)), &s, &topics, 2).unwrap();
    assert!(moved.member_epoch > o1.member_epoch);
    // That answer is lost: "a" heartbeats again with its old epoch and what it owns.
    let again = g.heartbeat(beat("a", o1.member_epoch, Some(&kept)), &s, &topics, 3).unwrap();
    assert_eq!(again.member_epoch, moved.member_epoch);
}

#[test]
fn commits_with_an_older_epoch_are_accepted_for_partitions_held_since_then() {
    let s = settings();
    let topics = Topics::with(&[("t", 2), ("u", 1)]);
    let t = topics.id("t");
    let u = topics.id("u");
    let mut g = ConsumerGroup::new("g", &s, 0);
    let o = g.heartbeat(join("a", &["t"]), &s, &topics, 0).unwrap();
    let first = o.member_epoch;
    assert_eq!(g.check_commit("a", first, &[(t, 0), (t, 1)]), Ok(()));
    assert_eq!(g.check_commit("a", first + 1, &[(t, 0)]), Err(Error::StaleMemberEpoch));
    assert_eq!(g.check_commit("ghost", first, &[(t, 0)]), Err(Error::UnknownMemberId));
    // A subscription change moves "a" to a newer epoch and gives it "u".
    let change =
        HeartbeatRequest { subscribed_topic_names: Some(vec!["t".into(), "u".into()]), ..beat("a", first, None) };
    let o2 = g.heartbeat(change, &s, &topics, 1).unwrap();
    assert!(o2.member_epoch > first);
    // A commit still carrying the old epoch, in flight meanwhile: fine for "t",
    // which "a" has held since then; not for "u", given only at the new epoch.
    assert_eq!(g.check_commit("a", first, &[(t, 0), (t, 1)]), Ok(()));
    assert_eq!(g.check_commit("a", first, &[(u, 0)]), Err(Error::StaleMemberEpoch));
    assert_eq!(g.check_commit("a", o2.member_epoch, &[(u, 0)]), Ok(()));
}
