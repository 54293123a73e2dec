//! The coordinator through the real storage engine: a transaction that was
//! committing when the broker stopped is completed at the next start.

use std::sync::Arc;

use bytes::Bytes;
use tributary_config::Config;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::build::{build, BatchSpec};

use super::{TxnCoordinator, TxnState};
use crate::clock::ManualClock;
use crate::coordinator::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::storage::Storage;

async fn open(config: &Config) -> (Arc<Storage>, Arc<TxnCoordinator>) {
    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(config, metrics.clone()).unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let groups = GroupCoordinator::new(storage.clone(), &config.groups, metrics, clock.clone());
    groups.load().await.unwrap();
    let txns = TxnCoordinator::new(storage.clone(), groups, clock, 15 * 60 * 1000);
    txns.load().await.unwrap();
    (storage, txns)
}

async fn produce_in_txn(storage: &Storage, topic: &str, pid: i64, epoch: i16) {
    let spec = BatchSpec {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: 0,
        transactional: true,
        ..BatchSpec::plain(1)
    };
    let batch = build(&spec, &[(None, Some(Bytes::from_static(b"v")))]).unwrap();
    let header = BatchHeader::parse(&batch).unwrap();
    let p = storage.topic(topic).unwrap().partitions[0].clone();
    storage.submit(&p, vec![(header, batch)], false).await.unwrap().await.unwrap().unwrap();
}

#[tokio::test]
async fn a_transaction_prepared_before_a_stop_is_completed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let (storage, txns) = open(&config).await;
    storage.create_topic("t", 1, Default::default()).await.unwrap();
    let (pid, epoch) = txns.init_producer_id("tx", 60_000, None).await.unwrap();
    let added = txns.add_partitions("tx", pid, epoch, vec![("t".into(), 0)]).await;
    assert!(added.iter().all(|(_, r)| r.is_ok()));
    produce_in_txn(&storage, "t", pid, epoch).await;
    let p = storage.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.offsets().last_stable_offset, 0, "the open transaction holds the stable offset");

    // The broker stops right after PrepareCommit became durable, before any marker.
    {
        let entry = txns.entry("tx");
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().unwrap();
        meta.state = TxnState::PrepareCommit;
        txns.persist("tx", meta).await.unwrap();
    }
    storage.close();
    drop((storage, txns));

    let (storage, txns) = open(&config).await;
    let p = storage.topic("t").unwrap().partitions[0].clone();
    let offsets = p.offsets();
    assert_eq!(offsets.high_watermark, 2, "the data and the commit marker");
    assert_eq!(offsets.last_stable_offset, 2, "the transaction is complete");
    let state = txns.snapshot(Some(&["tx".to_string()])).await.unwrap();
    assert_eq!(state[0].1.as_ref().unwrap().state, TxnState::CompleteCommit);
    // A read_committed read sees the record and no aborted transaction.
    let read = storage.read_isolated(&p, 0, 1 << 20, true, true).await.unwrap();
    assert_eq!(read.batches.len(), 2);
    assert!(read.aborted.is_empty());
    storage.close();
}

#[tokio::test]
async fn an_open_transaction_is_aborted_by_a_new_instance_and_the_old_epoch_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let (storage, txns) = open(&config).await;
    storage.create_topic("t", 1, Default::default()).await.unwrap();
    let (pid, epoch) = txns.init_producer_id("tx", 60_000, None).await.unwrap();
    txns.add_partitions("tx", pid, epoch, vec![("t".into(), 0)]).await;
    produce_in_txn(&storage, "t", pid, epoch).await;
    let (pid2, epoch2) = txns.init_producer_id("tx", 60_000, None).await.unwrap();
    assert_eq!(pid2, pid);
    assert!(epoch2 > epoch);
    let p = storage.topic("t").unwrap().partitions[0].clone();
    let read = storage.read_isolated(&p, 0, 1 << 20, true, true).await.unwrap();
    assert_eq!(read.aborted.len(), 1, "the old transaction was aborted");
    assert_eq!(txns.end("tx", pid, epoch, true).await, Err(crate::errors::Error::ProducerFenced));
    assert_eq!(
        txns.add_partitions("tx", 999, epoch2, vec![("t".into(), 0)]).await[0].1,
        Err(crate::errors::Error::InvalidProducerIdMapping)
    );
    let unknown = txns.add_partitions("tx", pid2, epoch2, vec![("t".into(), 0), ("nope".into(), 0)]).await;
    assert_eq!(unknown[1].1, Err(crate::errors::Error::UnknownTopicOrPartition));
    assert_eq!(unknown[0].1, Err(crate::errors::Error::OperationNotAttempted));
    assert_eq!(txns.init_producer_id("tx", 0, None).await, Err(crate::errors::Error::InvalidTransactionTimeout));
    storage.close();
}

/// A transactional batch of one record at `seq`, as its outcome.
async fn try_produce(storage: &Storage, topic: &str, pid: i64, epoch: i16, seq: i32) -> Result<(), String> {
    let spec = BatchSpec {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: true,
        ..BatchSpec::plain(1)
    };
    let batch = build(&spec, &[(None, Some(Bytes::from_static(b"v")))]).unwrap();
    let header = BatchHeader::parse(&batch).unwrap();
    let p = storage.topic(topic).unwrap().partitions[0].clone();
    let pending = storage.submit(&p, vec![(header, batch)], false).await.map_err(|e| e.to_string())?;
    pending.await.unwrap().map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn transactions_v2_bump_the_epoch_at_every_end_and_fence_what_the_old_one_sends() {
    use crate::errors::Error;
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let (storage, txns) = open(&config).await;
    storage.create_topic("t", 1, Default::default()).await.unwrap();
    let p = storage.topic("t").unwrap().partitions[0].clone();
    let (pid, epoch) = txns.init_producer_id("tx", 60_000, None).await.unwrap();

    // The write joins the transaction by itself (Produce v12).
    txns.add_write("tx", pid, epoch, "t", &p).await.unwrap();
    try_produce(&storage, "t", pid, epoch, 0).await.unwrap();
    assert_eq!(txns.end_v2("tx", pid, epoch, true).await, Ok((pid, epoch + 1)));
    assert_eq!(p.offsets().last_stable_offset, 2, "data and its commit marker");
    // A write of the ended transaction arriving late is fenced by the marker's epoch.
    assert!(try_produce(&storage, "t", pid, epoch, 1).await.is_err());
    // A retried end whose answer was lost gets the same answer; the other outcome is
    // a fenced producer.
    assert_eq!(txns.end_v2("tx", pid, epoch, true).await, Ok((pid, epoch + 1)));
    assert_eq!(txns.end_v2("tx", pid, epoch, false).await, Err(Error::ProducerFenced));

    // The next transaction goes on at the new epoch from sequence 0, and aborts.
    let epoch = epoch + 1;
    assert_eq!(txns.add_write("tx", pid, epoch - 1, "t", &p).await, Err(Error::ProducerFenced));
    txns.add_write("tx", pid, epoch, "t", &p).await.unwrap();
    try_produce(&storage, "t", pid, epoch, 0).await.unwrap();
    assert_eq!(txns.end_v2("tx", pid, epoch, false).await, Ok((pid, epoch + 1)));
    let read = storage.read_isolated(&p, 0, 1 << 20, true, true).await.unwrap();
    assert_eq!(read.aborted.len(), 1, "the second transaction was aborted");

    // Ending a transaction that holds nothing bumps the epoch too, and writes nothing.
    let end = p.offsets().high_watermark;
    assert_eq!(txns.end_v2("tx", pid, epoch + 1, true).await, Ok((pid, epoch + 2)));
    assert_eq!(p.offsets().high_watermark, end);

    // The epoch space used up: the markers carry the last epoch of this id, and the
    // producer goes on with a fresh id at epoch 0; a retry is recognised.
    {
        let entry = txns.entry("tx");
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().unwrap();
        meta.producer_epoch = i16::MAX - 1;
        txns.persist("tx", meta).await.unwrap();
    }
    let last = i16::MAX - 1;
    txns.add_write("tx", pid, last, "t", &p).await.unwrap();
    try_produce(&storage, "t", pid, last, 0).await.unwrap();
    let (fresh, zero) = txns.end_v2("tx", pid, last, true).await.unwrap();
    assert!(fresh != pid && zero == 0, "{fresh} {zero}");
    assert!(try_produce(&storage, "t", pid, last, 1).await.is_err(), "fenced by the marker at the last epoch");
    assert_eq!(txns.end_v2("tx", pid, last, true).await, Ok((fresh, 0)));
    txns.add_write("tx", fresh, 0, "t", &p).await.unwrap();
    try_produce(&storage, "t", fresh, 0, 0).await.unwrap();
    assert_eq!(txns.end_v2("tx", fresh, 0, true).await, Ok((fresh, 1)));
    let stable = p.offsets().last_stable_offset;
    assert_eq!(stable, p.offsets().high_watermark, "every transaction ended");
    storage.close();
}

#[tokio::test]
async fn a_v2_end_prepared_before_a_stop_completes_at_start_with_the_fresh_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let (storage, txns) = open(&config).await;
    storage.create_topic("t", 1, Default::default()).await.unwrap();
    let p = storage.topic("t").unwrap().partitions[0].clone();
    let (pid, _) = txns.init_producer_id("tx", 60_000, None).await.unwrap();
    let last = i16::MAX - 1;
    {
        let entry = txns.entry("tx");
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().unwrap();
        meta.producer_epoch = last;
        txns.persist("tx", meta).await.unwrap();
    }
    txns.add_write("tx", pid, last, "t", &p).await.unwrap();
    try_produce(&storage, "t", pid, last, 0).await.unwrap();
    // The broker stops right after PrepareCommit (at the last epoch, a fresh id
    // chosen) became durable, before any marker.
    {
        let entry = txns.entry("tx");
        let mut guard = entry.lock().await;
        let meta = guard.as_mut().unwrap();
        meta.producer_epoch = i16::MAX;
        meta.next_producer_id = Some(pid + 1000);
        meta.state = TxnState::PrepareCommit;
        txns.persist("tx", meta).await.unwrap();
    }
    storage.close();
    drop((storage, txns));

    let (storage, txns) = open(&config).await;
    let p = storage.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.offsets().last_stable_offset, 2, "the data and the commit marker");
    let state = txns.snapshot(Some(&["tx".to_string()])).await.unwrap();
    let meta = state[0].1.clone().unwrap();
    assert_eq!((meta.state, meta.producer_id, meta.producer_epoch), (TxnState::CompleteCommit, pid + 1000, 0));
    // The producer, retrying the end it never heard back from, learns where to go on.
    assert_eq!(txns.end_v2("tx", pid, last, true).await, Ok((pid + 1000, 0)));
    storage.close();
}

#[tokio::test]
async fn idle_transactional_ids_expire_with_a_tombstone_and_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(&config, metrics.clone()).unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let groups = GroupCoordinator::new(storage.clone(), &config.groups, metrics, clock.clone());
    groups.load().await.unwrap();
    let txns = TxnCoordinator::new(storage.clone(), groups, clock.clone(), 15 * 60 * 1000);
    txns.load().await.unwrap();
    txns.set_id_expiration(60_000, std::time::Duration::from_secs(1));
    storage.create_topic("t", 1, Default::default()).await.unwrap();
    // "idle" only initialised; "open" has a transaction going on.
    txns.init_producer_id("idle", 60_000, None).await.unwrap();
    let (pid, epoch) = txns.init_producer_id("open", 60_000, None).await.unwrap();
    assert!(txns.add_partitions("open", pid, epoch, vec![("t".into(), 0)]).await.iter().all(|(_, r)| r.is_ok()));
    clock.advance(59_999);
    assert_eq!(txns.remove_expired_ids().await, 0, "not idle long enough");
    clock.advance(1);
    assert_eq!(txns.remove_expired_ids().await, 1);
    assert!(txns.txns.get("idle").is_none(), "gone from memory");
    assert!(txns.txns.get("open").is_some());
    // The id is unknown now, and a new producer with it starts afresh.
    assert_eq!(txns.end("idle", 0, 0, true).await, Err(crate::errors::Error::InvalidProducerIdMapping));
    storage.close();
    drop((storage, txns));

    // The tombstone is durable: a restart does not bring the id back.
    let (storage, txns) = open(&config).await;
    assert!(txns.txns.get("idle").is_none());
    assert!(txns.txns.get("open").is_some());
    let (_, epoch) = txns.init_producer_id("idle", 60_000, None).await.unwrap();
    assert_eq!(epoch, 0, "a fresh producer id at epoch 0");
    storage.close();
}
