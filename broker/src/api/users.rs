//! DescribeUserScramCredentials and AlterUserScramCredentials: SASL/SCRAM users as
//! `kafka-configs --entity-type users --add-config 'SCRAM-SHA-256=[...]'` and the
//! Admin clients manage them. The client sends a salted password, never the
//! password; the broker keeps the StoredKey and ServerKey derived from it, durable
//! in the metadata log (etcd in cluster mode), applied on every broker.

use std::collections::{BTreeMap, BTreeSet};

use tributary_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use tributary_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use tributary_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::cluster::quotas::QuotaChangeError;
use crate::errors::{of, Error};
use crate::security::acl::Operation;
use crate::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::users::Credentials;

pub(super) fn describe(
    ctx: &RequestCtx,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = &ctx.broker.users;
    let response = DescribeUserScramCredentialsResponse::default().with_error_message(None);
    if !ctx.allowed_on_cluster(Operation::Describe) {
        return response
            .with_error_code(of(Error::ClusterAuthorizationFailed))
            .with_error_message(Some("Cluster authorization failed.".into()));
    }
    let described = |user: &str, credentials: &Credentials| {
        let infos = credentials
            .iter()
            .map(|(m, c)| CredentialInfo::default().with_mechanism(m.code()).with_iterations(c.iterations))
            .collect();
        DescribeUserScramCredentialsResult::default()
            .with_user(user.to_string().into())
            .with_error_message(None)
            .with_credential_infos(infos)
    };
    let results = match request.users {
        // Every user (the Java Admin asks with an empty list, others with none).
        None => users.all().iter().map(|(u, c)| described(u, c)).collect(),
        Some(names) if names.is_empty() => users.all().iter().map(|(u, c)| described(u, c)).collect(),
        Some(names) => {
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<String> =
                names.iter().map(|n| n.name.to_string()).filter(|n| !seen.insert(n.clone())).collect();
            let mut done = BTreeSet::new();
            let mut results = Vec::new();
            for name in names.iter().map(|n| n.name.to_string()) {
                if !done.insert(name.clone()) {
                    continue;
                }
                let credentials = users.get(&name);
                results.push(if duplicates.contains(&name) {
                    failed(
                        &name,
                        Error::DuplicateResource,
                        "Cannot describe SCRAM credentials for the same user twice in a single request",
                    )
                } else if credentials.is_empty() {
                    failed(&name, Error::ResourceNotFound, "Attempt to describe a user credential that does not exist")
                } else {
                    described(&name, &credentials)
                });
            }
            results
        }
    };
    response.with_results(results)
}

fn failed(user: &str, error: Error, message: &str) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(user.to_string().into())
        .with_error_code(of(error))
        .with_error_message(Some(message.to_string().into()))
}

/// One change a request asks of a user's credentials.
enum Change {
    Delete(Mechanism),
    Upsert(Mechanism, ScramCredential),
}

pub(super) async fn alter(
    ctx: &RequestCtx,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Each user's changes, in the order users first appear; a user with an invalid
    // change gets that error and none of its changes is made.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, Result<Vec<Change>, (Error, String)>> = BTreeMap::new();
    let mut add = |user: String, change: Result<Change, (Error, String)>, mechanism: i8| {
        if !changes.contains_key(&user) {
            order.push(user.clone());
        }
        let entry = changes.entry(user).or_insert_with(|| Ok(Vec::new()));
        let Ok(list) = entry else { return };
        let duplicate = list.iter().any(|c| match c {
            Change::Delete(m) | Change::Upsert(m, _) => m.code() == mechanism,
        });
        *entry = match change {
            Err(e) => Err(e),
            Ok(_) if duplicate => {
                Err((Error::DuplicateResource, "A user credential cannot be altered twice in the same request".into()))
            }
            Ok(c) => {
                let mut l = std::mem::take(list);
                l.push(c);
                Ok(l)
            }
        };
    };
    for d in &request.deletions {
        let change = mechanism(d.mechanism).map(Change::Delete);
        add(d.name.to_string(), change, d.mechanism);
    }
    for u in &request.upsertions {
        let change = mechanism(u.mechanism).and_then(|m| {
            if u.iterations < MIN_ITERATIONS {
                return Err((Error::UnacceptableCredential, "Too few iterations".into()));
            }
            if u.iterations > MAX_ITERATIONS {
                return Err((Error::UnacceptableCredential, "Too many iterations".into()));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((Error::UnacceptableCredential, "Salt and salted password must not be empty".into()));
            }
            Ok(Change::Upsert(m, ScramCredential::from_salted(m, u.salt.to_vec(), &u.salted_password, u.iterations)))
        });
        add(u.name.to_string(), change, u.mechanism);
    }
    let allowed = ctx.allowed_on_cluster(Operation::Alter);
    let mut results = Vec::new();
    for user in order {
        let outcome = match changes.remove(&user).expect("invariant: every user in order has changes") {
            _ if !allowed => Err((Error::ClusterAuthorizationFailed, "Cluster authorization failed.".to_string())),
            _ if user.is_empty() => Err((Error::UnacceptableCredential, "Username must not be empty".to_string())),
            Err(e) => Err(e),
            Ok(list) => apply(ctx, &user, list).await,
        };
        let result =
            AlterUserScramCredentialsResult::default().with_user(StrBytes::from(user.clone())).with_error_message(None);
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(%user, principal = %ctx.session.principal(), "SCRAM credentials changed");
                result
            }
            Err((error, message)) => result.with_error_code(of(error)).with_error_message(Some(message.into())),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn mechanism(code: i8) -> Result<Mechanism, (Error, String)> {
    Mechanism::from_code(code).ok_or((Error::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()))
}

async fn apply(ctx: &RequestCtx, user: &str, changes: Vec<Change>) -> Result<(), (Error, String)> {
    const MISSING: &str = "Attempt to delete a user credential that does not exist";
    let change = |mut credentials: Credentials| {
        for c in &changes {
            match c {
                Change::Delete(m) => {
                    if credentials.remove(m).is_none() {
                        return Err(MISSING.to_string());
                    }
                }
                Change::Upsert(m, credential) => {
                    credentials.insert(*m, credential.clone());
                }
            }
        }
        Ok(credentials)
    };
    ctx.broker.alter_user_credentials(user, change).await.map_err(|e| match e {
        QuotaChangeError::Invalid(message) => (Error::ResourceNotFound, message),
        QuotaChangeError::Storage(_, message) => (Error::KafkaStorageError, message),
        e @ (QuotaChangeError::Etcd(_) | QuotaChangeError::NotApplied(_)) => (Error::RequestTimedOut, e.to_string()),
    })
}
