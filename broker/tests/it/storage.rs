//! The storage engine in-process: journal files rolling, reads that miss the cache,
//! concurrent appends group-committed, recovery, and topic deletion.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tributary_broker::metrics::Metrics;
use tributary_broker::storage::{PartitionLog, Storage, StorageError};
use tributary_config::Config;
use tributary_protocol::batch;
use tributary_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn config(dir: &std::path::Path, cache_bytes: u64) -> Config {
    let mut c = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    c.journal.file_bytes = 1 << 20;
    c.cache.partition_bytes = cache_bytes;
    c.cache.total_bytes = cache_bytes * 4;
    c
}

pub(crate) fn batch(first_ts: i64, values: &[Vec<u8>]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: first_ts + i as i64,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    buf.freeze()
}

pub(crate) async fn append(storage: &Storage, p: &Arc<PartitionLog>, data: Bytes) -> Result<i64, StorageError> {
    let batches = batch::split(&data).unwrap();
    let pending = storage.submit(p, batches, false).await?;
    pending.await.expect("journal answered").map(|a| a.base_offset)
}

/// Reads every batch of a partition, returning (base offset, bytes without offset).
pub(crate) async fn read_all(storage: &Storage, p: &Arc<PartitionLog>) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = p.offsets().log_start_offset;
    loop {
        let r = storage.read(p, offset, 64 * 1024, true).await.unwrap();
        if r.batches.is_empty() {
            return out;
        }
        for b in r.batches {
            let h = batch::BatchHeader::parse(&b).unwrap();
            h.validate(&b).unwrap();
            offset = h.last_offset() + 1;
            out.push((h.base_offset, b.slice(8..)));
        }
    }
}

pub(crate) fn open(c: &Config) -> Arc<Storage> {
    Storage::open(c, Arc::new(Metrics::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_span_journal_files_and_read_back_from_disk_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 0); // no cache: every read goes to the journal files
    let storage = open(&c);
    let topic = storage.create_topic("spread", 3, Default::default()).await.unwrap();
    let mut expected = vec![Vec::new(); 3];
    for i in 0..300usize {
        let p = &topic.partitions[i % 3];
        let values = vec![vec![(i % 251) as u8; 9_000], format!("record {i}").into_bytes()];
        let base = append(&storage, p, batch(i as i64 * 10, &values)).await.unwrap();
        assert_eq!(base, (i / 3) as i64 * 2, "dense offsets per partition");
        expected[i % 3].push(base);
    }
    let files = std::fs::read_dir(dir.path().join("journal")).unwrap().count();
    assert!(files >= 2, "2.7 MB over 1 MiB files should make several files, found {files}");
    let before: Vec<_> = {
        let mut v = Vec::new();
        for p in &topic.partitions {
            v.push(read_all(&storage, p).await);
        }
        v
    };
    for (i, batches) in before.iter().enumerate() {
        assert_eq!(batches.iter().map(|b| b.0).collect::<Vec<_>>(), expected[i]);
    }
    storage.close();
    drop(storage);

    let storage = open(&c);
    let topic = storage.topic("spread").unwrap();
    for (i, p) in topic.partitions.iter().enumerate() {
        assert_eq!(read_all(&storage, p).await, before[i], "partition {i} after restart");
        assert_eq!(p.offsets().high_watermark, 200);
    }
    // appends continue at the recovered end
    assert_eq!(append(&storage, &topic.partitions[0], batch(0, &[b"next".to_vec()])).await.unwrap(), 200);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_unique_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(&config(dir.path(), 1 << 20));
    let topic = storage.create_topic("busy", 1, Default::default()).await.unwrap();
    let p = topic.partitions[0].clone();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let storage = storage.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut bases = Vec::new();
            for i in 0..20 {
                let values = vec![format!("{t}-{i}-a").into_bytes(), format!("{t}-{i}-b").into_bytes()];
                bases.push(append(&storage, &p, batch(0, &values)).await.unwrap());
            }
            bases
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..640).map(|i| i * 2).collect::<Vec<i64>>());
    assert_eq!(p.offsets().high_watermark, 1280);
    assert_eq!(read_all(&storage, &p).await.len(), 640);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_stays_deleted_and_its_name_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 1 << 20);
    let storage = open(&c);
    let old = storage.create_topic("reborn", 1, Default::default()).await.unwrap();
    for _ in 0..5 {
        append(&storage, &old.partitions[0], batch(0, &[b"old".to_vec()])).await.unwrap();
    }
    storage.delete_topic(old.id).await.unwrap();
    assert!(matches!(
        append(&storage, &old.partitions[0], batch(0, &[b"late".to_vec()])).await,
        Err(StorageError::UnknownPartition)
    ));
    let new = storage.create_topic("reborn", 1, Default::default()).await.unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(append(&storage, &new.partitions[0], batch(0, &[b"new".to_vec()])).await.unwrap(), 0);
    storage.close();
    drop(storage);
    let storage = open(&c);
    let t = storage.topic("reborn").unwrap();
    assert_eq!(t.id, new.id);
    let batches = read_all(&storage, &t.partitions[0]).await;
    assert_eq!(batches.len(), 1);
    assert!(storage.topic_by_id(&old.id).is_none());
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_and_timestamp_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(&config(dir.path(), 1 << 20));
    let topic = storage.create_topic("times", 1, Default::default()).await.unwrap();
    let p = &topic.partitions[0];
    append(&storage, p, batch(1000, &[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])).await.unwrap();
    append(&storage, p, batch(2000, &[b"d".to_vec(), b"e".to_vec()])).await.unwrap();
    assert!(matches!(
        storage.read(p, 6, 1024, true).await,
        Err(StorageError::OffsetOutOfRange { offset: 6, log_start_offset: 0, high_watermark: 5 })
    ));
    assert!(storage.read(p, 5, 1024, true).await.unwrap().batches.is_empty());
    assert_eq!(storage.offset_for_timestamp(p, 0).await.unwrap(), Some((0, 1000)));
    assert_eq!(storage.offset_for_timestamp(p, 1001).await.unwrap(), Some((1, 1001)));
    assert_eq!(storage.offset_for_timestamp(p, 1003).await.unwrap(), Some((3, 2000)));
    assert_eq!(storage.offset_for_timestamp(p, 5000).await.unwrap(), None);
    assert_eq!(storage.max_timestamp(p).await.unwrap(), Some((4, 2001)));
    storage.close();
}
