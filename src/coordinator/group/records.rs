//! What the group coordinator makes durable (Kafka keeps it in `__consumer_offsets`): a group's
//! record and each committed offset, as the store holds them, and where they are stored.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::classic::{ClassicGroup, StoredMember};
use crate::log::{GroupRecords, GroupWrite, Log, LogError, StoreError};

/// One committed offset, as stored and as OffsetFetch answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct GroupRecord {
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: Vec<MemberRecord>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    metadata: Vec<u8>,
    assignment: Vec<u8>,
}

/// The record of `group`: its generation, protocol, leader and members with their assignments.
pub fn group_record(group: &ClassicGroup) -> Vec<u8> {
    let record = GroupRecord {
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        members: group
            .stored_members()
            .into_iter()
            .map(|m| MemberRecord {
                id: m.id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                metadata: m.metadata.to_vec(),
                assignment: m.assignment.to_vec(),
            })
            .collect(),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// The group a stored record describes, its members' sessions starting at `now_ms`.
pub fn restore_group(id: &str, bytes: &[u8], now_ms: u64) -> Result<ClassicGroup, LogError> {
    let record: GroupRecord =
        serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("group record: {e}")))?;
    let members = record
        .members
        .into_iter()
        .map(|m| StoredMember {
            id: m.id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            metadata: Bytes::from(m.metadata),
            assignment: Bytes::from(m.assignment),
        })
        .collect();
    Ok(ClassicGroup::restored(
        id,
        record.generation,
        record.protocol_type,
        record.protocol,
        record.leader,
        members,
        now_ms,
    ))
}

pub fn offset_record(offset: &CommittedOffset) -> Vec<u8> {
    serde_json::to_vec(offset).unwrap_or_default()
}

pub fn restore_offset(bytes: &[u8]) -> Result<CommittedOffset, LogError> {
    Ok(serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("offset record: {e}")))?)
}

pub fn pending_record(pending: &super::offsets::PendingOffsets) -> Vec<u8> {
    serde_json::to_vec(pending).unwrap_or_default()
}

pub fn restore_pending(bytes: &[u8]) -> Result<super::offsets::PendingOffsets, LogError> {
    Ok(serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("pending offsets record: {e}")))?)
}

/// Where group records and committed offsets are made durable (Kafka keeps them in
/// `__consumer_offsets`): the local log's store on a single broker, a cluster's PostgreSQL.
#[async_trait::async_trait]
pub trait GroupStore: Send + Sync {
    /// Makes `writes` durable, in one write; a cluster's store refuses them (NOT_COORDINATOR)
    /// once this broker no longer coordinates their groups.
    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), LogError>;
    /// The groups and offsets of `slot` (every group when `None`).
    async fn load(&self, slot: Option<u32>) -> Result<GroupRecords, LogError>;
}

/// Group records and offsets in the local log, written through its writer.
pub struct LocalGroupStore(pub Log);

#[async_trait::async_trait]
impl GroupStore for LocalGroupStore {
    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), LogError> {
        self.0.write_groups(writes).await
    }

    async fn load(&self, _slot: Option<u32>) -> Result<GroupRecords, LogError> {
        self.0.load_groups().await
    }
}

/// The slot a group lives in among `slots` (Kafka's partition of `__consumer_offsets`): FNV-1a
/// of its id, so that every broker agrees.
pub fn group_slot(group_id: &str, slots: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % slots.max(1)
}
