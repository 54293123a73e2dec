//! Every error code a response carries, wherever its API puts them (top level, per
//! topic, per partition, per group, per member), so that one place in the broker
//! counts the errors of every API. Pure: it only reads the typed response.

use crate::message::Response;

impl Response {
    /// Calls `f` with every non-zero error code in the response, once per place it
    /// appears (ten partitions answering UNKNOWN_TOPIC_OR_PARTITION count ten).
    pub fn for_each_error(&self, mut f: impl FnMut(i16)) {
        let mut e = |code: i16| {
            if code != 0 {
                f(code)
            }
        };
        match self {
            Response::Produce(r) => {
                r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| e(p.error_code))
            }
            Response::Fetch(r) => {
                e(r.error_code);
                r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            }
            Response::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
            Response::Metadata(r) => {
                e(r.error_code);
                for t in &r.topics {
                    e(t.error_code);
                    t.partitions.iter().for_each(|p| e(p.error_code));
                }
            }
            Response::ApiVersions(r) => e(r.error_code),
            Response::CreateTopics(r) => r.topics.iter().for_each(|t| e(t.error_code)),
            Response::DeleteTopics(r) => r.responses.iter().for_each(|t| e(t.error_code)),
            Response::DescribeConfigs(r) => r.results.iter().for_each(|t| e(t.error_code)),
            Response::InitProducerId(r) => e(r.error_code),
            Response::FindCoordinator(r) => {
                e(r.error_code);
                r.coordinators.iter().for_each(|c| e(c.error_code));
            }
            Response::JoinGroup(r) => e(r.error_code),
            Response::SyncGroup(r) => e(r.error_code),
            Response::Heartbeat(r) => e(r.error_code),
            Response::LeaveGroup(r) => {
                e(r.error_code);
                r.members.iter().for_each(|m| e(m.error_code));
            }
            Response::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
            Response::OffsetFetch(r) => {
                e(r.error_code);
                r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
                for g in &r.groups {
                    e(g.error_code);
                    g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
                }
            }
            Response::OffsetDelete(r) => {
                e(r.error_code);
                r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            }
            Response::ListGroups(r) => e(r.error_code),
            Response::DescribeGroups(r) => r.groups.iter().for_each(|g| e(g.error_code)),
            Response::DeleteGroups(r) => r.results.iter().for_each(|g| e(g.error_code)),
            Response::ConsumerGroupHeartbeat(r) => e(r.error_code),
            Response::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| e(g.error_code)),
            Response::DescribeTopicPartitions(r) => {
                r.topics.iter().for_each(|t| e(t.error_code));
                r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            }
            Response::AddPartitionsToTxn(r) => {
                e(r.error_code);
                let v3 = r.results_by_topic_v3_and_below.iter();
                let v4 = r.results_by_transaction.iter().flat_map(|t| &t.topic_results);
                v3.chain(v4).flat_map(|t| &t.results_by_partition).for_each(|p| e(p.partition_error_code));
            }
            Response::AddOffsetsToTxn(r) => e(r.error_code),
            Response::WriteTxnMarkers(r) => {
                r.markers.iter().flat_map(|m| &m.topics).flat_map(|t| &t.partitions).for_each(|p| e(p.error_code))
            }
            Response::EndTxn(r) => e(r.error_code),
            Response::TxnOffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
            Response::DescribeTransactions(r) => r.transaction_states.iter().for_each(|t| e(t.error_code)),
            Response::ListTransactions(r) => e(r.error_code),
            Response::DescribeProducers(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
            Response::AlterConfigs(r) => r.responses.iter().for_each(|c| e(c.error_code)),
            Response::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|c| e(c.error_code)),
            Response::CreatePartitions(r) => r.results.iter().for_each(|t| e(t.error_code)),
            Response::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
            Response::DescribeCluster(r) => e(r.error_code),
            Response::ElectLeaders(r) => {
                e(r.error_code);
                r.replica_election_results.iter().flat_map(|t| &t.partition_result).for_each(|p| e(p.error_code));
            }
            Response::OffsetForLeaderEpoch(r) => {
                r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code))
            }
            Response::DescribeLogDirs(r) => {
                e(r.error_code);
                r.results.iter().for_each(|d| e(d.error_code));
            }
            Response::DescribeClientQuotas(r) => e(r.error_code),
            Response::AlterClientQuotas(r) => r.entries.iter().for_each(|q| e(q.error_code)),
            Response::SaslHandshake(r) => e(r.error_code),
            Response::SaslAuthenticate(r) => e(r.error_code),
            Response::DescribeUserScramCredentials(r) => {
                e(r.error_code);
                r.results.iter().for_each(|u| e(u.error_code));
            }
            Response::AlterUserScramCredentials(r) => r.results.iter().for_each(|u| e(u.error_code)),
            Response::CreateAcls(r) => r.results.iter().for_each(|a| e(a.error_code)),
            Response::DescribeAcls(r) => e(r.error_code),
            Response::ListConfigResources(r) => e(r.error_code),
            Response::GetTelemetrySubscriptions(r) => e(r.error_code),
            Response::PushTelemetry(r) => e(r.error_code),
            Response::DeleteAcls(r) => {
                for f in &r.filter_results {
                    e(f.error_code);
                    f.matching_acls.iter().for_each(|a| e(a.error_code));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{MetadataResponse, ProduceResponse};

    use super::*;

    fn codes(r: Response) -> Vec<i16> {
        let mut out = Vec::new();
        r.for_each_error(|c| out.push(c));
        out
    }

    #[test]
    fn partition_errors_count_once_each_and_successes_not_at_all() {
        let partitions = [0, 3, 3, 0, 56]
            .into_iter()
            .map(|code| PartitionProduceResponse::default().with_error_code(code))
            .collect();
        let r = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default().with_partition_responses(partitions)]);
        assert_eq!(codes(Response::Produce(r)), vec![3, 3, 56]);
    }

    #[test]
    fn a_top_level_error_counts_beside_nested_ones() {
        use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
        let r = MetadataResponse::default()
            .with_error_code(0)
            .with_topics(vec![MetadataResponseTopic::default().with_error_code(3)]);
        assert_eq!(codes(Response::Metadata(r)), vec![3]);
    }
}
