//! What a client pushed (an OTLP `MetricsData`, protobuf) as Prometheus series:
//! names and label names made valid the OpenTelemetry-to-Prometheus way (every
//! other character `_`; monotonic sums end in `_total`), resource and point
//! attributes as labels under the broker's own (`client_instance_id`, `client_id`,
//! `client_software_name`, `client_software_version`), which a client cannot
//! override. Gauges, sums, histograms and summaries are kept; exponential
//! histograms are counted as dropped.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, MetricsData};
use prost::Message;

/// OTLP's DELTA aggregation temporality.
const DELTA: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    /// Count, sum and cumulative (upper bound, count) buckets, +Inf last.
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<(f64, u64)>,
    },
    /// Count, sum and (quantile, value) pairs.
    Summary {
        count: u64,
        sum: f64,
        quantiles: Vec<(f64, f64)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) kind: Kind,
    pub(crate) value: Value,
    /// OTLP's description, as the family's help.
    pub(crate) help: String,
}

/// A series: its family name and its labels, sorted by name.
pub(crate) type SeriesKey = (String, Vec<(String, String)>);

/// `name` as a Prometheus metric or label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn sanitize(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn attribute(kv: &KeyValue) -> Option<(String, String)> {
    let value = match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    };
    Some((sanitize(&kv.key), value))
}

/// Why a push could not be read.
#[derive(Debug, thiserror::Error)]
#[error("metrics payload is not OTLP MetricsData: {0}")]
pub(crate) struct Undecodable(#[from] prost::DecodeError);

/// Applies one push to `series` (at most `max_series` of them): cumulative points
/// replace what was there, delta sums add to it. Returns how many points were
/// dropped (unsupported kinds, or beyond the bound).
pub(crate) fn apply(
    payload: &[u8],
    own: &[(String, String)],
    series: &mut BTreeMap<SeriesKey, Sample>,
    max_series: usize,
) -> Result<usize, Undecodable> {
    let data = MetricsData::decode(payload)?;
    let mut dropped = 0usize;
    for rm in data.resource_metrics {
        let resource: Vec<(String, String)> =
            rm.resource.iter().flat_map(|r| r.attributes.iter()).filter_map(attribute).collect();
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let Some(data) = m.data else { continue };
                let base = sanitize(&m.name);
                let labels = |attributes: &[KeyValue]| {
                    let mut map: BTreeMap<String, String> = resource.iter().cloned().collect();
                    map.extend(attributes.iter().filter_map(attribute));
                    map.extend(own.iter().cloned());
                    map.into_iter().collect::<Vec<_>>()
                };
                let mut put = |key: SeriesKey, sample: Sample, delta: bool| {
                    if !series.contains_key(&key) && series.len() >= max_series {
                        dropped += 1;
                        return;
                    }
                    match (delta, series.get_mut(&key), &sample.value) {
                        (true, Some(old), Value::Number(d)) if old.kind == sample.kind => {
                            if let Value::Number(v) = &mut old.value {
                                *v += d;
                            }
                        }
                        _ => {
                            series.insert(key, sample);
                        }
                    }
                };
                let number = |v: Option<number_data_point::Value>| match v {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => 0.0,
                };
                let help = m.description.clone();
                match data {
                    metric::Data::Gauge(g) => {
                        for p in g.data_points {
                            let sample =
                                Sample { kind: Kind::Gauge, value: Value::Number(number(p.value)), help: help.clone() };
                            put((base.clone(), labels(&p.attributes)), sample, false);
                        }
                    }
                    metric::Data::Sum(s) => {
                        let (kind, name) = match s.is_monotonic {
                            true if base.ends_with("_total") => (Kind::Counter, base.clone()),
                            true => (Kind::Counter, format!("{base}_total")),
                            false => (Kind::Gauge, base.clone()),
                        };
                        let delta = s.aggregation_temporality == DELTA;
                        for p in s.data_points {
                            let sample = Sample { kind, value: Value::Number(number(p.value)), help: help.clone() };
                            put((name.clone(), labels(&p.attributes)), sample, delta);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        for p in h.data_points {
                            let mut cumulative = 0u64;
                            let mut buckets = Vec::with_capacity(p.bucket_counts.len());
                            for (i, n) in p.bucket_counts.iter().enumerate() {
                                cumulative += n;
                                buckets.push((p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
                            }
                            let value = Value::Histogram { count: p.count, sum: p.sum.unwrap_or(0.0), buckets };
                            put(
                                (base.clone(), labels(&p.attributes)),
                                Sample { kind: Kind::Histogram, value, help: help.clone() },
                                false,
                            );
                        }
                    }
                    metric::Data::Summary(s) => {
                        for p in s.data_points {
                            let quantiles = p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect();
                            let value = Value::Summary { count: p.count, sum: p.sum, quantiles };
                            put(
                                (base.clone(), labels(&p.attributes)),
                                Sample { kind: Kind::Summary, value, help: help.clone() },
                                false,
                            );
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => dropped += h.data_points.len(),
                }
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn point(v: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint { attributes, value: Some(number_data_point::Value::AsDouble(v)), ..Default::default() }
    }

    /// A push as the Java client makes it: a gauge and a cumulative counter.
    pub(crate) fn payload(gauge: f64, counter: f64, temporality: i32) -> Vec<u8> {
        let metrics = vec![
            Metric {
                name: "org.apache.kafka.producer.record.queue.time.avg".into(),
                description: "queue time".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(gauge, vec![])] })),
                ..Default::default()
            },
            Metric {
                name: "org.apache.kafka.producer.topic.record.send.total".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![point(counter, vec![kv("topic", "t1"), kv("client_id", "spoofed")])],
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
        ];
        MetricsData {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![kv("client.rack", "r1")], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn pushes_become_series_with_the_brokers_labels_on_top() {
        let own = vec![("client_id".to_string(), "app".to_string())];
        let mut series = BTreeMap::new();
        assert_eq!(apply(&payload(2.5, 10.0, 2), &own, &mut series, 100).unwrap(), 0);
        let counter = (
            "org_apache_kafka_producer_topic_record_send_total".to_string(),
            vec![
                ("client_id".into(), "app".into()),
                ("client_rack".into(), "r1".into()),
                ("topic".into(), "t1".into()),
            ],
        );
        assert_eq!(series[&counter].value, Value::Number(10.0));
        assert_eq!(series[&counter].kind, Kind::Counter);
        // Cumulative replaces; delta adds.
        apply(&payload(3.0, 12.0, 2), &own, &mut series, 100).unwrap();
        assert_eq!(series[&counter].value, Value::Number(12.0));
        apply(&payload(3.0, 5.0, DELTA), &own, &mut series, 100).unwrap();
        assert_eq!(series[&counter].value, Value::Number(17.0));
        let gauge = series.keys().find(|k| k.0.ends_with("queue_time_avg")).unwrap();
        assert_eq!(series[gauge].value, Value::Number(3.0));
        assert_eq!(series.len(), 2);
        // Bounded: a new series beyond the bound is dropped.
        let mut few = BTreeMap::new();
        assert_eq!(apply(&payload(1.0, 1.0, 2), &own, &mut few, 1).unwrap(), 1);
        assert!(apply(b"\xff\xff\xff", &own, &mut few, 1).is_err());
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(sanitize("org.apache.kafka.x-y"), "org_apache_kafka_x_y");
        assert_eq!(sanitize("9lives"), "_9lives");
        assert_eq!(sanitize(""), "_");
    }
}
