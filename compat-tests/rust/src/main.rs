//! Drives Tributary with the `rdkafka` crate (librdkafka underneath).
//!
//!   rdkafka-compat <bootstrap> produce <tag>   create topics, produce, read back, compare
//!   rdkafka-compat <bootstrap> verify <tag>    read back and compare only (after a restart)
//!
//! Records follow compat-tests/scenario.py. Exits non-zero with a message on any
//! mismatch.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

type Rec = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

fn records(tag: &str, n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let key = (i % 7 != 3).then(|| format!("{tag}-key-{i}").into_bytes());
            let value = (!(i % 5 == 4 && key.is_some())).then(|| {
                let mut v = format!("{tag}-value-{i}-").repeat(i % 13 + 1).into_bytes();
                v.extend([(i % 256) as u8, 0, 255]);
                v
            });
            let headers = if i % 3 == 0 {
                vec![("h1".into(), format!("v{i}").into_bytes()), ("h1".into(), b"dup".to_vec()), ("empty".into(), vec![])]
            } else {
                vec![]
            };
            (key, value, headers)
        })
        .collect()
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

async fn produce(bootstrap: &str, topic: &str, codec: &str, recs: &[Rec], partition: Option<i32>) -> Vec<(i32, i64)> {
    let producer: FutureProducer = config(bootstrap)
        .set("acks", "all")
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .set("message.max.bytes", "3000000")
        .create()
        .expect("producer");
    let mut futures = Vec::new();
    for (key, value, headers) in recs {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(v) });
        }
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(topic).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        futures.push(producer.send(record, Duration::from_secs(30)));
    }
    let mut out = Vec::new();
    for f in futures {
        let delivery = f.await.unwrap_or_else(|(e, _)| panic!("delivery to {topic} failed: {e}"));
        out.push((delivery.partition, delivery.offset));
    }
    out
}

type Got = Vec<(i32, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>)>;

fn read_all(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Got {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("rs-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            got.push((m.partition(), m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec), headers));
        }
    }
    got.sort_by_key(|g| (g.0, g.1));
    got
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, mode, tag) = (&args[1], args[2].as_str(), &args[3]);
    let produce_mode = mode == "produce";
    if produce_mode {
        let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().expect("admin");
        let mut names: Vec<String> = CODECS.iter().map(|c| format!("{tag}-{c}")).collect();
        names.push(format!("{tag}-p100"));
        names.push(format!("{tag}-big"));
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, if n.ends_with("p100") { 100 } else { 1 }, TopicReplication::Fixed(1)))
            .collect();
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create_topics") {
            r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
        }
    }
    for codec in CODECS {
        let topic = format!("{tag}-{codec}");
        let expected = records(&topic, 40);
        if produce_mode {
            let offsets = produce(bootstrap, &topic, codec, &expected, Some(0)).await;
            assert_eq!(offsets, (0..40).map(|i| (0, i)).collect::<Vec<_>>(), "{codec} offsets");
        }
        let got = read_all(bootstrap, &topic, 1, expected.len());
        assert_eq!(got.len(), expected.len(), "{codec}: record count");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.1, i as i64, "{codec} record {i}: offset");
            assert_eq!((&g.2, &g.3, &g.4), (&e.0, &e.1, &e.2), "{codec} record {i}");
        }
    }
    let p100 = format!("{tag}-p100");
    if produce_mode {
        for p in 0..100 {
            let recs = vec![(Some(b"k".to_vec()), Some(format!("p{p}").into_bytes()), vec![])];
            assert_eq!(produce(bootstrap, &p100, "none", &recs, Some(p)).await, vec![(p, 0)]);
        }
    }
    let got = read_all(bootstrap, &p100, 100, 100);
    let summary: Vec<(i32, i64, Vec<u8>)> = got.into_iter().map(|g| (g.0, g.1, g.3.unwrap_or_default())).collect();
    assert_eq!(summary, (0..100).map(|p| (p, 0, format!("p{p}").into_bytes())).collect::<Vec<_>>(), "p100");
    let big = format!("{tag}-big");
    let value = vec![b'r'; 1_000_000];
    if produce_mode {
        let recs = vec![(Some(b"k".to_vec()), Some(value.clone()), vec![])];
        assert_eq!(produce(bootstrap, &big, "none", &recs, Some(0)).await, vec![(0, 0)]);
    }
    let got = read_all(bootstrap, &big, 1, 1);
    assert!(got.len() == 1 && got[0].3.as_deref() == Some(&value[..]), "big record read back");
    println!("OK {mode}");
}
