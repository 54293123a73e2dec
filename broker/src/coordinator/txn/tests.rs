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
