//! The metadata store: what the log keeps about the cluster beyond its partitions' records:
//! topics and their numbers, producer-id blocks, dynamic configs and the remote segment index
//! (Kafka keeps these in its KRaft metadata log and its remote log metadata manager).
//!
//! [`LocalMetadata`], the single-node store, keeps them in the local store through the log's
//! writer, so they are as durable as an acknowledged record; cluster mode puts the shared
//! coordinator behind the same trait.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::remote_index::SegmentInfo;
use super::writer::Command;
use super::{LogError, Partition, RestoredPartition, TopicRecord};

/// Producer ids are handed out from blocks of this many, as Kafka's `ProducerIdManager` does:
/// one durable write per block rather than per InitProducerId.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Where the log's metadata is kept.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Stores a new topic; the store gives it its number (never reused). A topic restored from
    /// the object store comes with each partition's segments, which become its remote index.
    async fn create_topic(
        &self,
        record: TopicRecord,
        restored: Vec<RestoredPartition>,
    ) -> Result<TopicRecord, LogError>;
    /// Stores a topic's changed record (partition count, configs).
    async fn update_topic(&self, record: TopicRecord) -> Result<(), LogError>;
    /// Deletes a topic and, after every append queued before, its partitions' data.
    async fn delete_topic(&self, name: &str, id: uuid::Uuid, keys: Vec<super::PartitionKey>) -> Result<(), LogError>;
    /// Stores the dynamic configs of a scope (`broker`, `group/<id>`).
    async fn set_dynamic_configs(&self, scope: &str, configs: &BTreeMap<String, String>) -> Result<(), LogError>;
    /// A block of producer ids no one else was or will be given.
    async fn allocate_producer_ids(&self) -> Result<Range<i64>, LogError>;
    /// Records a segment that is now in the object store; readers see it once recorded.
    /// `producers` is the partition's producer snapshot as of the segment's end
    /// ([`super::producer::encode_snapshot`]) when the store keeps one, empty otherwise.
    async fn record_segment(
        &self,
        partition: &Arc<Partition>,
        segment: SegmentInfo,
        producers: Vec<u8>,
    ) -> Result<(), LogError>;
    /// Forgets a segment deleted from the object store.
    async fn delete_segment(&self, partition: &Arc<Partition>, base_offset: i64) -> Result<(), LogError>;
    /// Whether `record_segment` keeps a producer snapshot with each segment: a store that a
    /// takeover rebuilds from does; the local store keeps the producers' state itself.
    fn keeps_producer_snapshots(&self) -> bool {
        false
    }
    /// Makes a partition's new log start (DeleteRecords, retention) durable where a takeover
    /// reads it, before the partition's local log moves. The local store keeps its own with the
    /// log (the writer's truncate), so it has nothing to do here.
    async fn set_log_start(&self, _partition: &Arc<Partition>, _log_start: i64) -> Result<(), LogError> {
        Ok(())
    }
}

/// The metadata of one broker, in its own store.
#[derive(Debug)]
pub struct LocalMetadata {
    commands: mpsc::Sender<Command>,
}

impl LocalMetadata {
    pub(super) fn new(commands: mpsc::Sender<Command>) -> LocalMetadata {
        LocalMetadata { commands }
    }

    async fn call<T: Send + 'static>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (reply, receiver) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| LogError::Unavailable)?;
        super::writer::wait(receiver).await
    }
}

#[async_trait]
impl MetadataStore for LocalMetadata {
    async fn create_topic(
        &self,
        record: TopicRecord,
        restored: Vec<RestoredPartition>,
    ) -> Result<TopicRecord, LogError> {
        self.call(|reply| Command::CreateTopic { record, restored, reply }).await
    }

    async fn update_topic(&self, record: TopicRecord) -> Result<(), LogError> {
        self.call(|reply| Command::UpdateTopic { record, reply }).await
    }

    async fn delete_topic(&self, name: &str, id: uuid::Uuid, keys: Vec<super::PartitionKey>) -> Result<(), LogError> {
        let name = name.to_string();
        self.call(|reply| Command::DeleteTopic { name, id, keys, reply }).await
    }

    async fn set_dynamic_configs(&self, scope: &str, configs: &BTreeMap<String, String>) -> Result<(), LogError> {
        let configs = serde_json::to_vec(configs).unwrap_or_default();
        self.call(|reply| Command::DynamicConfigs { scope: scope.to_string(), configs, reply }).await
    }

    async fn allocate_producer_ids(&self) -> Result<Range<i64>, LogError> {
        self.call(|reply| Command::AllocateProducerIds { count: PRODUCER_ID_BLOCK_SIZE, reply }).await
    }

    async fn record_segment(
        &self,
        partition: &Arc<Partition>,
        segment: SegmentInfo,
        _producers: Vec<u8>,
    ) -> Result<(), LogError> {
        self.call(|reply| Command::RecordSegment { partition: partition.clone(), segment, reply }).await
    }

    async fn delete_segment(&self, partition: &Arc<Partition>, base_offset: i64) -> Result<(), LogError> {
        self.call(|reply| Command::DeleteSegment { partition: partition.clone(), base_offset, reply }).await
    }
}
