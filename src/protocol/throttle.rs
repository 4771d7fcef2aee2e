//! `throttle_time_ms`, which nearly every response carries from some version on: how a broker
//! tells a client it was throttled by a quota (KIP-219).

use kafka_protocol::messages::ResponseKind;

macro_rules! throttle_fields {
    ($($variant:ident from $since:literal),* $(,)?) => {
        /// Sets the response's `throttle_time_ms` to at least `ms` and returns whether the client
        /// sees it at `version` (if not, the broker delays the response instead, as Kafka does
        /// for versions before KIP-219).
        pub fn raise_throttle_time(response: &mut ResponseKind, version: i16, ms: i32) -> bool {
            match response {
                $(ResponseKind::$variant(body) => {
                    body.throttle_time_ms = body.throttle_time_ms.max(ms);
                    version >= $since
                })*
                _ => false,
            }
        }

        /// The `throttle_time_ms` a handler put in the response (a throttled fetch).
        pub fn throttle_time(response: &ResponseKind) -> i32 {
            match response {
                $(ResponseKind::$variant(body) => body.throttle_time_ms,)*
                _ => 0,
            }
        }
    };
}

throttle_fields! {
    Produce from 1, Fetch from 1, ListOffsets from 2, Metadata from 3, OffsetCommit from 3,
    OffsetFetch from 3, FindCoordinator from 1, JoinGroup from 2, Heartbeat from 1, LeaveGroup from 1,
    SyncGroup from 1, DescribeGroups from 1, ListGroups from 1, ApiVersions from 1, CreateTopics from 2,
    DeleteTopics from 1, DeleteRecords from 0, InitProducerId from 0, OffsetForLeaderEpoch from 2,
    AddPartitionsToTxn from 0, AddOffsetsToTxn from 0, EndTxn from 0, TxnOffsetCommit from 0,
    DescribeAcls from 0, CreateAcls from 0, DeleteAcls from 0, DescribeConfigs from 0, AlterConfigs from 0,
    AlterReplicaLogDirs from 0, DescribeLogDirs from 0, CreatePartitions from 0, DeleteGroups from 0,
    ElectLeaders from 0, IncrementalAlterConfigs from 0, AlterPartitionReassignments from 0,
    ListPartitionReassignments from 0, OffsetDelete from 0, DescribeClientQuotas from 0,
    AlterClientQuotas from 0, DescribeUserScramCredentials from 0, AlterUserScramCredentials from 0,
    DescribeCluster from 0, DescribeProducers from 0, DescribeTransactions from 0, ListTransactions from 0,
    DescribeTopicPartitions from 0,
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{MetadataResponse, ProduceResponse};

    use super::*;

    #[test]
    fn raises_and_says_whether_the_version_carries_it() {
        let mut response = ResponseKind::Metadata(MetadataResponse::default());
        assert!(!raise_throttle_time(&mut response, 2, 100));
        assert!(raise_throttle_time(&mut response, 3, 50));
        assert_eq!(throttle_time(&response), 100);
        let mut produce = ResponseKind::Produce(ProduceResponse::default().with_throttle_time_ms(300));
        assert!(raise_throttle_time(&mut produce, 9, 200));
        assert_eq!(throttle_time(&produce), 300);
    }
}
