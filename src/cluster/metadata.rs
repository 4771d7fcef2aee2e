//! The log's metadata store in a cluster: topics, producer-id blocks, dynamic configs and the
//! segment index live in PostgreSQL, shared by every broker; each change is also made in the
//! local store (a cache, and what the local log's own readers use).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use super::cache::ClusterCache;
use super::pg::{ClusterStore, PgError, SegmentRow};
use crate::log::metadata::{MetadataStore, PRODUCER_ID_BLOCK_SIZE};
use crate::log::{LogError, Partition, PartitionKey, RestoredPartition, SegmentInfo, TopicRecord};

impl From<PgError> for LogError {
    fn from(error: PgError) -> LogError {
        LogError::Remote(error.to_string())
    }
}

/// PostgreSQL first, then the local store.
#[derive(Debug)]
pub struct PgMetadata {
    store: ClusterStore,
    cache: Arc<ClusterCache>,
    local: Arc<dyn MetadataStore>,
}

impl PgMetadata {
    pub fn new(store: ClusterStore, cache: Arc<ClusterCache>, local: Arc<dyn MetadataStore>) -> PgMetadata {
        PgMetadata { store, cache, local }
    }

    /// Leaders for `count` new partitions of a topic: the live brokers in turn, the least loaded
    /// first, so that the topic is spread evenly.
    fn leaders(&self, count: u32) -> Vec<i32> {
        let load = self.cache.load();
        if load.is_empty() {
            return vec![-1; count as usize];
        }
        (0..count as usize).map(|i| load[i % load.len()].0).collect()
    }
}

#[async_trait]
impl MetadataStore for PgMetadata {
    async fn create_topic(
        &self,
        record: TopicRecord,
        restored: Vec<RestoredPartition>,
    ) -> Result<TopicRecord, LogError> {
        if !restored.is_empty() {
            return Err(LogError::InvalidRequest("a cluster's topics are not restored from a bucket listing".into()));
        }
        let leaders = self.leaders(record.partitions());
        let created = self
            .store
            .create_topic(record.id(), record.name(), record.partitions(), record.configs(), &leaders)
            .await?
            .ok_or_else(|| LogError::TopicAlreadyExists(record.name().to_string()))?;
        let record = TopicRecord::new(created.name, created.id, created.number, created.partitions, created.configs);
        self.local.update_topic(record.clone()).await?;
        Ok(record)
    }

    async fn update_topic(&self, record: TopicRecord) -> Result<(), LogError> {
        let leaders = self.leaders(record.partitions());
        self.store.update_topic(record.id(), record.partitions(), record.configs(), &leaders).await?;
        self.local.update_topic(record).await
    }

    async fn delete_topic(&self, name: &str, id: uuid::Uuid, keys: Vec<PartitionKey>) -> Result<(), LogError> {
        self.store.delete_topic(id).await?;
        self.local.delete_topic(name, id, keys).await
    }

    async fn set_dynamic_configs(&self, scope: &str, configs: &BTreeMap<String, String>) -> Result<(), LogError> {
        self.store.set_dynamic_configs(scope, configs).await?;
        self.local.set_dynamic_configs(scope, configs).await
    }

    async fn allocate_producer_ids(&self) -> Result<Range<i64>, LogError> {
        Ok(self.store.allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE).await?)
    }

    async fn record_segment(
        &self,
        partition: &Arc<Partition>,
        segment: SegmentInfo,
        producers: Vec<u8>,
    ) -> Result<(), LogError> {
        let row = SegmentRow {
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            max_timestamp: segment.max_timestamp,
            size_bytes: segment.size_bytes as i64,
            producers: Some(producers),
        };
        // Only the partition's current leader may extend its index.
        if !self.store.record_segment(partition.topic_id, partition.index, partition.leader_epoch(), row).await? {
            return Err(LogError::NotLeaderOrFollower);
        }
        self.local.record_segment(partition, segment, Vec::new()).await
    }

    fn keeps_producer_snapshots(&self) -> bool {
        true
    }

    async fn set_log_start(&self, partition: &Arc<Partition>, log_start: i64) -> Result<(), LogError> {
        // Only the partition's current leader moves it.
        match self.store.set_log_start(partition.topic_id, partition.index, partition.leader_epoch(), log_start).await?
        {
            true => Ok(()),
            false => Err(LogError::NotLeaderOrFollower),
        }
    }

    async fn delete_segment(&self, partition: &Arc<Partition>, base_offset: i64) -> Result<(), LogError> {
        self.store.delete_segment(partition.topic_id, partition.index, base_offset).await?;
        self.local.delete_segment(partition, base_offset).await
    }
}
