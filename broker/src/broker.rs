//! The state every handler sees: configuration, the storage engine, metrics, and who
//! this broker is on the wire.

use std::sync::Arc;

use tributary_config::Config;

use crate::cluster::{BrokerInfo, Cluster, Topology};
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TxnCoordinator;
use crate::metrics::Metrics;
use crate::quotas::Quotas;
use crate::storage::Storage;

/// This broker as clients see it in Metadata.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub storage: Arc<Storage>,
    pub metrics: Arc<Metrics>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TxnCoordinator>,
    pub quotas: Quotas,
    pub node: Node,
    /// Cluster mode: the membership, election and view kept current from etcd.
    pub cluster: Option<Arc<Cluster>>,
    /// Single node: the fixed view in which this broker owns everything.
    single: Arc<Topology>,
}

impl Broker {
    pub fn new(
        config: Config,
        storage: Arc<Storage>,
        metrics: Arc<Metrics>,
        groups: Arc<GroupCoordinator>,
        txns: Arc<TxnCoordinator>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let info = advertised_info(&config);
        let node = Node { id: info.id, host: info.host.clone(), port: info.port };
        let single = Arc::new(Topology::single(info, storage.cluster_id()));
        let quotas = Quotas::new(&config.quotas, storage.client_quotas());
        Broker { config, storage, metrics, groups, txns, quotas, node, cluster, single }
    }

    /// What this broker knows of the cluster now (in single node, a fixed view in
    /// which it owns everything).
    pub fn topology(&self) -> Arc<Topology> {
        match &self.cluster {
            Some(c) => c.topology(),
            None => self.single.clone(),
        }
    }
}

/// This broker as it registers: id, advertised host and port, rack and weight.
pub fn advertised_info(config: &Config) -> BrokerInfo {
    let advertised = config.advertised().to_string();
    let (host, port) = advertised.rsplit_once(':').unwrap_or((advertised.as_str(), "9092"));
    let rack = &config.cluster.rack;
    BrokerInfo {
        id: config.node_id,
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port: port.parse().unwrap_or(9092),
        rack: (!rack.is_empty()).then(|| rack.clone()),
        weight: config.cluster.weight,
        incarnation: uuid::Uuid::new_v4().simple().to_string(),
    }
}
