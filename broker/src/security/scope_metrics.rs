//! Scopes in /metrics, computed at scrape time from the topics (no series left
//! behind by a scope whose topics are gone): topics, partitions and stored bytes
//! per scope. Rates per scope come from the per-topic counters in PromQL:
//! `sum by (scope) (label_replace(rate(tributary_produce_bytes_total[1m]), "scope",
//! "$1", "topic", "([^/]+)/.*"))`.

use std::collections::BTreeMap;
use std::sync::Weak;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

use crate::storage::Storage;

#[derive(Debug)]
pub struct ScopeCollector {
    storage: Weak<Storage>,
    topics: IntGaugeVec,
    partitions: IntGaugeVec,
    bytes: IntGaugeVec,
    scrape: Mutex<()>,
}

impl ScopeCollector {
    pub fn new(storage: Weak<Storage>) -> Self {
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["scope"]).expect("invariant: valid metric")
        };
        ScopeCollector {
            storage,
            topics: gauge("tributary_scope_topics", "Streams (topics) of each scope."),
            partitions: gauge("tributary_scope_partitions", "Partitions of each scope's streams."),
            bytes: gauge("tributary_scope_stored_bytes", "Bytes stored for each scope's streams."),
            scrape: Mutex::new(()),
        }
    }
}

impl Collector for ScopeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.topics.desc().into_iter().chain(self.partitions.desc()).chain(self.bytes.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _turn = self.scrape.lock();
        self.topics.reset();
        self.partitions.reset();
        self.bytes.reset();
        if let Some(storage) = self.storage.upgrade() {
            let mut per: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
            for t in storage.topics() {
                let Some((scope, _)) = t.name.split_once('/') else { continue };
                let e = per.entry(scope.to_string()).or_default();
                e.0 += 1;
                e.1 += t.partitions.len() as i64;
                e.2 += t.partitions.iter().map(|p| p.size_bytes() as i64).sum::<i64>();
            }
            for (scope, (topics, partitions, bytes)) in per {
                self.topics.with_label_values(&[&scope]).set(topics);
                self.partitions.with_label_values(&[&scope]).set(partitions);
                self.bytes.with_label_values(&[&scope]).set(bytes);
            }
        }
        self.topics.collect().into_iter().chain(self.partitions.collect()).chain(self.bytes.collect()).collect()
    }
}
