//! The state every handler sees: configuration, the storage engine, metrics, and who
//! this broker is on the wire.

use std::sync::Arc;

use tributary_config::Config;

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
}

impl Broker {
    pub fn new(
        config: Config,
        storage: Arc<Storage>,
        metrics: Arc<Metrics>,
        groups: Arc<GroupCoordinator>,
        txns: Arc<TxnCoordinator>,
    ) -> Self {
        let advertised = config.advertised().to_string();
        let (host, port) = advertised.rsplit_once(':').unwrap_or((advertised.as_str(), "9092"));
        let node = Node {
            id: config.node_id,
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: port.parse().unwrap_or(9092),
        };
        let quotas = Quotas::new(&config.quotas, storage.client_quotas());
        Broker { config, storage, metrics, groups, txns, quotas, node }
    }
}
