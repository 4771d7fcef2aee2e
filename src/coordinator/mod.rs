//! The group coordinator (Kafka's `GroupCoordinator` with `GroupMetadataManager` and
//! `OffsetMetadataManager`): classic consumer groups and committed offsets, durable in the store.
//!
//! State lives behind one mutex that is never held across an `.await`. Every change that must be
//! durable (a commit, a group reaching Stable or Empty) is written, with fsync, while the coordinator's
//! write lock is held and before any answer that depends on it goes out. Time is tokio's clock, so
//! tests can pause and advance it.
//!
//! Member sessions and rebalance deadlines fire at their exact millisecond, as Kafka's per-member
//! timers do: one timer task (`run_timers`) sleeps until the earliest deadline of any group, and a
//! change that brings some deadline earlier than the one it sleeps towards wakes it up.

pub mod group;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::log::LogError;
use crate::log::{GroupRecords, GroupWrite, Log, StoreError};
use group::{ClassicGroup, GroupLimits, GroupState, JoinRequest, JoinResult, StoredMember, SyncResult};

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

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

/// How far a group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, ClassicGroup>,
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    /// The deadline the timer task sleeps towards (None: it sleeps until woken).
    timer_deadline_ms: Option<u64>,
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

#[derive(Clone)]
pub struct Coordinator {
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

impl Coordinator {
    /// Loads groups and offsets from the local log's store (a single broker coordinates every
    /// group).
    pub async fn open(log: Log, limits: GroupLimits, offsets_retention_ms: i64) -> Result<Coordinator, LogError> {
        let coordinator = Self::with_store(Arc::new(LocalGroupStore(log)), limits, offsets_retention_ms);
        let records = coordinator.inner.store.load(None).await?;
        let loaded = coordinator.restore(records)?;
        tracing::info!(groups = loaded, "group coordinator loaded");
        Ok(coordinator)
    }

    /// A coordinator of no group yet over `store`: a cluster loads the slots it is given
    /// (`load_slot`) and drops those it loses (`unload_slot`).
    pub fn with_store(store: Arc<dyn GroupStore>, limits: GroupLimits, offsets_retention_ms: i64) -> Coordinator {
        Coordinator {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(State::default()),
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
        self.restore(records)
    }

    /// Forgets the groups of `slot` (another broker coordinates them now); members waiting on
    /// a join or sync hear NOT_COORDINATOR when their requests are dropped.
    pub async fn unload_slot(&self, slot: u32, slots: u32) {
        let _writes = self.inner.writes.lock().await;
        self.with_state(|state| {
            state.groups.retain(|id, _| group_slot(id, slots) != slot);
            state.offsets.retain(|id, _| group_slot(id, slots) != slot);
        });
    }

    /// Takes stored groups and offsets into memory; returns how many groups.
    fn restore(&self, (groups, offsets): GroupRecords) -> Result<usize, LogError> {
        let coordinator = self;
        let now = coordinator.now_ms();
        let mut state = State::default();
        for (id, bytes) in groups {
            let record: GroupRecord =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(format!("group record: {e}")))?;
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
            let group = ClassicGroup::restored(
                &id,
                record.generation,
                record.protocol_type,
                record.protocol,
                record.leader,
                members,
                now,
            );
            state.groups.insert(id, group);
        }
        for (group, topic, partition, bytes) in offsets {
            let offset: CommittedOffset =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(format!("offset record: {e}")))?;
            state.offsets.entry(group).or_default().insert((topic, partition), offset);
        }
        let loaded = state.groups.len();
        self.with_state(|current| {
            current.groups.extend(state.groups);
            current.offsets.extend(state.offsets);
        });
        Ok(loaded)
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock_start.elapsed().as_millis() as u64
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.state.lock())
    }

    /// `with_state` for a change to one group that may bring one of its deadlines earlier (a
    /// new member, a rebalance starting, parked requests answered): wakes the timer task if the
    /// group's next deadline comes before the one the task sleeps towards. Heartbeats only move
    /// deadlines later and need not call this; the task finds out when it wakes.
    fn with_group_state<T>(&self, group_id: &str, f: impl FnOnce(&mut State) -> T) -> T {
        self.with_state(|state| {
            let out = f(state);
            let next = state.groups.get(group_id).and_then(ClassicGroup::next_deadline_ms);
            if let Some(next) = next
                && state.timer_deadline_ms.is_none_or(|scheduled| next < scheduled)
            {
                state.timer_deadline_ms = Some(next);
                self.inner.deadlines_changed.notify_one();
            }
            out
        })
    }

    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), LogError> {
        self.inner.store.write(writes).await
    }

    fn group_record(&self, group: &ClassicGroup) -> Vec<u8> {
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

    /// Writes the group's record (when `persist`) before its parked syncs are answered.
    async fn persist_group(&self, group_id: &str) -> Result<(), LogError> {
        let record = self.with_state(|state| state.groups.get(group_id).map(|g| self.group_record(g)));
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
        let timestamp = crate::log::now_ms();
        let mut write = Vec::with_capacity(offsets.len());
        let mut codes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for request in offsets {
            let metadata = request.metadata.unwrap_or_default();
            if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                codes.push(ResponseError::OffsetMetadataTooLarge.code());
                continue;
            }
            let committed = CommittedOffset {
                offset: request.offset,
                leader_epoch: request.leader_epoch,
                metadata,
                commit_timestamp_ms: timestamp,
            };
            let bytes = serde_json::to_vec(&committed).unwrap_or_default();
            write.push(GroupWrite::Offset {
                group: group_id.to_string(),
                topic: request.topic.clone(),
                partition: request.partition,
                record: bytes,
            });
            accepted.push(((request.topic, request.partition), committed));
            codes.push(0);
        }
        if let Err(error) = self.write(write).await {
            tracing::error!(%error, group = group_id, "offset commit failed");
            return Err(error.code());
        }
        self.with_state(|state| state.offsets.entry(group_id.to_string()).or_default().extend(accepted));
        Ok(codes)
    }

    /// Committed offsets of a group: all of them, or those of the given partitions (None: none).
    pub fn committed(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        self.with_state(|state| {
            let offsets = state.offsets.get(group_id);
            match wanted {
                None => offsets
                    .map(|o| o.iter().map(|((t, p), c)| (t.clone(), *p, Some(c.clone()))).collect())
                    .unwrap_or_default(),
                Some(wanted) => wanted
                    .iter()
                    .flat_map(|(topic, partitions)| {
                        partitions.iter().map(move |p| {
                            let found = offsets.and_then(|o| o.get(&(topic.clone(), *p))).cloned();
                            (topic.clone(), *p, found)
                        })
                    })
                    .collect(),
            }
        })
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
            for id in state.offsets.keys() {
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
            None if !state.offsets.contains_key(group_id) => Err(ResponseError::GroupIdNotFound.code()),
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
            state.offsets.remove(group_id);
        });
        0
    }

    /// OffsetDelete: removes the given partitions' offsets unless the group is consuming the topic.
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<i16>, i16> {
        let _writes = self.inner.writes.lock().await;
        let subscribed = self.with_state(|state| {
            if !state.groups.contains_key(group_id) && !state.offsets.contains_key(group_id) {
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
        let mut write = Vec::with_capacity(partitions.len());
        let mut codes = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
                continue;
            }
            write.push(GroupWrite::DeleteOffset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            });
            codes.push(0);
        }
        self.write(write).await.map_err(|e| e.code())?;
        self.with_state(|state| {
            if let Some(offsets) = state.offsets.get_mut(group_id) {
                for ((topic, partition), code) in partitions.iter().zip(&codes) {
                    if *code == 0 {
                        offsets.remove(&(topic.clone(), *partition));
                    }
                }
            }
        });
        Ok(codes)
    }

    /// A deleted topic takes every group's offsets for it along.
    pub async fn topic_deleted(&self, topic: &str) {
        let _writes = self.inner.writes.lock().await;
        let doomed: Vec<(String, i32, String)> = self.with_state(|state| {
            state
                .offsets
                .iter()
                .flat_map(|(group, offsets)| {
                    offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(|(t, p)| (group.clone(), *p, t.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        if doomed.is_empty() {
            return;
        }
        let write = doomed
            .iter()
            .map(|(group, partition, topic)| GroupWrite::DeleteOffset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            })
            .collect();
        if let Err(error) = self.write(write).await {
            tracing::error!(%error, topic, "cannot drop the offsets of a deleted topic");
            return;
        }
        self.with_state(|state| {
            for (group, partition, topic) in doomed {
                if let Some(offsets) = state.offsets.get_mut(&group) {
                    offsets.remove(&(topic, partition));
                }
            }
        });
    }

    /// Advances time: session expiry, join timeouts, and offset expiry of empty groups.
    pub async fn tick(&self) {
        self.expire_members().await;
        self.expire_offsets().await;
    }

    /// Session expiry and join timeouts of every group whose deadline has passed.
    async fn expire_members(&self) {
        let _writes = self.inner.writes.lock().await;
        let now = self.now_ms();
        let limits = self.inner.limits;
        let emptied: Vec<String> = self.with_state(|state| {
            state.groups.values_mut().filter_map(|g| g.tick(&limits, now).then(|| g.id.clone())).collect()
        });
        drop(_writes);
        for group in emptied {
            self.persist_if_empty(&group).await;
        }
    }

    /// The earliest deadline of any group, which the timer task then sleeps towards.
    fn schedule_next_deadline(&self) -> Option<u64> {
        self.with_state(|state| {
            let next = state.groups.values().filter_map(ClassicGroup::next_deadline_ms).min();
            state.timer_deadline_ms = next;
            next
        })
    }

    /// `offsets.retention.minutes`: offsets of groups without members expire after the retention.
    async fn expire_offsets(&self) {
        let retention = self.inner.offsets_retention_ms;
        if retention < 0 {
            return;
        }
        let _writes = self.inner.writes.lock().await;
        let cutoff = crate::log::now_ms() - retention;
        let expired: Vec<(String, String, i32)> = self.with_state(|state| {
            let mut out = Vec::new();
            for (group, offsets) in &state.offsets {
                if state.groups.get(group).is_some_and(|g| !g.is_empty()) {
                    continue;
                }
                for ((topic, partition), committed) in offsets {
                    if committed.commit_timestamp_ms < cutoff {
                        out.push((group.clone(), topic.clone(), *partition));
                    }
                }
            }
            out
        });
        if expired.is_empty() {
            return;
        }
        let write = expired
            .iter()
            .map(|(group, topic, partition)| GroupWrite::DeleteOffset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            })
            .collect();
        if self.write(write).await.is_ok() {
            self.with_state(|state| {
                for (group, topic, partition) in expired {
                    if let Some(offsets) = state.offsets.get_mut(&group) {
                        offsets.remove(&(topic, partition));
                    }
                }
            });
        }
    }

    /// The coordinator's timers, until `stopped` changes: group deadlines (sessions, join phases)
    /// at their exact millisecond, and offset expiry every `offsets_check_interval`.
    pub async fn run_timers(self, offsets_check_interval: Duration, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut offsets_checks = tokio::time::interval(offsets_check_interval);
        offsets_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fired_ms = None;
        loop {
            // After a firing every deadline lies in the future; should one not, waiting a
            // millisecond from now keeps a stuck deadline from spinning this task.
            let next = self.schedule_next_deadline().map(|next| match fired_ms {
                Some(fired) if next <= fired => self.now_ms().max(next) + 1,
                _ => next,
            });
            let deadline = async {
                match next {
                    Some(at) => tokio::time::sleep_until(self.inner.clock_start + Duration::from_millis(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = deadline => {
                    fired_ms = next;
                    self.expire_members().await;
                }
                _ = self.inner.deadlines_changed.notified() => {}
                _ = offsets_checks.tick() => self.expire_offsets().await,
                _ = stopped.changed() => return,
            }
        }
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
