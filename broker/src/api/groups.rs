//! FindCoordinator and the classic group APIs: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, plus ListGroups, DescribeGroups and DeleteGroups. A group (a
//! transactional id) is coordinated by the broker that owns its `__consumer_offsets`
//! (`__transaction_state`) partition: on a single node, this one. The state machine
//! lives in `coordinator::group`.

use crate::cluster::{BrokerInfo, Topology};
use tributary_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use tributary_protocol::kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use tributary_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use tributary_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use tributary_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use tributary_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestCtx};
use crate::coordinator::group::classic::{JoinOutcome, JoinRequest, State};
use crate::coordinator::group::Protocol;
use crate::errors::{of, Error};
use crate::security::acl::{Operation, ResourceType};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Coordinator key types.
const KEY_GROUP: i8 = 0;
const KEY_TXN: i8 = 1;

/// The broker that owns `group`'s `__consumer_offsets` partition (and so coordinates
/// it), if it is live.
fn coordinator_of(ctx: &RequestCtx, view: &Topology, group: &str) -> Option<BrokerInfo> {
    let index = ctx.broker.groups.offsets_partition_index(group).ok()?;
    let owner = view.owner(crate::coordinator::group::OFFSETS_TOPIC, index)?;
    view.broker(owner.broker).cloned()
}

/// The broker that owns `transactional_id`'s `__transaction_state` partition.
fn txn_coordinator_of(ctx: &RequestCtx, view: &Topology, transactional_id: &str) -> Option<BrokerInfo> {
    let index = ctx.broker.txns.partition_of(transactional_id);
    let owner = view.owner(crate::coordinator::txn::TXN_TOPIC, index)?;
    view.broker(owner.broker).cloned()
}

pub(crate) fn find_coordinator(ctx: &RequestCtx, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let node = &ctx.broker.node;
    let view = ctx.broker.topology();
    let at = |base: Coordinator, b: &crate::cluster::BrokerInfo| {
        let (host, port) = ctx.endpoint(b);
        base.with_node_id(BrokerId(b.id)).with_host(host).with_port(port)
    };
    let answer = |key: &StrBytes| -> Coordinator {
        let base = Coordinator::default().with_key(key.clone());
        let denied = |error: Error| {
            base.clone().with_node_id(BrokerId(-1)).with_host(s("")).with_port(-1).with_error_code(of(error))
        };
        match request.key_type {
            KEY_GROUP if !ctx.allowed(Operation::Describe, ResourceType::Group, key) => {
                denied(Error::GroupAuthorizationFailed)
            }
            KEY_TXN if !ctx.allowed(Operation::Describe, ResourceType::TransactionalId, key) => {
                denied(Error::TransactionalIdAuthorizationFailed)
            }
            KEY_GROUP if !ctx.broker.groups.is_loaded() => base
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(of(Error::CoordinatorLoadInProgress)),
            KEY_GROUP => match coordinator_of(ctx, &view, key) {
                Some(b) => at(base, &b),
                None => base
                    .with_node_id(BrokerId(-1))
                    .with_host(s(""))
                    .with_port(-1)
                    .with_error_code(of(Error::CoordinatorNotAvailable)),
            },
            KEY_TXN if !ctx.broker.txns.is_loaded() => base
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(of(Error::CoordinatorLoadInProgress)),
            KEY_TXN if ctx.broker.cluster.is_none() => match view.brokers.iter().find(|b| b.id == node.id) {
                Some(b) => at(base, b),
                None => base.with_node_id(BrokerId(-1)).with_error_code(of(Error::CoordinatorNotAvailable)),
            },
            KEY_TXN => match txn_coordinator_of(ctx, &view, key) {
                Some(b) => at(base, &b),
                None => base
                    .with_node_id(BrokerId(-1))
                    .with_host(s(""))
                    .with_port(-1)
                    .with_error_code(of(Error::CoordinatorNotAvailable)),
            },
            other => base
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(of(Error::InvalidRequest))
                .with_error_message(Some(s(format!("unknown coordinator key type {other}")))),
        }
    };
    if ctx.version >= 4 {
        let coordinators = request.coordinator_keys.iter().map(answer).collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(&request.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

pub(crate) fn join(ctx: &RequestCtx, request: JoinGroupRequest) -> Reply {
    let version = ctx.version;
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        let refused = JoinGroupResponse::default()
            .with_error_code(of(Error::GroupAuthorizationFailed))
            .with_generation_id(-1)
            .with_member_id(request.member_id);
        return Reply::Now(refused.into());
    }
    let req = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let groups = ctx.broker.groups.clone();
    let group_id = request.group_id.to_string();
    Reply::Later(Box::pin(async move { join_response(groups.join(&group_id, req).await).into() }))
}

fn join_response(o: JoinOutcome) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(o.error.map(of).unwrap_or(0))
        .with_generation_id(o.generation)
        .with_protocol_type(o.protocol_type.map(s))
        .with_protocol_name(o.protocol_name.map(s))
        .with_leader(s(o.leader))
        .with_skip_assignment(o.skip_assignment)
        .with_member_id(s(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub(crate) fn sync(ctx: &RequestCtx, request: SyncGroupRequest) -> Reply {
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return Reply::Now(SyncGroupResponse::default().with_error_code(of(Error::GroupAuthorizationFailed)).into());
    }
    let groups = ctx.broker.groups.clone();
    Reply::Later(Box::pin(async move {
        let o = groups
            .sync(
                &request.group_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id,
                request.protocol_type.as_deref(),
                request.protocol_name.as_deref(),
                request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
            )
            .await;
        SyncGroupResponse::default()
            .with_error_code(o.error.map(of).unwrap_or(0))
            .with_protocol_type(o.protocol_type.map(s))
            .with_protocol_name(o.protocol_name.map(s))
            .with_assignment(o.assignment)
            .into()
    }))
}

pub(crate) fn heartbeat(ctx: &RequestCtx, request: HeartbeatRequest) -> HeartbeatResponse {
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return HeartbeatResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
    }
    let result = ctx.broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map(of).unwrap_or(0))
}

pub(crate) fn leave(ctx: &RequestCtx, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return LeaveGroupResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
    }
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match ctx.broker.groups.leave(&request.group_id, &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(of(e)),
        Ok(results) if ctx.version < 3 => {
            LeaveGroupResponse::default().with_error_code(results[0].err().map(of).unwrap_or(0))
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), r)| {
                    MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_error_code(r.err().map(of).unwrap_or(0))
                })
                .collect(),
        ),
    }
}

pub(crate) fn list(ctx: &RequestCtx, request: ListGroupsRequest) -> ListGroupsResponse {
    let listings = match ctx.broker.groups.list() {
        Ok(l) => l,
        Err(e) => return ListGroupsResponse::default().with_error_code(of(e)),
    };
    let states: Vec<String> = request.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|s| s.to_lowercase()).collect();
    // DESCRIBE on the cluster lists every group; otherwise those the client may describe.
    let everything = ctx.allowed_on_cluster(Operation::Describe);
    let groups = listings
        .into_iter()
        .filter(|l| everything || ctx.allowed(Operation::Describe, ResourceType::Group, &l.group_id))
        .filter(|l| states.is_empty() || states.contains(&l.state.to_lowercase()))
        .filter(|l| types.is_empty() || types.contains(&l.group_type.to_string()))
        .map(|l| {
            ListedGroup::default()
                .with_group_id(GroupId(s(l.group_id)))
                .with_protocol_type(s(l.protocol_type))
                .with_group_state(s(l.state))
                .with_group_type(s(match l.group_type {
                    "consumer" => "Consumer",
                    _ => "Classic",
                }))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn describe(ctx: &RequestCtx, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = request
        .groups
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
            let dead = |msg: String| {
                let b = base.clone().with_group_state(s(State::Dead.name()));
                if ctx.version >= 6 {
                    b.with_error_code(of(Error::GroupIdNotFound)).with_error_message(Some(s(msg)))
                } else {
                    b
                }
            };
            let Some(group) = ctx.broker.groups.group(id) else {
                return dead(format!("Group {} not found.", id.as_str()));
            };
            let g = group.lock();
            let Protocol::Classic(c) = &g.protocol else {
                return dead(format!("Group {} is not a classic group.", id.as_str()));
            };
            let protocol = c.protocol_name.clone().unwrap_or_default();
            let stable = c.state == State::Stable;
            let members = c
                .members
                .values()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(s(m.member_id.clone()))
                        .with_group_instance_id(m.instance_id.clone().map(s))
                        .with_client_id(s(m.client_id.clone()))
                        .with_client_host(s(m.client_host.clone()))
                        .with_member_metadata(if stable { m.metadata(&protocol) } else { Default::default() })
                        .with_member_assignment(if stable { m.assignment.clone() } else { Default::default() })
                })
                .collect();
            base.with_group_state(s(c.state.name()))
                .with_protocol_type(s(c.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(s(protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete(ctx: &RequestCtx, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    // DELETE on each group; the others are answered GROUP_AUTHORIZATION_FAILED.
    let (allowed, denied): (Vec<_>, Vec<_>) =
        request.groups_names.into_iter().partition(|g| ctx.allowed(Operation::Delete, ResourceType::Group, g));
    let ids: Vec<String> = allowed.iter().map(|g| g.to_string()).collect();
    let results = ctx.broker.groups.delete_groups(&ids).await;
    // v3 carries each error's message: Kafka's default one for the code, as Kafka's.
    let result = |id, error: Option<Error>| {
        DeletableGroupResult::default()
            .with_group_id(id)
            .with_error_code(error.map(of).unwrap_or(0))
            .with_error_message(error.map(|e| StrBytes::from_static_str(e.description())))
    };
    let refused = denied.into_iter().map(|id| result(id, Some(Error::GroupAuthorizationFailed)));
    DeleteGroupsResponse::default()
        .with_results(allowed.into_iter().zip(results).map(|(id, r)| result(id, r.err())).chain(refused).collect())
}
