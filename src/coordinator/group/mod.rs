//! The group coordinator (Kafka's `GroupCoordinator`): classic consumer groups and their
//! committed offsets, durable in a `GroupStore` before any answer depends on them.
//!
//! - `classic.rs`: the classic group state machine (Kafka's `ClassicGroup` and the join, sync,
//!   heartbeat and leave logic of its `GroupMetadataManager`): pure state, time passed in.
//! - `offsets.rs`: committed offsets (Kafka's `OffsetMetadataManager`): pure state, each change
//!   built as the records to store and applied once they are stored.
//! - `records.rs`: the records themselves, the `GroupStore` they go to, and a group's slot.
//! - `timers.rs`: sessions and rebalance deadlines at their exact millisecond, offset expiry.
//! - this file: the state behind one mutex that is never held across an `.await`, and the
//!   order of things: decide, write with fsync while the write lock is held, then answer.
//!   Time is tokio's clock, so tests can pause and advance it.

pub mod classic;
pub mod metrics;
pub mod offsets;
pub mod records;
mod timers;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::config::GroupConfig;
use crate::log::{GroupRecords, GroupWrite, Log, LogError};
use classic::{ClassicGroup, GroupState};
pub use classic::{GroupLimits, JoinRequest, JoinResult, SyncResult};
use offsets::OffsetMetadataManager;
pub use offsets::{CommitRequest, OFFSET_METADATA_BYTES_MAX, PartitionLag, PendingOffsets};
pub use records::{CommittedOffset, GroupStore, LocalGroupStore, group_slot};

/// How many slots groups (and transactional ids) are placed in: Kafka's partitions of
/// `__consumer_offsets`, its `offsets.topic.num.partitions` default.
pub const GROUP_SLOTS: u32 = 50;

/// The topic a transaction marker names to reach a group slot's coordinator (with the slot as
/// its partition), as Kafka's coordinators address `__consumer_offsets`.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

impl From<&GroupConfig> for GroupLimits {
    fn from(config: &GroupConfig) -> GroupLimits {
        GroupLimits {
            session_timeout_ms_min: config.min_session_timeout_ms,
            session_timeout_ms_max: config.max_session_timeout_ms,
            initial_rebalance_delay_ms: config.initial_rebalance_delay_ms,
            members_max: config.members_max,
        }
    }
}

#[derive(Default)]
struct State {
    groups: HashMap<String, ClassicGroup>,
    offsets: OffsetMetadataManager,
    /// The deadline the timer task sleeps towards (None: it sleeps until woken).
    timer_deadline_ms: Option<u64>,
    /// In a cluster, the slots whose groups are loaded here (`None`: a single broker's, all).
    loaded: Option<HashSet<u32>>,
}

/// The group coordinator: cheap to clone, every clone the same coordinator.
#[derive(Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where group records and offsets are made durable.
    store: Arc<dyn GroupStore>,
    state: Mutex<State>,
    /// Serialises durable changes so that the store sees them in the order they were decided.
    writes: tokio::sync::Mutex<()>,
    limits: GroupLimits,
    offsets_retention_ms: i64,
    clock_start: Instant,
    /// Wakes the timer task when a deadline earlier than `State::timer_deadline_ms` appears.
    deadlines_changed: Notify,
}

impl GroupCoordinator {
    /// Loads groups and offsets from the local log's store (a single broker coordinates every
    /// group).
    pub async fn open(log: Log, limits: GroupLimits, offsets_retention_ms: i64) -> Result<GroupCoordinator, LogError> {
        let coordinator = Self::with_store(Arc::new(LocalGroupStore(log)), limits, offsets_retention_ms);
        coordinator.with_state(|state| state.loaded = None);
        let records = coordinator.inner.store.load(None).await?;
        let loaded = coordinator.restore(records)?;
        tracing::info!(groups = loaded, "group coordinator loaded");
        Ok(coordinator)
    }

    /// A coordinator of no group yet over `store`: a cluster loads the slots it is given
    /// (`load_slot`) and drops those it loses (`unload_slot`).
    pub fn with_store(store: Arc<dyn GroupStore>, limits: GroupLimits, offsets_retention_ms: i64) -> GroupCoordinator {
        GroupCoordinator {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(State { loaded: Some(HashSet::new()), ..State::default() }),
                writes: tokio::sync::Mutex::new(()),
                limits,
                offsets_retention_ms,
                clock_start: Instant::now(),
                deadlines_changed: Notify::new(),
            }),
        }
    }

    /// Loads the groups and offsets of `slot` (this broker now coordinates them).
    pub async fn load_slot(&self, slot: u32) -> Result<usize, LogError> {
        let _writes = self.inner.writes.lock().await;
        let records = self.inner.store.load(Some(slot)).await?;
        let loaded = self.restore(records)?;
        self.with_state(|state| state.loaded.iter_mut().for_each(|slots| _ = slots.insert(slot)));
        Ok(loaded)
    }

    /// Whether the group's slot is loaded here (always on a single broker): until it is, a
    /// cluster's coordinator answers COORDINATOR_LOAD_IN_PROGRESS rather than from a state
    /// without the slot's stored groups and offsets.
    pub fn is_loaded(&self, group_id: &str) -> bool {
        self.with_state(|state| {
            state.loaded.as_ref().is_none_or(|loaded| loaded.contains(&group_slot(group_id, GROUP_SLOTS)))
        })
    }

    /// Forgets the groups of `slot` (another broker coordinates them now); members waiting on
    /// a join or sync hear NOT_COORDINATOR when their requests are dropped.
    pub async fn unload_slot(&self, slot: u32, slots: u32) {
        let _writes = self.inner.writes.lock().await;
        self.with_state(|state| {
            state.loaded.iter_mut().for_each(|loaded| _ = loaded.remove(&slot));
            state.groups.retain(|id, _| group_slot(id, slots) != slot);
            state.offsets.retain_groups(|id| group_slot(id, slots) != slot);
        });
    }

    /// Takes stored groups and offsets into memory; returns how many groups.
    fn restore(&self, GroupRecords { groups, offsets, pending }: GroupRecords) -> Result<usize, LogError> {
        let now = self.now_ms();
        let pending = pending
            .into_iter()
            .map(|(group, producer_id, bytes)| Ok((group, producer_id, records::restore_pending(&bytes)?)))
            .collect::<Result<Vec<_>, LogError>>()?;
        let mut restored = HashMap::new();
        for (id, bytes) in groups {
            let group = records::restore_group(&id, &bytes, now)?;
            restored.insert(id, group);
        }
        let mut committed: HashMap<String, BTreeMap<(String, i32), CommittedOffset>> = HashMap::new();
        for (group, topic, partition, bytes) in offsets {
            committed.entry(group).or_default().insert((topic, partition), records::restore_offset(&bytes)?);
        }
        let loaded = restored.len();
        self.with_state(|current| {
            current.groups.extend(restored);
            current.offsets.restore(committed);
            current.offsets.restore_pending(pending);
        });
        Ok(loaded)
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock_start.elapsed().as_millis() as u64
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.state.lock())
    }

    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), LogError> {
        self.inner.store.write(writes).await
    }

    /// Writes the group's record (when `persist`) before its parked syncs are answered.
    async fn persist_group(&self, group_id: &str) -> Result<(), LogError> {
        let record = self.with_state(|state| state.groups.get(group_id).map(records::group_record));
        if let Some(record) = record {
            self.write(vec![GroupWrite::Group { group: group_id.to_string(), record }]).await?;
        }
        Ok(())
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        if group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &request.member_id);
        }
        let _writes = self.inner.writes.lock().await;
        let (reply, answer) = oneshot::channel();
        let now = self.now_ms();
        let new_member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
        let effects = self.with_group_state(group_id, |state| {
            let group = state.groups.entry(group_id.to_string()).or_insert_with(|| ClassicGroup::new(group_id));
            group.join(request, new_member_id, &self.inner.limits, now, reply)
        });
        if effects.persist
            && let Err(error) = self.persist_group(group_id).await
        {
            tracing::error!(%error, group = group_id, "cannot store the group");
        }
        drop(_writes);
        answer.await.unwrap_or_else(|_| JoinResult::error(ResponseError::CoordinatorNotAvailable, ""))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let writes = self.inner.writes.lock().await;
        let (reply, answer) = oneshot::channel();
        let now = self.now_ms();
        let effects = self.with_group_state(group_id, |state| match state.groups.get_mut(group_id) {
            Some(group) => Some(group.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                now,
                reply,
            )),
            None => {
                let _ = reply.send(SyncResult::error(ResponseError::UnknownMemberId));
                None
            }
        });
        if let Some(effects) = effects
            && effects.persist
        {
            // The assignment is durable before any member hears of it.
            match self.persist_group(group_id).await {
                Ok(()) => {
                    let _ = self.with_group_state(group_id, |state| {
                        state.groups.get_mut(group_id).map(ClassicGroup::release_syncs)
                    });
                }
                Err(error) => tracing::error!(%error, group = group_id, "cannot store the group"),
            }
        }
        drop(writes);
        answer.await.unwrap_or_else(|_| SyncResult::error(ResponseError::CoordinatorNotAvailable))
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        let now = self.now_ms();
        self.with_state(|state| match state.groups.get_mut(group_id) {
            Some(group) => group.heartbeat(member_id, instance_id, generation, now),
            None => ResponseError::UnknownMemberId.code(),
        })
    }

    /// LeaveGroup for each `(member id, instance id)`; one error code per member.
    pub async fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Result<Vec<i16>, i16> {
        let _writes = self.inner.writes.lock().await;
        let now = self.now_ms();
        let limits = self.inner.limits;
        let result: Result<Vec<i16>, i16> = self.with_group_state(group_id, |state| {
            let group = state.groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId.code())?;
            Ok(members.iter().map(|(id, instance)| group.leave(id, instance.as_deref(), &limits, now)).collect())
        });
        let codes = result?;
        self.persist_if_empty(group_id).await;
        Ok(codes)
    }

    async fn persist_if_empty(&self, group_id: &str) {
        let empty = self.with_state(|state| state.groups.get(group_id).is_some_and(|g| g.state == GroupState::Empty));
        if empty && let Err(error) = self.persist_group(group_id).await {
            tracing::error!(%error, group = group_id, "cannot store the group");
        }
    }

    /// OffsetCommit: checks membership (or a standalone commit), then writes every offset at once.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<CommitRequest>,
    ) -> Result<Vec<i16>, i16> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId.code());
        }
        let _writes = self.inner.writes.lock().await;
        let now = self.now_ms();
        let allowed = self.with_state(|state| {
            let group = state.groups.entry(group_id.to_string()).or_insert_with(|| ClassicGroup::new(group_id));
            if generation < 0 && member_id.is_empty() {
                // A standalone consumer (assign + commit) may commit while the group has no members.
                return if group.state == GroupState::Empty {
                    Ok(())
                } else {
                    Err(ResponseError::UnknownMemberId.code())
                };
            }
            match group.state {
                GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable.code()),
                GroupState::Empty => Err(ResponseError::UnknownMemberId.code()),
                // A member of the new generation that has no assignment yet must not commit.
                GroupState::CompletingRebalance
                    if group.members.contains_key(member_id) && generation == group.generation =>
                {
                    Err(ResponseError::RebalanceInProgress.code())
                }
                _ => {
                    let code = group.heartbeat(member_id, instance_id, generation, now);
                    if code == ResponseError::RebalanceInProgress.code() || code == 0 {
                        // Kafka allows commits from the current generation while PreparingRebalance.
                        Ok(())
                    } else {
                        Err(code)
                    }
                }
            }
        });
        allowed?;
        let commit = OffsetMetadataManager::commit(group_id, offsets, crate::log::now_ms());
        if let Err(error) = self.write(commit.writes).await {
            tracing::error!(%error, group = group_id, "offset commit failed");
            return Err(error.code());
        }
        self.with_state(|state| state.offsets.replay(group_id, commit.accepted));
        Ok(commit.codes)
    }

    /// TxnOffsetCommit's check of the member that sends offsets with a transaction (KIP-447):
    /// none for a producer that names no member and no generation; otherwise the member must be
    /// in the group's current generation, so a zombie of an earlier generation is fenced.
    pub fn check_transactional_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return Ok(());
        }
        self.with_state(|state| match state.groups.get(group_id) {
            None => Err(ResponseError::IllegalGeneration),
            Some(group) if group.state == GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            Some(group) => group.check_member(member_id, instance_id, generation),
        })
    }

    /// The offsets of a transaction committed by a coordinator of an earlier version, which kept
    /// them with the transaction: they become the group's committed offsets now. No membership
    /// check: the group may have moved on meanwhile, as in Kafka.
    pub async fn commit_transactional(&self, group_id: &str, offsets: Vec<CommitRequest>) -> Result<(), LogError> {
        let _writes = self.inner.writes.lock().await;
        let commit = OffsetMetadataManager::commit(group_id, offsets, crate::log::now_ms());
        self.write(commit.writes).await?;
        self.with_state(|state| {
            state.groups.entry(group_id.to_string()).or_insert_with(|| ClassicGroup::new(group_id));
            state.offsets.replay(group_id, commit.accepted)
        });
        Ok(())
    }

    /// TxnOffsetCommit: offsets that become the group's committed offsets when the producer's
    /// transaction commits (its marker reaches this coordinator, `end_transaction`), kept
    /// durably until then. A code per offset, or one for all (PRODUCER_FENCED when a later epoch
    /// of the producer has offsets pending here).
    pub async fn commit_pending(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<CommitRequest>,
    ) -> Result<Vec<i16>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let _writes = self.inner.writes.lock().await;
        let (codes, write, pending) = self.with_state(|state| {
            state.offsets.commit_pending(group_id, producer_id, producer_epoch, offsets, crate::log::now_ms())
        })?;
        if let Err(error) = self.write(vec![write]).await {
            tracing::warn!(%error, group = group_id, "cannot store transactional offsets");
            return Err(match error {
                LogError::NotCoordinator => ResponseError::NotCoordinator,
                _ => ResponseError::CoordinatorNotAvailable,
            });
        }
        self.with_state(|state| {
            state.groups.entry(group_id.to_string()).or_insert_with(|| ClassicGroup::new(group_id));
            state.offsets.replay_pending(group_id, producer_id, pending)
        });
        Ok(codes)
    }

    /// A transaction marker of `producer_id` for the groups of `slot` (Kafka's marker in a
    /// partition of `__consumer_offsets`): a commit makes the offsets its transaction sent with
    /// TxnOffsetCommit the groups' committed offsets, an abort drops them. NOT_COORDINATOR when
    /// the slot's groups are not loaded here; safe to repeat.
    pub async fn end_transaction(&self, slot: u32, producer_id: i64, epoch: i16, commit: bool) -> Result<(), LogError> {
        let _writes = self.inner.writes.lock().await;
        let mut effects = self.with_state(|state| {
            if state.loaded.as_ref().is_some_and(|loaded| !loaded.contains(&slot)) {
                return Err(LogError::NotCoordinator);
            }
            Ok(state
                .offsets
                .end_transaction(producer_id, epoch, commit, |group| group_slot(group, GROUP_SLOTS) == slot))
        })?;
        if effects.writes.is_empty() {
            return Ok(());
        }
        // The writes go to the store; what they apply stays for the replay.
        self.write(std::mem::take(&mut effects.writes)).await?;
        self.with_state(|state| state.offsets.replay_marker(effects));
        Ok(())
    }

    /// The group's partitions whose offsets a transaction in progress commits: OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT for them until it ends (KIP-447).
    pub fn unstable_offsets(&self, group_id: &str) -> BTreeSet<(String, i32)> {
        self.with_state(|state| state.offsets.unstable(group_id))
    }

    /// Committed offsets of a group: all of them, or those of the given partitions (None: none).
    pub fn committed(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        self.with_state(|state| state.offsets.committed(group_id, wanted))
    }

    /// Consumer lag per topic and partition: the log end minus the committed offset (a partition
    /// whose topic no longer exists is left out). For the HTTP and metrics views.
    pub fn lag(&self, group_id: &str, log: &crate::log::Log) -> Vec<PartitionLag> {
        self.committed(group_id, None)
            .into_iter()
            .filter_map(|(topic, partition, committed)| {
                let committed = committed?;
                let found = log.topic(&topic)?;
                let log_end = found.partition(partition)?.high_watermark();
                Some(PartitionLag {
                    topic,
                    partition,
                    committed: committed.offset,
                    log_end,
                    lag: (log_end - committed.offset).max(0),
                })
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.with_state(|state| {
            let group = state.groups.get(group_id)?;
            let protocol = group.protocol.clone().unwrap_or_default();
            let members = if group.state == GroupState::Stable || group.state == GroupState::CompletingRebalance {
                group.members.values().collect::<Vec<_>>()
            } else {
                Vec::new()
            };
            Some(GroupDescription {
                state: group.state.name(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocol: if group.state == GroupState::Stable { protocol.clone() } else { String::new() },
                members: members
                    .into_iter()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default(),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            })
        })
    }

    /// Every group with its protocol type and state, including groups that only hold offsets.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.with_state(|state| {
            let mut out: Vec<(String, String, &'static str)> = state
                .groups
                .values()
                .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name()))
                .collect();
            for id in state.offsets.group_ids() {
                if !state.groups.contains_key(id) {
                    out.push((id.clone(), String::new(), GroupState::Empty.name()));
                }
            }
            out.sort();
            out
        })
    }

    /// DeleteGroups of one group: only an empty group may go, with its offsets.
    pub async fn delete_group(&self, group_id: &str) -> i16 {
        let _writes = self.inner.writes.lock().await;
        let check = self.with_state(|state| match state.groups.get(group_id) {
            Some(group) if !group.is_empty() => Err(ResponseError::NonEmptyGroup.code()),
            None if !state.offsets.has_group(group_id) => Err(ResponseError::GroupIdNotFound.code()),
            _ => Ok(()),
        });
        if let Err(code) = check {
            return code;
        }
        if let Err(error) = self.write(vec![GroupWrite::DeleteGroup { group: group_id.to_string() }]).await {
            return error.code();
        }
        self.with_state(|state| {
            state.groups.remove(group_id);
            state.offsets.remove_group(group_id);
        });
        0
    }

    /// OffsetDelete: removes the given partitions' offsets unless the group is consuming the topic.
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<i16>, i16> {
        let _writes = self.inner.writes.lock().await;
        let subscribed = self.with_state(|state| {
            if !state.groups.contains_key(group_id) && !state.offsets.has_group(group_id) {
                return Err(ResponseError::GroupIdNotFound.code());
            }
            let topics: Vec<String> = state
                .groups
                .get(group_id)
                .filter(|g| g.state != GroupState::Empty && g.protocol_type.as_deref() == Some("consumer"))
                .map(|g| g.member_metadata().iter().flat_map(subscription_topics).collect())
                .unwrap_or_default();
            Ok(topics)
        });
        let subscribed = subscribed?;
        let (codes, writes) = OffsetMetadataManager::delete(group_id, partitions, &subscribed);
        self.write(writes).await.map_err(|e| e.code())?;
        let deleted = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == 0)
            .map(|((topic, partition), _)| (group_id.to_string(), topic.clone(), *partition));
        self.with_state(|state| state.offsets.replay_deletes(deleted));
        Ok(codes)
    }

    /// A deleted topic takes every group's offsets for it along.
    pub async fn topic_deleted(&self, topic: &str) {
        let _writes = self.inner.writes.lock().await;
        let doomed = self.with_state(|state| state.offsets.of_topic(topic));
        if doomed.is_empty() {
            return;
        }
        if let Err(error) = self.write(offsets::delete_writes(&doomed)).await {
            tracing::error!(%error, topic, "cannot drop the offsets of a deleted topic");
            return;
        }
        self.with_state(|state| state.offsets.replay_deletes(doomed));
    }
}

/// Topics of a consumer protocol subscription (version, topics array of strings, ...).
fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = &metadata[..];
    if bytes.len() < 6 {
        return out;
    }
    let count = i32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let mut at = 6;
    for _ in 0..count.max(0) {
        if at + 2 > bytes.len() {
            break;
        }
        let length = i16::from_be_bytes([bytes[at], bytes[at + 1]]).max(0) as usize;
        at += 2;
        if at + length > bytes.len() {
            break;
        }
        out.push(String::from_utf8_lossy(&bytes[at..at + length]).into_owned());
        at += length;
    }
    out
}
#[cfg(test)]
mod tests;
