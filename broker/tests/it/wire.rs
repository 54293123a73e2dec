//! The server in-process over a real socket: produce validation answered with the
//! Kafka error codes clients expect, per partition, without closing the connection.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tributary_broker::broker::Broker;
use tributary_broker::clock::SystemClock;
use tributary_broker::coordinator::group::GroupCoordinator;
use tributary_broker::coordinator::txn::TxnCoordinator;
use tributary_broker::metrics::Metrics;
use tributary_broker::storage::Storage;
use tributary_config::Config;
use tributary_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use tributary_protocol::kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use tributary_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use tributary_protocol::message::{Request, Response};

use crate::storage::batch;

struct Server {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    storage: Arc<Storage>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    config.topics.message_max_bytes = 4096;
    let metrics = Arc::new(Metrics::new());
    let storage = Storage::open(&config, metrics.clone()).unwrap();
    storage.create_topic("t", 2, Default::default()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.listen = addr.to_string();
    let groups = GroupCoordinator::new(storage.clone(), &config.groups, metrics.clone(), Arc::new(SystemClock));
    groups.load().await.unwrap();
    let txns = TxnCoordinator::new(storage.clone(), groups.clone(), Arc::new(SystemClock), 15 * 60 * 1000);
    txns.load().await.unwrap();
    let broker = Arc::new(Broker::new(config, storage.clone(), metrics, groups, txns, None));
    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_broker::server::serve(listener, broker, shutdown.clone()));
    Server { addr, shutdown, storage, _dir: dir }
}

async fn call(stream: &mut TcpStream, correlation_id: i32, version: i16, request: Request) -> Response {
    let key = request.api_key();
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    request.encode(version, &mut body).unwrap();
    stream.write_all(&(body.len() as i32).to_be_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let len = stream.read_i32().await.unwrap() as usize;
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await.unwrap();
    let mut frame = Bytes::from(frame);
    let header_len = if key.response_header_version(version) >= 1 { 5 } else { 4 };
    assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()), correlation_id);
    let _ = frame.split_to(header_len);
    Response::decode(key, version, &mut frame).unwrap()
}

fn produce(partitions: Vec<(&'static str, i32, Bytes)>) -> Request {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, index, records) in partitions {
        let data = PartitionProduceData::default().with_index(index).with_records(Some(records));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    Request::Produce(ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(topics))
}

fn codes(response: Response) -> Vec<(String, i32, i16, i64)> {
    let Response::Produce(r) = response else { panic!("not a produce response") };
    r.responses
        .iter()
        .flat_map(|t| {
            t.partition_responses.iter().map(|p| (t.name.0.to_string(), p.index, p.error_code, p.base_offset))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_validation_answers_per_partition_with_kafka_codes() {
    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let good = batch(0, &[b"fine".to_vec()]);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let big = batch(0, &[vec![7u8; 5000]]);
    let mut two = good.to_vec();
    two.extend_from_slice(&good);

    for version in [3i16, 9, 11] {
        let answer = codes(
            call(
                &mut conn,
                version as i32,
                version,
                produce(vec![
                    ("t", 0, good.clone()),
                    ("t", 1, Bytes::from(corrupt.clone())),
                    ("missing", 0, good.clone()),
                ]),
            )
            .await,
        );
        let expected_offset = (version == 9) as i64 + (version == 11) as i64 * 2;
        assert_eq!(
            answer,
            vec![
                ("t".into(), 0, 0, expected_offset),
                ("t".into(), 1, 2, -1),       // CORRUPT_MESSAGE
                ("missing".into(), 0, 3, -1), // UNKNOWN_TOPIC_OR_PARTITION
            ],
            "produce v{version}"
        );
    }
    let answer = codes(call(&mut conn, 20, 9, produce(vec![("t", 1, big), ("t", 0, Bytes::from(two))])).await);
    assert_eq!(answer, vec![("t".into(), 1, 10, -1), ("t".into(), 0, 87, -1)]); // MESSAGE_TOO_LARGE, INVALID_RECORD
                                                                                // nothing refused was stored; the connection still works
    let t = s.storage.topic("t").unwrap();
    assert_eq!(t.partitions[0].offsets().high_watermark, 3);
    assert_eq!(t.partitions[1].offsets().high_watermark, 0);
    let answer = codes(call(&mut conn, 21, 9, produce(vec![("t", 1, good)])).await);
    assert_eq!(answer, vec![("t".into(), 1, 0, 0)]);
    s.shutdown.cancel();
    s.storage.close();
}

/// Produce v13 (KIP-516) names topics by id only: a known id is written, an
/// unknown one answered UNKNOWN_TOPIC_ID, and the answer carries the ids back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v13_names_topics_by_id() {
    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let id = s.storage.topic("t").unwrap().id;
    let unknown = uuid::Uuid::from_u128(0x1234);
    let topic = |id: uuid::Uuid, index: i32| {
        TopicProduceData::default().with_topic_id(id).with_partition_data(vec![PartitionProduceData::default()
            .with_index(index)
            .with_records(Some(batch(0, &[b"by id".to_vec()])))])
    };
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![topic(id, 1), topic(unknown, 0)]);
    let Response::Produce(r) = call(&mut conn, 1, 13, Request::Produce(request)).await else { panic!() };
    let got: Vec<_> = r
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(move |p| (t.topic_id, p.index, p.error_code, p.base_offset)))
        .collect();
    assert_eq!(got, vec![(id, 1, 0, 0), (unknown, 0, 100, -1)]); // 100: UNKNOWN_TOPIC_ID
    assert_eq!(s.storage.topic("t").unwrap().partitions[1].offsets().high_watermark, 1);
    s.shutdown.cancel();
    s.storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_topic_id_commit_fetch_and_list() {
    use tributary_protocol::kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use tributary_protocol::kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use tributary_protocol::kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use tributary_protocol::kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let id = s.storage.topic("t").unwrap().id;
    let unknown = uuid::Uuid::from_u128(0x1234);
    let group = GroupId(StrBytes::from_static_str("g-ids"));

    // OffsetCommit v10: topics by id; an unknown id is UNKNOWN_TOPIC_ID (100).
    let topic = |id: uuid::Uuid, offset: i64| {
        OffsetCommitRequestTopic::default().with_topic_id(id).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(1).with_committed_offset(offset),
        ])
    };
    let commit = OffsetCommitRequest::default()
        .with_group_id(group.clone())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![topic(id, 7), topic(unknown, 8)]);
    let Response::OffsetCommit(r) = call(&mut conn, 1, 10, Request::OffsetCommit(commit)).await else { panic!() };
    let got: Vec<_> = r.topics.iter().map(|t| (t.topic_id, t.partitions[0].error_code)).collect();
    assert_eq!(got, vec![(id, 0), (unknown, 100)]);

    // OffsetFetch v10: named by id, and every topic of the group (with its id).
    let fetch = |topics: Option<Vec<uuid::Uuid>>| {
        let topics = topics.map(|ids| {
            ids.into_iter()
                .map(|id| OffsetFetchRequestTopics::default().with_topic_id(id).with_partition_indexes(vec![1]))
                .collect()
        });
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(group.clone()).with_topics(topics)]),
        )
    };
    let offsets = |r: Response| -> Vec<(uuid::Uuid, i32, i64, i16)> {
        let Response::OffsetFetch(r) = r else { panic!() };
        assert_eq!(r.groups[0].error_code, 0);
        r.groups[0]
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| (t.topic_id, p.partition_index, p.committed_offset, p.error_code))
            })
            .collect()
    };
    let named = offsets(call(&mut conn, 2, 10, fetch(Some(vec![id, unknown]))).await);
    assert_eq!(named, vec![(id, 1, 7, 0), (unknown, 1, -1, 100)]);
    let all = offsets(call(&mut conn, 3, 10, fetch(None)).await);
    assert_eq!(all, vec![(id, 1, 7, 0)]);

    // TxnOffsetCommit v6: an unknown id is refused before the transaction is looked at.
    let txn = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx-ids")))
        .with_group_id(group.clone())
        .with_producer_id(ProducerId(1))
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_topic_id(unknown).with_partitions(vec![
            TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
        ])]);
    let Response::TxnOffsetCommit(r) = call(&mut conn, 4, 6, Request::TxnOffsetCommit(txn)).await else { panic!() };
    assert_eq!((r.topics[0].topic_id, r.topics[0].partitions[0].error_code), (unknown, 100));

    // ListOffsets v11: -6 (earliest pending upload) answers as Kafka does for a topic
    // without remote storage; -2 still the log start.
    let list = |ts: i64| {
        Request::ListOffsets(ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_static_str("t"))).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts),
            ]),
        ]))
    };
    for (ts, want) in [(-6, (0, -1, -1, -1)), (-2, (0, 0, -1, 0))] {
        let Response::ListOffsets(r) = call(&mut conn, 5, 11, list(ts)).await else { panic!() };
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset, p.timestamp, p.leader_epoch), want, "timestamp {ts}");
    }
    s.shutdown.cancel();
    s.storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_versions_of_api_versions_delete_groups_log_dirs_and_markers() {
    use tributary_protocol::kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let cluster = StrBytes::from_string(s.storage.cluster_id().to_string());

    // ApiVersions v5: the cluster and node the client means, or REBOOTSTRAP_REQUIRED (129).
    let versions = |cluster: Option<StrBytes>, node: i32| {
        Request::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("wire"))
                .with_client_software_version(StrBytes::from_static_str("1"))
                .with_cluster_id(cluster)
                .with_node_id(node),
        )
    };
    for (i, (cluster, node, want)) in [
        (None, -1, 0),
        (Some(cluster.clone()), 0, 0),
        (Some(cluster.clone()), 3, 129),
        (Some(StrBytes::from_static_str("another-cluster")), 0, 129),
    ]
    .into_iter()
    .enumerate()
    {
        let Response::ApiVersions(r) = call(&mut conn, i as i32, 5, versions(cluster, node)).await else { panic!() };
        assert_eq!(r.error_code, want, "case {i}");
        assert_eq!(r.api_keys.is_empty(), want != 0, "case {i}");
    }

    // DeleteGroups v3: each error with Kafka's message.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_static_str("nobody"))]);
    let Response::DeleteGroups(r) = call(&mut conn, 10, 3, Request::DeleteGroups(delete)).await else { panic!() };
    assert_eq!(r.results[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(r.results[0].error_message.as_deref(), Some("The group id does not exist."));

    // DescribeLogDirs v5: the data directory, never cordoned.
    let dirs = DescribeLogDirsRequest::default().with_topics(None);
    let Response::DescribeLogDirs(r) = call(&mut conn, 11, 5, Request::DescribeLogDirs(dirs)).await else { panic!() };
    assert_eq!((r.results.len(), r.results[0].error_code, r.results[0].is_cordoned), (1, 0, false));

    // WriteTxnMarkers v2: the transaction version is one Kafka knows (0-2).
    let markers = |version: i8| {
        Request::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(77))
            .with_producer_epoch(0)
            .with_transaction_result(false)
            .with_transaction_version(version)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_indexes(vec![0])])]))
    };
    for (version, want) in [(2, 0), (9, 42)] {
        let Response::WriteTxnMarkers(r) = call(&mut conn, 12, 2, markers(version)).await else { panic!() };
        assert_eq!(r.markers[0].topics[0].partitions[0].error_code, want, "transaction version {version}");
    }
    s.shutdown.cancel();
    s.storage.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_answer_on_the_wire() {
    use tributary_protocol::kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use tributary_protocol::kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use tributary_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let name = |n: &'static str| StrBytes::from_static_str(n);
    let group = |n: &'static str| GroupId(name(n));

    // FindCoordinator, batched (v4+): this broker, for groups and transactions.
    let find = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![name("g1"), name("g2")]);
    let Response::FindCoordinator(r) = call(&mut conn, 1, 4, Request::FindCoordinator(find)).await else { panic!() };
    assert_eq!(r.coordinators.len(), 2);
    assert!(r.coordinators.iter().all(|c| c.error_code == 0 && c.port == s.addr.port() as i32));
    let txn = FindCoordinatorRequest::default().with_key_type(1).with_key(name("tx"));
    let Response::FindCoordinator(r) = call(&mut conn, 2, 3, Request::FindCoordinator(txn)).await else { panic!() };
    assert_eq!((r.error_code, r.port), (0, s.addr.port() as i32));

    // OffsetCommit from outside group management (generation -1).
    let partition = |i: i32, offset: i64| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(i)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(name("meta")))
    };
    let commit = OffsetCommitRequest::default()
        .with_group_id(group("g1"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(name("t"))).with_partitions(vec![
            partition(0, 11),
            partition(1, 22),
            partition(5, 1),
        ])]);
    let Response::OffsetCommit(r) = call(&mut conn, 3, 8, Request::OffsetCommit(commit)).await else { panic!() };
    let codes: Vec<i16> = r.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![0, 0, 3]);

    let fetch_all = || {
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(group("g1")).with_topics(None)]),
        )
    };
    let Response::OffsetFetch(r) = call(&mut conn, 4, 8, fetch_all()).await else { panic!() };
    let got: Vec<(i32, i64)> =
        r.groups[0].topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(got, vec![(0, 11), (1, 22)]);
    assert_eq!(r.groups[0].topics[0].partitions[0].metadata.as_deref(), Some("meta"));

    // ListGroups with a state filter (v4).
    let list = |states: Vec<&'static str>| {
        Request::ListGroups(ListGroupsRequest::default().with_states_filter(states.into_iter().map(name).collect()))
    };
    let Response::ListGroups(r) = call(&mut conn, 5, 4, list(vec!["Empty"])).await else { panic!() };
    assert_eq!(r.groups.iter().map(|g| g.group_id.as_str()).collect::<Vec<_>>(), vec!["g1"]);
    let Response::ListGroups(r) = call(&mut conn, 6, 4, list(vec!["Stable"])).await else { panic!() };
    assert!(r.groups.is_empty());

    // OffsetDelete of one partition.
    let delete =
        OffsetDeleteRequest::default()
            .with_group_id(group("g1"))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(name("t")))
                .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)])]);
    let Response::OffsetDelete(r) = call(&mut conn, 7, 0, Request::OffsetDelete(delete)).await else { panic!() };
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    let Response::OffsetFetch(r) = call(&mut conn, 8, 8, fetch_all()).await else { panic!() };
    let got: Vec<i32> = r.groups[0].topics[0].partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!(got, vec![1]);

    // JoinGroup v4+ without a member id: MEMBER_ID_REQUIRED with an id to use.
    let join = JoinGroupRequest::default()
        .with_group_id(group("g2"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(name("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default().with_name(name("range"))]);
    let Response::JoinGroup(r) = call(&mut conn, 9, 7, Request::JoinGroup(join)).await else { panic!() };
    assert_eq!(r.error_code, 79);
    assert!(!r.member_id.is_empty());

    // DescribeGroups of an unknown group: Dead (v5), GROUP_ID_NOT_FOUND (v6).
    let describe = || Request::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group("nope")]));
    let Response::DescribeGroups(r) = call(&mut conn, 10, 5, describe()).await else { panic!() };
    assert_eq!((r.groups[0].error_code, r.groups[0].group_state.as_str()), (0, "Dead"));
    let Response::DescribeGroups(r) = call(&mut conn, 11, 6, describe()).await else { panic!() };
    assert_eq!(r.groups[0].error_code, 69);

    // DeleteGroups: the empty group goes, an unknown one is GROUP_ID_NOT_FOUND.
    let del = DeleteGroupsRequest::default().with_groups_names(vec![group("g1"), group("nope")]);
    let Response::DeleteGroups(r) = call(&mut conn, 12, 2, Request::DeleteGroups(del)).await else { panic!() };
    assert_eq!(r.results.iter().map(|g| g.error_code).collect::<Vec<_>>(), vec![0, 69]);
    let Response::OffsetFetch(r) = call(&mut conn, 13, 8, fetch_all()).await else { panic!() };
    assert!(r.groups[0].topics.is_empty());
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_partitions_to_txn_batched_form_adds_and_verifies() {
    use tributary_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let txn_id = TransactionalId(StrBytes::from_static_str("tx-wire"));
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id.clone()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Response::InitProducerId(r) = call(&mut conn, 1, 4, Request::InitProducerId(init)).await else { panic!() };
    assert_eq!(r.error_code, 0);
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let txn = |verify: bool, partitions: Vec<i32>| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_verify_only(verify)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)])
    };
    let codes = |r: Response| -> Vec<(i32, i16)> {
        let Response::AddPartitionsToTxn(r) = r else { panic!() };
        r.results_by_transaction[0].topic_results[0]
            .results_by_partition
            .iter()
            .map(|p| (p.partition_index, p.partition_error_code))
            .collect()
    };
    let add = AddPartitionsToTxnRequest::default().with_transactions(vec![txn(false, vec![0])]);
    assert_eq!(codes(call(&mut conn, 2, 4, Request::AddPartitionsToTxn(add)).await), vec![(0, 0)]);
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![txn(true, vec![0, 1])]);
    assert_eq!(codes(call(&mut conn, 3, 5, Request::AddPartitionsToTxn(verify)).await), vec![(0, 0), (1, 48)]);
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_pages_with_a_cursor() {
    use tributary_protocol::kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    s.storage.create_topic("u", 3, Default::default()).await.unwrap();
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let topic = |n: &'static str| TopicRequest::default().with_name(TopicName(StrBytes::from_static_str(n)));
    let cursor = |n: &'static str, p: i32| {
        Some(Cursor::default().with_topic_name(TopicName(StrBytes::from_static_str(n))).with_partition_index(p))
    };
    let ask = |topics: Vec<TopicRequest>, limit: i32, cursor: Option<Cursor>| {
        Request::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(topics)
                .with_response_partition_limit(limit)
                .with_cursor(cursor),
        )
    };
    // (topic, error, partitions) of an answer, and its next cursor.
    let seen = |r: DescribeTopicPartitionsResponse| {
        let topics: Vec<(String, i16, Vec<i32>)> = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                (name, t.error_code, t.partitions.iter().map(|p| p.partition_index).collect())
            })
            .collect();
        (topics, r.next_cursor.map(|c| (c.topic_name.0.to_string(), c.partition_index)))
    };
    let t = |n: &str, e: i16, p: &[i32]| (n.to_string(), e, p.to_vec());

    // Every topic from "t" on (internal ones sort before it; "t" has 2 partitions,
    // "u" 3), 3 at a time: cut inside "u".
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 1, 0, ask(vec![], 3, cursor("t", 0))).await else {
        panic!()
    };
    assert_eq!(seen(r), (vec![t("t", 0, &[0, 1]), t("u", 0, &[0])], Some(("u".into(), 1))));
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 2, 0, ask(vec![], 3, cursor("u", 1))).await else {
        panic!()
    };
    assert_eq!(seen(r), (vec![t("u", 0, &[1, 2])], None));
    // A limit that ends exactly with a topic points the cursor at the next one.
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 3, 0, ask(vec![], 2, cursor("t", 0))).await else {
        panic!()
    };
    assert_eq!(seen(r), (vec![t("t", 0, &[0, 1])], Some(("u".into(), 0))));
    // Named topics come back in name order, a missing one with its error.
    let named = vec![topic("u"), topic("missing"), topic("t")];
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 4, 0, ask(named, 100, None)).await else { panic!() };
    assert_eq!(seen(r), (vec![t("missing", 3, &[]), t("t", 0, &[0, 1]), t("u", 0, &[0, 1, 2])], None));
    // A cursor naming a topic that was not asked for, or a negative partition, is
    // an invalid request.
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 5, 0, ask(vec![topic("t")], 10, cursor("u", 0))).await
    else {
        panic!()
    };
    assert_eq!(seen(r), (vec![t("t", 42, &[])], None));
    let Response::DescribeTopicPartitions(r) = call(&mut conn, 6, 0, ask(vec![], 10, cursor("t", -1))).await else {
        panic!()
    };
    assert!(r.topics.iter().all(|t| t.error_code == 42), "{r:?}");
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_config_sets_the_heartbeat_interval_members_are_given() {
    use tributary_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use tributary_protocol::kafka_protocol::messages::*;

    let s = server().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let name = |n: &'static str| StrBytes::from_static_str(n);
    let alter = |value: &'static str| {
        Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default().with_resource_type(32).with_resource_name(name("g")).with_configs(vec![
                AlterableConfig::default()
                    .with_name(name("consumer.heartbeat.interval.ms"))
                    .with_config_operation(0)
                    .with_value(Some(name(value))),
            ]),
        ]))
    };
    let Response::IncrementalAlterConfigs(r) = call(&mut conn, 1, 1, alter("1234")).await else { panic!() };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    let Response::IncrementalAlterConfigs(r) = call(&mut conn, 2, 1, alter("999999")).await else { panic!() };
    assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG for an interval above the session timeout");

    let join = |group: &'static str| {
        Request::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(name(group)))
                .with_member_id(name("m-1"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(name("t"))]))
                .with_topic_partitions(Some(vec![])),
        )
    };
    let Response::ConsumerGroupHeartbeat(r) = call(&mut conn, 3, 0, join("g")).await else { panic!() };
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 1234), "{r:?}");
    let Response::ConsumerGroupHeartbeat(r) = call(&mut conn, 4, 0, join("other")).await else { panic!() };
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 5000), "the broker's interval elsewhere");
    s.shutdown.cancel();
}
