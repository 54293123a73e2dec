//! Load generator for Tributary (any Kafka broker, really) built on the rdkafka
//! crate, plus a probe of the raw sequential write bandwidth of a disk with
//! fdatasync. Every mode prints one JSON object on stdout; bench/run.py runs the
//! matrix and prints the table.
//!
//!   loadgen produce --bootstrap B --topic T --partitions N --size S --seconds D [--rate R]
//!   loadgen consume --bootstrap B --topic T --partitions N --expect COUNT
//!   loadgen disk --dir DIR --block BYTES --seconds D
//!
//! `LOADGEN_CLIENT_CONFIG=key=value;...` adds client settings (SASL, TLS).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Produce fixed-size records with acks=all; report throughput and latency.
    Produce {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Records per second; unbounded when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// The producer's linger.ms: how long it waits to fill a batch.
        #[arg(long, default_value_t = 2)]
        linger_ms: u32,
    },
    /// Consume a topic from the start; report throughput.
    Consume {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long)]
        expect: u64,
    },
    /// Sequential writes of BLOCK bytes, each followed by fdatasync.
    Disk {
        #[arg(long)]
        dir: String,
        #[arg(long, default_value_t = 1 << 20)]
        block: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

/// Delivery latencies (microseconds) and outcome counts.
struct Stats {
    latency: Histogram<u64>,
    delivered: u64,
    failed: u64,
    /// From librdkafka's statistics (one window a second): the largest p99, in
    /// microseconds, of a record's wait in the client's queue before it is sent
    /// (linger included), of a request's wait in the send buffer, and of a request's
    /// round trip to the broker (sent to answered): where a delivery's time went.
    queue_p99: i64,
    outbuf_p99: i64,
    rtt_p99: i64,
}

struct Ctx {
    stats: Arc<Mutex<Stats>>,
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut s = self.stats.lock().unwrap();
        for b in statistics.brokers.values() {
            let p99 = |w: &Option<rdkafka::statistics::Window>| w.as_ref().filter(|w| w.cnt > 0).map_or(0, |w| w.p99);
            s.queue_p99 = s.queue_p99.max(p99(&b.int_latency));
            s.outbuf_p99 = s.outbuf_p99.max(p99(&b.outbuf_latency));
            s.rtt_p99 = s.rtt_p99.max(p99(&b.rtt));
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        let mut s = self.stats.lock().unwrap();
        match result {
            Ok(_) => {
                s.delivered += 1;
                let us = sent.elapsed().as_micros() as u64;
                let _ = s.latency.record(us.max(1));
            }
            Err(_) => s.failed += 1,
        }
    }
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client(bootstrap).create().expect("admin");
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    // An existing topic is fine: reruns reuse it.
    let _ = futures::executor::block_on(admin.create_topics(&topics, &AdminOptions::new()));
}

fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    size: usize,
    seconds: f64,
    rate: Option<f64>,
    linger_ms: u32,
) {
    create_topic(bootstrap, topic, partitions);
    let stats = Arc::new(Mutex::new(Stats {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        delivered: 0,
        failed: 0,
        queue_p99: 0,
        outbuf_p99: 0,
        rtt_p99: 0,
    }));
    let producer: BaseProducer<Ctx> = client(bootstrap)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2000000")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("statistics.interval.ms", "1000")
        .create_with_context(Ctx { stats: stats.clone() })
        .expect("producer");
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    while Instant::now() < end {
        if let Some(r) = rate {
            let due = (start.elapsed().as_secs_f64() * r) as u64;
            if sent >= due {
                // Ahead of the rate: serve delivery reports, then sleep until the next
                // record is due (at most 500 us, the most a report waits). A poll with
                // a timeout under a millisecond spins in rdkafka (its timeouts are
                // whole milliseconds), which took a core from the broker.
                producer.poll(Duration::ZERO);
                let next = Duration::from_secs_f64((sent + 1) as f64 / r);
                std::thread::sleep(next.saturating_sub(start.elapsed()).min(Duration::from_micros(500)));
                continue;
            }
        }
        let record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .partition((sent % partitions as u64) as i32)
            .payload(&payload)
            .key("");
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((_, _)) => {
                producer.poll(Duration::from_millis(1));
                continue;
            }
        }
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    let _ = producer.flush(Duration::from_secs(60));
    let elapsed = start.elapsed().as_secs_f64();
    let s = stats.lock().unwrap();
    let q = |p: f64| s.latency.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "mode": "produce", "partitions": partitions, "size": size, "rate_target": rate, "linger_ms": linger_ms,
            "delivered": s.delivered, "failed": s.failed, "seconds": elapsed,
            "records_per_sec": s.delivered as f64 / elapsed,
            "mb_per_sec": s.delivered as f64 * size as f64 / elapsed / 1e6,
            "p50_ms": q(0.50), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": s.latency.max() as f64 / 1000.0,
            "client_queue_p99_ms": s.queue_p99 as f64 / 1000.0, "send_buffer_p99_ms": s.outbuf_p99 as f64 / 1000.0,
            "rtt_p99_ms": s.rtt_p99 as f64 / 1000.0,
        })
    );
}

fn consume(bootstrap: &str, topic: &str, partitions: i32, expect: u64) {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "loadgen")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "1048576")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let (mut count, mut bytes) = (0u64, 0u64);
    while count < expect && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            count += 1;
            bytes += m.payload().map_or(0, |p| p.len() as u64);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "mode": "consume", "records": count, "seconds": elapsed,
            "records_per_sec": count as f64 / elapsed, "mb_per_sec": bytes as f64 / elapsed / 1e6,
        })
    );
}

fn disk(dir: &str, block: usize, seconds: f64) {
    let path = std::path::Path::new(dir).join("loadgen-disk-probe");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("probe file");
    let buf = vec![0xa5u8; block];
    let start = Instant::now();
    let mut written = 0u64;
    let mut lat = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        let _ = lat.record((t.elapsed().as_micros() as u64).max(1));
        written += block as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    println!(
        "{}",
        json!({
            "mode": "disk", "block": block, "seconds": elapsed, "mb_per_sec": written as f64 / elapsed / 1e6,
            "p50_ms": lat.value_at_quantile(0.5) as f64 / 1000.0, "p99_ms": lat.value_at_quantile(0.99) as f64 / 1000.0,
        })
    );
}

/// A client configuration for `bootstrap`, with the settings of
/// `LOADGEN_CLIENT_CONFIG` (`key=value;key=value`: SASL, TLS) on top.
fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for kv in std::env::var("LOADGEN_CLIENT_CONFIG").unwrap_or_default().split(';').filter(|s| !s.is_empty()) {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

fn main() {
    match Cli::parse().mode {
        Mode::Produce { bootstrap, topic, partitions, size, seconds, rate, linger_ms } => {
            produce(&bootstrap, &topic, partitions, size, seconds, rate, linger_ms)
        }
        Mode::Consume { bootstrap, topic, partitions, expect } => consume(&bootstrap, &topic, partitions, expect),
        Mode::Disk { dir, block, seconds } => disk(&dir, block, seconds),
    }
}
