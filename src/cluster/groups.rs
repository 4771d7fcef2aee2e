//! Consumer groups in a cluster: each group lives in one of [`GROUP_SLOTS`] slots (Kafka's
//! partitions of `__consumer_offsets`), each slot a partition of a pseudo-topic that the
//! controller gives a leader like any other; that leader coordinates the slot's groups. Group
//! records and committed offsets are written to PostgreSQL before any answer that depends on
//! them, fenced by the slot's leader epoch, so they survive their coordinator's death and a
//! deposed coordinator's late write is refused.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::cache::GROUP_SLOTS;
use super::pg::ClusterStore;
use crate::coordinator::{GroupStore, group_slot};
use crate::log::{GroupRecords, GroupWrite, LogError};

/// The slots this broker coordinates, with the epoch it took each at.
#[derive(Debug, Default)]
pub struct Slots {
    held: RwLock<HashMap<u32, i32>>,
}

impl Slots {
    pub fn epoch(&self, slot: u32) -> Option<i32> {
        self.held.read().get(&slot).copied()
    }

    pub fn hold(&self, slot: u32, epoch: i32) {
        self.held.write().insert(slot, epoch);
    }

    pub fn release(&self, slot: u32) {
        self.held.write().remove(&slot);
    }

    pub fn held(&self) -> Vec<(u32, i32)> {
        self.held.read().iter().map(|(s, e)| (*s, *e)).collect()
    }

    /// Adds `slot` at the epoch this broker holds it at to `fences` (once): the writes of one
    /// PostgreSQL transaction are fenced by every slot they touch. NOT_COORDINATOR when this
    /// broker does not hold it.
    pub fn fence(&self, slot: u32, fences: &mut Vec<(u32, i32)>) -> Result<(), LogError> {
        let epoch = self.epoch(slot).ok_or(LogError::NotCoordinator)?;
        if !fences.contains(&(slot, epoch)) {
            fences.push((slot, epoch));
        }
        Ok(())
    }
}

/// Group records and offsets in PostgreSQL.
pub struct PgGroupStore {
    pub store: ClusterStore,
    pub node_id: i32,
    pub slots: Arc<Slots>,
}

fn group_of(write: &GroupWrite) -> &str {
    match write {
        GroupWrite::Group { group, .. }
        | GroupWrite::DeleteGroup { group }
        | GroupWrite::Offset { group, .. }
        | GroupWrite::DeleteOffset { group, .. }
        | GroupWrite::PendingOffsets { group, .. } => group,
    }
}

#[async_trait]
impl GroupStore for PgGroupStore {
    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), LogError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut fences = Vec::new();
        let mut placed = Vec::with_capacity(writes.len());
        for write in writes {
            let slot = group_slot(group_of(&write), GROUP_SLOTS);
            self.slots.fence(slot, &mut fences)?;
            placed.push((slot, write));
        }
        if self.store.write_groups(self.node_id, &fences, &placed).await? {
            Ok(())
        } else {
            Err(LogError::NotCoordinator)
        }
    }

    async fn load(&self, slot: Option<u32>) -> Result<GroupRecords, LogError> {
        Ok(self.store.load_groups(slot).await?)
    }
}
