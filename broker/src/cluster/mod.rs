//! Cluster mode: brokers on etcd (membership, the controller election, metadata and
//! partition assignments) and the shared segment store (all data), as DESIGN §7
//! describes. Single node (the default) uses none of this: its [`Topology`] is fixed
//! and owns every partition.
//!
//! # Layout
//! - [`etcd`]: the client, every key under `/tributary/<cluster.name>/`.
//! - [`membership`]: `brokers/<id>` under a lease kept alive; the node id from etcd
//!   when `node_id = -1`; the local deadline past which the broker takes itself for
//!   gone.
//! - [`controller`]: the election (one key under the winner's lease); [`assign`]:
//!   what the controller does, placing every partition and writing its owner and
//!   leader epoch to `assignments/<topic>`.
//! - [`loads`]: each broker's measured produce rates per partition (`loads/<id>`),
//!   which placement weighs partitions by.
//! - [`catalog`]: topics in etcd (`topics/<name>`), followed by every broker into
//!   its own storage.
//! - [`producer_ids`]: blocks of producer ids reserved in etcd.
//! - [`quotas`]: client quotas in etcd (`quotas/<entity>`), followed by every
//!   broker.
//! - [`keyed`]: maps of names to values in etcd, followed by every broker: group
//!   configs (`groupconfigs/<group>`), SASL users (`users/<name>`), ACLs
//!   (`acls/<resource pattern>`), client-metrics subscriptions
//!   (`clientmetrics/<name>`) and dynamic broker configs (`brokerconfigs/<id>`).
//! - [`sweep`]: the controller deletes journal objects, segments and manifests no
//!   partition needs any more.
//! - [`peers`]: requests to other brokers (transaction markers, write
//!   verification), over the Kafka protocol.
//! - [`topology`]: the view handlers read: live brokers, the controller, partition
//!   owners and epochs, whether this broker is live.
//! - Placement itself is the pure crate `tributary_placement`.
//!
//! The handlers see the cluster only through [`Topology`] (`Broker::topology`).

pub mod assign;
pub mod catalog;
pub mod controller;
pub mod etcd;
pub mod handover;
pub mod keyed;
pub mod loads;
pub mod manifests;
pub mod membership;
pub mod peers;
pub mod producer_ids;
pub mod quotas;
pub mod sweep;
pub mod topology;
pub mod wal;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_config::Config;

use crate::storage::Storage;
pub use catalog::{Catalog, CatalogError};
pub use etcd::{ClusterError, Etcd};
use membership::Lease;
pub use topology::{split_host_port, BrokerInfo, Owner, Topology};

const CLUSTER_ID_KEY: &str = "cluster-id";

/// A running cluster member: its tasks and the view they keep current.
#[derive(Debug)]
pub struct Cluster {
    pub etcd: Etcd,
    pub node_id: i32,
    lease: watch::Receiver<Lease>,
    controller: watch::Receiver<bool>,
    view: watch::Sender<Arc<Topology>>,
    /// Partitions taken over and served here (shared with every view).
    ready: handover::Ready,
    /// What must follow partition ownership besides the data (the group coordinator).
    hooks: Arc<std::sync::OnceLock<Arc<dyn handover::Hooks>>>,
    pub catalog: Catalog,
    pub quotas: quotas::ClientQuotas,
    quotas_applied: parking_lot::Mutex<Option<watch::Sender<i64>>>,
    pub group_configs: keyed::KeyedMap<crate::coordinator::group::configs::GroupConfigs>,
    pub users: keyed::KeyedMap<crate::security::users::Users>,
    pub acls: keyed::KeyedMap<crate::security::acl::Acls>,
    pub client_metrics: keyed::KeyedMap<crate::telemetry::ClientMetricsConfigs>,
    pub broker_configs: keyed::KeyedMap<crate::broker_configs::BrokerConfigs>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to etcd, resolves the node id and starts membership, the election
    /// and the watch that keeps the view current. Returns at once; [`Cluster::ready`]
    /// waits for the first registration.
    pub async fn start(
        config: &Config,
        mut info: BrokerInfo,
        storage: Arc<Storage>,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let c = &config.cluster;
        let timeout = Duration::from_millis(c.etcd_timeout_ms);
        let etcd = Etcd::connect(&c.etcd_endpoints, &c.name, timeout).await?;
        info.id = retry("node id", || membership::resolve_node_id(&etcd, config.node_id, &config.data_dir)).await;
        let cluster_id = retry("cluster id", || cluster_id(&etcd)).await;
        storage.set_producer_id_source(Arc::new(producer_ids::EtcdProducerIds { etcd: etcd.clone() }));
        let (lease_tx, lease) = watch::channel(Lease::NONE);
        let (elected_tx, controller) = watch::channel(false);
        let ready = handover::Ready::default();
        let initial =
            Topology { this: info.id, cluster_id: cluster_id.into(), ready: ready.clone(), ..Default::default() };
        let (view, _) = watch::channel(Arc::new(initial));
        let node_id = info.id;
        let (applied_tx, applied) = watch::channel(0i64);
        let (quotas_tx, quotas_applied) = watch::channel(0i64);
        let cluster = Arc::new(Cluster {
            etcd: etcd.clone(),
            node_id,
            lease,
            controller,
            view,
            ready,
            hooks: Arc::new(std::sync::OnceLock::new()),
            catalog: Catalog::new(etcd.clone(), applied.clone()),
            quotas: quotas::ClientQuotas::new(etcd.clone(), quotas_applied),
            quotas_applied: parking_lot::Mutex::new(Some(quotas_tx)),
            group_configs: keyed::KeyedMap::new(etcd.clone()),
            users: keyed::KeyedMap::new(etcd.clone()),
            acls: keyed::KeyedMap::new(etcd.clone()),
            client_metrics: keyed::KeyedMap::new(etcd.clone()),
            broker_configs: keyed::KeyedMap::new(etcd.clone()),
            tasks: parking_lot::Mutex::new(Vec::new()),
        });
        let internal = vec![
            (crate::coordinator::group::OFFSETS_TOPIC.to_string(), config.groups.offsets_partitions as i32),
            (crate::coordinator::txn::TXN_TOPIC.to_string(), crate::coordinator::txn::TXN_PARTITIONS),
        ];
        let mut tasks = vec![
            tokio::spawn(membership::run(etcd.clone(), info, c.lease_ttl_secs, lease_tx, shutdown.clone())),
            tokio::spawn(controller::campaign(
                etcd.clone(),
                node_id,
                cluster.lease.clone(),
                elected_tx,
                shutdown.clone(),
            )),
        ];
        let op = storage.segment_store().operator().clone();
        let (shipper, shipping) =
            wal::start(op.clone(), storage.clone(), node_id, cluster.lease.clone(), metrics.clone(), shutdown.clone());
        storage.set_shipper(shipper.clone());
        tasks.push(shipping);
        tasks.push(tokio::spawn(wal::keep_floor(
            op.clone(),
            storage.clone(),
            shipper.clone(),
            node_id,
            cluster.lease.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(sweep::run(
            cluster.clone(),
            op.clone(),
            Duration::from_secs(c.sweep_interval_secs),
            Duration::from_secs(c.sweep_grace_secs),
            metrics.clone(),
            shutdown.clone(),
        )));
        let (sealed, manifests) = manifests::start(
            cluster.clone(),
            storage.clone(),
            shipper.clone(),
            op.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        storage.set_seal_hook(sealed);
        tasks.push(manifests);
        tasks.push(tokio::spawn(handover::run(
            handover::Ctx {
                cluster: cluster.clone(),
                storage: storage.clone(),
                op,
                shipper,
                hooks: cluster.hooks.clone(),
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(loads::run(
            cluster.clone(),
            storage.clone(),
            Duration::from_secs(c.load_interval_secs),
            c.load_unit_bytes,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(catalog::follow(etcd.clone(), storage, applied_tx, shutdown.clone())));
        tasks.push(tokio::spawn(assign::run(
            etcd.clone(),
            cluster.controller.clone(),
            cluster.lease.clone(),
            cluster.view.subscribe(),
            applied,
            internal,
            c.balance_factor,
            Duration::from_secs(c.load_interval_secs),
            metrics.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(cluster.clone().watch_view(shutdown.clone())));
        tasks.push(tokio::spawn(cluster.clone().follow_lease(shutdown)));
        *cluster.tasks.lock() = tasks;
        Ok(cluster)
    }

    /// Waits until this broker is registered and sees itself among the brokers.
    pub async fn ready(&self) {
        let mut view = self.view.subscribe();
        loop {
            {
                let t = view.borrow_and_update();
                if t.live && t.broker(self.node_id).is_some() {
                    return;
                }
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    }

    /// Keeps `quotas` equal to the client quotas in etcd until `shutdown` (started
    /// once the broker's quotas exist).
    pub fn follow_quotas(&self, quotas: Arc<crate::quotas::Quotas>, shutdown: CancellationToken) {
        if let Some(applied) = self.quotas_applied.lock().take() {
            let task = tokio::spawn(quotas::follow(self.etcd.clone(), quotas, applied, shutdown));
            self.tasks.lock().push(task);
        }
    }

    /// Keeps the group coordinator's configs, the SASL users, the ACLs, the
    /// client-metrics subscriptions and the dynamic broker configs equal to what
    /// etcd holds until `shutdown`.
    pub fn follow_keyed(
        &self,
        groups: Arc<crate::coordinator::group::configs::GroupConfigs>,
        users: Arc<crate::security::users::Users>,
        acls: Arc<crate::security::acl::Acls>,
        client_metrics: Arc<crate::telemetry::ClientMetricsConfigs>,
        broker_configs: Arc<crate::broker_configs::BrokerConfigs>,
        shutdown: CancellationToken,
    ) {
        let tasks = [
            self.group_configs.follow(groups, shutdown.clone()),
            self.users.follow(users, shutdown.clone()),
            self.acls.follow(acls, shutdown.clone()),
            self.client_metrics.follow(client_metrics, shutdown.clone()),
            self.broker_configs.follow(broker_configs, shutdown),
        ];
        self.tasks.lock().extend(tasks.into_iter().flatten());
    }

    /// The first step of a clean shutdown: marks this broker draining in its etcd key,
    /// so the controller places its partitions elsewhere and the hand-over task hands
    /// each on (closing its tenure, so the successor starts at once rather than after
    /// the lease is gone). Returns once nothing is served here, or after `limit`;
    /// at once when no other broker could take the partitions.
    pub async fn drain(&self, limit: Duration) {
        // Whether another broker could take partitions over (none when every broker
        // is stopping at once).
        let takers = |t: &Topology| t.brokers.iter().any(|b| b.id != self.node_id && !b.draining);
        let t = self.topology();
        let held = *self.lease.borrow();
        let Some(mut info) = t.broker(self.node_id).cloned().filter(|_| t.live && takers(&t)) else {
            return;
        };
        info.draining = true;
        let key = self.etcd.full(&membership::broker_key(self.node_id));
        let value = serde_json::to_vec(&info).expect("broker info serialises");
        let txn = etcd_client::Txn::new()
            .when([etcd_client::Compare::lease(key.clone(), etcd_client::CompareOp::Equal, held.id)])
            .and_then([etcd_client::TxnOp::put(key, value, Some(etcd_client::PutOptions::new().with_lease(held.id)))]);
        match self.etcd.txn("mark the broker draining", txn).await {
            Ok(r) if r.succeeded() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark this broker draining; leaving without a hand-over");
                return;
            }
        }
        let started = Instant::now();
        let before = self.ready.len();
        tracing::info!(partitions = before, "draining: handing partitions on before shutting down");
        // Until nothing is left here, or nobody is left to take it.
        while !self.ready.is_empty()
            && started.elapsed() < limit
            && self.lease.borrow().live(Instant::now())
            && takers(&self.topology())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(
            handed_on = before.saturating_sub(self.ready.len()),
            left = self.ready.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "drained"
        );
    }

    /// Sets what must follow partition ownership besides the data (once).
    pub fn set_hooks(&self, hooks: Arc<dyn handover::Hooks>) {
        let _ = self.hooks.set(hooks);
    }

    /// Whether this broker is the controller now.
    pub fn is_controller(&self) -> bool {
        *self.controller.borrow()
    }

    /// The current view.
    pub fn topology(&self) -> Arc<Topology> {
        self.view.borrow().clone()
    }

    /// Waits for the cluster tasks after the shutdown token was cancelled (the lease
    /// is revoked, so the brokers' keys and the controller key go at once).
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }

    fn update(&self, f: impl FnOnce(&mut Topology)) {
        self.view.send_modify(|t| f(Arc::make_mut(t)));
    }

    /// Keeps `Topology::live` equal to "the lease is held and its deadline not past".
    async fn follow_lease(self: Arc<Self>, shutdown: CancellationToken) {
        let mut lease = self.lease.clone();
        loop {
            let held = *lease.borrow_and_update();
            let live = held.live(Instant::now());
            let was = self.view.borrow().live;
            if self.view.borrow().lease != held.id {
                self.update(|t| t.lease = held.id);
            }
            if was != live {
                if was {
                    tracing::warn!(
                        node_id = self.node_id,
                        "etcd lease not renewed in time: serving no writes until it is"
                    );
                }
                self.update(|t| t.live = live);
            }
            let deadline = held.until.filter(|_| live);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.update(|t| t.live = false);
                    return;
                }
                changed = lease.changed() => if changed.is_err() { return },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {}
            }
        }
    }

    /// Lists the brokers, the controller and the assignments, then follows their
    /// changes (everything read again on a membership change, assignments applied
    /// from the event).
    async fn watch_view(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let revision = match self.read_view().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the brokers from etcd; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let Ok(mut stream) = self.etcd.watch("", revision + 1).await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = stream.message() => match message {
                        Ok(Some(m)) if m.canceled() => break,
                        Ok(Some(m)) => {
                            let mut membership = false;
                            let mut owners = Vec::new();
                            for event in m.events() {
                                let Some(kv) = event.kv() else { continue };
                                let key = String::from_utf8_lossy(kv.key());
                                let key = key.strip_prefix(&self.etcd.full("")).unwrap_or(&key).to_string();
                                if key.starts_with("brokers/") || key == controller::CONTROLLER_KEY {
                                    membership = true;
                                } else if let Some(topic) = key.strip_prefix(catalog::ASSIGNMENTS) {
                                    let parsed = match event.event_type() {
                                        etcd_client::EventType::Put => assign::parse(kv.value()),
                                        etcd_client::EventType::Delete => None,
                                    };
                                    owners.push((Arc::<str>::from(topic), parsed));
                                }
                            }
                            if !owners.is_empty() {
                                self.update(|t| {
                                    for (topic, parsed) in owners {
                                        match parsed {
                                            Some(o) => { t.assignments.insert(topic, Arc::new(o)); }
                                            None => { t.assignments.remove(&topic); }
                                        }
                                    }
                                });
                            }
                            if membership {
                                // Read everything again and watch from there.
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
    }

    async fn read_view(&self) -> Result<i64, ClusterError> {
        let (entries, revision) = self.etcd.list(catalog::ASSIGNMENTS).await?;
        let assignments = entries
            .iter()
            .filter_map(|e| {
                Some((Arc::<str>::from(&e.key[catalog::ASSIGNMENTS.len()..]), Arc::new(assign::parse(&e.value)?)))
            })
            .collect();
        let (entries, _) = self.etcd.list("brokers/").await?;
        let mut brokers = Vec::new();
        for e in entries {
            match serde_json::from_slice::<BrokerInfo>(&e.value) {
                Ok(b) => brokers.push(b),
                Err(err) => tracing::warn!(key = e.key, error = %err, "ignoring a broker entry that does not parse"),
            }
        }
        brokers.sort_by_key(|b| b.id);
        let controller = self
            .etcd
            .get(controller::CONTROLLER_KEY)
            .await?
            .and_then(|e| String::from_utf8_lossy(&e.value).trim().parse::<i32>().ok());
        // One new view with all three, so no handler sees a half-read one.
        self.update(|t| {
            t.brokers = brokers;
            t.controller = controller;
            t.assignments = assignments;
        });
        Ok(revision)
    }
}

/// The cluster's id: created once by the first broker, the same for all after.
async fn cluster_id(etcd: &Etcd) -> Result<String, ClusterError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    match etcd.create(CLUSTER_ID_KEY, fresh.clone().into_bytes(), 0).await? {
        Ok(()) => Ok(fresh),
        Err(existing) => Ok(String::from_utf8_lossy(&existing.value).into_owned()),
    }
}

/// Retries a start-up step against etcd until it succeeds (etcd may still be coming
/// up), logging each failure.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get the {what} from etcd; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
