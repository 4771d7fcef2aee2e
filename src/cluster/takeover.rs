//! Taking a partition over: its log rebuilt from the segment index and the write-ahead log, so
//! that every acknowledged record is there at its offset before the new leader appends.
//!
//! The partition's records are its segments (PostgreSQL's index, up to the remote end) and,
//! after them, the batches its leaders wrote to their write-ahead log streams. Each leadership
//! (epoch) stamps its batches with its epoch, and the epochs table says who led when: the new
//! leader reads, from each earlier leader's streams, that partition's batches of that leader's
//! epochs. A leader that handed the partition over recorded where its epoch ended, after all its
//! appends were durable; a leader that did not (it died, or lost its lease) has its streams sealed
//! first, so that it can acknowledge nothing more, and the sealed streams hold everything it did.
//! The producers' state starts from the snapshot recorded with the last segment, so a retry of a
//! batch that was already uploaded is still recognised as one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::pg::{ClusterStore, EpochRow};
use crate::log::{Log, LogError, Partition, SegmentInfo, producer};
use crate::tier::object_store::ObjectStore;
use crate::wal::format::{self, Body, StreamId};
use crate::wal::stream;

/// Objects read by one round of takeovers (`None`: gone), shared between its partitions.
pub type ObjectCache = tokio::sync::Mutex<HashMap<(StreamId, u64), Option<Arc<format::WalObject>>>>;

/// What a takeover needs beside the partition.
pub struct Takeover<'a> {
    pub store: &'a ClusterStore,
    pub log: &'a Log,
    pub wal: &'a Arc<dyn ObjectStore>,
    pub node_id: i32,
    /// This broker's own stream, never sealed by itself.
    pub own_stream: StreamId,
    /// Objects read by this round of takeovers, shared between partitions.
    pub objects: &'a ObjectCache,
    /// Nodes whose streams this round sealed already.
    pub sealed: &'a tokio::sync::Mutex<HashSet<i32>>,
    /// Each registered broker's current broker epoch.
    pub registered: &'a HashMap<i32, i64>,
}

/// What a takeover found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TookOver {
    pub start: i64,
    pub end: i64,
    pub batches: usize,
}

impl Takeover<'_> {
    /// Rebuilds `partition` for leadership at `epoch`, from `log_start` on; then it may be led.
    pub async fn run(&self, partition: &Arc<Partition>, epoch: i32, log_start: i64) -> Result<TookOver, LogError> {
        let (topic_id, index) = (partition.topic_id, partition.index);
        let rows = self.store.segments(topic_id, index).await?;
        // The producers as of the last segment's end, which the batches after it continue.
        let producers = match rows.last().and_then(|row| row.producers.as_deref()) {
            Some(snapshot) => producer::decode_snapshot(snapshot).ok_or_else(|| {
                LogError::Remote(format!("taking over {topic_id}/{index}: its producer snapshot is corrupt"))
            })?,
            None => Vec::new(),
        };
        let segments: Vec<SegmentInfo> = rows
            .into_iter()
            .map(|row| SegmentInfo {
                base_offset: row.base_offset,
                next_offset: row.next_offset,
                max_timestamp: row.max_timestamp,
                size_bytes: row.size_bytes.max(0) as u64,
            })
            .filter(|s| s.next_offset > log_start)
            .collect();
        let log_start = segments.first().map_or(log_start, |s| log_start.max(s.base_offset));
        let start = segments.last().map_or(log_start, |s| s.next_offset).max(log_start);
        let epochs = self.store.epochs(topic_id, index).await?;
        // Leaderships that may hold records at or after `start`.
        let relevant: Vec<EpochRow> = epochs
            .iter()
            .copied()
            .filter(|e| e.leader_epoch < epoch && e.end_offset.is_none_or(|end| end > start))
            .collect();
        let mut by_node: BTreeMap<i32, Vec<&EpochRow>> = BTreeMap::new();
        for row in &relevant {
            by_node.entry(row.leader).or_default().push(row);
        }
        let mut batches: BTreeMap<i64, Bytes> = BTreeMap::new();
        // What was read, for the error that says records are missing.
        let mut trail: Vec<String> = Vec::new();
        for (&node, rows) in &by_node {
            if node < 0 {
                continue;
            }
            // A leadership that ended without a hand-over, by an incarnation of the node that is
            // still the registered one (or never re-registered): seal it, it may still be writing.
            // One that registered again since sealed that incarnation's streams when it claimed
            // its new one; one that never served the epoch wrote nothing for it.
            let current = self.registered.get(&node).copied();
            let unsealed = rows.iter().any(|r| {
                r.end_offset.is_none() && r.broker_epoch.is_some_and(|served| current.is_none_or(|now| now <= served))
            });
            if unsealed {
                self.seal(node).await?;
            }
            let wanted: HashSet<i32> = rows.iter().map(|r| r.leader_epoch).collect();
            self.collect(node, topic_id, index, &wanted, start, &mut batches, &mut trail).await?;
        }
        // Dense from `start`, and never past where a handed-over epoch ended.
        let mut restored = Vec::with_capacity(batches.len());
        let mut next = start;
        for (base, bytes) in batches {
            let Some(end) = next_offset(&bytes) else { continue };
            if end <= next {
                continue;
            }
            // The first batch may hold `start` past its base: a log start moved inside it
            // (DeleteRecords). Past it, batches follow each other exactly.
            if base > next || (base < next && next != start) {
                let epochs: Vec<String> =
                    epochs.iter().map(|e| format!("{}@{}..{:?}", e.leader_epoch, e.leader, e.end_offset)).collect();
                return Err(LogError::Remote(format!(
                    "taking over {topic_id}/{index} at epoch {epoch}: records {next}..{base} are in no segment \
                     and no write-ahead log object (segments end at {start}; epochs {}; read {})",
                    epochs.join(" "),
                    trail.join("; ")
                )));
            }
            next = end;
            restored.push(bytes);
        }
        let count = restored.len();
        self.log.reset_partition(partition, log_start, start, segments).await?;
        self.log.restore(partition, producers, restored).await?;
        partition.begin_leader_epoch(epoch);
        Ok(TookOver { start, end: next, batches: count })
    }

    /// Seals every stream of `node` (once per round): it can acknowledge nothing more.
    async fn seal(&self, node: i32) -> Result<(), LogError> {
        let mut sealed = self.sealed.lock().await;
        if sealed.contains(&node) {
            return Ok(());
        }
        let streams = stream::list(&**self.wal, &format::node_prefix(node)).await?;
        for &stream_id in streams.keys() {
            if stream_id == self.own_stream {
                continue;
            }
            let cut = stream::seal(&**self.wal, stream_id, crate::wal::IN_FLIGHT_MAX as u64, seal_nonce(self.node_id))
                .await?;
            tracing::info!(
                ?stream_id,
                cut = cut.slot,
                "sealed the write-ahead log of a broker that lost its partitions"
            );
        }
        sealed.insert(node);
        Ok(())
    }

    /// Adds to `batches` (by base offset) the partition's batches of the `wanted` epochs in
    /// `node`'s streams: below each sealed stream's cut, and all of a stream still being written
    /// (its writer handed the partition over after its appends were durable). `trail` gets a
    /// line per stream: its slots, its cut, and the partition's offsets and epochs found there.
    #[allow(clippy::too_many_arguments)]
    async fn collect(
        &self,
        node: i32,
        topic_id: Uuid,
        index: i32,
        wanted: &HashSet<i32>,
        start: i64,
        batches: &mut BTreeMap<i64, Bytes>,
        trail: &mut Vec<String>,
    ) -> Result<(), LogError> {
        let streams = stream::list(&**self.wal, &format::node_prefix(node)).await?;
        for (stream_id, listed) in streams {
            let cut = stream::cut(&**self.wal, stream_id, &listed).await?.map(|c| c.slot);
            let cut = stream::acknowledged_end(&**self.wal, stream_id, &listed, cut).await?;
            let (mut first, mut last, mut seen_epochs) = (i64::MAX, i64::MIN, std::collections::BTreeSet::new());
            for slot in listed.slots.iter().copied().filter(|&s| cut.is_none_or(|cut| s < cut)) {
                if listed.seal_candidates.binary_search(&slot).is_ok() {
                    continue;
                }
                let Some(object) = self.object(stream_id, slot).await? else { continue };
                let Body::Data(entries) = &object.body else { continue };
                for entry in entries.iter().filter(|e| e.topic_id == topic_id && e.partition == index) {
                    if entry.next_offset <= start {
                        continue;
                    }
                    for (_, bytes) in format::batches(entry) {
                        let base = i64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
                        let epoch = leader_epoch_of(&bytes);
                        (first, last) = (first.min(base), last.max(base));
                        seen_epochs.insert(epoch);
                        if wanted.contains(&epoch) {
                            batches.insert(base, bytes);
                        }
                    }
                }
            }
            let slots = listed.slots.first().zip(listed.slots.last());
            let found = (first <= last).then(|| format!("batches {first}..={last} of epochs {seen_epochs:?}"));
            trail.push(format!(
                "node {node} {stream_id:?}: slots {slots:?}, cut {cut:?}, {}",
                found.unwrap_or_else(|| "none of the partition's".to_string())
            ));
        }
        Ok(())
    }

    async fn object(&self, stream_id: StreamId, slot: u64) -> Result<Option<Arc<format::WalObject>>, LogError> {
        if let Some(found) = self.objects.lock().await.get(&(stream_id, slot)) {
            return Ok(found.clone());
        }
        let object = stream::read(&**self.wal, stream_id, slot).await?.map(Arc::new);
        self.objects.lock().await.insert((stream_id, slot), object.clone());
        Ok(object)
    }
}

/// A batch's partition leader epoch (bytes 12..16 of the v2 header).
fn leader_epoch_of(batch: &[u8]) -> i32 {
    batch.get(12..16).and_then(|b| b.try_into().ok()).map_or(-1, i32::from_be_bytes)
}

fn next_offset(batch: &Bytes) -> Option<i64> {
    let header = crate::log::batch::BatchHeader::parse(batch).ok()?;
    Some(header.last_offset() + 1)
}

/// Seals written by a takeover carry the sealing node, for whoever reads them later.
fn seal_nonce(node_id: i32) -> u64 {
    0x5EA1_0000_0000_0000 | u64::from(node_id as u32)
}
