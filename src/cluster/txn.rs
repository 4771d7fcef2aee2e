//! Transactions in a cluster: each transactional id is coordinated by the broker holding its
//! group slot (as its consumer groups are), its state in PostgreSQL fenced by the slot's leader
//! epoch, and its markers written by each partition's leader: locally, or through
//! WriteTxnMarkers to the leader on the inter-broker listener, as Kafka's coordinators send them.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::MetadataCache;
use super::cache::GROUP_SLOTS;
use super::forward::Forwarder;
use super::groups::Slots;
use super::pg::ClusterStore;
use crate::coordinator::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::coordinator::group_slot;
use crate::coordinator::txn::store::{MarkerSpec, MarkerWriter, TxnStore, write_local};
use crate::log::{Log, LogError};

/// Transactional ids' records in PostgreSQL, written only while this broker holds their slots.
pub struct PgTxnStore {
    pub store: ClusterStore,
    pub node_id: i32,
    pub slots: Arc<Slots>,
}

#[async_trait]
impl TxnStore for PgTxnStore {
    async fn load(&self, slot: Option<u32>) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        Ok(self.store.load_transactions(slot).await?)
    }

    async fn write(&self, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), LogError> {
        let mut fences = Vec::new();
        let mut placed = Vec::with_capacity(writes.len());
        for (id, record) in writes {
            let slot = group_slot(&id, GROUP_SLOTS);
            self.slots.fence(slot, &mut fences)?;
            placed.push((slot, id, record));
        }
        match self.store.write_transactions(self.node_id, &fences, &placed).await? {
            true => Ok(()),
            false => Err(LogError::NotCoordinator),
        }
    }

    fn owns(&self, id: &str) -> bool {
        self.slots.epoch(group_slot(id, GROUP_SLOTS)).is_some()
    }
}

/// Markers to each partition's leader: this broker's log for its own partitions, WriteTxnMarkers
/// to the others'; and to each group slot's coordinator (`OFFSETS_TOPIC`), which ends the
/// producer's transactional offsets there.
pub struct ClusterMarkers {
    pub log: Log,
    pub groups: GroupCoordinator,
    pub cache: Arc<dyn MetadataCache>,
    pub forwarder: Arc<dyn Forwarder>,
}

#[async_trait]
impl MarkerWriter for ClusterMarkers {
    async fn write(
        &self,
        marker: MarkerSpec,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), LogError>>, LogError> {
        let this = self.cache.this_broker();
        let mut results: Vec<Option<Result<(), LogError>>> = partitions.iter().map(|_| None).collect();
        let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (at, (topic, index)) in partitions.iter().enumerate() {
            if topic == OFFSETS_TOPIC {
                let leader = u32::try_from(*index).map_or(-1, |slot| self.cache.slot_coordinator(slot));
                by_leader.entry(leader).or_default().push(at);
                continue;
            }
            match self.log.topic(topic).and_then(|t| t.partition(*index).cloned()) {
                Some(partition) => by_leader.entry(self.cache.leadership(&partition).leader).or_default().push(at),
                None => results[at] = Some(Err(LogError::UnknownTopicOrPartition)),
            }
        }
        // Every leader at once: each makes its markers durable on its own write-ahead log
        // schedule, so the slowest one bounds the wait, not their sum.
        let writes = by_leader.into_iter().map(|(leader, ats)| {
            let chosen: Vec<(String, i32)> = ats.iter().map(|&at| partitions[at].clone()).collect();
            async move {
                let answered = if leader == this {
                    write_local(&self.log, &self.groups, marker, &chosen).await
                } else {
                    match self.cache.broker_on(leader, self.forwarder.listener()) {
                        Some(info) => self.forwarder.write_markers(&info, &marker, &chosen).await,
                        None => Err(LogError::NotLeaderOrFollower),
                    }
                };
                (leader, ats, answered)
            }
        });
        for (leader, ats, answered) in futures::future::join_all(writes).await {
            match answered {
                Ok(each) => {
                    for (&at, result) in ats.iter().zip(each) {
                        results[at] = Some(result);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, leader, "cannot write transaction markers there yet");
                    for &at in &ats {
                        results[at] = Some(Err(match error {
                            LogError::NotLeaderOrFollower => LogError::NotLeaderOrFollower,
                            _ => LogError::Remote(error.to_string()),
                        }));
                    }
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Err(LogError::Unavailable))).collect())
    }

    fn sees_every_transaction(&self) -> bool {
        false
    }

    async fn verify(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), LogError> {
        let coordinator = self.cache.coordinator_for(id);
        let info = match coordinator == self.cache.this_broker() {
            // Its slot is moving here: not loaded yet.
            true => None,
            false => self.cache.broker_on(coordinator, self.forwarder.listener()),
        };
        let Some(info) = info else { return Err(LogError::NotEnoughReplicas) };
        let code = match self.forwarder.verify_txn(&info, id, producer_id, producer_epoch, topic, partition).await {
            Ok(code) => code,
            Err(error) => {
                tracing::debug!(%error, transactional_id = id, "cannot verify a transactional write yet");
                return Err(LogError::NotEnoughReplicas);
            }
        };
        // As Kafka's leaders answer a producer whose write failed the verification: its state
        // errors as they are, the coordinator's own trouble as retriable.
        match kafka_protocol::ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(kafka_protocol::ResponseError::InvalidTxnState) => Err(LogError::InvalidTxnState),
            Some(
                kafka_protocol::ResponseError::InvalidProducerEpoch
                | kafka_protocol::ResponseError::ProducerFenced
                | kafka_protocol::ResponseError::InvalidProducerIdMapping,
            ) => Err(LogError::InvalidProducerEpoch),
            Some(_) => Err(LogError::NotEnoughReplicas),
        }
    }
}
