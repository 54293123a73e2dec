//! The typed requests and responses Tributary understands. One list below generates
//! both enums, their decoding and their encoding; the broker's table of supported
//! versions decides which of them a client may send at which version.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::CodecError;

macro_rules! messages {
    ($($api:ident => $req:ident, $resp:ident;)*) => {
        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Request { $($api($req),)* }

        /// A response body, encoded at the version of the request it answers.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Response { $($api($resp),)* }

        impl Request {
            /// Decodes the body of a request whose header has been read.
            pub fn decode(key: ApiKey, version: i16, buf: &mut Bytes) -> Result<Self, CodecError> {
                let err = |e: anyhow::Error| CodecError::Decode {
                    what: "request body",
                    api_key: key as i16,
                    version,
                    reason: e.to_string(),
                };
                match key {
                    $(ApiKey::$api => $req::decode(buf, version).map(Request::$api).map_err(err),)*
                    other => Err(CodecError::Decode {
                        what: "request body",
                        api_key: other as i16,
                        version,
                        reason: "API not handled".into(),
                    }),
                }
            }

            /// The API key of this request.
            pub fn api_key(&self) -> ApiKey {
                match self { $(Request::$api(_) => ApiKey::$api,)* }
            }

            /// Encodes the body (used by tests and tools acting as clients).
            #[cfg(feature = "client")]
            pub fn encode(&self, version: i16, buf: &mut BytesMut) -> Result<(), CodecError> {
                let err = |e: anyhow::Error| CodecError::Encode { what: "request body", version, reason: e.to_string() };
                match self { $(Request::$api(m) => m.encode(buf, version).map_err(err),)* }
            }
        }

        impl Response {
            /// Encodes the body at `version`.
            pub fn encode(&self, version: i16, buf: &mut BytesMut) -> Result<(), CodecError> {
                let err = |e: anyhow::Error| CodecError::Encode { what: "response body", version, reason: e.to_string() };
                match self { $(Response::$api(m) => m.encode(buf, version).map_err(err),)* }
            }

            /// Bytes the body takes at `version`, so the frame is allocated once.
            pub fn encoded_size(&self, version: i16) -> Result<usize, CodecError> {
                let err = |e: anyhow::Error| CodecError::Encode { what: "response body", version, reason: e.to_string() };
                match self { $(Response::$api(m) => m.compute_size(version).map_err(err),)* }
            }

            /// Decodes a response body (used by tests and tools acting as clients).
            #[cfg(feature = "client")]
            pub fn decode(key: ApiKey, version: i16, buf: &mut Bytes) -> Result<Self, CodecError> {
                let err = |e: anyhow::Error| CodecError::Decode {
                    what: "response body",
                    api_key: key as i16,
                    version,
                    reason: e.to_string(),
                };
                match key {
                    $(ApiKey::$api => $resp::decode(buf, version).map(Response::$api).map_err(err),)*
                    other => Err(CodecError::Decode {
                        what: "response body",
                        api_key: other as i16,
                        version,
                        reason: "API not handled".into(),
                    }),
                }
            }
        }

        $(
            impl From<$resp> for Response {
                fn from(r: $resp) -> Self { Response::$api(r) }
            }
        )*
    };
}

messages! {
    Produce => ProduceRequest, ProduceResponse;
    Fetch => FetchRequest, FetchResponse;
    ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
    Metadata => MetadataRequest, MetadataResponse;
    DescribeTopicPartitions => DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
    ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
    CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
    DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
    DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
    InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
    FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
    JoinGroup => JoinGroupRequest, JoinGroupResponse;
    SyncGroup => SyncGroupRequest, SyncGroupResponse;
    Heartbeat => HeartbeatRequest, HeartbeatResponse;
    LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
    OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
    OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
    OffsetDelete => OffsetDeleteRequest, OffsetDeleteResponse;
    ListGroups => ListGroupsRequest, ListGroupsResponse;
    DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
    DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse;
    AddPartitionsToTxn => AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
    AddOffsetsToTxn => AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
    EndTxn => EndTxnRequest, EndTxnResponse;
    TxnOffsetCommit => TxnOffsetCommitRequest, TxnOffsetCommitResponse;
    DescribeTransactions => DescribeTransactionsRequest, DescribeTransactionsResponse;
    ListTransactions => ListTransactionsRequest, ListTransactionsResponse;
    DescribeProducers => DescribeProducersRequest, DescribeProducersResponse;
    AlterConfigs => AlterConfigsRequest, AlterConfigsResponse;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
    CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
    DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
    DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
    ElectLeaders => ElectLeadersRequest, ElectLeadersResponse;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
    DescribeLogDirs => DescribeLogDirsRequest, DescribeLogDirsResponse;
    DescribeClientQuotas => DescribeClientQuotasRequest, DescribeClientQuotasResponse;
    AlterClientQuotas => AlterClientQuotasRequest, AlterClientQuotasResponse;
    WriteTxnMarkers => WriteTxnMarkersRequest, WriteTxnMarkersResponse;
    SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
    SaslAuthenticate => SaslAuthenticateRequest, SaslAuthenticateResponse;
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
    AlterUserScramCredentials => AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
    CreateAcls => CreateAclsRequest, CreateAclsResponse;
    DescribeAcls => DescribeAclsRequest, DescribeAclsResponse;
    DeleteAcls => DeleteAclsRequest, DeleteAclsResponse;
    ListConfigResources => ListConfigResourcesRequest, ListConfigResourcesResponse;
    GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse;
    PushTelemetry => PushTelemetryRequest, PushTelemetryResponse;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    #[cfg(feature = "client")]
    #[test]
    fn metadata_request_round_trips_at_every_version() {
        for version in 4..=12 {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]))
                .with_allow_auto_topic_creation(true);
            let mut buf = BytesMut::new();
            Request::Metadata(req.clone()).encode(version, &mut buf).unwrap();
            let decoded = Request::decode(ApiKey::Metadata, version, &mut buf.freeze()).unwrap();
            assert_eq!(decoded, Request::Metadata(req), "version {version}");
        }
    }

    #[test]
    fn unhandled_api_is_a_decode_error_not_a_panic() {
        let mut buf = Bytes::from_static(&[0, 0, 0]);
        assert!(Request::decode(ApiKey::Heartbeat, 0, &mut buf).is_err());
    }
}
