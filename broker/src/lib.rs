//! Tributary: a stream storage broker that speaks the Kafka wire protocol.
//!
//! # Layout
//! - [`server`]: the Kafka listeners (PLAINTEXT, SSL, SASL_*); one task per
//!   connection reads frames, and `dispatch` checks the connection's session (SASL
//!   first), peeks at the API key and version, decodes, and routes to `api`.
//! - `api`: one module per API family, each a `handle(ctx, request) -> response`
//!   that validates, calls [`storage`], and builds the answer; `api::SUPPORTED` is the
//!   one table of served versions.
//! - [`errors`]: the one mapping from internal errors to Kafka codes, below both
//!   `api` and [`coordinator`] (and the cluster code).
//! - [`storage`]: the engine: topics and partitions, the shared group-committed
//!   journal, the read cache, the metadata log, recovery, and the flusher that seals
//!   journal data into segments of the segment store (`tributary_tiering`), applies
//!   retention and compaction, and trims the journal.
//! - [`metrics`] and [`http`]: Prometheus metrics and the health endpoints.
//! - [`coordinator`]: the group coordinator (consumer groups of both protocols,
//!   committed offsets) and the transaction coordinator (transactional ids, markers);
//!   both keep their state in internal topics written through the journal.
//! - [`quotas`]: client quotas (produce and fetch byte rates) and throttling.
//! - [`security`]: who a connection is (SASL PLAIN and SCRAM, TLS client
//!   certificates, the users' SCRAM credentials) and what it may do (ACLs and the
//!   authorizer every handler asks through `RequestCtx::allowed`).
//! - [`telemetry`]: client telemetry (KIP-714): client-metrics subscriptions, and
//!   what clients push, exported on `/metrics`.
//! - [`broker`]: the state handlers share; [`broker_configs`]: dynamic broker
//!   configs; [`clock`]: time.
//! - [`fuzzing`]: the decoders of outside bytes, as the fuzz targets in `fuzz/` call
//!   them.
//!
//! A produce request flows: connection -> dispatch -> `api::produce` (validate the
//! batches) -> `Storage::submit` (queued in order) -> journal writer (offsets
//! assigned, one write + one fsync for the whole group) -> high watermark advances ->
//! the response is written in request order; tailing fetches wake and read the
//! new batches from the cache.

mod api;
pub mod broker;
pub mod broker_configs;
pub(crate) mod buffers;
pub mod clock;
pub mod cluster;
pub mod coordinator;
pub(crate) mod errors;
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod quotas;
pub mod rates;
pub mod scaling;
pub mod security;
pub mod server;
pub mod storage;
pub mod telemetry;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_config::Config;

/// Runs a broker until SIGTERM or SIGINT, then shuts down cleanly: stops accepting,
/// lets the journal write and fsync everything queued, and closes its files.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();

    let http_listener = TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("cannot bind http_listen {}", config.http_listen))?;
    let opened = Arc::new(std::sync::OnceLock::new());
    let http_state = http::HttpState { metrics: metrics.clone(), ready: ready.clone(), storage: opened.clone() };
    let http_task = tokio::spawn(http::serve(http_listener, http_state, shutdown.clone()));

    let open_config = config.clone();
    let open_metrics = metrics.clone();
    let storage = tokio::task::spawn_blocking(move || storage::Storage::open(&open_config, open_metrics))
        .await
        .context("storage recovery panicked")?
        .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    let _ = opened.set(Arc::downgrade(&storage));
    // Cluster mode: register in etcd (taking a node id from it when none is set) and
    // follow the catalog and the assignments.
    let cluster = if config.cluster.enabled() {
        let info = broker::advertised_info(&config);
        let c = cluster::Cluster::start(&config, info, storage.clone(), metrics.clone(), shutdown.clone())
            .await
            .context("joining the cluster")?;
        config.node_id = c.node_id;
        tracing::info!(node_id = c.node_id, etcd = ?config.cluster.etcd_endpoints, name = %config.cluster.name, "cluster mode");
        Some(c)
    } else {
        None
    };
    tracing::info!(
        backend = %config.storage.backend,
        store = storage.segment_store().operator().info().name(),
        "segment store configured"
    );
    metrics.register(Box::new(storage::tier_metrics::TierCollector::new(Arc::downgrade(&storage))));
    if config.security.scopes.enabled {
        metrics.register(Box::new(security::scope_metrics::ScopeCollector::new(Arc::downgrade(&storage))));
    }
    let flusher = tokio::spawn(storage::flusher::run(
        storage.clone(),
        storage::flusher::FlushSettings::from_config(&config),
        shutdown.clone(),
    ));

    security::Sasl::new(&config.security).map_err(anyhow::Error::msg)?;
    let listeners = server::bind(&config).await?;
    for l in &listeners[1..] {
        tracing::info!(name = %l.info.name, protocol = l.info.protocol.name(), listen = %l.listener.local_addr()?, "listener");
    }
    tracing::info!(
        listen = %listeners[0].listener.local_addr()?,
        protocol = listeners[0].info.protocol.name(),
        advertised = config.advertised(),
        http = %config.http_listen,
        data_dir = %config.data_dir.display(),
        "tributary is serving"
    );
    let groups = coordinator::group::GroupCoordinator::new(
        storage.clone(),
        &config.groups,
        metrics.clone(),
        Arc::new(clock::SystemClock),
    );
    metrics.register(Box::new(coordinator::group::lag::LagCollector::new(Arc::downgrade(&groups))));
    if let Some(c) = &cluster {
        // A group is coordinated where its __consumer_offsets partition is placed.
        let c = c.clone();
        groups.set_owner(coordinator::Ownership(Arc::new(move |p| {
            c.topology().serves(coordinator::group::OFFSETS_TOPIC, p)
        })));
    }
    let txns = coordinator::txn::TxnCoordinator::new(
        storage.clone(),
        groups.clone(),
        Arc::new(clock::SystemClock),
        config.transactions.max_timeout_ms,
    );
    txns.set_id_expiration(
        config.transactions.id_expiration_ms,
        Duration::from_millis(config.transactions.remove_expired_interval_ms),
    );
    let txn_timer_ms = config.transactions.abort_timed_out_interval_ms;
    let producer_expiry =
        (config.transactions.producer_id_expiration_ms, config.transactions.producer_id_expiration_check_interval_ms);
    if let Some(c) = &cluster {
        // A transactional id is coordinated where its __transaction_state partition
        // is placed; markers for partitions led elsewhere go to their brokers.
        txns.set_routes(Arc::new(cluster::peers::Peers::new(c.clone())));
        c.set_hooks(Arc::new(CoordinatorHooks { groups: groups.clone(), txns: txns.clone() }));
    }
    let broker =
        Arc::new(broker::Broker::new(config, storage.clone(), metrics, groups.clone(), txns.clone(), cluster.clone()));
    if let Some(c) = &cluster {
        c.follow_quotas(broker.quotas.clone(), shutdown.clone());
        c.follow_keyed(
            groups.configs.clone(),
            broker.users.clone(),
            broker.authorizer.acls.clone(),
            broker.telemetry.subscriptions.clone(),
            broker.broker_configs.clone(),
            shutdown.clone(),
        );
    }
    let scaler = tokio::spawn(scaling::run(broker.clone(), shutdown.clone()));
    if let Some(every) = broker.security.scopes.usage_interval() {
        tokio::spawn(security::scope::measure_usage(broker.clone(), every, shutdown.clone()));
    }
    let rates = tokio::spawn(rates::run(
        storage.clone(),
        broker.metrics.clone(),
        broker.config.topics.rate_windows_ms.clone(),
        Duration::from_millis(broker.config.topics.rate_sample_ms),
        shutdown.clone(),
    ));
    broker.create_bootstrap_users().await.context("creating security.bootstrap_users")?;
    let server_task = tokio::spawn(server::serve_all(listeners, broker, shutdown.clone()));
    // Group APIs answer COORDINATOR_LOAD_IN_PROGRESS until the offsets are loaded;
    // the broker is ready once they are.
    groups.load().await.context("loading committed offsets")?;
    txns.load().await.context("loading transaction state")?;
    if let Some(c) = &cluster {
        c.ready().await;
        tracing::info!(node_id = c.node_id, "registered in the cluster");
    }
    let timers = tokio::spawn(groups.clone().run_timers(Duration::from_millis(100), shutdown.clone()));
    let txn_timers = tokio::spawn(txns.clone().run_timers(Duration::from_millis(txn_timer_ms), shutdown.clone()));
    let producer_expiry = tokio::spawn(storage.clone().run_producer_expiry(
        producer_expiry.0,
        Duration::from_millis(producer_expiry.1),
        shutdown.clone(),
    ));
    ready.store(true, Ordering::Release);

    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(c) = &cluster {
        // Hand the partitions on while still serving, so producers move over at once.
        c.drain(DRAIN_LIMIT).await;
    }
    ready.store(false, Ordering::Release);
    shutdown.cancel();
    let _ = server_task.await;
    let _ = scaler.await;
    let _ = rates.await;
    let _ = timers.await;
    let _ = txn_timers.await;
    let _ = producer_expiry.await;
    let _ = flusher.await;
    let _ = http_task.await;
    if let Some(c) = &cluster {
        c.stopped().await;
    }
    tokio::task::spawn_blocking(move || storage.close()).await.context("journal close panicked")?;
    tracing::info!("stopped");
    Ok(())
}

/// How long a clean shutdown in cluster mode waits for its partitions to be handed
/// on before it leaves anyway (the successors then wait for the revoked lease).
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Cluster mode: the groups of a `__consumer_offsets` partition, and the
/// transactional ids of a `__transaction_state` partition, follow its owner.
#[derive(Debug)]
struct CoordinatorHooks {
    groups: Arc<coordinator::group::GroupCoordinator>,
    txns: Arc<coordinator::txn::TxnCoordinator>,
}

impl cluster::handover::Hooks for CoordinatorHooks {
    fn acquired<'a>(&'a self, topic: &'a str, partition: i32) -> cluster::handover::BoxedFuture<'a> {
        Box::pin(async move {
            if topic == coordinator::group::OFFSETS_TOPIC {
                let n = self.groups.load_partition(partition).await.map_err(|e| e.to_string())?;
                tracing::info!(partition, offsets = n, "group offsets loaded");
            } else if topic == coordinator::txn::TXN_TOPIC {
                let n = self.txns.load_partition(partition).await.map_err(|e| e.to_string())?;
                tracing::info!(partition, transactional_ids = n, "transaction state loaded");
            }
            Ok(())
        })
    }

    fn released(&self, topic: &str, partition: i32) {
        if topic == coordinator::group::OFFSETS_TOPIC {
            self.groups.unload_partition(partition);
        } else if topic == coordinator::txn::TXN_TOPIC {
            self.txns.unload_partition(partition);
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
