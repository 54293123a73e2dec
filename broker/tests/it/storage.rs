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

/// Writes 3 partitions × 80 batches of ~9 KB (one group commit each, so several
/// journal files of 1 MiB) and returns what each partition holds.
async fn fill_for_damage(c: &Config) -> Vec<Vec<(i64, Bytes)>> {
    let storage = open(c);
    let topic = storage.create_topic("damage", 3, Default::default()).await.unwrap();
    for i in 0..240usize {
        let values = vec![vec![(i % 251) as u8; 9_000], format!("record {i}").into_bytes()];
        append(&storage, &topic.partitions[i % 3], batch(i as i64, &values)).await.unwrap();
    }
    let mut before = Vec::new();
    for p in &topic.partitions {
        before.push(read_all(&storage, p).await);
    }
    storage.close();
    before
}

fn journal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    files.sort();
    files
}

fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_the_oldest_journal_file_loses_only_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 0);
    let before = fill_for_damage(&c).await;
    let files = journal_files(dir.path());
    assert!(files.len() >= 3, "{} journal files", files.len());
    // The middle of the oldest file: inside some batch's payload.
    let len = std::fs::metadata(&files[0]).unwrap().len() as usize;
    flip(&files[0], len / 2);

    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(&c, metrics.clone()).unwrap();
    assert_eq!(journal_files(dir.path()), files, "no journal file is removed for damage");
    let topic = storage.topic("damage").unwrap();
    let mut lost = Vec::new();
    for (i, p) in topic.partitions.iter().enumerate() {
        let after = read_all(&storage, p).await;
        assert!(after.iter().all(|b| before[i].contains(b)), "partition {i}: only batches that were there");
        lost.extend(before[i].iter().filter(|b| !after.contains(b)).map(|b| (i, b.0)));
        assert_eq!(p.offsets().high_watermark, 160, "partition {i}: the end is where it was");
    }
    assert_eq!(lost.len(), 1, "exactly the damaged batch is lost: {lost:?}");
    assert_eq!(metrics.journal_damaged_regions.get(), 1);
    assert_eq!(metrics.journal_missing_offsets.get(), 2, "the lost batch held 2 records");
    // Writes go on at the end.
    assert_eq!(append(&storage, &topic.partitions[0], batch(0, &[b"next".to_vec()])).await.unwrap(), 160);
    storage.close();
}

/// A seeded loop: a bit flipped anywhere in any journal file at rest loses at most
/// the one group commit it hit; offsets of everything else stay where they were,
/// and high watermarks never go back (except by a cut torn tail of the newest file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flipped_anywhere_at_rest_loses_at_most_one_group_commit() {
    let template = tempfile::tempdir().unwrap();
    let before = fill_for_damage(&config(template.path(), 0)).await;
    let mut seed: u64 = 0x5eed_1234;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let files = journal_files(dir.path());
        let file = &files[next() % files.len()];
        let at = next() % std::fs::metadata(file).unwrap().len() as usize;
        flip(file, at);
        let c = config(dir.path(), 0);
        let storage = open(&c);
        let topic = storage.topic("damage").unwrap();
        let mut lost = 0;
        for (i, p) in topic.partitions.iter().enumerate() {
            let after = read_all(&storage, p).await;
            assert!(after.iter().all(|b| before[i].contains(b)), "round {round}: partition {i}");
            lost += before[i].len() - after.len();
        }
        assert!(lost <= 1, "round {round}: flip in {} at {at} lost {lost} batches", file.display());
        storage.close();
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else if e.file_name() != ".lock" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 0);
    let first = open(&c);
    let err = Storage::open(&c, Arc::new(Metrics::new())).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("in use by another broker"), "{message}");
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains(&std::process::id().to_string()), "{message}");
    first.close();
    drop(first);
    open(&c).close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_replays_only_the_journal_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 0);
    c.journal.checkpoint_bytes = 1 << 20;
    let storage = open(&c);
    let topic = storage.create_topic("ckpt", 3, Default::default()).await.unwrap();
    let write = |storage: Arc<Storage>, topic: Arc<tributary_broker::storage::Topic>, range: std::ops::Range<usize>| async move {
        for i in range {
            let values = vec![vec![(i % 251) as u8; 9_000], format!("record {i}").into_bytes()];
            append(&storage, &topic.partitions[i % 3], batch(i as i64, &values)).await.unwrap();
        }
    };
    write(storage.clone(), topic.clone(), 0..240).await;
    let settings = tributary_broker::storage::flusher::FlushSettings::from_config(&c);
    storage.flush_round(&settings).await.unwrap();
    assert!(dir.path().join("journal/checkpoint.bin").exists());
    write(storage.clone(), topic.clone(), 240..300).await;
    let mut before = Vec::new();
    for p in &topic.partitions {
        before.push(read_all(&storage, p).await);
    }
    let journal_bytes: u64 = journal_files(dir.path()).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    storage.close();
    drop(storage);

    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(&c, metrics.clone()).unwrap();
    let scanned = metrics.journal_recovery_bytes.get() as u64;
    // 60 of 300 batches came after the checkpoint.
    assert!(scanned > 0 && scanned < journal_bytes / 3, "scanned {scanned} of {journal_bytes} journal bytes");
    let topic = storage.topic("ckpt").unwrap();
    for (i, p) in topic.partitions.iter().enumerate() {
        assert_eq!(read_all(&storage, p).await, before[i], "partition {i}");
        assert_eq!(p.offsets().high_watermark, 200);
    }
    assert_eq!(append(&storage, &topic.partitions[1], batch(0, &[b"next".to_vec()])).await.unwrap(), 200);
    storage.close();
    drop(storage);
    // And again, from a checkpoint taken by a broker that itself started from one.
    let storage = open(&c);
    let topic = storage.topic("ckpt").unwrap();
    assert_eq!(topic.partitions[1].offsets().high_watermark, 201);
    assert_eq!(read_all(&storage, &topic.partitions[0]).await, before[0]);
    storage.close();
}

/// A seeded loop of injected journal faults: writes and fsyncs fail (ENOSPC, EIO)
/// or tear (some blocks written, then an error) at random while four tasks append;
/// after each round the engine is closed (a torn group commit may be left on disk)
/// and opened clean, and every acknowledged batch must be at its offset with its
/// bytes, offsets dense, high watermarks never back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_write_and_fsync_faults_lose_nothing_acknowledged() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tributary_broker::storage::journal::faults::{Faults, Injected, JournalOp};

    for seed in [1u64, 7, 42] {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), 1 << 20);
        let setup = open(&c);
        setup.create_topic("faulty", 2, Default::default()).await.unwrap();
        setup.close();
        drop(setup);
        let mut acked: Vec<std::collections::BTreeMap<i64, Bytes>> = vec![Default::default(); 2];
        let mut hw = [0i64; 2];
        let injected = Arc::new(AtomicU64::new(0));
        for round in 0..3u64 {
            let state = Arc::new(AtomicU64::new(seed * 1000 + round));
            let counter = injected.clone();
            let faults = Faults(Arc::new(move |op| {
                let mut x = state.load(Ordering::Relaxed);
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                state.store(x, Ordering::Relaxed);
                let roll = (x >> 33) % 100;
                if roll >= 12 {
                    return None;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                let err = |no_space| {
                    if no_space {
                        std::io::Error::from_raw_os_error(28)
                    } else {
                        std::io::Error::from_raw_os_error(5)
                    }
                };
                Some(match op {
                    JournalOp::Write(len) if roll < 4 => Injected::Short(len / 2, err(false)),
                    JournalOp::Write(_) => Injected::Fail(err(roll < 8)),
                    JournalOp::Sync => Injected::Fail(err(false)),
                })
            }));
            let storage = Storage::open_with_faults(&c, Arc::new(Metrics::new()), Some(faults)).unwrap();
            let topic = storage.topic("faulty").unwrap();
            let mut tasks = Vec::new();
            for t in 0..4usize {
                let storage = storage.clone();
                let p = topic.partitions[t % 2].clone();
                tasks.push(tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for i in 0..40 {
                        let data = batch(0, &[format!("s{seed}-r{round}-t{t}-{i}").into_bytes(), vec![t as u8; 3000]]);
                        if let Ok(base) = append(&storage, &p, data.clone()).await {
                            ok.push((t % 2, base, data.slice(8..)));
                        }
                    }
                    ok
                }));
            }
            for task in tasks {
                for (p, base, bytes) in task.await.unwrap() {
                    acked[p].insert(base, bytes);
                }
            }
            storage.close();
            drop(storage);

            let storage = open(&c);
            let topic = storage.topic("faulty").unwrap();
            for (i, p) in topic.partitions.iter().enumerate() {
                let all = read_all(&storage, p).await;
                let mut next = 0;
                for (base, _) in &all {
                    assert_eq!(*base, next, "seed {seed} round {round} partition {i}: offsets dense");
                    next = base + 2;
                }
                let got: std::collections::BTreeMap<i64, Bytes> = all.into_iter().collect();
                for (base, bytes) in &acked[i] {
                    assert_eq!(got.get(base), Some(bytes), "seed {seed} round {round}: acknowledged batch at {base}");
                }
                let now = p.offsets().high_watermark;
                assert!(now >= hw[i], "seed {seed} round {round}: high watermark back from {} to {now}", hw[i]);
                hw[i] = now;
            }
            storage.close();
        }
        assert!(injected.load(Ordering::Relaxed) > 5, "seed {seed}: faults were injected");
        assert!(acked.iter().map(|a| a.len()).sum::<usize>() > 100, "seed {seed}: most appends succeeded");
    }
}
