//! What record validation costs beside the CRC-32C check every batch already gets:
//! batches of 1 KiB records (16 per batch, as a linger-batched producer sends them,
//! and 1,000 per batch), uncompressed and with each codec; prints GB/s of batch
//! bytes for the CRC and for validation. Then what a topic's `compression.type`
//! costs when producers send uncompressed batches: recompressing them into each codec,
//! in MB/s of record bytes.
//!
//!     cargo run --release -p tributary-protocol --example validate_cost

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tributary_protocol::batch::BatchHeader;
use tributary_protocol::validate::{validate_records, Rules};

fn batch(records: usize, codec: Compression) -> Bytes {
    let value: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let recs: Vec<Record> = (0..records as i64)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(value.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &recs, &RecordEncodeOptions { version: 2, compression: codec }).unwrap();
    buf.freeze()
}

fn main() {
    let rules = Rules { max_uncompressed_bytes: 64 << 20, require_keys: false };
    println!(
        "{:>8} {:>8} {:>10} {:>10} {:>16} {:>20}",
        "records", "codec", "bytes", "crc µs", "validate µs", "validate GB/s (raw)"
    );
    for records in [16, 1000] {
        for (name, codec) in [
            ("none", Compression::None),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
            ("snappy", Compression::Snappy),
            ("gzip", Compression::Gzip),
        ] {
            let b = batch(records, codec);
            let h = BatchHeader::parse(&b).unwrap();
            let rounds = ((64usize << 20) / (records * 1040)).max(4);
            let started = Instant::now();
            for _ in 0..rounds {
                h.validate(&b).unwrap();
            }
            let crc = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for _ in 0..rounds {
                validate_records(&h, &b, rules).unwrap();
            }
            let val = started.elapsed().as_secs_f64();
            let raw = (rounds * records * 1040) as f64 / 1e9;
            let per = |t: f64| t / rounds as f64 * 1e6;
            println!(
                "{records:>8} {name:>8} {:>10} {:>10.2} {:>16.2} {:>20.2}",
                b.len(),
                per(crc),
                per(val),
                raw / val
            );
        }
    }
    println!();
    println!(
        "{:>8} {:>8} {:>12} {:>14} {:>18}",
        "records", "into", "bytes after", "recompress µs", "MB/s (raw records)"
    );
    for records in [16, 1000] {
        let plain = batch(records, Compression::None);
        for (name, codec) in [
            ("lz4", tributary_protocol::batch::Compression::Lz4),
            ("zstd", tributary_protocol::batch::Compression::Zstd),
            ("snappy", tributary_protocol::batch::Compression::Snappy),
            ("gzip", tributary_protocol::batch::Compression::Gzip),
        ] {
            let rounds = ((16usize << 20) / (records * 1040)).max(4);
            let started = Instant::now();
            let mut after = 0;
            for _ in 0..rounds {
                after = tributary_protocol::build::recompress(&plain, codec).unwrap().len();
            }
            let t = started.elapsed().as_secs_f64();
            let raw = (rounds * records * 1040) as f64 / 1e6;
            println!("{records:>8} {name:>8} {after:>12} {:>14.1} {:>18.0}", t / rounds as f64 * 1e6, raw / t);
        }
    }
}
