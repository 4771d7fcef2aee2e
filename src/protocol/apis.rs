//! The one table of the Kafka APIs this broker answers: each API's key, the versions it
//! advertises, the handler family that answers it, and whether it is allowed before a client
//! authenticates.
//!
//! Versions are pinned here rather than read from `ApiKey::valid_versions()`, so upgrading the
//! kafka-protocol crate never advertises a version no handler was checked against; a unit test
//! proves the crate decodes every pinned version. Adding an API is one row here plus its code in
//! the family's file under `src/handler/`.

use kafka_protocol::messages::ApiKey;

/// The handler file (`src/handler/<family>.rs`) that answers an API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Produce,
    /// Fetch, ListOffsets, OffsetForLeaderEpoch.
    Fetch,
    /// ApiVersions, Metadata, DescribeCluster, DescribeTopicPartitions.
    Metadata,
    /// Topic administration and InitProducerId.
    Admin,
    Configs,
    /// Consumer groups and their committed offsets.
    Groups,
    /// Replica and log-dir administration.
    Cluster,
    /// Transactions (InitProducerId is `Admin`'s, FindCoordinator `Groups`').
    Txn,
    /// SCRAM credentials. SaslHandshake and SaslAuthenticate are answered by the connection
    /// itself, since they change its session.
    Security,
}

/// One row of [`APIS`].
#[derive(Debug, PartialEq, Eq)]
pub struct Api {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub family: Family,
    /// Whether Kafka answers it on a connection that has not authenticated yet (ApiVersions,
    /// SaslHandshake and SaslAuthenticate).
    pub before_authentication: bool,
}

const fn row(key: ApiKey, min_version: i16, max_version: i16, family: Family, before_authentication: bool) -> Api {
    Api { key, min_version, max_version, family, before_authentication }
}

/// Every API the broker answers, by key; ApiVersions lists exactly these rows in this order.
/// Produce is advertised from v0 because librdkafka enables Produce only when v0 is (KIP-896);
/// v0–2 are decoded by `legacy_produce` and refused with UNSUPPORTED_VERSION. SaslHandshake is
/// advertised from v0 (Kafka 4 starts at v1) because older librdkafka, which distributions still
/// ship (Debian 12's kcat links 2.0.2), offers SASL only when v0 is; it then sends v1.
/// A v0 handshake is served too: its tokens follow as bare frames (`connection::bare_token`).
#[rustfmt::skip]
pub static APIS: [Api; 49] = [
    //  key                                     min  max  family            before authentication
    row(ApiKey::Produce,                          0,  13, Family::Produce,  false),
    row(ApiKey::Fetch,                            4,  18, Family::Fetch,    false),
    row(ApiKey::ListOffsets,                      1,  10, Family::Fetch,    false),
    row(ApiKey::Metadata,                         0,  13, Family::Metadata, false),
    row(ApiKey::OffsetCommit,                     2,   9, Family::Groups,   false),
    row(ApiKey::OffsetFetch,                      1,   9, Family::Groups,   false),
    row(ApiKey::FindCoordinator,                  0,   6, Family::Groups,   false),
    row(ApiKey::JoinGroup,                        0,   9, Family::Groups,   false),
    row(ApiKey::Heartbeat,                        0,   4, Family::Groups,   false),
    row(ApiKey::LeaveGroup,                       0,   5, Family::Groups,   false),
    row(ApiKey::SyncGroup,                        0,   5, Family::Groups,   false),
    row(ApiKey::DescribeGroups,                   0,   6, Family::Groups,   false),
    row(ApiKey::ListGroups,                       0,   5, Family::Groups,   false),
    row(ApiKey::SaslHandshake,                    0,   1, Family::Security, true),
    row(ApiKey::ApiVersions,                      0,   4, Family::Metadata, true),
    row(ApiKey::CreateTopics,                     2,   7, Family::Admin,    false),
    row(ApiKey::DeleteTopics,                     1,   6, Family::Admin,    false),
    row(ApiKey::DeleteRecords,                    0,   2, Family::Admin,    false),
    row(ApiKey::InitProducerId,                   0,   5, Family::Admin,    false),
    row(ApiKey::OffsetForLeaderEpoch,             2,   4, Family::Fetch,    false),
    row(ApiKey::AddPartitionsToTxn,               0,   4, Family::Txn,      false),
    row(ApiKey::AddOffsetsToTxn,                  0,   3, Family::Txn,      false),
    row(ApiKey::EndTxn,                           0,   4, Family::Txn,      false),
    row(ApiKey::WriteTxnMarkers,                  1,   1, Family::Txn,      false),
    row(ApiKey::TxnOffsetCommit,                  0,   3, Family::Txn,      false),
    row(ApiKey::DescribeAcls,                     1,   3, Family::Security, false),
    row(ApiKey::CreateAcls,                       1,   3, Family::Security, false),
    row(ApiKey::DeleteAcls,                       1,   3, Family::Security, false),
    row(ApiKey::DescribeConfigs,                  1,   4, Family::Configs,  false),
    row(ApiKey::AlterConfigs,                     0,   2, Family::Configs,  false),
    row(ApiKey::AlterReplicaLogDirs,              1,   2, Family::Cluster,  false),
    row(ApiKey::DescribeLogDirs,                  1,   4, Family::Cluster,  false),
    row(ApiKey::SaslAuthenticate,                 0,   2, Family::Security, true),
    row(ApiKey::CreatePartitions,                 0,   3, Family::Admin,    false),
    row(ApiKey::DeleteGroups,                     0,   2, Family::Groups,   false),
    row(ApiKey::ElectLeaders,                     0,   2, Family::Cluster,  false),
    row(ApiKey::IncrementalAlterConfigs,          0,   1, Family::Configs,  false),
    row(ApiKey::AlterPartitionReassignments,      0,   1, Family::Cluster,  false),
    row(ApiKey::ListPartitionReassignments,       0,   0, Family::Cluster,  false),
    row(ApiKey::OffsetDelete,                     0,   0, Family::Groups,   false),
    row(ApiKey::DescribeClientQuotas,             0,   1, Family::Configs,  false),
    row(ApiKey::AlterClientQuotas,                0,   1, Family::Configs,  false),
    row(ApiKey::DescribeUserScramCredentials,     0,   0, Family::Security, false),
    row(ApiKey::AlterUserScramCredentials,        0,   0, Family::Security, false),
    row(ApiKey::DescribeCluster,                  0,   2, Family::Metadata, false),
    row(ApiKey::DescribeProducers,                0,   0, Family::Txn,      false),
    row(ApiKey::DescribeTransactions,             0,   0, Family::Txn,      false),
    row(ApiKey::ListTransactions,                 0,   1, Family::Txn,      false),
    row(ApiKey::DescribeTopicPartitions,          0,   0, Family::Metadata, false),
];

/// The row of an API, if the broker answers it.
pub fn find(key: ApiKey) -> Option<&'static Api> {
    // The rows are sorted by key (a test checks), so this is a binary search of 49 rows.
    APIS.binary_search_by_key(&(key as i16), |api| api.key as i16).ok().map(|index| &APIS[index])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::legacy_produce;

    /// The versions the crate's request type decodes. `ApiKey::valid_versions()` is not that:
    /// in kafka-protocol 0.18 it names OffsetCommit/OffsetFetch v10 and InitProducerId v6, which
    /// its request types cannot decode (a client sending OffsetFetch v10 was disconnected).
    fn request_versions(key: ApiKey) -> kafka_protocol::protocol::VersionRange {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        macro_rules! versions {
            ($($name:ident => $request:ty),* $(,)?) => {
                match key {
                    $(ApiKey::$name => <$request as Message>::VERSIONS,)*
                    other => panic!("{other:?} has no row in this list"),
                }
            };
        }
        versions! {
            Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest, OffsetCommit => OffsetCommitRequest, OffsetFetch => OffsetFetchRequest,
            FindCoordinator => FindCoordinatorRequest, JoinGroup => JoinGroupRequest, Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest, SyncGroup => SyncGroupRequest, DescribeGroups => DescribeGroupsRequest,
            ListGroups => ListGroupsRequest, ApiVersions => ApiVersionsRequest, CreateTopics => CreateTopicsRequest,
            DeleteTopics => DeleteTopicsRequest, DeleteRecords => DeleteRecordsRequest,
            InitProducerId => InitProducerIdRequest, OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
            DescribeConfigs => DescribeConfigsRequest, AlterConfigs => AlterConfigsRequest,
            AlterReplicaLogDirs => AlterReplicaLogDirsRequest, DescribeLogDirs => DescribeLogDirsRequest,
            CreatePartitions => CreatePartitionsRequest, DeleteGroups => DeleteGroupsRequest,
            ElectLeaders => ElectLeadersRequest, IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
            ListPartitionReassignments => ListPartitionReassignmentsRequest, OffsetDelete => OffsetDeleteRequest,
            DescribeCluster => DescribeClusterRequest, DescribeTopicPartitions => DescribeTopicPartitionsRequest,
            AddPartitionsToTxn => AddPartitionsToTxnRequest, AddOffsetsToTxn => AddOffsetsToTxnRequest,
            EndTxn => EndTxnRequest, TxnOffsetCommit => TxnOffsetCommitRequest,
            DescribeTransactions => DescribeTransactionsRequest, ListTransactions => ListTransactionsRequest,
            DescribeProducers => DescribeProducersRequest, WriteTxnMarkers => WriteTxnMarkersRequest,
            SaslHandshake => SaslHandshakeRequest, SaslAuthenticate => SaslAuthenticateRequest,
            DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
            AlterUserScramCredentials => AlterUserScramCredentialsRequest,
            DescribeAcls => DescribeAclsRequest, CreateAcls => CreateAclsRequest, DeleteAcls => DeleteAclsRequest,
            DescribeClientQuotas => DescribeClientQuotasRequest, AlterClientQuotas => AlterClientQuotasRequest,
        }
    }

    /// Proves a kafka-protocol upgrade cannot silently drop a pinned version: for every row, the
    /// crate's request type decodes each advertised version (Produce from v3: v0–2 are ours).
    #[test]
    fn the_crate_covers_every_pinned_range() {
        for api in &APIS {
            let crate_range = request_versions(api.key);
            let decoded_from = match api.key {
                ApiKey::Produce => legacy_produce::VERSION_MAX + 1,
                _ => api.min_version,
            };
            assert!(api.min_version <= api.max_version, "{:?}: min above max", api.key);
            assert!(
                crate_range.min <= decoded_from && api.max_version <= crate_range.max,
                "{:?}: pinned v{}–{} but kafka-protocol decodes v{}–{}",
                api.key,
                decoded_from,
                api.max_version,
                crate_range.min,
                crate_range.max,
            );
        }
    }

    /// `find` searches by key, so the rows must be in key order with no key twice; every row is
    /// found, and a key without a row is not.
    #[test]
    fn rows_are_sorted_by_key_and_found() {
        assert!(APIS.windows(2).all(|pair| (pair[0].key as i16) < (pair[1].key as i16)), "sorted, no duplicates");
        for api in &APIS {
            assert_eq!(find(api.key), Some(api));
        }
        assert_eq!(find(ApiKey::ConsumerGroupHeartbeat), None);
        assert_eq!(find(ApiKey::Envelope), None);
    }

    /// ApiVersions and the SASL requests are all a client may send before authenticating.
    #[test]
    fn only_api_versions_and_sasl_are_allowed_before_authentication() {
        let before: Vec<ApiKey> = APIS.iter().filter(|api| api.before_authentication).map(|api| api.key).collect();
        assert_eq!(before, vec![ApiKey::SaslHandshake, ApiKey::ApiVersions, ApiKey::SaslAuthenticate]);
    }
}
