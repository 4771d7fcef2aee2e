//! Error kinds of the broker's core, each mapped to the Kafka error code a client expects, in one place.

use kafka_protocol::ResponseError;

use super::StoreError;
use super::batch::BatchError;

/// Why a log operation failed. Every variant maps to one Kafka error code in [`LogError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The topic or partition does not exist (or is being deleted).
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    /// A topic id that no topic has.
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    /// CreateTopics of a name in use.
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// A topic name breaking Kafka's rules.
    #[error("{0}")]
    InvalidTopic(String),
    /// A partition count that is not allowed.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor other than 1 (this is a single-replica broker).
    #[error("Replication factor: {0} larger than available brokers: 1.")]
    InvalidReplicationFactor(i16),
    /// Replica assignments that do not fit the request.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A config name or value that is not accepted.
    #[error("{0}")]
    InvalidConfig(String),
    /// A request that is well-formed but makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// A produced batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Some records of a batch break the topic's rules (INVALID_RECORD with per-record errors).
    #[error("{message}")]
    InvalidRecords { message: String, record_errors: Vec<(i32, String)> },
    /// Some records' CreateTime lies outside `message.timestamp.before/after.max.ms` of now
    /// (INVALID_TIMESTAMP with per-record errors).
    #[error("{message}")]
    InvalidTimestamp { message: String, record_errors: Vec<(i32, String)> },
    /// An idempotent batch whose sequence does not follow the producer's last one.
    #[error("The broker received an out of order sequence number.")]
    OutOfOrderSequence,
    /// An idempotent batch from an older producer epoch.
    #[error("Producer attempted to produce with an old epoch.")]
    InvalidProducerEpoch,
    /// A fetch or delete outside the log's offsets.
    #[error("The requested offset is not within the range of offsets maintained by the server.")]
    OffsetOutOfRange,
    /// acks=all with `min.insync.replicas` above the single replica.
    #[error("Messages are rejected since there are fewer in-sync replicas than required.")]
    NotEnoughReplicas,
    /// A client's leader epoch is older than the partition's (its metadata is stale).
    #[error("The leader epoch in the request is older than the epoch on the broker.")]
    FencedLeaderEpoch,
    /// A client's leader epoch is newer than the partition's (this broker has not caught up).
    #[error("The leader epoch in the request is newer than the epoch on the broker.")]
    UnknownLeaderEpoch,
    /// This broker does not lead the partition.
    #[error("This server is not the leader for that topic-partition.")]
    NotLeaderOrFollower,
    /// This broker does not coordinate the group (another broker does).
    #[error("This is not the correct coordinator.")]
    NotCoordinator,
    /// This broker was just given the group and is still loading it.
    #[error("The coordinator is loading and hence can't process requests.")]
    CoordinatorLoadInProgress,
    /// The authorizer refused the session this operation on the topic.
    #[error("Not authorized to access topics: [{0}]")]
    TopicAuthorizationFailed(String),
    /// The authorizer refused the session this operation on the group.
    #[error("Not authorized to access group: {0}")]
    GroupAuthorizationFailed(String),
    /// The authorizer refused the session this operation on the transactional id.
    #[error("Transactional Id authorization failed: {0}")]
    TransactionalIdAuthorizationFailed(String),
    /// The authorizer refused the session this operation on the cluster.
    #[error("Cluster authorization failed.")]
    ClusterAuthorizationFailed,
    /// Transactions are not built: their APIs are not advertised.
    #[error("Transactions are not supported by this broker.")]
    TransactionsUnsupported,
    /// A transactional write outside a transaction in progress that holds the partition.
    #[error("The producer attempted a transactional operation in an invalid state.")]
    InvalidTxnState,
    /// A request needs a later version of its API than the one it was sent at.
    #[error("The version of API is not supported.")]
    UnsupportedVersion,
    /// A produce asked for acks other than -1, 0 or 1.
    #[error("Produce request specified an invalid value for required acks: {0}.")]
    InvalidRequiredAcks(i16),
    /// The disk or RocksDB failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The object store failed to give back a segment (retriable: the client fetches again).
    #[error("remote storage: {0}")]
    Remote(String),
    /// The log is shutting down or its writer stopped.
    #[error("The broker is shutting down.")]
    Unavailable,
}

impl LogError {
    pub fn code(&self) -> i16 {
        let error = match self {
            LogError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            LogError::UnknownTopicId => ResponseError::UnknownTopicId,
            LogError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            LogError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            LogError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            LogError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
            LogError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            LogError::InvalidRequest(_) => ResponseError::InvalidRequest,
            LogError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
            LogError::UnsupportedVersion => ResponseError::UnsupportedVersion,
            LogError::Batch(BatchError::Corrupt | BatchError::CrcMismatch) => ResponseError::CorruptMessage,
            LogError::Batch(BatchError::TooLarge { .. } | BatchError::DecompressedTooLarge { .. }) => {
                ResponseError::MessageTooLarge
            }
            LogError::Batch(BatchError::UnknownCompression(_)) => ResponseError::UnsupportedCompressionType,
            LogError::Batch(BatchError::UnsupportedMagic(_) | BatchError::Invalid(_) | BatchError::Empty)
            | LogError::InvalidRecords { .. } => ResponseError::InvalidRecord,
            LogError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
            LogError::TransactionsUnsupported => ResponseError::TransactionalIdAuthorizationFailed,
            LogError::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
            LogError::InvalidTxnState => ResponseError::InvalidTxnState,
            LogError::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
            LogError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
            LogError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
            LogError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
            LogError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            LogError::NotCoordinator => ResponseError::NotCoordinator,
            LogError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            LogError::TopicAuthorizationFailed(_) => ResponseError::TopicAuthorizationFailed,
            LogError::GroupAuthorizationFailed(_) => ResponseError::GroupAuthorizationFailed,
            LogError::TransactionalIdAuthorizationFailed(_) => ResponseError::TransactionalIdAuthorizationFailed,
            LogError::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
            LogError::Storage(_) | LogError::Remote(_) => ResponseError::KafkaStorageError,
            LogError::Unavailable => ResponseError::BrokerNotAvailable,
        };
        error.code()
    }
}
