//! The state every handler sees: configuration, the storage engine, metrics, and who
//! this broker is on the wire.

use std::collections::BTreeMap;
use std::sync::Arc;

use tributary_config::Config;

use crate::cluster::quotas::QuotaChangeError;
use crate::cluster::{BrokerInfo, CatalogError, Cluster, Topology};
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TxnCoordinator;
use crate::metrics::Metrics;
use crate::quotas::{QuotaEntity, Quotas};
use crate::security::acl::{Acls, Authorizer, Entries as AclEntries};
use crate::security::users::{Credentials, Users};
use crate::security::Sasl;
use crate::storage::{Storage, StorageError, Topic};

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
    pub quotas: Arc<Quotas>,
    /// SASL users (SCRAM credentials) and what the SASL listeners offer.
    pub users: Arc<Users>,
    pub security: Sasl,
    /// ACLs and who they bind (everything is allowed while it is off).
    pub authorizer: Authorizer,
    pub node: Node,
    /// Cluster mode: the membership, election and view kept current from etcd.
    pub cluster: Option<Arc<Cluster>>,
    /// Client telemetry (KIP-714): subscriptions and what clients pushed.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Dynamic broker configs (the topic defaults, changed at runtime).
    pub broker_configs: Arc<crate::broker_configs::BrokerConfigs>,
    /// Single node: the fixed view in which this broker owns everything.
    single: Arc<Topology>,
    /// Single node: read-modify-write changes of users and ACLs, one at a time.
    meta_changes: tokio::sync::Mutex<()>,
    /// Buffers of large response frames (fetch answers), reused once written.
    pub(crate) responses: Arc<crate::buffers::BufferPool>,
}

/// The response pool keeps at most this many buffers and bytes: a fetch answer
/// is at most `fetch.max.bytes` (a consumer's default is 50 MiB, of 1 MiB per
/// partition); one larger than 16 MiB is never kept.
const RESPONSE_BUFFERS: usize = 16;
const RESPONSE_BUFFER_BYTES: usize = 32 << 20;

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
        let quotas = Arc::new(Quotas::new(&config.quotas, storage.client_quotas()));
        let users = Arc::new(Users::new(storage.user_credentials()));
        // `run` refuses to start on an unreadable key file; here it can only be a
        // file that went away since, and OAUTHBEARER then refuses every token.
        let security = Sasl::new(&config.security).unwrap_or_else(|e| {
            tracing::error!(error = %e, "OAUTHBEARER keys unreadable: tokens will be refused");
            Sasl::new(&tributary_config::SecurityConfig { sasl_mechanisms: Vec::new(), ..config.security.clone() })
                .expect("invariant: no mechanism reads a file")
        });
        let s = &config.security;
        let acls = Arc::new(Acls::new(storage.acls()));
        let authorizer = Authorizer::new(s.authorizer, &s.super_users, s.allow_everyone_if_no_acl_found, acls);
        let subscriptions = Arc::new(crate::telemetry::ClientMetricsConfigs::new(
            storage.resource_configs(crate::telemetry::subscriptions::KIND),
        ));
        let telemetry = crate::telemetry::Telemetry::new(subscriptions, config.telemetry.max_bytes);
        metrics.register(telemetry.collector());
        let broker_configs = Arc::new(crate::broker_configs::BrokerConfigs::new(
            storage.resource_configs(crate::broker_configs::KIND),
            node.id,
            config.topics.clone(),
            storage.clone(),
        ));
        Broker {
            config,
            storage,
            metrics,
            groups,
            txns,
            quotas,
            users,
            security,
            authorizer,
            node,
            cluster,
            telemetry,
            broker_configs,
            single,
            meta_changes: Default::default(),
            responses: Arc::new(crate::buffers::BufferPool::new(RESPONSE_BUFFERS, RESPONSE_BUFFER_BYTES)),
        }
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
    let (host, port) =
        crate::cluster::split_host_port(config.advertised()).unwrap_or((config.advertised().into(), 9092));
    let rack = &config.cluster.rack;
    let listeners = config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), if l.advertised.is_empty() { l.listen.clone() } else { l.advertised.clone() }))
        .collect();
    BrokerInfo {
        id: config.node_id,
        host,
        port,
        listeners,
        rack: (!rack.is_empty()).then(|| rack.clone()),
        weight: config.cluster.weight,
        incarnation: uuid::Uuid::new_v4().simple().to_string(),
        draining: false,
    }
}

/// Why a topic change (create, delete, grow, reconfigure) failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Topic changes go to the storage on a single node and to the etcd catalog in
/// cluster mode (every broker then applies them to its own storage; this one
/// answers once it has).
impl Broker {
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, ChangeError> {
        match &self.cluster {
            None => Ok(self.storage.create_topic(name, partitions, configs).await?),
            Some(c) => {
                c.catalog.create(name, partitions, configs).await?;
                Ok(self.storage.topic(name).ok_or_else(|| StorageError::UnknownTopic(name.into()))?)
            }
        }
    }

    pub async fn delete_topic(&self, topic: &Topic) -> Result<(), ChangeError> {
        match &self.cluster {
            None => Ok(self.storage.delete_topic(topic.id).await?),
            Some(c) => Ok(c.catalog.delete(&topic.name).await?),
        }
    }

    pub async fn add_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, ChangeError> {
        match &self.cluster {
            None => Ok(self.storage.add_partitions(name, count).await?),
            Some(c) => {
                c.catalog.add_partitions(name, count).await?;
                Ok(self.storage.topic(name).ok_or_else(|| StorageError::UnknownTopic(name.into()))?)
            }
        }
    }

    pub async fn set_topic_configs(
        &self,
        topic: &Arc<Topic>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ChangeError> {
        match &self.cluster {
            None => Ok(self.storage.set_topic_configs(topic, configs).await?),
            Some(c) => Ok(c.catalog.set_configs(&topic.name, configs).await?),
        }
    }
}

/// Client quota changes go to the metadata log on a single node and to etcd in
/// cluster mode (every broker follows them; this one answers once it applied it).
impl Broker {
    /// Replaces a group's config overrides by `f` of its current ones (empty removes
    /// them); nothing is written with `validate_only` or when `f` refuses.
    pub async fn alter_group_configs(
        &self,
        group: &str,
        validate_only: bool,
        f: impl Fn(BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String>,
    ) -> Result<(), QuotaChangeError> {
        match &self.cluster {
            Some(c) => c.group_configs.alter(group, validate_only, f).await,
            None => {
                let configs = f(self.groups.configs.get(group)).map_err(QuotaChangeError::Invalid)?;
                if validate_only {
                    return Ok(());
                }
                self.storage
                    .set_group_configs(group.to_string(), configs.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                self.groups.configs.set(group, configs);
                Ok(())
            }
        }
    }

    /// Replaces a client-metrics resource's configs (a KIP-714 subscription) by `f`
    /// of its current ones (empty removes it); nothing is written with
    /// `validate_only` or when `f` refuses.
    pub async fn alter_client_metrics(
        &self,
        name: &str,
        validate_only: bool,
        f: impl Fn(BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String>,
    ) -> Result<(), QuotaChangeError> {
        let subscriptions = &self.telemetry.subscriptions;
        match &self.cluster {
            Some(c) => c.client_metrics.alter(name, validate_only, f).await,
            None => {
                let _one_at_a_time = self.meta_changes.lock().await;
                let configs = f(subscriptions.get(name)).map_err(QuotaChangeError::Invalid)?;
                if validate_only {
                    return Ok(());
                }
                self.storage
                    .set_resource_configs(crate::telemetry::subscriptions::KIND, name.to_string(), configs.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                subscriptions.set(name, configs);
                Ok(())
            }
        }
    }

    /// Replaces a broker resource's dynamic configs (`""`: every broker's default)
    /// by `f` of its current ones (empty removes them); nothing is written with
    /// `validate_only` or when `f` refuses.
    pub async fn alter_broker_configs(
        &self,
        name: &str,
        validate_only: bool,
        f: impl Fn(BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String>,
    ) -> Result<(), QuotaChangeError> {
        match &self.cluster {
            Some(c) => c.broker_configs.alter(name, validate_only, f).await,
            None => {
                let _one_at_a_time = self.meta_changes.lock().await;
                let configs = f(self.broker_configs.get(name)).map_err(QuotaChangeError::Invalid)?;
                if validate_only {
                    return Ok(());
                }
                self.storage
                    .set_resource_configs(crate::broker_configs::KIND, name.to_string(), configs.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                self.broker_configs.set(name, configs);
                Ok(())
            }
        }
    }

    /// Replaces a user's SCRAM credentials by `f` of its current ones (empty removes
    /// the user); nothing is written when `f` refuses.
    pub async fn alter_user_credentials(
        &self,
        user: &str,
        f: impl Fn(Credentials) -> Result<Credentials, String>,
    ) -> Result<(), QuotaChangeError> {
        match &self.cluster {
            Some(c) => c.users.alter(user, false, f).await,
            None => {
                let _one = self.meta_changes.lock().await;
                let credentials = f(self.users.get(user)).map_err(QuotaChangeError::Invalid)?;
                self.storage
                    .set_user_credentials(user.to_string(), credentials.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                self.users.set(user, credentials);
                Ok(())
            }
        }
    }

    /// Replaces a resource pattern's ACLs by `f` of its current ones (empty removes
    /// them).
    pub async fn alter_acls(
        &self,
        pattern: &str,
        f: impl Fn(AclEntries) -> Result<AclEntries, String>,
    ) -> Result<(), QuotaChangeError> {
        let acls = &self.authorizer.acls;
        match &self.cluster {
            Some(c) => c.acls.alter(pattern, false, f).await,
            None => {
                let _one = self.meta_changes.lock().await;
                let entries = f(acls.get(pattern)).map_err(QuotaChangeError::Invalid)?;
                self.storage
                    .set_acls(pattern.to_string(), entries.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                acls.set(pattern, entries);
                Ok(())
            }
        }
    }

    /// Creates the configured bootstrap users that have no credential yet.
    pub async fn create_bootstrap_users(&self) -> Result<(), QuotaChangeError> {
        let iterations = self.config.security.bootstrap_iterations as i32;
        for (user, password) in &self.config.security.bootstrap_users {
            self.alter_user_credentials(user, |existing| {
                if !existing.is_empty() {
                    return Ok(existing);
                }
                Ok(crate::security::scram::Mechanism::ALL
                    .into_iter()
                    .map(|m| (m, crate::security::scram::ScramCredential::from_password(m, password, iterations)))
                    .collect())
            })
            .await?;
        }
        Ok(())
    }

    /// Replaces an entity's quotas by `f` of its current ones; nothing is written
    /// with `validate_only` or when `f` refuses.
    pub async fn alter_client_quotas(
        &self,
        entity: &QuotaEntity,
        validate_only: bool,
        f: impl Fn(BTreeMap<String, f64>) -> Result<BTreeMap<String, f64>, String>,
    ) -> Result<(), QuotaChangeError> {
        match &self.cluster {
            Some(c) => c.quotas.alter(entity, validate_only, f).await,
            None => {
                let values = f(self.quotas.get(entity)).map_err(QuotaChangeError::Invalid)?;
                if validate_only {
                    return Ok(());
                }
                self.storage
                    .set_client_quotas(entity.clone(), values.clone())
                    .await
                    .map_err(|e| QuotaChangeError::Storage(crate::errors::code(&e), e.to_string()))?;
                self.quotas.set(entity.clone(), values);
                Ok(())
            }
        }
    }
}
