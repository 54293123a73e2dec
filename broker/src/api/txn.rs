//! Producer ids and transactions: InitProducerId (idempotent producers get a fresh
//! producer id; transactional ones go through the transaction coordinator, which
//! fences earlier instances), AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit
//! and EndTxn. The state machine lives in `coordinator::txn`.

use tributary_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use tributary_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use tributary_protocol::kafka_protocol::messages::*;
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::offsets::{committed, name_by_id, Access};
use super::RequestCtx;
use crate::coordinator::group::offsets::CommitRequest;
use crate::coordinator::group::records::Committed;
use crate::errors::{self, of, Error};
use crate::security::acl::{Operation, ResourceType};

/// PRODUCER_FENCED (KIP-588) as the versions before it know it: INVALID_PRODUCER_EPOCH
/// below InitProducerId v4 and AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v2,
/// where Kafka answers so.
fn fenced_as(ctx: &RequestCtx, since: i16, e: Error) -> Error {
    match e {
        Error::ProducerFenced if ctx.version < since => Error::InvalidProducerEpoch,
        e => e,
    }
}

pub(crate) async fn init_producer_id(ctx: &RequestCtx, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if let Some(id) = &request.transactional_id {
        if !ctx.allowed(Operation::Write, ResourceType::TransactionalId, id) {
            return response.with_error_code(of(Error::TransactionalIdAuthorizationFailed));
        }
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        return match ctx.broker.txns.init_producer_id(id, request.transaction_timeout_ms, expected).await {
            Ok((pid, epoch)) => response.with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
            Err(e) => response.with_error_code(of(fenced_as(ctx, 4, e))),
        };
    }
    // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some
    // topic (KIP-679).
    if !ctx.allowed_on_cluster(Operation::IdempotentWrite)
        && !ctx.allowed_on_some(Operation::Write, ResourceType::Topic)
    {
        return response.with_error_code(of(Error::ClusterAuthorizationFailed));
    }
    match ctx.broker.storage.allocate_producer_id().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => response.with_error_code(errors::code(&e)),
    }
}

pub(crate) async fn add_partitions(ctx: &RequestCtx, request: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    if ctx.version >= 4 {
        // The batched form is brokers asking each other.
        if !ctx.allowed_on_cluster(Operation::ClusterAction) {
            return AddPartitionsToTxnResponse::default().with_error_code(of(Error::ClusterAuthorizationFailed));
        }
        return add_partitions_batched(ctx, request).await;
    }
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    // WRITE on the transactional id, and on every topic; if any is refused nothing
    // is added and the others are OPERATION_NOT_ATTEMPTED, as Kafka answers.
    let txn_allowed =
        ctx.allowed(Operation::Write, ResourceType::TransactionalId, &request.v3_and_below_transactional_id);
    let denied: Vec<bool> =
        wanted.iter().map(|(t, _)| !ctx.allowed(Operation::Write, ResourceType::Topic, t)).collect();
    if !txn_allowed || denied.iter().any(|d| *d) {
        let results = wanted
            .into_iter()
            .zip(denied)
            .map(|(tp, denied)| {
                let e = match (txn_allowed, denied) {
                    (false, _) => Error::TransactionalIdAuthorizationFailed,
                    (true, true) => Error::TopicAuthorizationFailed,
                    (true, false) => Error::OperationNotAttempted,
                };
                (tp, Err(e))
            })
            .collect();
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(results));
    }
    let results = ctx
        .broker
        .txns
        .add_partitions(
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            wanted,
        )
        .await;
    let results = results.into_iter().map(|(tp, r)| (tp, r.map_err(|e| fenced_as(ctx, 2, e)))).collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(results))
}

/// The batched form (v4+, KIP-890): several transactions per request, each either
/// adding partitions or, with `verify_only`, checking that its open transaction
/// already holds them (what a partition leader asks before a transactional write).
async fn add_partitions_batched(ctx: &RequestCtx, request: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let mut results = Vec::with_capacity(request.transactions.len());
    for t in request.transactions {
        let wanted: Vec<(String, i32)> =
            t.topics.iter().flat_map(|tp| tp.partitions.iter().map(move |p| (tp.name.to_string(), *p))).collect();
        let outcome: Vec<((String, i32), Result<(), Error>)> = if t.verify_only {
            let mut out = Vec::with_capacity(wanted.len());
            for (topic, partition) in wanted {
                let r = ctx
                    .broker
                    .txns
                    .verify(&t.transactional_id, t.producer_id.0, t.producer_epoch, &topic, partition)
                    .await;
                out.push(((topic, partition), r));
            }
            out
        } else {
            ctx.broker.txns.add_partitions(&t.transactional_id, t.producer_id.0, t.producer_epoch, wanted).await
        };
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id)
                .with_topic_results(topic_results(outcome)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// Per-partition results grouped by topic, in request order.
fn topic_results(outcome: Vec<((String, i32), Result<(), Error>)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), result) in outcome {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(result.err().map(of).unwrap_or(0));
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.results_by_partition.push(r),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(topic.into()))
                    .with_results_by_partition(vec![r]),
            ),
        }
    }
    topics
}

pub(crate) async fn add_offsets(ctx: &RequestCtx, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    if !ctx.allowed(Operation::Write, ResourceType::TransactionalId, &request.transactional_id) {
        return AddOffsetsToTxnResponse::default().with_error_code(of(Error::TransactionalIdAuthorizationFailed));
    }
    if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        return AddOffsetsToTxnResponse::default().with_error_code(of(Error::GroupAuthorizationFailed));
    }
    let result = ctx
        .broker
        .txns
        .add_offsets(&request.transactional_id, request.producer_id.0, request.producer_epoch, &request.group_id)
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(result.err().map(|e| of(fenced_as(ctx, 2, e))).unwrap_or(0))
}

pub(crate) async fn end(ctx: &RequestCtx, request: EndTxnRequest) -> EndTxnResponse {
    if !ctx.allowed(Operation::Write, ResourceType::TransactionalId, &request.transactional_id) {
        return EndTxnResponse::default()
            .with_error_code(of(Error::TransactionalIdAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if ctx.version >= 5 {
        // Transactions v2: the epoch bumps with every end, and the answer says the
        // producer id and epoch to go on with.
        let txns = &ctx.broker.txns;
        let (id, pid, epoch) = (&request.transactional_id, request.producer_id.0, request.producer_epoch);
        return match txns.end_v2(id, pid, epoch, request.committed).await {
            Ok((pid, epoch)) => EndTxnResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
            Err(e) => EndTxnResponse::default()
                .with_error_code(of(e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
    }
    let result = ctx
        .broker
        .txns
        .end(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed)
        .await;
    EndTxnResponse::default()
        .with_error_code(result.err().map(|e| of(fenced_as(ctx, 2, e))).unwrap_or(0))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub(crate) async fn offset_commit(ctx: &RequestCtx, mut request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    // WRITE on the transactional id, READ on the group, READ on each topic.
    let refused = if !ctx.allowed(Operation::Write, ResourceType::TransactionalId, &request.transactional_id) {
        Some(Error::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(Operation::Read, ResourceType::Group, &request.group_id) {
        Some(Error::GroupAuthorizationFailed)
    } else {
        None
    };
    // From v6 (KIP-848's topic ids) topics are named by id.
    let known = name_by_id(ctx, ctx.version >= 6, request.topics.iter_mut().map(|t| (&t.topic_id, &mut t.name)));
    let access = Access::of_topics(ctx, known, request.topics.iter().map(|t| &t.name));
    let offsets: Vec<(String, i32, Committed)> = request
        .topics
        .iter()
        .zip(&access)
        .filter(|(_, a)| refused.is_none() && **a == Access::Allowed)
        .flat_map(|(t, _)| {
            t.partitions.iter().map(move |p| {
                let c = committed(p.committed_offset, p.committed_leader_epoch, p.committed_metadata.as_ref());
                (t.name.to_string(), p.partition_index, c)
            })
        })
        .collect();
    let n = offsets.len();
    let (id, pid, epoch) = (&request.transactional_id, request.producer_id.0, request.producer_epoch);
    let checked = if let Some(e) = refused {
        Err(e)
    } else if n == 0 {
        Ok(())
    } else if ctx.version >= 5 {
        // Transactions v2: the offsets join the transaction here (no AddOffsetsToTxn).
        ctx.broker.txns.add_offsets_implicitly(id, pid, epoch, &request.group_id).await
    } else {
        ctx.broker.txns.check_offsets_in_txn(id, pid, epoch, &request.group_id).await
    };
    let results = match checked {
        Err(e) => Err(e),
        Ok(()) if n == 0 => Ok(Vec::new()),
        Ok(()) => {
            let req = CommitRequest {
                group_id: request.group_id.to_string(),
                generation: request.generation_id,
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                offsets,
            };
            ctx.broker.groups.commit_in_transaction(req, request.producer_id.0, request.producer_epoch).await
        }
    };
    let mut results = match results {
        Ok(r) => r.into_iter(),
        Err(e) => vec![Err(e); n].into_iter(),
    };
    let topics = request
        .topics
        .into_iter()
        .zip(access)
        .map(|(t, access)| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = match (refused, access.code()) {
                        (Some(e), _) => of(e),
                        (None, Some(code)) => code,
                        (None, None) => results.next().and_then(|r| r.err()).map(of).unwrap_or(0),
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub(crate) async fn describe(ctx: &RequestCtx, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    use describe_transactions_response::{TopicData, TransactionState};
    let ids: Vec<String> = request.transactional_ids.iter().map(|i| i.to_string()).collect();
    let states = match ctx.broker.txns.snapshot(Some(&ids)).await {
        Err(e) => request
            .transactional_ids
            .into_iter()
            .map(|id| TransactionState::default().with_transactional_id(id).with_error_code(of(e)))
            .collect(),
        Ok(all) => all
            .into_iter()
            .map(|(id, meta)| {
                let describable = ctx.allowed(Operation::Describe, ResourceType::TransactionalId, &id);
                let base =
                    TransactionState::default().with_transactional_id(TransactionalId(StrBytes::from_string(id)));
                if !describable {
                    return base.with_error_code(of(Error::TransactionalIdAuthorizationFailed));
                }
                if let Err(e) = ctx.broker.txns.serves(&id_of(&base)) {
                    // Coordinated by another broker (cluster mode), or loading.
                    return base.with_error_code(of(e));
                }
                let Some(m) = meta else {
                    return base.with_error_code(of(Error::TransactionalIdNotFound));
                };
                let mut topics: Vec<TopicData> = Vec::new();
                for (t, p) in
                    m.partitions.iter().filter(|(t, _)| ctx.allowed(Operation::Describe, ResourceType::Topic, t))
                {
                    match topics.iter_mut().find(|d| d.topic.as_str() == t) {
                        Some(d) => d.partitions.push(*p),
                        None => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(t.clone())))
                                .with_partitions(vec![*p]),
                        ),
                    }
                }
                let ongoing = m.state == crate::coordinator::txn::TxnState::Ongoing;
                base.with_transaction_state(StrBytes::from_static_str(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(if ongoing { m.started_at } else { -1 })
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_topics(if ongoing { topics } else { Vec::new() })
            })
            .collect(),
    };
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn id_of(state: &describe_transactions_response::TransactionState) -> String {
    state.transactional_id.to_string()
}

pub(crate) async fn list(ctx: &RequestCtx, request: ListTransactionsRequest) -> ListTransactionsResponse {
    use list_transactions_response::TransactionState;
    const STATES: &[&str] = &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];
    let unknown: Vec<StrBytes> =
        request.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    // v2 (KIP-1152): only ids the whole of which the pattern matches (an RE2
    // expression, as Kafka's re2j reads it).
    let pattern = match request.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(_) => return ListTransactionsResponse::default().with_error_code(of(Error::InvalidRegularExpression)),
        },
    };
    let all = match ctx.broker.txns.snapshot(None).await {
        Ok(all) => all,
        Err(e) => return ListTransactionsResponse::default().with_error_code(of(e)),
    };
    let now = crate::clock::now_ms();
    let states = all
        .into_iter()
        .filter_map(|(id, meta)| meta.map(|m| (id, m)))
        .filter(|(id, _)| pattern.as_ref().is_none_or(|re| re.is_match(id)))
        .filter(|(id, _)| ctx.allowed(Operation::Describe, ResourceType::TransactionalId, id))
        .filter(|(_, m)| {
            request.state_filters.is_empty() || request.state_filters.iter().any(|s| s.as_str() == m.state.name())
        })
        .filter(|(_, m)| {
            request.producer_id_filters.is_empty() || request.producer_id_filters.contains(&ProducerId(m.producer_id))
        })
        .filter(|(_, m)| {
            request.duration_filter < 0
                || (m.state == crate::coordinator::txn::TxnState::Ongoing
                    && now - m.started_at >= request.duration_filter)
        })
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states)
}

pub(crate) fn describe_producers(ctx: &RequestCtx, request: DescribeProducersRequest) -> DescribeProducersResponse {
    use describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.storage.topic(t.name.as_str());
            let readable = ctx.allowed(Operation::Read, ResourceType::Topic, t.name.as_str());
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&i| {
                    let base = PartitionResponse::default().with_partition_index(i);
                    if !readable {
                        return base.with_error_code(of(Error::TopicAuthorizationFailed));
                    }
                    let Some(log) = topic.as_ref().and_then(|topic| topic.partition(i)) else {
                        return base.with_error_code(of(Error::UnknownTopicOrPartition));
                    };
                    base.with_active_producers(
                        log.producers()
                            .into_iter()
                            .map(|(pid, epoch, seq, txn_start)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(pid))
                                    .with_producer_epoch(epoch as i32)
                                    .with_last_sequence(seq)
                                    .with_last_timestamp(-1)
                                    .with_coordinator_epoch(0)
                                    .with_current_txn_start_offset(txn_start)
                            })
                            .collect(),
                    )
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// WriteTxnMarkers: a transaction coordinator on another broker ends transactions
/// in partitions this broker leads. Each marker is durable before it is answered;
/// one from a coordinator that has lost its partition since is refused with
/// TRANSACTION_COORDINATOR_FENCED.
pub(crate) async fn write_markers(ctx: &RequestCtx, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    use crate::coordinator::txn::Marker;
    use write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let view = ctx.broker.topology();
    let inter_broker = ctx.allowed_on_cluster(Operation::ClusterAction);
    let mut markers = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        // Only partitions led here; the others are answered with the reason.
        let mut led = Vec::new();
        let mut codes: Vec<(String, i32, Option<i16>)> = Vec::new();
        for t in &m.topics {
            for &p in &t.partition_indexes {
                let name = t.name.to_string();
                let known = ctx.broker.storage.topic(&name).is_some_and(|topic| topic.partition(p).is_some());
                let code = if !inter_broker {
                    Some(of(Error::ClusterAuthorizationFailed))
                } else if !(0..=2).contains(&m.transaction_version) {
                    // v2 names the transaction version (0-2); the marker is the same
                    // record for every one of them.
                    Some(of(Error::InvalidRequest))
                } else if !known {
                    Some(of(Error::UnknownTopicOrPartition))
                } else {
                    super::route::lead(&view, &name, p, -1).err()
                };
                if code.is_none() {
                    led.push((name.clone(), p));
                }
                codes.push((name, p, code));
            }
        }
        let mut written = ctx.broker.txns.write_local_markers(marker, &led).await.into_iter();
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for (name, p, code) in codes {
            let code = code.unwrap_or_else(|| written.next().and_then(|r| r.err()).map(of).unwrap_or(0));
            let r = WritableTxnMarkerPartitionResult::default().with_partition_index(p).with_error_code(code);
            match topics.iter_mut().find(|t| t.name.as_str() == name) {
                Some(t) => t.partitions.push(r),
                None => topics.push(
                    WritableTxnMarkerTopicResult::default().with_name(TopicName(name.into())).with_partitions(vec![r]),
                ),
            }
        }
        markers.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
