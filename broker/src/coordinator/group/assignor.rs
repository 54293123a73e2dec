//! Server-side assignors of the consumer protocol (KIP-848).
//!
//! - `uniform`: every partition of the subscribed topics goes to one member
//!   subscribed to its topic, counts differ by at most one wherever subscriptions
//!   allow, and a partition stays with its current owner whenever balance permits
//!   (sticky), so a rebalance moves as few partitions as it can.
//! - `range`: per topic, the members subscribed to it (sorted by member id) get
//!   contiguous ranges of partitions, the first `partitions % members` one more;
//!   members subscribed to co-partitioned topics get the same partition numbers.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the assignor knows of a member.
#[derive(Debug, Clone)]
pub(crate) struct AssignorMember {
    pub(crate) id: String,
    pub(crate) subscribed: BTreeSet<Uuid>,
    /// The member's previous target assignment (for stickiness).
    pub(crate) current: Assignment,
}

/// Whether `name` is an assignor this coordinator runs.
pub(crate) fn known(name: &str) -> bool {
    matches!(name, "uniform" | "range")
}

/// Runs assignor `name` over `members` and `topics` (topic id -> partition count).
pub(crate) fn assign(
    name: &str,
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

fn range(members: &[AssignorMember], topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members.iter().map(|m| (m.id.clone(), Assignment::new())).collect();
    for (topic, &count) in topics {
        let mut subs: Vec<&AssignorMember> = members.iter().filter(|m| m.subscribed.contains(topic)).collect();
        if subs.is_empty() {
            continue;
        }
        subs.sort_by(|a, b| a.id.cmp(&b.id));
        let n = subs.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            if take > 0 {
                let set = out.entry(m.id.clone()).or_default().entry(*topic).or_default();
                set.extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

fn uniform(members: &[AssignorMember], topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    let mut counts = vec![0usize; members.len()];
    let eligible = |t: &Uuid| -> Vec<usize> {
        members.iter().enumerate().filter(|(_, m)| m.subscribed.contains(t)).map(|(i, _)| i).collect()
    };
    let all: Vec<(Uuid, i32)> = topics
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.subscribed.contains(t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (*t, p)))
        .collect();
    let quota = if members.is_empty() { 0 } else { all.len().div_ceil(members.len()) };

    // 1. Sticky: keep current owners up to the quota.
    for (i, m) in members.iter().enumerate() {
        for (topic, parts) in &m.current {
            let Some(&n) = topics.get(topic) else { continue };
            if !m.subscribed.contains(topic) {
                continue;
            }
            for &p in parts {
                if p < n && counts[i] < quota && !owner.contains_key(&(*topic, p)) {
                    owner.insert((*topic, p), i);
                    counts[i] += 1;
                }
            }
        }
    }
    // 2. Everything else to the least-loaded eligible member.
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        if let Some(&i) = eligible(&tp.0).iter().min_by_key(|&&i| (counts[i], &members[i].id)) {
            owner.insert(*tp, i);
            counts[i] += 1;
        }
    }
    // 3. Even out: move a partition from a fuller member to an emptier one that may
    // take it, until no move narrows a gap of two or more. Bounded by the partitions.
    for _ in 0..all.len() {
        let mut moved = false;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(counts[i]));
        'outer: for &from in &order {
            for (tp, o) in owner.iter_mut().rev() {
                if *o != from {
                    continue;
                }
                let to =
                    eligible(&tp.0).into_iter().filter(|&j| counts[j] + 1 < counts[from]).min_by_key(|&j| counts[j]);
                if let Some(to) = to {
                    *o = to;
                    counts[from] -= 1;
                    counts[to] += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = members.iter().map(|m| (m.id.clone(), Assignment::new())).collect();
    for ((topic, p), i) in owner {
        out.entry(members[i].id.clone()).or_default().entry(topic).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, subscribed: &[Uuid]) -> AssignorMember {
        AssignorMember { id: id.into(), subscribed: subscribed.iter().copied().collect(), current: Assignment::new() }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    fn check_cover(out: &BTreeMap<String, Assignment>, topics: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition {t}/{p} assigned twice");
                }
            }
        }
        let total: i32 = topics.values().sum();
        assert_eq!(seen.len(), total as usize, "every partition assigned");
    }

    #[test]
    fn uniform_balances_and_covers() {
        let t1 = Uuid::new_v4();
        let t2 = Uuid::new_v4();
        let topics = BTreeMap::from([(t1, 6), (t2, 1)]);
        let members: Vec<_> = ["a", "b", "c"].iter().map(|id| member(id, &[t1, t2])).collect();
        let out = uniform(&members, &topics);
        check_cover(&out, &topics);
        let counts: Vec<usize> = out.values().map(count).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let t = Uuid::new_v4();
        let topics = BTreeMap::from([(t, 6)]);
        let two: Vec<_> = ["a", "b"].iter().map(|id| member(id, &[t])).collect();
        let first = uniform(&two, &topics);
        let mut three: Vec<_> = two
            .into_iter()
            .map(|mut m| {
                m.current = first[&m.id].clone();
                m
            })
            .collect();
        three.push(member("c", &[t]));
        let second = uniform(&three, &topics);
        check_cover(&second, &topics);
        for id in ["a", "b"] {
            assert_eq!(count(&second[id]), 2);
            assert!(second[id][&t].is_subset(&first[id][&t]), "{id} kept only partitions it had");
        }
        assert_eq!(count(&second["c"]), 2);
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let t1 = Uuid::new_v4();
        let t2 = Uuid::new_v4();
        let topics = BTreeMap::from([(t1, 4), (t2, 4)]);
        let members = vec![member("a", &[t1]), member("b", &[t1, t2])];
        let out = uniform(&members, &topics);
        check_cover(&out, &topics);
        assert!(!out["a"].contains_key(&t2));
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = Uuid::new_v4();
        let topics = BTreeMap::from([(t, 7)]);
        let members: Vec<_> = ["b", "a", "c"].iter().map(|id| member(id, &[t])).collect();
        let out = range(&members, &topics);
        check_cover(&out, &topics);
        assert_eq!(out["a"][&t], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t], BTreeSet::from([3, 4]));
        assert_eq!(out["c"][&t], BTreeSet::from([5, 6]));
    }

    #[test]
    fn no_members_or_no_topics_assign_nothing() {
        let t = Uuid::new_v4();
        assert!(uniform(&[], &BTreeMap::from([(t, 3)])).is_empty());
        let out = uniform(&[member("a", &[t])], &BTreeMap::new());
        assert_eq!(count(&out["a"]), 0);
    }
}
