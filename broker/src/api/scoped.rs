//! Scopes at the edge: every name a scoped client sends (topics, group ids,
//! transactional ids, config resources, coordinator keys, regular expressions) is
//! rewritten into its scope before the handler sees the request, and every name in
//! the answer back out of it. Handlers work on inner names only; what lies outside
//! the scope they refuse or leave out through the authorization checks
//! (`RequestCtx::allowed`), so a request this file does not rewrite still cannot
//! reach another scope. See `crate::security::scope`.

use tributary_protocol::kafka_protocol::messages::{GroupId, TopicName, TransactionalId};
use tributary_protocol::kafka_protocol::protocol::StrBytes;
use tributary_protocol::message::{Request, Response};

use crate::security::scope::Scope;

const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;
const KEY_GROUP: i8 = 0;
const KEY_TXN: i8 = 1;

struct In<'a>(&'a Scope);

impl In<'_> {
    fn s(&self, v: &mut StrBytes) {
        *v = StrBytes::from_string(self.0.inner(v.as_str()));
    }
    fn t(&self, v: &mut TopicName) {
        self.s(&mut v.0)
    }
    fn g(&self, v: &mut GroupId) {
        self.s(&mut v.0)
    }
    fn x(&self, v: &mut TransactionalId) {
        self.s(&mut v.0)
    }
    /// A regular expression over names, confined to the scope's: `acme/(?:re)`.
    fn re(&self, v: &mut StrBytes) {
        if let Some(scope) = self.0.name() {
            *v = StrBytes::from_string(format!("{}/(?:{})", regex::escape(scope), v.as_str()));
        }
    }
}

struct Out<'a>(&'a Scope);

impl Out<'_> {
    fn s(&self, v: &mut StrBytes) {
        let outer = self.0.outer(v.as_str());
        if outer.len() != v.len() {
            *v = StrBytes::from_string(outer.to_string());
        }
    }
    fn t(&self, v: &mut TopicName) {
        self.s(&mut v.0)
    }
    fn g(&self, v: &mut GroupId) {
        self.s(&mut v.0)
    }
    fn x(&self, v: &mut TransactionalId) {
        self.s(&mut v.0)
    }
    fn re(&self, v: &mut StrBytes) {
        if let Some(scope) = self.0.name() {
            let prefix = format!("{}/(?:", regex::escape(scope));
            if let Some(inner) = v.as_str().strip_prefix(&prefix).and_then(|r| r.strip_suffix(')')) {
                *v = StrBytes::from_string(inner.to_string());
            }
        }
    }
}

/// Rewrites a request's names into the scope.
pub(crate) fn into_scope(request: &mut Request, scope: &Scope) {
    if *scope == Scope::All {
        return;
    }
    let i = In(scope);
    match request {
        Request::Produce(r) => {
            r.transactional_id.iter_mut().for_each(|x| i.x(x));
            r.topic_data.iter_mut().for_each(|t| i.t(&mut t.name));
        }
        Request::Fetch(r) => {
            r.topics.iter_mut().for_each(|t| i.t(&mut t.topic));
            r.forgotten_topics_data.iter_mut().for_each(|t| i.t(&mut t.topic));
        }
        Request::ListOffsets(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.name)),
        Request::Metadata(r) => r.topics.iter_mut().flatten().filter_map(|t| t.name.as_mut()).for_each(|n| i.t(n)),
        Request::DescribeTopicPartitions(r) => {
            r.topics.iter_mut().for_each(|t| i.t(&mut t.name));
            r.cursor.iter_mut().for_each(|c| i.t(&mut c.topic_name));
        }
        Request::CreateTopics(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.name)),
        Request::DeleteTopics(r) => {
            r.topic_names.iter_mut().for_each(|n| i.t(n));
            r.topics.iter_mut().filter_map(|t| t.name.as_mut()).for_each(|n| i.t(n));
        }
        Request::CreatePartitions(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.name)),
        Request::DeleteRecords(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.name)),
        Request::DescribeConfigs(r) => {
            r.resources.iter_mut().for_each(|c| config_name(&i, c.resource_type, &mut c.resource_name))
        }
        Request::AlterConfigs(r) => {
            r.resources.iter_mut().for_each(|c| config_name(&i, c.resource_type, &mut c.resource_name))
        }
        Request::IncrementalAlterConfigs(r) => {
            r.resources.iter_mut().for_each(|c| config_name(&i, c.resource_type, &mut c.resource_name))
        }
        Request::OffsetForLeaderEpoch(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.topic)),
        Request::DescribeProducers(r) => r.topics.iter_mut().for_each(|t| i.t(&mut t.name)),
        Request::InitProducerId(r) => r.transactional_id.iter_mut().for_each(|x| i.x(x)),
        Request::AddPartitionsToTxn(r) => {
            i.x(&mut r.v3_and_below_transactional_id);
            r.v3_and_below_topics.iter_mut().for_each(|t| i.t(&mut t.name));
            for t in &mut r.transactions {
                i.x(&mut t.transactional_id);
                t.topics.iter_mut().for_each(|t| i.t(&mut t.name));
            }
        }
        Request::AddOffsetsToTxn(r) => {
            i.x(&mut r.transactional_id);
            i.g(&mut r.group_id);
        }
        Request::EndTxn(r) => i.x(&mut r.transactional_id),
        Request::TxnOffsetCommit(r) => {
            i.x(&mut r.transactional_id);
            i.g(&mut r.group_id);
            r.topics.iter_mut().for_each(|t| i.t(&mut t.name));
        }
        Request::DescribeTransactions(r) => r.transactional_ids.iter_mut().for_each(|x| i.x(x)),
        Request::ListTransactions(r) => r.transactional_id_pattern.iter_mut().for_each(|p| {
            if !p.is_empty() {
                i.re(p)
            }
        }),
        Request::FindCoordinator(r) => {
            if matches!(r.key_type, KEY_GROUP | KEY_TXN) {
                i.s(&mut r.key);
                r.coordinator_keys.iter_mut().for_each(|k| i.s(k));
            }
        }
        Request::JoinGroup(r) => i.g(&mut r.group_id),
        Request::SyncGroup(r) => i.g(&mut r.group_id),
        Request::Heartbeat(r) => i.g(&mut r.group_id),
        Request::LeaveGroup(r) => i.g(&mut r.group_id),
        Request::OffsetCommit(r) => {
            i.g(&mut r.group_id);
            r.topics.iter_mut().for_each(|t| i.t(&mut t.name));
        }
        Request::OffsetFetch(r) => {
            i.g(&mut r.group_id);
            r.topics.iter_mut().flatten().for_each(|t| i.t(&mut t.name));
            for g in &mut r.groups {
                i.g(&mut g.group_id);
                g.topics.iter_mut().flatten().for_each(|t| i.t(&mut t.name));
            }
        }
        Request::OffsetDelete(r) => {
            i.g(&mut r.group_id);
            r.topics.iter_mut().for_each(|t| i.t(&mut t.name));
        }
        Request::DescribeGroups(r) => r.groups.iter_mut().for_each(|g| i.g(g)),
        Request::DeleteGroups(r) => r.groups_names.iter_mut().for_each(|g| i.g(g)),
        Request::ConsumerGroupHeartbeat(r) => {
            i.g(&mut r.group_id);
            r.subscribed_topic_names.iter_mut().flatten().for_each(|n| i.t(n));
            r.subscribed_topic_regex.iter_mut().filter(|re| !re.is_empty()).for_each(|re| i.re(re));
        }
        Request::ConsumerGroupDescribe(r) => r.group_ids.iter_mut().for_each(|g| i.g(g)),
        Request::DescribeLogDirs(r) => r.topics.iter_mut().flatten().for_each(|t| i.t(&mut t.topic)),
        Request::ElectLeaders(r) => r.topic_partitions.iter_mut().flatten().for_each(|t| i.t(&mut t.topic)),
        // Nothing scoped in them, or cluster-wide (refused to scoped principals by
        // authorization): ApiVersions, SASL, DescribeCluster, ListGroups (filtered),
        // client quotas, users, ACLs, WriteTxnMarkers.
        Request::ApiVersions(_)
        | Request::SaslHandshake(_)
        | Request::SaslAuthenticate(_)
        | Request::DescribeCluster(_)
        | Request::ListGroups(_)
        | Request::DescribeClientQuotas(_)
        | Request::AlterClientQuotas(_)
        | Request::DescribeUserScramCredentials(_)
        | Request::AlterUserScramCredentials(_)
        | Request::CreateAcls(_)
        | Request::DescribeAcls(_)
        | Request::DeleteAcls(_)
        | Request::WriteTxnMarkers(_)
        | Request::ListConfigResources(_)
        | Request::GetTelemetrySubscriptions(_)
        | Request::PushTelemetry(_) => {}
    }
}

fn config_name(i: &In<'_>, resource_type: i8, name: &mut StrBytes) {
    if matches!(resource_type, CONFIG_TOPIC | CONFIG_GROUP) {
        i.s(name)
    }
}

fn config_name_out(o: &Out<'_>, resource_type: i8, name: &mut StrBytes) {
    if matches!(resource_type, CONFIG_TOPIC | CONFIG_GROUP) {
        o.s(name)
    }
}

/// Rewrites an answer's names out of the scope.
pub(crate) fn out_of_scope(response: &mut Response, scope: &Scope) {
    if *scope == Scope::All {
        return;
    }
    let o = Out(scope);
    match response {
        Response::Produce(r) => r.responses.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::Fetch(r) => r.responses.iter_mut().for_each(|t| o.t(&mut t.topic)),
        Response::ListOffsets(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::Metadata(r) => r.topics.iter_mut().filter_map(|t| t.name.as_mut()).for_each(|n| o.t(n)),
        Response::DescribeTopicPartitions(r) => {
            r.topics.iter_mut().filter_map(|t| t.name.as_mut()).for_each(|n| o.t(n));
            r.next_cursor.iter_mut().for_each(|c| o.t(&mut c.topic_name));
        }
        Response::CreateTopics(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::DeleteTopics(r) => r.responses.iter_mut().filter_map(|t| t.name.as_mut()).for_each(|n| o.t(n)),
        Response::CreatePartitions(r) => r.results.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::DeleteRecords(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::DescribeConfigs(r) => {
            r.results.iter_mut().for_each(|c| config_name_out(&o, c.resource_type, &mut c.resource_name))
        }
        Response::AlterConfigs(r) => {
            r.responses.iter_mut().for_each(|c| config_name_out(&o, c.resource_type, &mut c.resource_name))
        }
        Response::IncrementalAlterConfigs(r) => {
            r.responses.iter_mut().for_each(|c| config_name_out(&o, c.resource_type, &mut c.resource_name))
        }
        Response::OffsetForLeaderEpoch(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.topic)),
        Response::DescribeProducers(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::AddPartitionsToTxn(r) => {
            r.results_by_topic_v3_and_below.iter_mut().for_each(|t| o.t(&mut t.name));
            for t in &mut r.results_by_transaction {
                o.x(&mut t.transactional_id);
                t.topic_results.iter_mut().for_each(|t| o.t(&mut t.name));
            }
        }
        Response::TxnOffsetCommit(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::DescribeTransactions(r) => {
            for s in &mut r.transaction_states {
                o.x(&mut s.transactional_id);
                s.topics.iter_mut().for_each(|t| o.t(&mut t.topic));
            }
        }
        Response::ListTransactions(r) => r.transaction_states.iter_mut().for_each(|s| o.x(&mut s.transactional_id)),
        Response::FindCoordinator(r) => r.coordinators.iter_mut().for_each(|c| o.s(&mut c.key)),
        Response::OffsetCommit(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::OffsetFetch(r) => {
            r.topics.iter_mut().for_each(|t| o.t(&mut t.name));
            for g in &mut r.groups {
                o.g(&mut g.group_id);
                g.topics.iter_mut().for_each(|t| o.t(&mut t.name));
            }
        }
        Response::OffsetDelete(r) => r.topics.iter_mut().for_each(|t| o.t(&mut t.name)),
        Response::ListGroups(r) => r.groups.iter_mut().for_each(|g| o.g(&mut g.group_id)),
        Response::DescribeGroups(r) => r.groups.iter_mut().for_each(|g| o.g(&mut g.group_id)),
        Response::DeleteGroups(r) => r.results.iter_mut().for_each(|g| o.g(&mut g.group_id)),
        Response::ConsumerGroupDescribe(r) => {
            for g in &mut r.groups {
                o.g(&mut g.group_id);
                for m in &mut g.members {
                    m.subscribed_topic_names.iter_mut().for_each(|n| o.t(n));
                    m.subscribed_topic_regex.iter_mut().for_each(|re| o.re(re));
                    m.assignment.topic_partitions.iter_mut().for_each(|t| o.t(&mut t.topic_name));
                    m.target_assignment.topic_partitions.iter_mut().for_each(|t| o.t(&mut t.topic_name));
                }
            }
        }
        Response::DescribeLogDirs(r) => {
            r.results.iter_mut().flat_map(|d| d.topics.iter_mut()).for_each(|t| o.t(&mut t.name))
        }
        Response::ElectLeaders(r) => r.replica_election_results.iter_mut().for_each(|t| o.t(&mut t.topic)),
        Response::ApiVersions(_)
        | Response::SaslHandshake(_)
        | Response::SaslAuthenticate(_)
        | Response::DescribeCluster(_)
        | Response::JoinGroup(_)
        | Response::SyncGroup(_)
        | Response::Heartbeat(_)
        | Response::LeaveGroup(_)
        | Response::InitProducerId(_)
        | Response::AddOffsetsToTxn(_)
        | Response::EndTxn(_)
        | Response::ConsumerGroupHeartbeat(_)
        | Response::DescribeClientQuotas(_)
        | Response::AlterClientQuotas(_)
        | Response::DescribeUserScramCredentials(_)
        | Response::AlterUserScramCredentials(_)
        | Response::CreateAcls(_)
        | Response::DescribeAcls(_)
        | Response::DeleteAcls(_)
        | Response::WriteTxnMarkers(_)
        | Response::ListConfigResources(_)
        | Response::GetTelemetrySubscriptions(_)
        | Response::PushTelemetry(_) => {}
    }
}
