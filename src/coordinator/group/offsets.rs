//! Committed offsets (Kafka's `OffsetMetadataManager`): pure state. Each change is built as the
//! records to store (`GroupWrite`s) without touching the state, and applied once the store holds
//! them, so an answer never reports an offset that a crash could lose.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::records::{CommittedOffset, offset_record, pending_record};
use crate::log::GroupWrite;

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
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

/// The offsets a commit stores: one error code per requested partition, the writes, and the
/// offsets to apply once written.
pub struct Commit {
    pub codes: Vec<i16>,
    pub writes: Vec<GroupWrite>,
    pub accepted: Accepted,
}

/// The offsets one producer's transaction in progress commits for a group (TxnOffsetCommit):
/// they become the group's committed offsets when the transaction's commit marker reaches the
/// group's coordinator, and are dropped at its abort marker (Kafka's pending transactional
/// offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffsets {
    pub producer_epoch: i16,
    pub offsets: Vec<PendingPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPartition {
    pub topic: String,
    pub partition: i32,
    pub committed: CommittedOffset,
}

/// Offsets by topic and partition, as a commit applies them.
pub type Accepted = Vec<((String, i32), CommittedOffset)>;

/// What a transaction marker does to the groups' offsets: the writes, then what to apply once
/// they are durable.
#[derive(Default)]
pub struct MarkerEffects {
    pub writes: Vec<GroupWrite>,
    /// Offsets that become committed, by group.
    pub committed: Vec<(String, Accepted)>,
    /// The `(group, producer id)` pending entries that end.
    pub ended: Vec<(String, i64)>,
}

/// Every group's committed offsets by topic and partition, and the offsets transactions in
/// progress commit.
#[derive(Default)]
pub struct OffsetMetadataManager {
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    /// Group → producer id → the offsets its transaction in progress commits.
    pending: HashMap<String, BTreeMap<i64, PendingOffsets>>,
}

impl OffsetMetadataManager {
    /// A commit of `requests` at `timestamp_ms`: offsets whose metadata is too large are refused.
    pub fn commit(group_id: &str, requests: Vec<CommitRequest>, timestamp_ms: i64) -> Commit {
        let mut commit = Commit { codes: Vec::with_capacity(requests.len()), writes: Vec::new(), accepted: Vec::new() };
        for request in requests {
            let metadata = request.metadata.unwrap_or_default();
            if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                commit.codes.push(ResponseError::OffsetMetadataTooLarge.code());
                continue;
            }
            let committed = CommittedOffset {
                offset: request.offset,
                leader_epoch: request.leader_epoch,
                metadata,
                commit_timestamp_ms: timestamp_ms,
            };
            commit.writes.push(GroupWrite::Offset {
                group: group_id.to_string(),
                topic: request.topic.clone(),
                partition: request.partition,
                record: offset_record(&committed),
            });
            commit.accepted.push(((request.topic, request.partition), committed));
            commit.codes.push(0);
        }
        commit
    }

    /// Takes in groups' offsets loaded from the store, each group's replacing what was held.
    pub fn restore(&mut self, offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>) {
        self.offsets.extend(offsets);
    }

    /// Takes in pending transactional offsets loaded from the store.
    pub fn restore_pending(&mut self, pending: Vec<(String, i64, PendingOffsets)>) {
        for (group, producer_id, offsets) in pending {
            self.pending.entry(group).or_default().insert(producer_id, offsets);
        }
    }

    /// TxnOffsetCommit of `requests` by `producer_id` at `producer_epoch`: a code per request,
    /// the producer's pending offsets for the group with them added, and the write that stores
    /// those. PRODUCER_FENCED when a later epoch of the producer has offsets pending here; the
    /// offsets of an earlier epoch (whose transaction ended) are replaced.
    pub fn commit_pending(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        requests: Vec<CommitRequest>,
        timestamp_ms: i64,
    ) -> Result<(Vec<i16>, GroupWrite, PendingOffsets), ResponseError> {
        let mut pending = match self.pending.get(group_id).and_then(|p| p.get(&producer_id)) {
            Some(held) if held.producer_epoch > producer_epoch => return Err(ResponseError::ProducerFenced),
            Some(held) if held.producer_epoch == producer_epoch => held.clone(),
            _ => PendingOffsets { producer_epoch, offsets: Vec::new() },
        };
        let commit = Self::commit(group_id, requests, timestamp_ms);
        for ((topic, partition), committed) in commit.accepted {
            pending.offsets.retain(|p| (p.topic.as_str(), p.partition) != (topic.as_str(), partition));
            pending.offsets.push(PendingPartition { topic, partition, committed });
        }
        let write = GroupWrite::PendingOffsets {
            group: group_id.to_string(),
            producer_id,
            record: Some(pending_record(&pending)),
        };
        Ok((commit.codes, write, pending))
    }

    /// Applies a TxnOffsetCommit once the store holds it.
    pub fn replay_pending(&mut self, group_id: &str, producer_id: i64, pending: PendingOffsets) {
        self.pending.entry(group_id.to_string()).or_default().insert(producer_id, pending);
    }

    /// A transaction marker of `producer_id` at `marker_epoch` for the groups `included` says
    /// yes to: a commit makes the offsets pending at that epoch the groups' committed offsets;
    /// a commit or an abort drops every entry up to that epoch (an earlier epoch's are a fenced
    /// instance's, whose transaction ended). A later epoch's entries belong to a transaction
    /// still to come and stay.
    pub fn end_transaction(
        &self,
        producer_id: i64,
        marker_epoch: i16,
        commit: bool,
        included: impl Fn(&str) -> bool,
    ) -> MarkerEffects {
        let mut effects = MarkerEffects::default();
        for (group, producers) in self.pending.iter().filter(|(group, _)| included(group)) {
            let Some(pending) = producers.get(&producer_id).filter(|p| p.producer_epoch <= marker_epoch) else {
                continue;
            };
            if commit && pending.producer_epoch == marker_epoch {
                let mut accepted = Vec::with_capacity(pending.offsets.len());
                for p in &pending.offsets {
                    effects.writes.push(GroupWrite::Offset {
                        group: group.clone(),
                        topic: p.topic.clone(),
                        partition: p.partition,
                        record: offset_record(&p.committed),
                    });
                    accepted.push(((p.topic.clone(), p.partition), p.committed.clone()));
                }
                effects.committed.push((group.clone(), accepted));
            }
            effects.writes.push(GroupWrite::PendingOffsets { group: group.clone(), producer_id, record: None });
            effects.ended.push((group.clone(), producer_id));
        }
        effects
    }

    /// Applies a transaction marker's effects once the store holds them.
    pub fn replay_marker(&mut self, effects: MarkerEffects) {
        for (group, producer_id) in effects.ended {
            if let Some(producers) = self.pending.get_mut(&group) {
                producers.remove(&producer_id);
                if producers.is_empty() {
                    self.pending.remove(&group);
                }
            }
        }
        for (group, accepted) in effects.committed {
            self.replay(&group, accepted);
        }
    }

    /// The group's partitions with offsets pending in a transaction in progress: OffsetFetch
    /// with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them (KIP-447).
    pub fn unstable(&self, group_id: &str) -> BTreeSet<(String, i32)> {
        self.pending
            .get(group_id)
            .into_iter()
            .flat_map(|producers| producers.values())
            .flat_map(|pending| pending.offsets.iter().map(|p| (p.topic.clone(), p.partition)))
            .collect()
    }

    /// Applies a commit once the store holds it.
    pub fn replay(&mut self, group_id: &str, offsets: impl IntoIterator<Item = ((String, i32), CommittedOffset)>) {
        self.offsets.entry(group_id.to_string()).or_default().extend(offsets);
    }

    /// Committed offsets of a group: all of them, or those of the given partitions (None: none).
    pub fn committed(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let offsets = self.offsets.get(group_id);
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
    }

    pub fn has_group(&self, group_id: &str) -> bool {
        self.offsets.contains_key(group_id)
    }

    /// The groups that hold offsets.
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.offsets.keys()
    }

    pub fn remove_group(&mut self, group_id: &str) {
        self.offsets.remove(group_id);
    }

    /// Keeps the groups `keep` says yes to (a slot given up keeps none of its groups).
    pub fn retain_groups(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.offsets.retain(|id, _| keep(id));
        self.pending.retain(|id, _| keep(id));
    }

    /// OffsetDelete: a code per partition (refused for topics in `subscribed`) and the writes.
    pub fn delete(group_id: &str, partitions: &[(String, i32)], subscribed: &[String]) -> (Vec<i16>, Vec<GroupWrite>) {
        let mut writes = Vec::with_capacity(partitions.len());
        let mut codes = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
                continue;
            }
            writes.push(GroupWrite::DeleteOffset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            });
            codes.push(0);
        }
        (codes, writes)
    }

    /// Forgets deleted offsets (each `(group, topic, partition)`) once the store has.
    pub fn replay_deletes(&mut self, deleted: impl IntoIterator<Item = (String, String, i32)>) {
        for (group, topic, partition) in deleted {
            if let Some(offsets) = self.offsets.get_mut(&group) {
                offsets.remove(&(topic, partition));
            }
        }
    }

    /// Every group's offsets of `topic`, as `(group, topic, partition)`.
    pub fn of_topic(&self, topic: &str) -> Vec<(String, String, i32)> {
        self.offsets
            .iter()
            .flat_map(|(group, offsets)| {
                offsets.keys().filter(|(t, _)| t == topic).map(|(t, p)| (group.clone(), t.clone(), *p))
            })
            .collect()
    }

    /// Offsets committed before `cutoff_ms` by groups `is_empty` says have no members.
    pub fn expired(&self, cutoff_ms: i64, is_empty: impl Fn(&str) -> bool) -> Vec<(String, String, i32)> {
        let mut out = Vec::new();
        for (group, offsets) in &self.offsets {
            if !is_empty(group) {
                continue;
            }
            for ((topic, partition), committed) in offsets {
                if committed.commit_timestamp_ms < cutoff_ms {
                    out.push((group.clone(), topic.clone(), *partition));
                }
            }
        }
        out
    }
}

/// The writes that delete `(group, topic, partition)` offsets.
pub fn delete_writes(offsets: &[(String, String, i32)]) -> Vec<GroupWrite> {
    offsets
        .iter()
        .map(|(group, topic, partition)| GroupWrite::DeleteOffset {
            group: group.clone(),
            topic: topic.clone(),
            partition: *partition,
        })
        .collect()
}
