//! DescribeClientQuotas and AlterClientQuotas: client quotas by user and client-id
//! (named or default), as `kafka-configs --entity-type users|clients` and the Admin
//! clients see them. Changes are validated, durable in the metadata log, and apply at
//! once (see [`crate::quotas`]).

use std::collections::BTreeMap;

use tributary_protocol::kafka_protocol::messages::alter_client_quotas_request::EntityData as AlterEntity;
use tributary_protocol::kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use tributary_protocol::kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use tributary_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::cluster::quotas::QuotaChangeError;
use crate::errors::{of, Error};
use crate::quotas::{self, EntityName, QuotaEntity};
use crate::security::acl::Operation;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn name_of(n: Option<&StrBytes>) -> EntityName {
    n.map_or(EntityName::Default, |s| EntityName::Named(s.to_string()))
}

/// A request's entity as ours, or why it cannot be one.
fn entity(parts: &[AlterEntity]) -> Result<QuotaEntity, String> {
    let mut e = QuotaEntity::default();
    for p in parts {
        let slot = match p.entity_type.as_str() {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => return Err("ip quotas (connection_creation_rate) are not enforced by Tributary".into()),
            other => return Err(format!("unknown entity type {other:?}: must be {USER} or {CLIENT_ID}")),
        };
        if slot.is_some() {
            return Err(format!("entity type {} given twice", p.entity_type.as_str()));
        }
        *slot = Some(name_of(p.entity_name.as_ref()));
    }
    if e.user.is_none() && e.client_id.is_none() {
        return Err("an entity needs a user or a client-id".into());
    }
    Ok(e)
}

fn parts(e: &QuotaEntity) -> Vec<(&'static str, Option<StrBytes>)> {
    let name = |n: &EntityName| match n {
        EntityName::Default => None,
        EntityName::Named(s) => Some(StrBytes::from_string(s.clone())),
    };
    let mut out = Vec::new();
    if let Some(u) = &e.user {
        out.push((USER, name(u)));
    }
    if let Some(c) = &e.client_id {
        out.push((CLIENT_ID, name(c)));
    }
    out
}

pub(crate) async fn alter(ctx: &RequestCtx, request: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let broker = &ctx.broker;
    let allowed = ctx.allowed_on_cluster(Operation::AlterConfigs);
    let mut entries = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        // No message on success, as Kafka answers.
        let mut answer = AlteredEntry::default().with_error_message(None).with_entity(
            entry
                .entity
                .iter()
                .map(|p| {
                    AlteredEntity::default()
                        .with_entity_type(p.entity_type.clone())
                        .with_entity_name(p.entity_name.clone())
                })
                .collect(),
        );
        let result = async {
            if !allowed {
                return Err((of(Error::ClusterAuthorizationFailed), "Cluster authorization failed.".to_string()));
            }
            let e = entity(&entry.entity).map_err(|m| (of(Error::InvalidRequest), m))?;
            let apply = |mut values: BTreeMap<String, f64>| {
                for op in &entry.ops {
                    let key = op.key.to_string();
                    if op.remove {
                        values.remove(&key);
                    } else {
                        quotas::validate(&e, &key, op.value)?;
                        values.insert(key, op.value);
                    }
                }
                Ok(values)
            };
            broker.alter_client_quotas(&e, request.validate_only, apply).await.map_err(|err| {
                let code = match &err {
                    QuotaChangeError::Invalid(_) => of(Error::InvalidRequest),
                    QuotaChangeError::Storage(code, _) => *code,
                    QuotaChangeError::Etcd(_) | QuotaChangeError::NotApplied(_) => of(Error::RequestTimedOut),
                };
                (code, err.to_string())
            })?;
            if !request.validate_only {
                tracing::info!(entity = ?e, "client quotas changed");
            }
            Ok(())
        }
        .await;
        if let Err((code, message)) = result {
            answer.error_code = code;
            answer.error_message = Some(StrBytes::from_string(message));
        }
        entries.push(answer);
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}

pub(crate) fn describe(ctx: &RequestCtx, request: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    if !ctx.allowed_on_cluster(Operation::DescribeConfigs) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(of(Error::ClusterAuthorizationFailed))
            .with_error_message(Some(StrBytes::from_static_str("Cluster authorization failed.")));
    }
    let refuse = |message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(of(Error::InvalidRequest))
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    // Each filter component: (entity type, what its name must be).
    let mut filters: Vec<(&'static str, Option<EntityName>)> = Vec::new();
    for c in &request.components {
        let kind = match c.entity_type.as_str() {
            USER => USER,
            CLIENT_ID => CLIENT_ID,
            // No ip quotas exist, so none match.
            IP => return DescribeClientQuotasResponse::default().with_entries(Some(Vec::new())),
            other => return refuse(format!("unknown entity type {other:?}")),
        };
        if filters.iter().any(|(k, _)| *k == kind) {
            return refuse(format!("entity type {kind} given twice"));
        }
        let wanted = match c.match_type {
            MATCH_EXACT => match &c._match {
                Some(name) => Some(EntityName::Named(name.to_string())),
                None => return refuse(format!("an exact match of {kind} needs a name")),
            },
            MATCH_DEFAULT => Some(EntityName::Default),
            MATCH_ANY => None,
            other => return refuse(format!("unknown match type {other}")),
        };
        filters.push((kind, wanted));
    }
    let entries = ctx
        .broker
        .quotas
        .all()
        .into_iter()
        .filter(|(e, _)| {
            let part = |kind: &str| if kind == USER { e.user.as_ref() } else { e.client_id.as_ref() };
            let matches = filters.iter().all(|(kind, wanted)| match (part(kind), wanted) {
                (Some(have), Some(w)) => have == w,
                (Some(_), None) => true,
                (None, _) => false,
            });
            let listed = |kind: &str| filters.iter().any(|(k, _)| *k == kind);
            let strict_ok =
                !request.strict || ((e.user.is_none() || listed(USER)) && (e.client_id.is_none() || listed(CLIENT_ID)));
            matches && strict_ok
        })
        .map(|(e, values)| {
            DescribedEntry::default()
                .with_entity(
                    parts(&e)
                        .into_iter()
                        .map(|(t, n)| {
                            DescribedEntity::default()
                                .with_entity_type(StrBytes::from_static_str(t))
                                .with_entity_name(n)
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(k, v)| ValueData::default().with_key(StrBytes::from_string(k)).with_value(v))
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, n: Option<&str>) -> AlterEntity {
        AlterEntity::default()
            .with_entity_type(StrBytes::from_string(t.to_string()))
            .with_entity_name(n.map(|s| StrBytes::from_string(s.to_string())))
    }

    #[test]
    fn entities_from_the_wire() {
        let e = entity(&[part(USER, Some("alice")), part(CLIENT_ID, None)]).unwrap();
        assert_eq!(e.user, Some(EntityName::Named("alice".into())));
        assert_eq!(e.client_id, Some(EntityName::Default));
        assert!(entity(&[part(USER, None), part(USER, Some("x"))]).unwrap_err().contains("twice"));
        assert!(entity(&[part(IP, Some("1.2.3.4"))]).unwrap_err().contains("not enforced"));
        assert!(entity(&[part("group", Some("g"))]).unwrap_err().contains("unknown entity type"));
        assert!(entity(&[]).is_err());
    }
}
