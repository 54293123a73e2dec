//! One module per API family; each `handle` reads like the Kafka protocol guide for
//! its API: decode (done by the codec) -> validate -> call storage or a coordinator
//! -> build the response. [`SUPPORTED`] is the one table of versions: it drives both
//! dispatch and the ApiVersions answer, and lists only versions the handlers are
//! tested at.

mod acls;
mod admin;
pub(crate) mod api_versions;
mod configs;
mod consumer_groups;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod operations;
mod produce;
mod quotas;
mod route;
mod sasl;
pub(crate) mod scoped;
mod telemetry;
mod topics;
mod txn;
mod users;

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;

use tributary_protocol::kafka_protocol::messages::ApiKey;
use tributary_protocol::kafka_protocol::protocol::StrBytes;
use tributary_protocol::message::{Request, Response};

use crate::broker::Broker;

/// API key -> (min version, max version) that Tributary serves.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 11),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ApiVersions, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 6),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::WriteTxnMarkers, 1, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeLogDirs, 1, 5),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 10),
    (ApiKey::OffsetFetch, 1, 10),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 3),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
];

/// The name ACLs give the cluster resource.
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";

/// The versions of `key` that are served, if any.
pub(crate) fn supported(key: ApiKey) -> Option<RangeInclusive<i16>> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| min..=max)
}

/// What a handler needs besides its request.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    pub(crate) broker: Arc<Broker>,
    pub(crate) version: i16,
    pub(crate) client_id: String,
    pub(crate) peer: std::net::SocketAddr,
    /// The connection's read gate, closed for a while when its client is throttled.
    pub(crate) mute: Arc<crate::quotas::Mute>,
    /// Who the connection is (its listener, its principal once authenticated).
    pub(crate) session: Arc<crate::security::session::Session>,
}

impl RequestCtx {
    /// Throttles the client for `ms` (over a quota of `kind`): its connection is not
    /// read from until then.
    pub(crate) fn throttle(&self, kind: crate::quotas::QuotaKind, ms: u64) {
        self.mute.extend(ms);
        let metrics = &self.broker.metrics;
        metrics.throttled.with_label_values(&[kind.label()]).inc();
        metrics.throttle_seconds.with_label_values(&[kind.label()]).inc_by(ms as f64 / 1000.0);
        if let Some(scope) = self.session.scope().name() {
            metrics.scope_throttled.with_label_values(&[scope, kind.label()]).inc();
        }
    }

    /// Whether the client may do `op` on the resource (always, with no authorizer).
    pub(crate) fn allowed(
        &self,
        op: crate::security::acl::Operation,
        rt: crate::security::acl::ResourceType,
        name: &str,
    ) -> bool {
        use crate::security::acl::ResourceType as R;
        use crate::security::scope::{Kind, Scope};
        if self.broker.security.scopes.enabled() {
            // Nothing outside the principal's scope exists for it; of the cluster it
            // may only write idempotently and create (its own) topics.
            let scope = self.session.scope();
            let inside = match rt {
                R::Topic => scope.holds(Kind::Topic, name),
                R::Group | R::TransactionalId => scope.holds(Kind::Id, name),
                R::Cluster => {
                    scope == Scope::All
                        || matches!(
                            op,
                            crate::security::acl::Operation::IdempotentWrite | crate::security::acl::Operation::Create
                        )
                }
                R::DelegationToken | R::User => scope == Scope::All,
            };
            if !inside {
                return false;
            }
        }
        let authorizer = &self.broker.authorizer;
        if !authorizer.enabled {
            return true;
        }
        authorizer.authorize(&self.session.acl_name(), &self.session.host, op, rt, name)
    }

    /// The user client quotas apply to: the principal's name (`ANONYMOUS` without
    /// authentication, as in Kafka), or `scope:<name>` for a scope's principals.
    pub(crate) fn quota_user(&self) -> String {
        // A scope's principals share its quotas: the user entity `scope:<name>`.
        match self.session.scope().name() {
            Some(scope) => format!("scope:{scope}"),
            None => self.session.principal().name,
        }
    }

    /// Whether some ACL lets the client do `op` on some resource of type `rt`
    /// (Kafka's authorizeByResourceType).
    pub(crate) fn allowed_on_some(
        &self,
        op: crate::security::acl::Operation,
        rt: crate::security::acl::ResourceType,
    ) -> bool {
        let authorizer = &self.broker.authorizer;
        if !authorizer.enabled {
            return true;
        }
        authorizer.authorize_by_type(&self.session.acl_name(), &self.session.host, op, rt)
    }

    /// Checks a topic name the client gave (Kafka's rules), in its scope: a scoped
    /// client's plain name; an operator may also give a stored `<scope>/<name>`.
    pub(crate) fn validate_topic_name(&self, name: &str) -> Result<(), String> {
        if !self.broker.security.scopes.enabled() {
            return topics::validate_name(name);
        }
        let scope = self.session.scope();
        match (&scope, name.split_once('/')) {
            (crate::security::scope::Scope::All, Some((s, rest))) if tributary_config::valid_scope(s) => {
                topics::validate_name(rest)
            }
            _ => topics::validate_name(scope.outer(name)),
        }
    }

    /// A scope over its partition limit with `more` partitions: the message to
    /// answer POLICY_VIOLATION with.
    pub(crate) fn over_scope_partitions(&self, more: i64) -> Option<String> {
        let scopes = &self.broker.security.scopes;
        let limit = scopes.max_partitions() as i64;
        if !scopes.enabled() || limit == 0 {
            return None;
        }
        let scope = self.session.scope();
        let name = scope.name()?;
        let held: i64 = self
            .broker
            .storage
            .topics()
            .iter()
            .filter(|t| scope.holds(crate::security::scope::Kind::Topic, &t.name))
            .map(|t| t.partitions.len() as i64)
            .sum();
        (held + more > limit)
            .then(|| format!("scope {name} holds {held} partitions; {more} more would pass its limit of {limit}"))
    }

    /// Whether the client may do `op` on the cluster.
    pub(crate) fn allowed_on_cluster(&self, op: crate::security::acl::Operation) -> bool {
        self.allowed(op, crate::security::acl::ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's bit field of the operations the client may do on the resource.
    pub(crate) fn authorized_operations(&self, rt: crate::security::acl::ResourceType, name: &str) -> i32 {
        self.broker.authorizer.operations(&self.session.acl_name(), &self.session.host, rt, name)
    }

    /// Where the client reaches broker `b`: its address on the client's listener.
    pub(crate) fn endpoint(&self, b: &crate::cluster::BrokerInfo) -> (StrBytes, i32) {
        let (host, port) = b.endpoint(&self.session.listener.name);
        (StrBytes::from_string(host), port)
    }

    /// The client's host as group members show it (`/127.0.0.1`, as Kafka writes it).
    pub(crate) fn client_host(&self) -> String {
        format!("/{}", self.peer.ip())
    }
}

/// A handler's answer: ready now, ready later (appends waiting to be durable, long
/// polls), or none at all (acks=0).
pub(crate) enum Reply {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
    Nothing,
}

/// Routes a decoded request to its handler.
pub(crate) async fn handle(ctx: &RequestCtx, request: Request) -> Reply {
    match request {
        Request::ApiVersions(r) => Reply::Now(api_versions::handle(ctx, r).into()),
        Request::Metadata(r) => Reply::Now(metadata::handle(ctx, r).await.into()),
        Request::DescribeTopicPartitions(r) => Reply::Now(metadata::describe_topic_partitions(ctx, r).into()),
        Request::Produce(r) => produce::handle(ctx, r).await,
        Request::Fetch(r) => fetch::handle(ctx, r),
        Request::ListOffsets(r) => Reply::Now(list_offsets::handle(ctx, r).await.into()),
        Request::CreateTopics(r) => Reply::Now(topics::create(ctx, r).await.into()),
        Request::DeleteTopics(r) => Reply::Now(topics::delete(ctx, r).await.into()),
        Request::DescribeConfigs(r) => Reply::Now(configs::describe(ctx, r).into()),
        Request::InitProducerId(r) => in_order(ctx, |c| async move { txn::init_producer_id(&c, r).await.into() }),
        Request::AddPartitionsToTxn(r) => in_order(ctx, |c| async move { txn::add_partitions(&c, r).await.into() }),
        Request::AddOffsetsToTxn(r) => in_order(ctx, |c| async move { txn::add_offsets(&c, r).await.into() }),
        Request::EndTxn(r) => in_order(ctx, |c| async move { txn::end(&c, r).await.into() }),
        Request::TxnOffsetCommit(r) => in_order(ctx, |c| async move { txn::offset_commit(&c, r).await.into() }),
        Request::DescribeTransactions(r) => in_order(ctx, |c| async move { txn::describe(&c, r).await.into() }),
        Request::ListTransactions(r) => in_order(ctx, |c| async move { txn::list(&c, r).await.into() }),
        Request::DescribeProducers(r) => Reply::Now(txn::describe_producers(ctx, r).into()),
        Request::WriteTxnMarkers(r) => Reply::Later({
            let c = ctx.clone();
            Box::pin(async move { txn::write_markers(&c, r).await.into() })
        }),
        Request::AlterConfigs(r) => Reply::Now(admin::alter_configs(ctx, r).await.into()),
        Request::IncrementalAlterConfigs(r) => Reply::Now(admin::incremental_alter_configs(ctx, r).await.into()),
        Request::CreatePartitions(r) => Reply::Now(admin::create_partitions(ctx, r).await.into()),
        Request::DeleteRecords(r) => Reply::Now(admin::delete_records(ctx, r).await.into()),
        Request::DescribeCluster(r) => Reply::Now(admin::describe_cluster(ctx, r).into()),
        Request::ElectLeaders(r) => Reply::Now(admin::elect_leaders(ctx, r).into()),
        Request::OffsetForLeaderEpoch(r) => Reply::Now(admin::offset_for_leader_epoch(ctx, r).into()),
        Request::DescribeLogDirs(r) => Reply::Now(admin::describe_log_dirs(ctx, r).into()),
        Request::DescribeClientQuotas(r) => Reply::Now(quotas::describe(ctx, r).into()),
        Request::AlterClientQuotas(r) => Reply::Now(quotas::alter(ctx, r).await.into()),
        // Group APIs run in request order: a request is evaluated only once the
        // answers before it on the connection are complete, as Kafka does. (A
        // Heartbeat read while the same client's JoinGroup waits must see the group
        // after that join, not before it.)
        Request::FindCoordinator(r) => Reply::Now(groups::find_coordinator(ctx, r).into()),
        Request::JoinGroup(r) => groups::join(ctx, r),
        Request::SyncGroup(r) => groups::sync(ctx, r),
        Request::Heartbeat(r) => in_order(ctx, |c| async move { groups::heartbeat(&c, r).into() }),
        Request::LeaveGroup(r) => in_order(ctx, |c| async move { groups::leave(&c, r).into() }),
        Request::OffsetCommit(r) => in_order(ctx, |c| async move { offsets::commit(&c, r).await.into() }),
        Request::OffsetFetch(r) => in_order(ctx, |c| async move { offsets::fetch(&c, r).into() }),
        Request::OffsetDelete(r) => in_order(ctx, |c| async move { offsets::delete(&c, r).await.into() }),
        Request::ListGroups(r) => in_order(ctx, |c| async move { groups::list(&c, r).into() }),
        Request::DescribeGroups(r) => in_order(ctx, |c| async move { groups::describe(&c, r).into() }),
        Request::DeleteGroups(r) => in_order(ctx, |c| async move { groups::delete(&c, r).await.into() }),
        Request::ConsumerGroupHeartbeat(r) => {
            in_order(ctx, |c| async move { consumer_groups::heartbeat(&c, r).into() })
        }
        Request::ConsumerGroupDescribe(r) => in_order(ctx, |c| async move { consumer_groups::describe(&c, r).into() }),
        Request::SaslHandshake(r) => Reply::Now(sasl::handshake(ctx, r).into()),
        Request::SaslAuthenticate(r) => Reply::Now(sasl::authenticate(ctx, r).into()),
        Request::DescribeUserScramCredentials(r) => Reply::Now(users::describe(ctx, r).into()),
        Request::AlterUserScramCredentials(r) => in_order(ctx, |c| async move { users::alter(&c, r).await.into() }),
        Request::CreateAcls(r) => in_order(ctx, |c| async move { acls::create(&c, r).await.into() }),
        Request::DescribeAcls(r) => Reply::Now(acls::describe(ctx, r).into()),
        Request::DeleteAcls(r) => in_order(ctx, |c| async move { acls::delete(&c, r).await.into() }),
        Request::ListConfigResources(r) => Reply::Now(configs::list_resources(ctx, r).into()),
        Request::GetTelemetrySubscriptions(r) => Reply::Now(telemetry::subscriptions(ctx, r).into()),
        Request::PushTelemetry(r) => Reply::Now(telemetry::push(ctx, r).into()),
    }
}

/// Defers a handler until the connection's earlier answers are complete: the
/// connection awaits replies in request order, and this future starts only then.
fn in_order<F, Fut>(ctx: &RequestCtx, handler: F) -> Reply
where
    F: FnOnce(RequestCtx) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move { handler(ctx).await }))
}
