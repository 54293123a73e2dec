//! Consumer lag per group and partition, and groups per state, computed at scrape
//! time from the coordinator (no series left behind by deleted groups).

use std::sync::Weak;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

use super::GroupCoordinator;

/// The collector; holds the coordinator weakly so it never keeps it alive.
#[derive(Debug)]
pub struct LagCollector {
    coordinator: Weak<GroupCoordinator>,
    lag: IntGaugeVec,
    groups: IntGaugeVec,
    /// Scrapes fill the vectors in turn.
    scrape: Mutex<()>,
}

impl LagCollector {
    pub fn new(coordinator: Weak<GroupCoordinator>) -> Self {
        let lag = IntGaugeVec::new(
            Opts::new(
                "tributary_consumer_group_lag",
                "Records between a group's committed offset and the partition's high watermark.",
            ),
            &["group", "topic", "partition"],
        )
        .expect("invariant: valid metric");
        let groups = IntGaugeVec::new(
            Opts::new("tributary_consumer_groups", "Consumer groups, by protocol and state."),
            &["protocol", "state"],
        )
        .expect("invariant: valid metric");
        LagCollector { coordinator, lag, groups, scrape: Mutex::new(()) }
    }
}

impl Collector for LagCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.lag.desc().into_iter().chain(self.groups.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _turn = self.scrape.lock();
        self.lag.reset();
        self.groups.reset();
        if let Some(c) = self.coordinator.upgrade() {
            for (group, topic, partition, lag) in c.lag() {
                self.lag.with_label_values(&[&group, &topic, &partition.to_string()]).set(lag);
            }
            for listing in c.list().unwrap_or_default() {
                self.groups.with_label_values(&[listing.group_type, listing.state]).inc();
            }
        }
        self.lag.collect().into_iter().chain(self.groups.collect()).collect()
    }
}
