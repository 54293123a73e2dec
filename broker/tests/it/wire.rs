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
    let broker = Arc::new(Broker::new(config, storage.clone(), metrics, groups));
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
