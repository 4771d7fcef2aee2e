//! Where the transaction coordinator keeps its records and how it reaches the partitions of a
//! transaction: the seams that let a cluster place it (`src/cluster/txn.rs`) while a single
//! broker keeps both in its own log.

use std::sync::Arc;

use async_trait::async_trait;

use crate::coordinator::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::{Log, LogError};

/// The transactional ids' records (`TxnMetadata::encode`), durable before any answer.
#[async_trait]
pub trait TxnStore: Send + Sync {
    /// The records of the ids placed in `slot` (every id when `None`).
    async fn load(&self, slot: Option<u32>) -> Result<Vec<(String, Vec<u8>)>, LogError>;
    /// Stores each record (`None`: the id is forgotten), all or none. NOT_COORDINATOR when
    /// another broker coordinates one of the ids now.
    async fn write(&self, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), LogError>;
    /// Whether this broker coordinates `id` now (a single broker coordinates every id).
    fn owns(&self, _id: &str) -> bool {
        true
    }
}

/// A single broker's records, in its log's store.
pub struct LocalTxnStore(pub Log);

#[async_trait]
impl TxnStore for LocalTxnStore {
    async fn load(&self, _slot: Option<u32>) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.0.load_transactions().await
    }

    async fn write(&self, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), LogError> {
        self.0.write_transactions(writes).await
    }
}

/// A commit or abort marker for one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Writes markers into the partitions of a transaction, wherever they are led.
#[async_trait]
pub trait MarkerWriter: Send + Sync {
    /// A marker in each of `partitions`, durable when this returns; each partition's result, in
    /// order. A partition deleted since is `UnknownTopicOrPartition`.
    async fn write(
        &self,
        marker: MarkerSpec,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), LogError>>, LogError>;
    /// Whether every transaction that can be open on this broker's partitions is this
    /// coordinator's: then a transaction it does not know of is hanging and may be aborted.
    fn sees_every_transaction(&self) -> bool {
        true
    }
    /// Asks the coordinator of `id`, another broker, whether the producer's transaction is in
    /// progress at this epoch and holds the partition (KIP-890's verification, for a write of
    /// a leader that does not coordinate the id). A single broker coordinates every id and is
    /// never asked.
    async fn verify(
        &self,
        _id: &str,
        _producer_id: i64,
        _producer_epoch: i16,
        _topic: &str,
        _partition: i32,
    ) -> Result<(), LogError> {
        Err(LogError::NotEnoughReplicas)
    }
}

/// A single broker's markers: every partition and every group is its own.
pub struct LocalMarkers {
    pub log: Log,
    pub groups: GroupCoordinator,
}

#[async_trait]
impl MarkerWriter for LocalMarkers {
    async fn write(
        &self,
        marker: MarkerSpec,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), LogError>>, LogError> {
        write_local(&self.log, &self.groups, marker, partitions).await
    }
}

/// Writes the markers of the partitions this broker's log holds in one group commit, and ends
/// the producer's offsets in the group slots (`OFFSETS_TOPIC`) this broker coordinates.
pub async fn write_local(
    log: &Log,
    groups: &GroupCoordinator,
    marker: MarkerSpec,
    partitions: &[(String, i32)],
) -> Result<Vec<Result<(), LogError>>, LogError> {
    let mut ended = Vec::new();
    for (topic, index) in partitions.iter().filter(|(topic, _)| topic == OFFSETS_TOPIC) {
        let slot = u32::try_from(*index).map_err(|_| LogError::UnknownTopicOrPartition);
        let result = match slot {
            Ok(slot) => groups.end_transaction(slot, marker.producer_id, marker.producer_epoch, marker.commit).await,
            Err(error) => Err(error),
        };
        ended.push(((topic.clone(), *index), result));
    }
    let mut ended = ended.into_iter();
    let found: Vec<Option<Arc<crate::log::Partition>>> = partitions
        .iter()
        .map(|(topic, index)| match topic == OFFSETS_TOPIC {
            true => None,
            false => log.topic(topic).and_then(|t| t.partition(*index).cloned()),
        })
        .collect();
    let present: Vec<_> = found.iter().flatten().cloned().collect();
    let mut written = match present.is_empty() {
        true => Vec::new(),
        false => log
            .write_markers(present, marker.producer_id, marker.producer_epoch, marker.commit, marker.coordinator_epoch)
            .await?
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect(),
    }
    .into_iter();
    Ok(partitions
        .iter()
        .zip(&found)
        .map(|((topic, _), partition)| match partition {
            _ if topic == OFFSETS_TOPIC => ended.next().map_or(Err(LogError::Unavailable), |(_, result)| result),
            Some(_) => written.next().unwrap_or(Err(LogError::Unavailable)),
            None => Err(LogError::UnknownTopicOrPartition),
        })
        .collect())
}
