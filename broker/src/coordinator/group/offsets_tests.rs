//! Committed offsets through the real storage engine: durable across a restart,
//! validated, expired after the retention period (with a manual clock), and dropped
//! with their topic or group.

use std::sync::Arc;

use tributary_config::Config;

use super::CommitRequest;
use crate::clock::ManualClock;
use crate::coordinator::group::records::Committed;
use crate::coordinator::group::GroupCoordinator;
use crate::errors::Error;
use crate::metrics::Metrics;
use crate::storage::Storage;

const START: i64 = 1_700_000_000_000;

struct Node {
    storage: Arc<Storage>,
    groups: Arc<GroupCoordinator>,
}

async fn open(config: &Config, clock: Arc<ManualClock>) -> Node {
    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(config, metrics.clone()).unwrap();
    let groups = GroupCoordinator::new(storage.clone(), &config.groups, metrics, clock);
    groups.load().await.unwrap();
    Node { storage, groups }
}

fn committed(offset: i64, metadata: &str) -> Committed {
    Committed { offset, leader_epoch: 3, metadata: metadata.into(), commit_timestamp: -1 }
}

fn simple(group: &str, offsets: Vec<(&str, i32, Committed)>) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation: -1,
        member_id: String::new(),
        instance_id: None,
        offsets: offsets.into_iter().map(|(t, p, c)| (t.to_string(), p, c)).collect(),
    }
}

fn offset_of(n: &Node, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let fetched = n.groups.fetch_offsets(group, Some(vec![(topic.into(), vec![partition])]), None).unwrap();
    fetched[0].2.as_ref().map(|c| c.offset)
}

#[tokio::test]
async fn offsets_survive_a_restart_and_expire_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let clock = Arc::new(ManualClock::new(START));
    let n = open(&config, clock.clone()).await;
    n.storage.create_topic("t", 2, Default::default()).await.unwrap();

    let results = n
        .groups
        .commit(simple(
            "g",
            vec![
                ("t", 0, committed(5, "m0")),
                ("t", 1, committed(7, "")),
                ("missing", 0, committed(1, "")),
                ("t", 0, committed(6, &"x".repeat(5000))),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(()), Ok(()), Err(Error::UnknownTopicOrPartition), Err(Error::OffsetMetadataTooLarge)]);
    // A later commit wins.
    n.groups.commit(simple("g", vec![("t", 1, committed(9, "later"))])).await.unwrap();
    assert_eq!(offset_of(&n, "g", "t", 0), Some(5));
    assert_eq!(offset_of(&n, "g", "t", 1), Some(9));
    assert_eq!(offset_of(&n, "other", "t", 0), None);
    assert_eq!(
        n.groups.lag(),
        vec![("g".to_string(), "t".to_string(), 0, 0), ("g".to_string(), "t".to_string(), 1, 0)]
    );
    n.storage.close();
    drop(n);

    let n = open(&config, clock.clone()).await;
    let all = n.groups.fetch_offsets("g", None, None).unwrap();
    assert_eq!(all.len(), 2);
    let c = all[0].2.clone().unwrap();
    assert_eq!((c.offset, c.leader_epoch, c.metadata.as_str(), c.commit_timestamp), (5, 3, "m0", START));
    assert_eq!(offset_of(&n, "g", "t", 1), Some(9));

    // Not yet expired one minute before the retention period ends.
    let retention = n.groups.settings.offsets_retention_ms;
    clock.advance(retention - 60_000);
    n.groups.expire_offsets().await;
    assert_eq!(offset_of(&n, "g", "t", 0), Some(5));
    clock.advance(60_000);
    n.groups.expire_offsets().await;
    assert_eq!(offset_of(&n, "g", "t", 0), None);
    assert!(n.groups.group("g").is_none(), "an empty group with no offsets is forgotten");
    n.storage.close();
    drop(n);

    // The expiry was durable.
    let n = open(&config, clock).await;
    assert_eq!(offset_of(&n, "g", "t", 1), None);
    n.storage.close();
}

#[tokio::test]
async fn offsets_go_with_their_topic_and_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let clock = Arc::new(ManualClock::new(START));
    let n = open(&config, clock.clone()).await;
    n.storage.create_topic("a", 1, Default::default()).await.unwrap();
    let b = n.storage.create_topic("b", 1, Default::default()).await.unwrap();
    n.groups.commit(simple("g1", vec![("a", 0, committed(1, "")), ("b", 0, committed(2, ""))])).await.unwrap();
    n.groups.commit(simple("g2", vec![("a", 0, committed(3, ""))])).await.unwrap();

    n.storage.delete_topic(b.id).await.unwrap();
    n.groups.topic_deleted("b").await;
    assert_eq!(offset_of(&n, "g1", "b", 0), None);
    assert_eq!(offset_of(&n, "g1", "a", 0), Some(1));

    assert_eq!(n.groups.delete_groups(&["g2".into(), "nope".into()]).await, vec![Ok(()), Err(Error::GroupIdNotFound)]);
    assert_eq!(offset_of(&n, "g2", "a", 0), None);
    // A commit from a member of a group that does not exist is refused.
    let mut member = simple("g3", vec![("a", 0, committed(1, ""))]);
    member.generation = 4;
    member.member_id = "m".into();
    assert_eq!(n.groups.commit(member).await, Err(Error::IllegalGeneration));
    n.storage.close();
    drop(n);

    let n = open(&config, clock).await;
    assert_eq!(offset_of(&n, "g1", "a", 0), Some(1));
    assert_eq!(offset_of(&n, "g1", "b", 0), None);
    assert_eq!(offset_of(&n, "g2", "a", 0), None);
    let listed: Vec<String> = n.groups.list().unwrap().into_iter().map(|l| l.group_id).collect();
    assert_eq!(listed, vec!["g1".to_string()]);
    n.storage.close();
}

#[tokio::test]
async fn a_classic_groups_protocol_type_and_generation_survive_a_restart_until_it_goes() {
    use crate::coordinator::group::Protocol;
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let clock = Arc::new(ManualClock::new(START));
    let n = open(&config, clock.clone()).await;
    n.storage.create_topic("t", 1, Default::default()).await.unwrap();
    // Two groups that had members (now gone): one with a committed offset, one
    // without.
    for (group, generation) in [("kept", 4), ("bare", 2)] {
        let entry = n.groups.group_or_new(group);
        let mut g = entry.lock();
        n.groups.with_classic(&mut g, |c| {
            c.protocol_type = Some("consumer".into());
            c.generation = generation;
        });
    }
    n.groups.commit(simple("kept", vec![("t", 0, committed(3, ""))])).await.unwrap();
    n.groups.write_group_metadata().await;
    n.storage.close();
    drop(n);

    let described = |n: &Node, group: &str| {
        n.groups.group(group).map(|g| match &g.lock().protocol {
            Protocol::Classic(c) => (c.protocol_type.clone(), c.generation, c.is_empty()),
            Protocol::Consumer(_) => panic!("a classic group"),
        })
    };
    let n = open(&config, clock.clone()).await;
    assert_eq!(described(&n, "kept"), Some((Some("consumer".into()), 4, true)));
    assert_eq!(described(&n, "bare"), Some((Some("consumer".into()), 2, true)));
    // An empty group without offsets goes at the next expiry pass, one deleted with
    // DeleteGroups at once; both for good.
    n.groups.expire_offsets().await;
    assert!(n.groups.group("bare").is_none());
    assert_eq!(n.groups.delete_groups(&["kept".to_string()]).await, vec![Ok(())]);
    n.storage.close();
    drop(n);

    let n = open(&config, clock).await;
    assert_eq!(described(&n, "bare"), None);
    assert_eq!(described(&n, "kept"), None);
    n.storage.close();
}
