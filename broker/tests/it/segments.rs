//! The segment store in-process: sealing into segment and pack objects, reads of
//! sealed data by offset and by time, journal files deleted once sealed, restarts,
//! producer state across deleted journal files, retention and compaction.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tributary_broker::storage::flusher::FlushSettings;
use tributary_broker::storage::{PartitionLog, Storage};
use tributary_config::Config;
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::build::{build, BatchSpec};
use tributary_protocol::records;

use super::storage::{append, batch, open, read_all};

fn config(dir: &Path) -> Config {
    let mut c = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    c.journal.file_bytes = 1 << 20;
    c.journal.max_bytes = 64 << 20;
    c.storage.pack_threshold_bytes = 64 * 1024;
    c.cache.partition_bytes = 256 * 1024;
    c
}

fn settings(c: &Config) -> FlushSettings {
    FlushSettings::from_config(c)
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, suffix, out);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, suffix, &mut out);
    out.sort();
    out
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// (offset, timestamp, key, value) of every record.
async fn records_of(storage: &Storage, p: &Arc<PartitionLog>) -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut offset = p.offsets().log_start_offset;
    loop {
        let r = storage.read(p, offset, 256 * 1024, true).await.unwrap();
        if r.batches.is_empty() {
            return out;
        }
        for b in r.batches {
            let h = BatchHeader::parse(&b).unwrap();
            offset = h.last_offset() + 1;
            for rec in records::read(&h, &b).unwrap() {
                if rec.offset >= p.offsets().log_start_offset {
                    out.push((rec.offset, rec.timestamp, rec.key, rec.value));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_data_reads_back_by_offset_and_time_across_restarts_and_the_journal_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let busy = storage.create_topic("busy", 1, configs(&[("segment.bytes", "262144")])).await.unwrap();
    let quiet_a = storage.create_topic("quiet-a", 2, configs(&[("segment.ms", "1")])).await.unwrap();
    let quiet_b = storage.create_topic("quiet-b", 1, configs(&[("segment.ms", "1")])).await.unwrap();
    let p = busy.partitions[0].clone();
    // Timestamps within retention (7 days by default).
    let t0 = tributary_broker::clock::now_ms() - 3_600_000;
    for i in 0..300i64 {
        let values = vec![vec![(i % 251) as u8; 10_000], format!("record {i}").into_bytes()];
        assert_eq!(append(&storage, &p, batch(t0 + i * 10, &values)).await.unwrap(), i * 2);
    }
    for (n, q) in quiet_a.partitions.iter().chain(&quiet_b.partitions).enumerate() {
        append(&storage, q, batch(t0, &[format!("quiet {n}").into_bytes()])).await.unwrap();
    }
    let before = read_all(&storage, &p).await;
    let journal_before = files(&dir.path().join("journal"), ".journal").len();
    assert!(journal_before >= 3, "3 MB over 1 MiB files: {journal_before}");
    tokio::time::sleep(Duration::from_millis(5)).await;

    storage.flush_round(&settings(&c)).await.unwrap();

    let segs = files(&dir.path().join("segments"), ".seg");
    let packs = files(&dir.path().join("segments"), ".pack");
    // 3 MB in segments of 256 KiB: 11 full ones; the rest waits in the journal.
    assert_eq!(segs.len(), 11, "{segs:?}");
    assert!(segs.iter().all(|s| s.contains("default/busy/0/")), "{segs:?}");
    assert_eq!(packs.len(), 1, "three quiet partitions share one pack: {packs:?}");
    let journal_after = files(&dir.path().join("journal"), ".journal").len();
    assert!(journal_after < journal_before, "journal files {journal_before} -> {journal_after}");
    assert_eq!(read_all(&storage, &p).await, before, "every batch reads back, sealed or not");
    for (n, q) in quiet_a.partitions.iter().chain(&quiet_b.partitions).enumerate() {
        let recs = records_of(&storage, q).await;
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].3.as_deref(), Some(format!("quiet {n}").as_bytes()));
    }
    // By time: the first record at or after a timestamp, in sealed data and after it.
    for (ts, offset) in [(0, 0), (1_000, 0), (1_001, 1), (1_055, 12), (3_000, 400), (3_990, 598)] {
        let at = storage.offset_for_timestamp(&p, t0 - 1_000 + ts).await.unwrap().map(|(o, _)| o);
        assert_eq!(at, Some(offset), "ts {ts}");
    }
    assert_eq!(storage.offset_for_timestamp(&p, t0 + 10_000).await.unwrap(), None);
    assert_eq!(storage.max_timestamp(&p).await.unwrap(), Some((599, t0 + 2_991)));

    storage.close();
    drop(storage);
    let storage = open(&c);
    let p = storage.topic("busy").unwrap().partitions[0].clone();
    assert_eq!(p.offsets().high_watermark, 600);
    assert_eq!(read_all(&storage, &p).await, before, "after a restart");
    assert_eq!(storage.offset_for_timestamp(&p, t0 + 55).await.unwrap().map(|(o, _)| o), Some(12));
    // Offsets go on from the end, never reused.
    assert_eq!(append(&storage, &p, batch(t0 + 9_000, &[b"next".to_vec()])).await.unwrap(), 600);
    // Seal everything and restart again: the journal holds nothing of it.
    storage.set_topic_configs(&storage.topic("busy").unwrap(), configs(&[("segment.ms", "1")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    storage.flush_round(&settings(&c)).await.unwrap();
    storage.close();
    drop(storage);
    let storage = open(&c);
    let p = storage.topic("busy").unwrap().partitions[0].clone();
    assert_eq!(p.offsets().high_watermark, 601);
    assert_eq!(records_of(&storage, &p).await.len(), 601);
    assert_eq!(append(&storage, &p, batch(t0 + 9_001, &[b"again".to_vec()])).await.unwrap(), 601);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_survives_the_journal_files_that_held_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let topic = storage.create_topic("idem", 1, configs(&[("segment.bytes", "65536")])).await.unwrap();
    let p = topic.partitions[0].clone();
    let mut last = None;
    for seq in 0..200i32 {
        let spec = BatchSpec { producer_id: 42, producer_epoch: 3, base_sequence: seq, ..BatchSpec::plain(seq as i64) };
        let b = build(&spec, &[(None, Some(Bytes::from(vec![7u8; 10_000])))]).unwrap();
        let base = append(&storage, &p, b.clone()).await.unwrap();
        last = Some((b, base));
    }
    // Filler from another partition so that the files with the producer's batches
    // roll and can be deleted once sealed.
    let other = storage.create_topic("filler", 1, configs(&[("segment.ms", "1")])).await.unwrap();
    for _ in 0..150 {
        append(&storage, &other.partitions[0], batch(1, &[vec![1u8; 10_000]])).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    storage.flush_round(&settings(&c)).await.unwrap();
    assert!(dir.path().join("journal/checkpoint.bin").exists());
    storage.close();
    drop(storage);

    let storage = open(&c);
    let p = storage.topic("idem").unwrap().partitions[0].clone();
    // A retry of the last batch is a duplicate with its original offset ...
    let (b, base) = last.unwrap();
    let pending = storage.submit(&p, tributary_protocol::batch::split(&b).unwrap(), false).await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap().base_offset, base);
    assert_eq!(p.offsets().high_watermark, 200);
    // ... and a gap is refused: the sequence is known.
    let spec = BatchSpec { producer_id: 42, producer_epoch: 3, base_sequence: 205, ..BatchSpec::plain(1) };
    let gap = build(&spec, &[(None, Some(Bytes::from_static(b"x")))]).unwrap();
    assert!(append(&storage, &p, gap).await.is_err());
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_and_size_drops_whole_segments_and_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let now = tributary_broker::clock::now_ms();
    let by_time = storage
        .create_topic("by-time", 1, configs(&[("segment.bytes", "65536"), ("retention.ms", "3600000")]))
        .await
        .unwrap();
    let by_size = storage
        .create_topic("by-size", 1, configs(&[("segment.bytes", "65536"), ("retention.bytes", "200000")]))
        .await
        .unwrap();
    let (t, s) = (by_time.partitions[0].clone(), by_size.partitions[0].clone());
    // Two hours old, then fresh.
    for i in 0..40i64 {
        append(&storage, &t, batch(now - 7_200_000 + i, &[vec![1u8; 10_000]])).await.unwrap();
    }
    for i in 0..40i64 {
        append(&storage, &t, batch(now + i, &[vec![2u8; 10_000]])).await.unwrap();
        append(&storage, &s, batch(now + i, &[vec![3u8; 10_000]])).await.unwrap();
    }
    storage.flush_round(&settings(&c)).await.unwrap();
    storage.flush_round(&settings(&c)).await.unwrap();
    let uploaded = storage.segment_store().stats().uploads.load(std::sync::atomic::Ordering::Relaxed) as usize;

    // Every old record is gone, every new one is there; the log start is a segment
    // boundary at or before the first new record.
    let start = t.offsets().log_start_offset;
    assert!(start > 0 && start <= 40, "log start {start}");
    let recs = records_of(&storage, &t).await;
    assert!(recs.iter().filter(|r| r.1 >= now).count() == 40);
    assert!(recs.iter().all(|r| r.0 >= start));
    // Size: what remains is within retention.bytes plus one segment.
    let size = s.size_bytes();
    assert!((200_000 - 70_000..=200_000 + 70_000).contains(&size), "size {size}");
    assert!(s.offsets().log_start_offset > 0);
    let objects = files(&dir.path().join("segments"), ".seg").len();
    assert!(objects < uploaded, "{uploaded} objects written, {objects} left: the dropped ones are deleted");
    // The new log start outlives a restart.
    let (ts, ss) = (t.offsets().log_start_offset, s.offsets().log_start_offset);
    storage.close();
    drop(storage);
    let storage = open(&c);
    assert_eq!(storage.topic("by-time").unwrap().partitions[0].offsets().log_start_offset, ts);
    assert_eq!(storage.topic("by-size").unwrap().partitions[0].offsets().log_start_offset, ss);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_value_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let topic = storage
        .create_topic(
            "table",
            1,
            configs(&[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "16384"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "86400000"),
            ]),
        )
        .await
        .unwrap();
    let p = topic.partitions[0].clone();
    let now = tributary_broker::clock::now_ms();
    let mut latest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for round in 0..50 {
        let mut recs = Vec::new();
        for k in 0..10 {
            let key = format!("k{k}");
            // k3 ends deleted (a tombstone), the others hold their round-49 value.
            let value = if k == 3 && round == 49 { None } else { Some(format!("{key}={round}:{}", "x".repeat(300))) };
            recs.push((Some(Bytes::from(key.clone())), value.clone().map(Bytes::from)));
            latest.insert(key, (0, value));
        }
        let b = build(&BatchSpec::plain(now), &recs).unwrap();
        let base = append(&storage, &p, b).await.unwrap();
        for k in 0..10 {
            latest.get_mut(&format!("k{k}")).unwrap().0 = base + k;
        }
    }
    // Seal all of it, then compact.
    storage
        .set_topic_configs(&topic, {
            let mut m = topic.config().overrides.clone();
            m.insert("segment.ms".into(), "1".into());
            m
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    storage.flush_round(&settings(&c)).await.unwrap();
    storage.flush_round(&settings(&c)).await.unwrap();
    let topic = storage.topic("table").unwrap();
    let recs = records_of(&storage, &p).await;
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for (offset, _, key, value) in &recs {
        let key = String::from_utf8(key.clone().unwrap().to_vec()).unwrap();
        let value = value.clone().map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert!(seen.insert(key, (*offset, value)).is_none(), "one record per key after compaction");
    }
    assert_eq!(seen, latest, "the latest value of every key, at its offset; the fresh tombstone too");
    assert_eq!(p.offsets().high_watermark, 500);
    // Tombstones expire after delete.retention.ms.
    let mut m = topic.config().overrides.clone();
    m.insert("delete.retention.ms".into(), "0".into());
    storage.set_topic_configs(&topic, m).await.unwrap();
    storage.flush_round(&settings(&c)).await.unwrap();
    let recs = records_of(&storage, &p).await;
    assert_eq!(recs.len(), 9, "the tombstone is gone");
    assert!(recs.iter().all(|r| r.2.as_deref() != Some(&b"k3"[..])));
    // Offsets are never reused after compaction, also across a restart.
    storage.close();
    drop(storage);
    let storage = open(&c);
    let p = storage.topic("table").unwrap().partitions[0].clone();
    assert_eq!(records_of(&storage, &p).await.len(), 9);
    assert_eq!(append(&storage, &p, batch(now, &[b"after".to_vec()])).await.unwrap(), 500);
    storage.close();
}

/// Writes `rounds` batches of one value for each of keys k0..k9, timestamped `ts`.
async fn write_rounds(storage: &Storage, p: &Arc<PartitionLog>, rounds: usize, ts: i64) {
    for round in 0..rounds {
        let recs: Vec<_> = (0..10)
            .map(|k| (Some(Bytes::from(format!("k{k}"))), Some(Bytes::from(format!("{round}:{}", "x".repeat(300))))))
            .collect();
        append(storage, p, build(&BatchSpec::plain(ts), &recs).unwrap()).await.unwrap();
    }
}

async fn set(storage: &Arc<Storage>, topic: &str, key: &str, value: &str) {
    let topic = storage.topic(topic).unwrap();
    let mut m = topic.config().overrides.clone();
    m.insert(key.into(), value.into());
    storage.set_topic_configs(&topic, m).await.unwrap();
}

/// A one-partition compacted topic sealing every flush round (16 KiB segments),
/// compacting at any dirty ratio, with `extra` configs.
async fn compacted(storage: &Arc<Storage>, name: &str, extra: &[(&str, &str)]) -> Arc<PartitionLog> {
    let mut all = vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16384"),
        ("segment.ms", "1"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    all.extend_from_slice(extra);
    storage.create_topic(name, 1, configs(&all)).await.unwrap().partitions[0].clone()
}

/// Lets `segment.ms` pass, then runs `rounds` flusher rounds.
async fn flush_rounds(storage: &Arc<Storage>, c: &Config, rounds: usize) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    for _ in 0..rounds {
        storage.flush_round(&settings(c)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_leaves_records_younger_than_the_min_lag() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let p = compacted(&storage, "lagged", &[("min.compaction.lag.ms", "3600000")]).await;
    let now = tributary_broker::clock::now_ms();
    // 20 rounds from two hours ago, 20 from now: only the old ones may be compacted.
    write_rounds(&storage, &p, 20, now - 7_200_000).await;
    flush_rounds(&storage, &c, 1).await;
    write_rounds(&storage, &p, 20, now).await;
    flush_rounds(&storage, &c, 3).await;
    let recs = records_of(&storage, &p).await;
    let old = recs.iter().filter(|r| r.1 == now - 7_200_000).count();
    let young = recs.iter().filter(|r| r.1 == now).count();
    assert_eq!(young, 200, "every record younger than min.compaction.lag.ms stays (old: {old})");
    assert_eq!(old, 10, "the old part is compacted to one record per key ({} records)", recs.len());
    // Without the lag the rest goes too.
    set(&storage, "lagged", "min.compaction.lag.ms", "0").await;
    flush_rounds(&storage, &c, 1).await;
    assert_eq!(records_of(&storage, &p).await.len(), 10);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_data_older_than_the_max_lag_is_compacted_whatever_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let p = compacted(&storage, "table", &[]).await;
    let then = tributary_broker::clock::now_ms() - 7_200_000;
    write_rounds(&storage, &p, 30, then).await;
    flush_rounds(&storage, &c, 2).await;
    assert_eq!(records_of(&storage, &p).await.len(), 10, "first compaction");
    // A little more dirty data: far below a ratio of 1.0, so it stays...
    set(&storage, "table", "min.cleanable.dirty.ratio", "1.0").await;
    write_rounds(&storage, &p, 2, then).await;
    flush_rounds(&storage, &c, 3).await;
    assert_eq!(records_of(&storage, &p).await.len(), 30, "below the dirty ratio nothing is compacted");
    // ...until it is older than max.compaction.lag.ms.
    set(&storage, "table", "max.compaction.lag.ms", "3600000").await;
    flush_rounds(&storage, &c, 1).await;
    assert_eq!(records_of(&storage, &p).await.len(), 10);
    storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_read_stopped_by_the_byte_limit_returns_nothing_rather_than_skipping_ahead() {
    // A fetch's later partitions get what is left of its byte budget, without the
    // first-batch guarantee: too little for the next batch must answer nothing at
    // that offset, never batches of a later segment.
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let storage = open(&c);
    let topic = storage.create_topic("budget", 1, configs(&[("segment.bytes", "65536")])).await.unwrap();
    let p = topic.partitions[0].clone();
    let t0 = tributary_broker::clock::now_ms() - 1000;
    // Segments of large batches, then one of small ones that would fit.
    storage.set_topic_configs(&topic, configs(&[("segment.bytes", "65536"), ("segment.ms", "1")])).await.unwrap();
    for i in 0..40i64 {
        let size = if i < 30 { 10_000 } else { 10 };
        append(&storage, &p, batch(t0 + i, &[vec![i as u8; size]])).await.unwrap();
        if i == 29 {
            flush_rounds(&storage, &c, 1).await;
        }
    }
    flush_rounds(&storage, &c, 1).await;
    assert!(files(&dir.path().join("segments"), ".seg").len() >= 4, "several sealed segments");
    for offset in [0, 5, 17] {
        let none = storage.read_isolated(&p, offset, 500, false, false).await.unwrap();
        assert!(none.batches.is_empty(), "offset {offset}: nothing fits in 500 bytes");
        let one = storage.read_isolated(&p, offset, 500, true, false).await.unwrap();
        let h = BatchHeader::parse(&one.batches[0]).unwrap();
        assert_eq!(h.base_offset, offset, "the batch at the offset asked for, not a later one");
    }
    storage.close();
}
