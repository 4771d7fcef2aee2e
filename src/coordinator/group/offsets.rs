//! Committed offsets (Kafka's `OffsetMetadataManager`): pure state. Each change is built as the
//! records to store (`GroupWrite`s) without touching the state, and applied once the store holds
//! them, so an answer never reports an offset that a crash could lose.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;

use super::records::{CommittedOffset, offset_record};
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
    pub accepted: Vec<((String, i32), CommittedOffset)>,
}

/// Every group's committed offsets by topic and partition.
#[derive(Default)]
pub struct OffsetMetadataManager {
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
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
