//! What a broker knows of the cluster at one moment: the live brokers, the
//! controller, and who owns each partition at which leader epoch. Handlers read it
//! through one `Arc` (never a lock across an await); a single broker has a fixed one
//! in which it owns everything.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A broker as registered in etcd (and shown to clients in Metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    pub weight: u32,
    /// A new value at every start of the process: tells a restarted broker from the
    /// one before it.
    pub incarnation: String,
    /// Shutting down cleanly: the controller places nothing here, so the broker can
    /// hand its partitions on before it leaves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// The advertised HOST:PORT of each listener besides `default` (whose address
    /// is `host` and `port`), by listener name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub listeners: std::collections::BTreeMap<String, String>,
}

impl BrokerInfo {
    /// Where clients connected through `listener` reach this broker: its address on
    /// the listener of that name, or the default one where it has none.
    pub fn endpoint(&self, listener: &str) -> (String, i32) {
        match self.listeners.get(listener).and_then(|a| split_host_port(a)) {
            Some(endpoint) => endpoint,
            None => (self.host.clone(), self.port),
        }
    }
}

/// `host:port` or `[v6]:port` as a host without brackets and a port.
pub fn split_host_port(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}

/// The owner of one partition and its leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub broker: i32,
    pub epoch: i32,
}

/// One view of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// This broker's id.
    pub this: i32,
    /// Live brokers, by id.
    pub brokers: Vec<BrokerInfo>,
    /// The controller's id, if one is elected.
    pub controller: Option<i32>,
    /// This broker holds its etcd lease: it may take writes for what it owns.
    pub live: bool,
    /// Single node: this broker owns every partition at epoch 0.
    pub owns_everything: bool,
    /// Partition owners by topic name, indexed by partition (an `Arc` each, so a new
    /// view shares the topics that did not change).
    pub assignments: HashMap<Arc<str>, Arc<Vec<Option<Owner>>>>,
    /// The cluster id clients see in Metadata.
    pub cluster_id: Arc<str>,
    /// The etcd lease this broker holds (0: none).
    pub lease: i64,
    /// Partitions rebuilt here and served, with the epoch and lease they were taken
    /// over at (shared by every view: the handover task keeps it).
    pub ready: super::handover::Ready,
}

impl Topology {
    /// The fixed view of a single broker.
    pub fn single(node: BrokerInfo, cluster_id: &str) -> Topology {
        Topology {
            cluster_id: cluster_id.into(),
            this: node.id,
            controller: Some(node.id),
            brokers: vec![node],
            live: true,
            owns_everything: true,
            assignments: HashMap::new(),
            lease: 0,
            ready: Default::default(),
        }
    }

    /// Who owns `topic`'s `partition`, if anyone does yet.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<Owner> {
        if self.owns_everything {
            return Some(Owner { broker: self.this, epoch: 0 });
        }
        let owners = self.assignments.get(topic)?;
        owners.get(usize::try_from(partition).ok()?).copied().flatten()
    }

    /// Whether this broker may serve `topic`'s `partition` now: it owns it, holds
    /// its lease and has taken the partition over at the current epoch.
    pub fn serves(&self, topic: &str, partition: i32) -> bool {
        self.live
            && self
                .owner(topic, partition)
                .is_some_and(|o| o.broker == self.this && self.taken_over(topic, partition, o.epoch))
    }

    /// Whether the partition is rebuilt here at `epoch` under the current lease.
    pub fn taken_over(&self, topic: &str, partition: i32, epoch: i32) -> bool {
        self.owns_everything
            || self.ready.get(&(Arc::<str>::from(topic), partition)).is_some_and(|r| *r == (epoch, self.lease))
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: i32) -> BrokerInfo {
        BrokerInfo {
            id,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: None,
            weight: 1,
            incarnation: "x".into(),
            draining: false,
            listeners: Default::default(),
        }
    }

    #[test]
    fn a_single_broker_owns_everything() {
        let t = Topology::single(info(3), "c");
        assert_eq!(t.owner("any", 7), Some(Owner { broker: 3, epoch: 0 }));
        assert!(t.serves("any", 0));
        assert_eq!(t.controller, Some(3));
    }

    #[test]
    fn a_cluster_broker_serves_only_what_it_owns_while_live() {
        let mut t = Topology { this: 1, live: true, lease: 7, brokers: vec![info(1), info(2)], ..Default::default() };
        t.assignments.insert(
            "t".into(),
            Arc::new(vec![Some(Owner { broker: 1, epoch: 4 }), Some(Owner { broker: 2, epoch: 1 }), None]),
        );
        assert!(!t.serves("t", 0), "not before it is taken over");
        t.ready.insert(("t".into(), 0), (4, 6));
        assert!(!t.serves("t", 0), "not when taken over under another lease");
        t.ready.insert(("t".into(), 0), (4, 7));
        assert!(t.serves("t", 0));
        assert!(!t.serves("t", 1));
        assert!(!t.serves("t", 2));
        assert!(!t.serves("t", 3));
        assert!(!t.serves("t", -1));
        assert!(!t.serves("u", 0));
        t.live = false;
        assert!(!t.serves("t", 0), "a broker without its lease serves nothing");
    }
}
