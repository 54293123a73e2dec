//! CreateAcls, DescribeAcls and DeleteAcls: ACLs as `kafka-acls` and the Admin
//! clients manage them, validated as Kafka validates them, durable in the metadata
//! log (etcd in cluster mode) and applied on every broker. Changing ACLs takes
//! ALTER on the cluster, describing them DESCRIBE; with no authorizer configured
//! all three answer SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use tributary_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use tributary_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use tributary_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use tributary_protocol::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use tributary_protocol::kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use tributary_protocol::kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::{RequestCtx, CLUSTER_NAME};
use crate::errors::{of, Error};
use crate::security::acl::{AclEntry, AclFilter, Operation, PatternType, Permission, ResourcePattern, ResourceType};

const ANY: i8 = 1;
const MATCH: i8 = 2;
const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Why a request's ACL or filter is refused.
type Invalid = (Error, String);

fn invalid(message: impl Into<String>) -> Invalid {
    (Error::InvalidRequest, message.into())
}

/// A creation as a stored ACL, validated as Kafka's authorizer validates it.
fn binding(c: &AclCreation) -> Result<(ResourcePattern, AclEntry), Invalid> {
    let resource_type =
        ResourceType::from_code(c.resource_type).ok_or_else(|| invalid("Invalid resource type for ACL creation"))?;
    let pattern = PatternType::from_code(c.resource_pattern_type)
        .ok_or_else(|| invalid("Invalid pattern type for ACL creation"))?;
    let operation = Operation::from_code(c.operation).ok_or_else(|| invalid("Invalid operation for ACL creation"))?;
    let permission =
        Permission::from_code(c.permission_type).ok_or_else(|| invalid("Invalid permission type for ACL creation"))?;
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err(invalid("Resource name must not be empty"));
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err(invalid(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}")));
    }
    if operation != Operation::All && !resource_type.operations().contains(&operation) {
        return Err(invalid(format!("{operation:?} is not a valid operation for {resource_type:?} resources")));
    }
    let principal = c.principal.to_string();
    if !principal.split_once(':').is_some_and(|(k, n)| !k.is_empty() && !n.is_empty()) {
        return Err(invalid(format!("Could not parse principal from `{principal}` (no colon is present separating the principal type from the principal name)")));
    }
    let host = c.host.to_string();
    if host.is_empty() {
        return Err(invalid("Host must not be empty: use * for any host"));
    }
    Ok((ResourcePattern { resource_type, pattern, name }, AclEntry { principal, host, operation, permission }))
}

pub(super) async fn create(ctx: &RequestCtx, request: CreateAclsRequest) -> CreateAclsResponse {
    let refuse = |error: Error, message: &str| {
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(of(error))
                    .with_error_message(Some(message.to_string().into()))
            })
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if !ctx.broker.authorizer.enabled {
        return refuse(Error::SecurityDisabled, NO_AUTHORIZER);
    }
    if !ctx.allowed_on_cluster(Operation::Alter) {
        return refuse(Error::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    let mut results = Vec::with_capacity(request.creations.len());
    for c in &request.creations {
        let outcome = match binding(c) {
            Err(e) => Err(e),
            Ok((pattern, entry)) => ctx
                .broker
                .alter_acls(&pattern.key(), |mut entries| {
                    entries.insert(entry.clone());
                    Ok(entries)
                })
                .await
                .map(|()| tracing::info!(principal = %ctx.session.principal(), pattern = %pattern.key(), acl = ?entry, "ACL created"))
                .map_err(|e| (Error::UnknownServerError, e.to_string())),
        };
        results.push(match outcome {
            Ok(()) => AclCreationResult::default().with_error_message(None),
            Err((error, message)) => {
                AclCreationResult::default().with_error_code(of(error)).with_error_message(Some(message.into()))
            }
        });
    }
    CreateAclsResponse::default().with_results(results)
}

/// A Describe/DeleteAcls filter as ours: codes ANY (1) match everything, MATCH (2)
/// as a pattern type matches the patterns that apply to the named resource.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, Invalid> {
    let resource_type = match resource_type {
        ANY => None,
        code => Some(ResourceType::from_code(code).ok_or_else(|| invalid("Invalid resource type filter"))?),
    };
    let pattern = match pattern_type {
        ANY => None,
        MATCH => Some(None),
        code => Some(Some(PatternType::from_code(code).ok_or_else(|| invalid("Invalid pattern type filter"))?)),
    };
    let operation = match operation {
        ANY => None,
        code => Some(Operation::from_code(code).ok_or_else(|| invalid("Invalid operation filter"))?),
    };
    let permission = match permission {
        ANY => None,
        code => Some(Permission::from_code(code).ok_or_else(|| invalid("Invalid permission type filter"))?),
    };
    Ok(AclFilter {
        resource_type,
        name: name.map(|n| n.to_string()),
        pattern,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
    })
}

pub(super) fn describe(ctx: &RequestCtx, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let response = DescribeAclsResponse::default();
    let fail = |error: Error, message: String| {
        response.clone().with_error_code(of(error)).with_error_message(Some(message.into()))
    };
    if !ctx.broker.authorizer.enabled {
        return fail(Error::SecurityDisabled, NO_AUTHORIZER.into());
    }
    if !ctx.allowed_on_cluster(Operation::Describe) {
        return fail(Error::ClusterAuthorizationFailed, "Cluster authorization failed.".into());
    }
    let f = match filter(
        request.resource_type_filter,
        request.resource_name_filter.as_ref(),
        request.pattern_type_filter,
        request.principal_filter.as_ref(),
        request.host_filter.as_ref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err((error, message)) => return fail(error, message),
    };
    let resources = ctx
        .broker
        .authorizer
        .acls
        .matching(&f)
        .into_iter()
        .map(|(pattern, entries)| {
            DescribeAclsResource::default()
                .with_resource_type(pattern.resource_type as i8)
                .with_resource_name(pattern.name.into())
                .with_pattern_type(pattern.pattern as i8)
                .with_acls(entries.into_iter().map(description).collect())
        })
        .collect();
    response.with_error_message(None).with_resources(resources)
}

fn description(e: AclEntry) -> AclDescription {
    AclDescription::default()
        .with_principal(e.principal.into())
        .with_host(e.host.into())
        .with_operation(e.operation as i8)
        .with_permission_type(e.permission as i8)
}

pub(super) async fn delete(ctx: &RequestCtx, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let refuse = |error: Error, message: &str| {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(of(error))
                    .with_error_message(Some(message.to_string().into()))
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    };
    if !ctx.broker.authorizer.enabled {
        return refuse(Error::SecurityDisabled, NO_AUTHORIZER);
    }
    if !ctx.allowed_on_cluster(Operation::Alter) {
        return refuse(Error::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    let mut results = Vec::with_capacity(request.filters.len());
    for f in &request.filters {
        results.push(match delete_matching(ctx, f).await {
            Ok(matched) => DeleteAclsFilterResult::default().with_error_message(None).with_matching_acls(matched),
            Err((error, message)) => {
                DeleteAclsFilterResult::default().with_error_code(of(error)).with_error_message(Some(message.into()))
            }
        });
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

async fn delete_matching(ctx: &RequestCtx, f: &DeleteAclsFilter) -> Result<Vec<DeleteAclsMatchingAcl>, Invalid> {
    let filter = filter(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )?;
    let matched: BTreeMap<ResourcePattern, Vec<AclEntry>> = ctx.broker.authorizer.acls.matching(&filter);
    let mut out = Vec::new();
    for (pattern, entries) in matched {
        let gone = ctx
            .broker
            .alter_acls(&pattern.key(), |mut current| {
                current.retain(|e| !filter.matches(&pattern, e));
                Ok(current)
            })
            .await;
        let code = match &gone {
            Ok(()) => 0,
            Err(_) => of(Error::UnknownServerError),
        };
        tracing::info!(principal = %ctx.session.principal(), pattern = %pattern.key(), count = entries.len(), "ACLs deleted");
        for e in entries {
            out.push(
                DeleteAclsMatchingAcl::default()
                    .with_error_code(code)
                    .with_error_message(gone.as_ref().err().map(|e| e.to_string().into()))
                    .with_resource_type(pattern.resource_type as i8)
                    .with_resource_name(pattern.name.clone().into())
                    .with_pattern_type(pattern.pattern as i8)
                    .with_principal(e.principal.into())
                    .with_host(e.host.into())
                    .with_operation(e.operation as i8)
                    .with_permission_type(e.permission as i8),
            );
        }
    }
    Ok(out)
}
