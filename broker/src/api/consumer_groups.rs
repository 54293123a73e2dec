//! The consumer group protocol of KIP-848: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. Reconciliation and assignment are the coordinator's.

use std::collections::BTreeSet;

use tributary_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup, Member,
};
use tributary_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::coordinator::group::assignor;
use crate::coordinator::group::consumer::HeartbeatRequest;
use crate::coordinator::group::{Protocol, TopicLookup};
use crate::errors::{of, Error};
use crate::security::acl::{Operation, ResourceType};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) fn heartbeat(ctx: &RequestCtx, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return ConsumerGroupHeartbeatResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
    }
    // A member subscribes only to topics it may describe.
    let hidden: Vec<String> = request
        .subscribed_topic_names
        .iter()
        .flatten()
        .filter(|n| !ctx.allowed(Operation::Describe, ResourceType::Topic, n))
        .map(|n| n.to_string())
        .collect();
    if !hidden.is_empty() {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(of(Error::TopicAuthorizationFailed))
            .with_error_message(Some(s(format!("Topic authorization failed for topics {hidden:?}"))));
    }
    let owned = request.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect::<BTreeSet<i32>>()))
            .collect::<assignor::Assignment>()
    });
    let req = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
    };
    if ctx.version == 0 && req.member_id.is_empty() && req.member_epoch != 0 {
        return ConsumerGroupHeartbeatResponse::default().with_error_code(of(Error::InvalidRequest));
    }
    match ctx.broker.groups.consumer_heartbeat(&request.group_id, req) {
        Err((e, message)) => {
            ConsumerGroupHeartbeatResponse::default().with_error_code(of(e)).with_error_message(message.map(s))
        }
        Ok(o) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(o.member_id)))
            .with_member_epoch(o.member_epoch)
            .with_heartbeat_interval_ms(o.heartbeat_interval_ms)
            .with_assignment(o.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(topic_id, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(parts.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    }
}

fn described(ctx: &RequestCtx, a: &assignor::Assignment) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, parts)| {
                describe::TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(s(ctx.broker.storage.name_of(id).unwrap_or_default())))
                    .with_partitions(parts.iter().copied().collect())
            })
            .collect(),
    )
}

pub(crate) fn describe(ctx: &RequestCtx, request: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let groups = request
        .group_ids
        .iter()
        .map(|id| {
            let ops = super::operations::if_asked(ctx, request.include_authorized_operations, ResourceType::Group, id);
            let base = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(ops);
            if !ctx.allowed(Operation::Describe, ResourceType::Group, id) {
                return base.with_error_code(of(Error::GroupAuthorizationFailed));
            }
            if let Err(e) = ctx.broker.groups.ready() {
                return base.with_error_code(of(e));
            }
            let not_found = |msg: String| {
                base.clone()
                    .with_group_state(s("Dead"))
                    .with_error_code(of(Error::GroupIdNotFound))
                    .with_error_message(Some(s(msg)))
            };
            let Some(group) = ctx.broker.groups.group(id) else {
                return not_found(format!("Group {} not found.", id.as_str()));
            };
            let g = group.lock();
            let Protocol::Consumer(c) = &g.protocol else {
                return not_found(format!("Group {} is not a consumer group.", id.as_str()));
            };
            let members = c
                .members
                .values()
                .map(|m| {
                    Member::default()
                        .with_member_id(s(m.member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(s))
                        .with_rack_id(m.rack_id.clone().map(s))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(s(m.client_id.clone()))
                        .with_client_host(s(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed_names.iter().map(|n| TopicName(s(n.clone()))).collect(),
                        )
                        .with_subscribed_topic_regex(m.subscribed_regex.clone().map(s))
                        .with_assignment(described(ctx, &m.assigned))
                        .with_target_assignment(described(
                            ctx,
                            &c.target.get(&m.member_id).cloned().unwrap_or_default(),
                        ))
                        .with_member_type(1)
                })
                .collect();
            base.with_group_state(s(c.state_name()))
                .with_group_epoch(c.group_epoch)
                .with_assignment_epoch(c.assignment_epoch)
                .with_assignor_name(s(c.assignor.clone()))
                .with_members(members)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
