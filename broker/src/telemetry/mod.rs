//! Client telemetry (KIP-714): clients ask which of their metrics to push
//! (GetTelemetrySubscriptions), then push them every interval (PushTelemetry), and
//! the broker exports what they pushed on its own `/metrics`, labelled by client
//! (Kafka itself needs a metrics-reporter plugin for that).
//!
//! What a client is asked for comes from the client-metrics resources
//! ([`subscriptions`]): the union of the metric prefixes of every subscription the
//! client matches, at the shortest of their intervals. No match: no metrics, and
//! the client does not push. The rules are Kafka's: a client instance id is given
//! out on the first request; the subscription id is derived from the metrics, the
//! interval and the instance id, so it survives a broker restart; a client asking
//! again before its interval, or pushing twice within one, is throttled; a push
//! with an old subscription id gets UNKNOWN_SUBSCRIPTION_ID (the client asks
//! again); nothing is taken after a terminating push. Points are asked for with
//! cumulative temporality (a Prometheus counter is cumulative); a client that sends
//! deltas anyway has them added up. A client's series go away with it: at its
//! terminating push, or after three intervals (at least a minute) without a word.

pub mod otlp;
pub mod subscriptions;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto;
use uuid::Uuid;

use crate::errors::Error;
use otlp::{Kind, Sample, SeriesKey, Value};
pub use subscriptions::ClientMetricsConfigs;

/// The codecs a client may compress its pushes with, the preferred first (Kafka's).
pub(crate) const ACCEPTED_COMPRESSION: [i8; 4] = [4, 3, 1, 2];
/// Client instances one broker keeps (Kafka's cache size); beyond, the one heard
/// from longest ago goes.
const MAX_INSTANCES: usize = 16_384;
/// Series one client instance may have.
const MAX_SERIES_PER_CLIENT: usize = 10_000;
/// How much a push may decompress to, in multiples of the accepted push size.
const MAX_EXPANSION: u64 = 16;
const MIN_EXPIRY: Duration = Duration::from_secs(60);

/// Who a request comes from, as `match` patterns see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    pub(crate) client_id: String,
    pub(crate) software_name: String,
    pub(crate) software_version: String,
    pub(crate) address: String,
    pub(crate) port: u16,
}

#[derive(Debug)]
struct Instance {
    client: Client,
    /// The subscriptions' version this instance was evaluated against.
    version: u64,
    subscription_id: i32,
    metrics: Vec<String>,
    interval_ms: i32,
    last_get: Option<Instant>,
    last_push: Option<Instant>,
    terminating: bool,
    /// The last push's error, which lets the next GetTelemetrySubscriptions through.
    last_error: i16,
    heard: Instant,
    series: BTreeMap<SeriesKey, Sample>,
}

impl Instance {
    fn expiry(&self) -> Duration {
        MIN_EXPIRY.max(Duration::from_millis(self.interval_ms.max(0) as u64 * 3))
    }
}

/// The answer to GetTelemetrySubscriptions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscribed {
    pub(crate) instance_id: Uuid,
    pub(crate) subscription_id: i32,
    pub(crate) metrics: Vec<String>,
    pub(crate) interval_ms: i32,
}

/// A push, as PushTelemetry carries it.
#[derive(Debug)]
pub(crate) struct Push<'a> {
    pub(crate) instance_id: Uuid,
    pub(crate) subscription_id: i32,
    pub(crate) terminating: bool,
    pub(crate) compression: i8,
    pub(crate) metrics: &'a [u8],
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    throttled: AtomicU64,
    unknown_subscription: AtomicU64,
    too_large: AtomicU64,
    invalid: AtomicU64,
    dropped_points: AtomicU64,
}

/// The client-metrics subscriptions and the client instances heard from.
#[derive(Debug)]
pub struct Telemetry {
    pub subscriptions: Arc<ClientMetricsConfigs>,
    instances: Mutex<HashMap<Uuid, Instance>>,
    max_bytes: i32,
    counts: Counts,
}

/// Kafka's subscription id: a CRC32C of the metrics and the interval, XORed with
/// the instance id's hash, so that it changes with either.
fn subscription_id(metrics: &[String], interval_ms: i32, instance: Uuid) -> i32 {
    let crc = crc32c::crc32c(format!("[{}]{interval_ms}", metrics.join(", ")).as_bytes()) as i32;
    let (hi, lo) = instance.as_u64_pair();
    let hash = (hi ^ lo) as i64;
    crc ^ ((hash >> 32) as i32 ^ hash as i32)
}

impl Telemetry {
    pub fn new(subscriptions: Arc<ClientMetricsConfigs>, max_bytes: i32) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            subscriptions,
            instances: Mutex::new(HashMap::new()),
            max_bytes,
            counts: Counts::default(),
        })
    }

    /// The most bytes a push may carry.
    pub(crate) fn max_bytes(&self) -> i32 {
        self.max_bytes
    }

    /// What `client` is subscribed to now: the union of the matching subscriptions'
    /// metrics (`*` alone when one asks for all), at the shortest interval.
    fn evaluate(&self, client: &Client, instance_id: Uuid) -> (Vec<String>, i32) {
        let mut metrics = std::collections::BTreeSet::new();
        let mut interval = subscriptions::INTERVAL_DEFAULT;
        let instance = instance_id.to_string();
        let port = client.port.to_string();
        let property = |key: &str| -> String {
            match key {
                "client_instance_id" => instance.clone(),
                "client_id" => client.client_id.clone(),
                "client_software_name" => client.software_name.clone(),
                "client_software_version" => client.software_version.clone(),
                "client_source_address" => client.address.clone(),
                "client_source_port" => port.clone(),
                _ => String::new(),
            }
        };
        for s in self.subscriptions.parsed() {
            if s.matches(property) {
                metrics.extend(s.metrics.iter().cloned());
                interval = interval.min(s.interval_ms);
            }
        }
        let metrics: Vec<String> = match metrics.contains(subscriptions::ALL) {
            true => vec![subscriptions::ALL.to_string()],
            false => metrics.into_iter().collect(),
        };
        (metrics, interval)
    }

    /// The instance, created or re-evaluated when the subscriptions changed since.
    fn instance<'a>(
        &self,
        instances: &'a mut HashMap<Uuid, Instance>,
        id: Uuid,
        client: &Client,
        now: Instant,
    ) -> &'a mut Instance {
        let version = self.subscriptions.version();
        if !instances.contains_key(&id) && instances.len() >= MAX_INSTANCES {
            if let Some(oldest) = instances.iter().min_by_key(|(_, i)| i.heard).map(|(k, _)| *k) {
                instances.remove(&oldest);
            }
        }
        let stale = instances.get(&id).is_none_or(|i| i.version != version);
        if stale {
            let (metrics, interval_ms) = self.evaluate(client, id);
            let subscription_id = subscription_id(&metrics, interval_ms, id);
            let entry = instances.entry(id).or_insert_with(|| Instance {
                client: client.clone(),
                version,
                subscription_id,
                metrics: Vec::new(),
                interval_ms,
                last_get: None,
                last_push: None,
                terminating: false,
                last_error: 0,
                heard: now,
                series: BTreeMap::new(),
            });
            entry.version = version;
            entry.subscription_id = subscription_id;
            entry.metrics = metrics;
            entry.interval_ms = interval_ms;
        }
        let instance = instances.get_mut(&id).expect("invariant: inserted above");
        instance.heard = now;
        instance
    }

    fn expire(instances: &mut HashMap<Uuid, Instance>, now: Instant) {
        instances.retain(|_, i| now.duration_since(i.heard) < i.expiry());
    }

    /// GetTelemetrySubscriptions: a new instance id for a client that has none.
    pub(crate) fn subscriptions_for(&self, requested: Uuid, client: &Client) -> Result<Subscribed, (i16, String)> {
        let now = Instant::now();
        let mut instances = self.instances.lock();
        Self::expire(&mut instances, now);
        let id = match requested.is_nil() {
            true => loop {
                let id = Uuid::new_v4();
                if !instances.contains_key(&id) {
                    break id;
                }
            },
            false => requested,
        };
        let instance = self.instance(&mut instances, id, client, now);
        let interval = Duration::from_millis(instance.interval_ms.max(0) as u64);
        let last = instance.last_get.max(instance.last_push);
        let early = last.is_some_and(|t| now.duration_since(t) < interval);
        let excused = [Error::UnknownSubscriptionId.code(), Error::UnsupportedCompressionType.code()]
            .contains(&instance.last_error);
        if early && !excused {
            self.counts.throttled.fetch_add(1, Ordering::Relaxed);
            return Err((
                Error::ThrottlingQuotaExceeded.code(),
                format!("client instance {id} asked again before its push interval"),
            ));
        }
        instance.last_get = Some(now);
        instance.last_error = 0;
        Ok(Subscribed {
            instance_id: id,
            subscription_id: instance.subscription_id,
            metrics: instance.metrics.clone(),
            interval_ms: instance.interval_ms,
        })
    }

    /// PushTelemetry: checks the push as Kafka does, then keeps its points.
    pub(crate) fn push(&self, push: Push<'_>, client: &Client) -> Result<(), (i16, String)> {
        let refuse = |counter: &AtomicU64, error: Error, message: String| {
            counter.fetch_add(1, Ordering::Relaxed);
            Err((error.code(), message))
        };
        let id = push.instance_id;
        if id.is_nil() || id == Uuid::from_u128(1) {
            return refuse(&self.counts.invalid, Error::InvalidRequest, format!("invalid client instance id {id}"));
        }
        let now = Instant::now();
        let mut instances = self.instances.lock();
        Self::expire(&mut instances, now);
        let instance = self.instance(&mut instances, id, client, now);
        let checked = (|| {
            if instance.terminating {
                return refuse(
                    &self.counts.invalid,
                    Error::InvalidRequest,
                    format!("client instance {id} already sent its terminating push"),
                );
            }
            // A push right after a GetTelemetrySubscriptions is always taken (clients
            // jitter their first push); otherwise one per interval.
            let interval = Duration::from_millis(instance.interval_ms.max(0) as u64);
            let after_get = instance.last_get > instance.last_push;
            let due = after_get || instance.last_push.is_none_or(|t| now.duration_since(t) >= interval);
            if !due && !push.terminating {
                return refuse(
                    &self.counts.throttled,
                    Error::ThrottlingQuotaExceeded,
                    format!("client instance {id} pushed before its push interval"),
                );
            }
            if due {
                instance.last_push = Some(now);
            }
            if push.subscription_id != instance.subscription_id {
                return refuse(
                    &self.counts.unknown_subscription,
                    Error::UnknownSubscriptionId,
                    format!("unknown subscription id for client instance {id}"),
                );
            }
            if !(0..=4).contains(&push.compression) {
                return refuse(
                    &self.counts.invalid,
                    Error::UnsupportedCompressionType,
                    format!("unknown compression type {}", push.compression),
                );
            }
            if push.metrics.len() > self.max_bytes.max(0) as usize {
                return refuse(
                    &self.counts.too_large,
                    Error::TelemetryTooLarge,
                    format!("push of {} bytes over telemetry max_bytes {}", push.metrics.len(), self.max_bytes),
                );
            }
            Ok(())
        })();
        instance.last_error = checked.as_ref().err().map_or(0, |e| e.0);
        instance.terminating = push.terminating;
        checked?;
        if !push.metrics.is_empty() {
            let codec = tributary_protocol::batch::Compression::from_id(push.compression);
            let limit = self.max_bytes.max(0) as u64 * MAX_EXPANSION;
            let payload = match tributary_protocol::validate::decompress(codec, push.metrics, limit) {
                Ok(p) => p,
                Err(e) => {
                    instance.last_error = Error::TelemetryTooLarge.code();
                    return refuse(&self.counts.too_large, Error::TelemetryTooLarge, e.to_string());
                }
            };
            let own = own_labels(id, &instance.client);
            match otlp::apply(&payload, &own, &mut instance.series, MAX_SERIES_PER_CLIENT) {
                Ok(dropped) => {
                    self.counts.dropped_points.fetch_add(dropped as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    instance.last_error = Error::InvalidRecord.code();
                    return refuse(&self.counts.invalid, Error::InvalidRecord, e.to_string());
                }
            }
        }
        self.counts.ok.fetch_add(1, Ordering::Relaxed);
        if push.terminating {
            // Nothing more will come: its series go now, the instance stays to refuse
            // further pushes until it expires.
            instance.series.clear();
        }
        Ok(())
    }

    /// The Prometheus collector of the pushed series and of the telemetry's own counts.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(Exporter { telemetry: self.clone(), descs: own_descs() })
    }
}

/// The labels the broker puts on every series of a client.
fn own_labels(id: Uuid, client: &Client) -> Vec<(String, String)> {
    vec![
        ("client_instance_id".into(), id.to_string()),
        ("client_id".into(), client.client_id.clone()),
        ("client_software_name".into(), client.software_name.clone()),
        ("client_software_version".into(), client.software_version.clone()),
    ]
}

const CLIENTS: &str = "tributary_client_telemetry_clients";
const PUSHES: &str = "tributary_client_telemetry_pushes_total";
const DROPPED: &str = "tributary_client_telemetry_dropped_points_total";

fn own_descs() -> Vec<Desc> {
    let desc = |name: &str, help: &str, labels: Vec<String>| {
        Desc::new(name.into(), help.into(), labels, HashMap::new()).expect("invariant: valid metric")
    };
    vec![
        desc(CLIENTS, "Client instances whose telemetry this broker keeps (KIP-714).", vec![]),
        desc(PUSHES, "PushTelemetry requests by result.", vec!["result".into()]),
        desc(DROPPED, "Pushed points not exported (exponential histograms, over the per-client bound).", vec![]),
    ]
}

struct Exporter {
    telemetry: Arc<Telemetry>,
    descs: Vec<Desc>,
}

fn family(name: &str, help: &str, kind: proto::MetricType) -> proto::MetricFamily {
    let mut f = proto::MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(if help.is_empty() { "Pushed by clients (KIP-714).".to_string() } else { help.to_string() });
    f.set_field_type(kind);
    f
}

fn labels(pairs: &[(String, String)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = proto::LabelPair::default();
            l.set_name(k.clone());
            l.set_value(v.clone());
            l
        })
        .collect()
}

fn sample_metric(pairs: &[(String, String)], sample: &Sample) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    match (&sample.kind, &sample.value) {
        (Kind::Counter, Value::Number(v)) => {
            let mut c = proto::Counter::default();
            c.set_value(*v);
            m.set_counter(c);
        }
        (_, Value::Number(v)) => {
            let mut g = proto::Gauge::default();
            g.set_value(*v);
            m.set_gauge(g);
        }
        (_, Value::Histogram { count, sum, buckets }) => {
            let mut h = proto::Histogram::default();
            h.set_sample_count(*count);
            h.set_sample_sum(*sum);
            h.set_bucket(
                buckets
                    .iter()
                    .filter(|(bound, _)| bound.is_finite())
                    .map(|(bound, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(*n);
                        b
                    })
                    .collect(),
            );
            m.set_histogram(h);
        }
        (_, Value::Summary { count, sum, quantiles }) => {
            let mut s = proto::Summary::default();
            s.set_sample_count(*count);
            s.set_sample_sum(*sum);
            s.set_quantile(
                quantiles
                    .iter()
                    .map(|(q, v)| {
                        let mut x = proto::Quantile::default();
                        x.set_quantile(*q);
                        x.set_value(*v);
                        x
                    })
                    .collect(),
            );
            m.set_summary(s);
        }
    }
    m
}

fn metric_type(kind: Kind) -> proto::MetricType {
    match kind {
        Kind::Gauge => proto::MetricType::GAUGE,
        Kind::Counter => proto::MetricType::COUNTER,
        Kind::Histogram => proto::MetricType::HISTOGRAM,
        Kind::Summary => proto::MetricType::SUMMARY,
    }
}

impl Collector for Exporter {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let t = &self.telemetry;
        let mut families: BTreeMap<String, proto::MetricFamily> = BTreeMap::new();
        let clients = {
            let mut instances = t.instances.lock();
            Telemetry::expire(&mut instances, Instant::now());
            for instance in instances.values() {
                for ((name, pairs), sample) in &instance.series {
                    // One type per family: the first client's; a clashing one is left out.
                    let f = families
                        .entry(name.clone())
                        .or_insert_with(|| family(name, &sample.help, metric_type(sample.kind)));
                    if f.get_field_type() == metric_type(sample.kind) {
                        f.mut_metric().push(sample_metric(pairs, sample));
                    }
                }
            }
            instances.len()
        };
        let mut out: Vec<proto::MetricFamily> = families.into_values().collect();
        let number = |name: &str, help: &str, kind: proto::MetricType, pairs: &[(String, String)], v: f64| {
            let sample = Sample {
                kind: if kind == proto::MetricType::COUNTER { Kind::Counter } else { Kind::Gauge },
                value: Value::Number(v),
                help: String::new(),
            };
            let mut f = family(name, help, kind);
            f.mut_metric().push(sample_metric(pairs, &sample));
            f
        };
        out.push(number(
            CLIENTS,
            "Client instances whose telemetry this broker keeps (KIP-714).",
            proto::MetricType::GAUGE,
            &[],
            clients as f64,
        ));
        let c = &t.counts;
        let mut pushes = family(PUSHES, "PushTelemetry requests by result.", proto::MetricType::COUNTER);
        for (result, n) in [
            ("ok", &c.ok),
            ("throttled", &c.throttled),
            ("unknown_subscription", &c.unknown_subscription),
            ("too_large", &c.too_large),
            ("invalid", &c.invalid),
        ] {
            let sample = Sample {
                kind: Kind::Counter,
                value: Value::Number(n.load(Ordering::Relaxed) as f64),
                help: String::new(),
            };
            pushes.mut_metric().push(sample_metric(&[("result".into(), result.into())], &sample));
        }
        out.push(pushes);
        out.push(number(
            DROPPED,
            "Pushed points not exported (exponential histograms, over the per-client bound).",
            proto::MetricType::COUNTER,
            &[],
            c.dropped_points.load(Ordering::Relaxed) as f64,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(pairs: &[(&str, &[(&str, &str)])]) -> Arc<ClientMetricsConfigs> {
        Arc::new(ClientMetricsConfigs::new(
            pairs
                .iter()
                .map(|(n, c)| (n.to_string(), c.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
                .collect(),
        ))
    }

    fn java(client_id: &str) -> Client {
        Client {
            client_id: client_id.into(),
            software_name: "apache-kafka-java".into(),
            software_version: "4.4.0".into(),
            address: "127.0.0.1".into(),
            port: 5555,
        }
    }

    #[test]
    fn a_client_gets_the_union_of_what_it_matches_at_the_shortest_interval() {
        let t = Telemetry::new(
            subs(&[
                (
                    "producers",
                    &[
                        ("metrics", "org.apache.kafka.producer."),
                        ("interval.ms", "1000"),
                        ("match", "client_id=app-.*"),
                    ],
                ),
                (
                    "java",
                    &[
                        ("metrics", "org.apache.kafka.consumer."),
                        ("interval.ms", "5000"),
                        ("match", "client_software_name=apache-kafka-java"),
                    ],
                ),
                ("other", &[("metrics", "*"), ("match", "client_id=other")]),
            ]),
            1 << 20,
        );
        let s = t.subscriptions_for(Uuid::nil(), &java("app-1")).unwrap();
        assert!(!s.instance_id.is_nil());
        assert_eq!(s.metrics, vec!["org.apache.kafka.consumer.", "org.apache.kafka.producer."]);
        assert_eq!(s.interval_ms, 1000);
        let other = t.subscriptions_for(Uuid::nil(), &java("other")).unwrap();
        assert_eq!(other.metrics, vec!["*"]);
        let none = t.subscriptions_for(Uuid::nil(), &Client { client_id: "x".into(), ..Default::default() }).unwrap();
        assert!(none.metrics.is_empty());
        assert_eq!(none.interval_ms, subscriptions::INTERVAL_DEFAULT);
        // Asking again at once is throttled.
        let again = t.subscriptions_for(s.instance_id, &java("app-1")).unwrap_err();
        assert_eq!(again.0, Error::ThrottlingQuotaExceeded.code());
    }

    #[test]
    fn pushes_are_checked_as_kafka_checks_them_and_exported() {
        let t = Telemetry::new(subs(&[("all", &[("metrics", "*"), ("interval.ms", "100000")])]), 1 << 20);
        let client = java("app");
        let s = t.subscriptions_for(Uuid::nil(), &client).unwrap();
        let payload = otlp::tests::payload(1.5, 7.0, 2);
        let push = |subscription_id, terminating, compression, metrics: &[u8]| {
            t.push(Push { instance_id: s.instance_id, subscription_id, terminating, compression, metrics }, &client)
        };
        assert_eq!(push(s.subscription_id + 1, false, 0, &payload).unwrap_err().0, Error::UnknownSubscriptionId.code());
        // Having failed on the subscription id, the client may ask again at once.
        let s2 = t.subscriptions_for(s.instance_id, &client).unwrap();
        assert_eq!(s2.subscription_id, s.subscription_id);
        push(s.subscription_id, false, 0, &payload).unwrap();
        // A second push within the interval is throttled.
        assert_eq!(push(s.subscription_id, false, 0, &payload).unwrap_err().0, Error::ThrottlingQuotaExceeded.code());
        let text = {
            let registry = prometheus::Registry::new();
            registry.register(t.collector()).unwrap();
            let mut out = Vec::new();
            prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let id = s.instance_id.to_string();
        assert!(
            text.contains(&format!(
                "org_apache_kafka_producer_topic_record_send_total{{client_id=\"app\",client_instance_id=\"{id}\",client_rack=\"r1\",client_software_name=\"apache-kafka-java\",client_software_version=\"4.4.0\",topic=\"t1\"}} 7"
            )),
            "{text}"
        );
        assert!(text.contains("tributary_client_telemetry_clients 1"), "{text}");
        assert!(text.contains("tributary_client_telemetry_pushes_total{result=\"ok\"} 1"), "{text}");
        // A terminating push is taken within the interval; nothing after it.
        push(s.subscription_id, true, 0, &payload).unwrap();
        assert_eq!(push(s.subscription_id, false, 0, &payload).unwrap_err().0, Error::InvalidRequest.code());
    }

    #[test]
    fn pushes_that_are_too_large_or_unreadable_are_refused() {
        let t = Telemetry::new(subs(&[("all", &[("metrics", "*"), ("interval.ms", "600000")])]), 64);
        let client = java("app");
        let s = t.subscriptions_for(Uuid::nil(), &client).unwrap();
        let push = |compression, metrics: &[u8]| {
            t.push(
                Push {
                    instance_id: s.instance_id,
                    subscription_id: s.subscription_id,
                    terminating: false,
                    compression,
                    metrics,
                },
                &client,
            )
        };
        assert_eq!(push(0, &[0u8; 65]).unwrap_err().0, Error::TelemetryTooLarge.code());
        let s = t.subscriptions_for(s.instance_id, &client);
        assert!(s.is_err(), "too large does not excuse asking early");
        let t = Telemetry::new(subs(&[("all", &[("metrics", "*")])]), 1 << 20);
        let s = t.subscriptions_for(Uuid::nil(), &client).unwrap();
        let r = t.push(
            Push {
                instance_id: s.instance_id,
                subscription_id: s.subscription_id,
                terminating: false,
                compression: 9,
                metrics: b"x",
            },
            &client,
        );
        assert_eq!(r.unwrap_err().0, Error::UnsupportedCompressionType.code());
        let s = t.subscriptions_for(s.instance_id, &client).unwrap();
        let r = t.push(
            Push {
                instance_id: s.instance_id,
                subscription_id: s.subscription_id,
                terminating: false,
                compression: 0,
                metrics: b"\xff\xff\xff\xff",
            },
            &client,
        );
        assert_eq!(r.unwrap_err().0, Error::InvalidRecord.code());
        let nil = t.push(
            Push { instance_id: Uuid::nil(), subscription_id: 0, terminating: false, compression: 0, metrics: b"" },
            &client,
        );
        assert_eq!(nil.unwrap_err().0, Error::InvalidRequest.code());
    }

    #[test]
    fn the_subscription_id_follows_metrics_interval_and_instance() {
        let a = Uuid::from_u128(7);
        let m = vec!["x.".to_string()];
        assert_eq!(subscription_id(&m, 1000, a), subscription_id(&m, 1000, a));
        assert_ne!(subscription_id(&m, 1000, a), subscription_id(&m, 2000, a));
        assert_ne!(subscription_id(&m, 1000, a), subscription_id(&[], 1000, a));
        assert_ne!(subscription_id(&m, 1000, a), subscription_id(&m, 1000, Uuid::from_u128(8)));
    }
}
