//! The remote log manager (Kafka's `RemoteLogManager`; earlier notes call it the flusher, and it
//! has nothing to do with Kafka's `log.flush.*`, which is fsync): moves every partition's log to
//! the object store and keeps the hot tier short. It decides; every change of the log's state
//! (index entries, local start, markers) goes through the log's writer.
//!
//! Each pass, per partition (a few at once):
//! 1. On the first pass, reconcile the partition's objects with its remote index: an object that
//!    continues the index exactly and checks out (an upload whose index write a crash lost) is
//!    adopted; any other object the index does not know is an orphan and is deleted.
//! 2. Upload the unuploaded tail as one segment once it holds `segment.bytes` or its oldest part
//!    has waited `segment.ms`; the object is created only if absent, the index entry is written
//!    (fsynced) after the object exists, and only then is the segment published to readers.
//!    A segment with abort markers takes the transactions they abort along, in an `.aborted`
//!    object stored before it (what a broker rebuilt from the bucket reads back), with the
//!    transactions still unresolved at its end (which such a broker aborts if it is the last).
//! 3. Delete segments wholly below the log start (retention, DeleteRecords): object, then entry,
//!    then its `.aborted` object.
//! 4. Drop from the hot tier the uploaded segments that `local.retention.*` no longer asks it
//!    to keep.
//!
//! Topics' descriptions go to `meta/topics/…` whenever they change, and deleted topics' objects
//! are removed through a marker written with the deletion, so a crash cannot forget them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::UnifiedLog;
use crate::log::{AbortedTxn, Log, LogError, OpenTxn, Partition, PartitionKey, Topic, now_ms};
use crate::tier::Tier;
use crate::tier::object_store::Put;
use crate::tier::segment::{self, Segment, SegmentInfo};

/// A topic as described in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: u32,
    pub configs: std::collections::BTreeMap<String, String>,
}

impl TopicMeta {
    pub fn of(topic: &Topic) -> Self {
        TopicMeta {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.len() as u32,
            configs: topic.config.overrides.clone(),
        }
    }
}

/// Uploads per partition per pass, so that one partition's backlog does not hold up the others.
const UPLOADS_PER_PASS_MAX: usize = 8;

/// What the remote log manager remembers of a partition between passes.
#[derive(Debug, Default, Clone)]
struct Cursor {
    /// When the manager first saw unuploaded records (since the last upload).
    pending_since: Option<Instant>,
    /// `appended_bytes` at the point where the unuploaded tail was empty; `None` until measured.
    mark: Option<u64>,
    reconciled: bool,
    /// The leader epoch all this was learnt at: a partition led again after leading elsewhere
    /// starts afresh (its tail, its age and the store's orphans are new to this broker).
    leader_epoch: i32,
    /// Failures in a row, and when to try again: backoff doubles from one pass interval to a minute.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Cursor {
    fn failed(&mut self, interval: Duration) {
        self.failures = self.failures.saturating_add(1);
        let backoff = interval.saturating_mul(1 << self.failures.min(16)).min(RETRY_BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + backoff);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }
}

/// Longest wait before a partition whose object store work failed is tried again.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);

enum Step {
    Uploaded,
    NotReady,
}

pub struct RemoteLogManager {
    log: Log,
    tier: Arc<Tier>,
    cursors: HashMap<PartitionKey, Cursor>,
    unified: UnifiedLog,
    /// With a write-ahead log every topic is copied, whatever its configs: the object store is
    /// where its records live, and the log's objects go only once segments hold them.
    copy_all: bool,
}

/// Runs passes every `remote.log.manager.task.interval.ms` until `stopped` turns true.
pub async fn run(unified: UnifiedLog, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_millis(unified.tier().settings.task_interval_ms.max(1));
    let mut manager = RemoteLogManager::new(unified);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        manager.pass().await;
        // Write-ahead log objects whose records are now all in segments go.
        if let Some(wal) = manager.unified.wal().filter(|_| !manager.unified.in_cluster())
            && let Err(error) = wal.collect(manager.unified.log()).await
        {
            tracing::warn!(%error, "cannot delete covered write-ahead log objects yet");
        }
    }
}

impl RemoteLogManager {
    pub fn new(unified: UnifiedLog) -> Self {
        let (log, tier) = (unified.log().clone(), unified.tier().clone());
        let copy_all = unified.wal().is_some();
        RemoteLogManager { log, tier, cursors: HashMap::new(), unified, copy_all }
    }

    /// One pass over every topic; errors are logged and counted, and retried next pass.
    pub async fn pass(&mut self) {
        if let Err(error) = self.collect_deleted_topics().await {
            tracing::warn!(%error, "cannot delete the objects of deleted topics yet");
        }
        let topics = self.log.topics();
        for topic in &topics {
            if let Err(error) = self.unified.describe_topic(topic).await {
                tracing::warn!(topic = %topic.name, %error, "cannot write the topic's description");
            }
        }
        let permits = Arc::new(Semaphore::new(self.tier.settings.requests_max.max(1)));
        let mut tasks = JoinSet::new();
        for topic in topics {
            for partition in &topic.partitions {
                let cursor = self.cursors.remove(&partition.key).unwrap_or_default();
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (log, tier, topic, partition) =
                    (self.log.clone(), self.tier.clone(), topic.clone(), partition.clone());
                let copy_all = self.copy_all;
                tasks.spawn(async move {
                    let cursor = flush_partition(&log, &tier, &topic, &partition, cursor, copy_all).await;
                    drop(permit);
                    (partition.key, cursor)
                });
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((key, cursor)) = done {
                self.cursors.insert(key, cursor);
            }
        }
    }

    async fn collect_deleted_topics(&mut self) -> Result<(), LogError> {
        for id in self.log.topics_awaiting_object_deletion().await? {
            for prefix in [segment::topic_data_prefix(id), format!("{}{id}/", segment::TOPIC_META_PREFIX)] {
                for object in self.tier.store().list(&prefix).await.map_err(remote)? {
                    self.tier.store().delete(&object.key).await.map_err(remote)?;
                    self.tier.forget(&object.key);
                }
            }
            self.log.topic_objects_deleted(id).await?;
            self.unified.forget_description(id).await;
            tracing::info!(topic_id = %id, "deleted topic's objects removed");
        }
        Ok(())
    }
}

fn remote(error: crate::tier::object_store::ObjectStoreError) -> LogError {
    LogError::Remote(error.to_string())
}

async fn flush_partition(
    log: &Log,
    tier: &Arc<Tier>,
    topic: &Topic,
    partition: &Arc<Partition>,
    mut cursor: Cursor,
    copy_all: bool,
) -> Cursor {
    // In a cluster, a partition's leader alone moves its log.
    if !partition.is_leading() {
        return cursor;
    }
    if cursor.leader_epoch != partition.leader_epoch() {
        cursor = Cursor { leader_epoch: partition.leader_epoch(), ..Cursor::default() };
    }
    if cursor.retry_at.is_some_and(|at| Instant::now() < at) {
        return cursor;
    }
    let interval = Duration::from_millis(tier.settings.task_interval_ms.max(1));
    let mut failed = false;
    let mut fail = |what: &str, error: LogError| {
        failed = true;
        partition.tier_stats.upload_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(topic = %topic.name, partition = partition.index, %error, "tiering: {what}");
    };
    if !cursor.reconciled {
        match reconcile(log, tier, partition).await {
            Ok(()) => cursor.reconciled = true,
            Err(error) => {
                fail("cannot reconcile the object store", error);
                cursor.failed(interval);
                return cursor;
            }
        }
    }
    if topic.config.remote_copy || copy_all {
        for _ in 0..UPLOADS_PER_PASS_MAX {
            match upload_next(log, tier, topic, partition, &mut cursor).await {
                Ok(Step::Uploaded) => continue,
                Ok(Step::NotReady) => break,
                Err(error) => {
                    fail("upload failed", error);
                    break;
                }
            }
        }
    }
    if let Err(error) = delete_expired(log, tier, partition).await {
        fail("cannot delete expired segments", error);
    }
    if let Err(error) = trim_local(log, topic, partition).await {
        fail("cannot trim the hot tier", error);
    }
    if failed {
        cursor.failed(interval);
    } else {
        cursor.succeeded();
    }
    cursor
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| LogError::Unavailable)?
}

/// Uploads the next segment of the partition's tail if it is due.
async fn upload_next(
    log: &Log,
    tier: &Arc<Tier>,
    topic: &Topic,
    partition: &Arc<Partition>,
    cursor: &mut Cursor,
) -> Result<Step, LogError> {
    let from = partition.remote_end().max(partition.log_start());
    let high_watermark = partition.high_watermark();
    if from >= high_watermark || partition.is_deleted() {
        cursor.pending_since = None;
        return Ok(Step::NotReady);
    }
    let pending_since = *cursor.pending_since.get_or_insert_with(Instant::now);
    let segment_bytes = topic.config.segment_bytes.max(1) as u64;
    let appended = partition.appended_bytes();
    let due_by_size = cursor.mark.is_none_or(|mark| appended.saturating_sub(mark) >= segment_bytes);
    let due_by_age = pending_since.elapsed() >= Duration::from_millis(topic.config.segment_ms.max(0) as u64);
    if !due_by_size && !due_by_age {
        return Ok(Step::NotReady);
    }
    // The first pass after a start measures the tail rather than reading it out: most tails
    // are shorter than a segment, and every partition's would be in memory at once.
    if cursor.mark.is_none() && !due_by_age {
        let below = log.local_bytes_below(partition, from, high_watermark, segment_bytes as usize).await?;
        if let Some(tail) = below {
            // Shorter than a segment: the next passes wait for the rest cheaply, as below.
            cursor.mark = Some(appended.saturating_sub(tail as u64));
            return Ok(Step::NotReady);
        }
    }
    let Some(_room) = tier.upload_permit(segment_bytes).await else { return Ok(Step::NotReady) };
    // Upload only what is durable, whatever the durability setting (see `Log::read_durable`).
    let bytes = log.read_durable(partition, from, high_watermark, segment_bytes as usize).await?;
    if bytes.is_empty() {
        return Ok(Step::NotReady);
    }
    let parsed = blocking(move || Segment::scan(bytes).map_err(|e| LogError::Remote(format!("hot tier: {e}")))).await?;
    let info = parsed.info().ok_or_else(|| LogError::Remote("empty segment".into()))?;
    let reached_end = info.next_offset >= high_watermark;
    if reached_end && info.size_bytes < segment_bytes && !due_by_age {
        // Smaller than a segment: measure it so the next passes wait for the rest cheaply.
        cursor.mark = Some(appended.saturating_sub(info.size_bytes));
        return Ok(Step::NotReady);
    }
    // The transactions the segment's abort markers abort go first: a segment in the store
    // without its `.aborted` object aborts nothing.
    let txns = segment_txns(log, partition, &info).await?;
    let aborted_object = segment::aborted_key(partition.topic_id, partition.index, &info);
    if !txns.is_empty() {
        // An object left by an earlier attempt is kept if it names the same aborted transactions:
        // its unresolved ones were right when it was written, and transactions resolved since
        // then only after the segment's end.
        let same = |stored: &Bytes| segment::decode_txns(stored, &info).is_ok_and(|s| s.aborted == txns.aborted);
        put_exactly(tier, &aborted_object, segment::encode_txns(&txns), same).await?;
    }
    let object = segment::segment_key(partition.topic_id, partition.index, &info);
    put_exactly(tier, &object, parsed.bytes.clone(), |stored| *stored == parsed.bytes).await?;
    if partition.is_deleted() {
        tier.store().delete(&object).await.map_err(remote)?;
        if !txns.is_empty() {
            tier.store().delete(&aborted_object).await.map_err(remote)?;
        }
        return Ok(Step::NotReady);
    }
    log.record_segment(partition, info).await?;
    let stats = &partition.tier_stats;
    stats.uploaded_bytes.fetch_add(info.size_bytes, std::sync::atomic::Ordering::Relaxed);
    stats.uploaded_segments.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cursor.mark = cursor.mark.map(|mark| mark + info.size_bytes);
    cursor.pending_since = (!reached_end).then(Instant::now);
    tracing::debug!(topic = %topic.name, partition = partition.index, base = info.base_offset, next = info.next_offset, bytes = info.size_bytes, "segment uploaded");
    Ok(Step::Uploaded)
}

/// The transactions to store beside the segment `info`: those its abort markers abort, and those
/// unresolved at its end: open now and begun before its end, or aborted by a marker after it.
/// (Those committed after its end need nothing: their records are visible either way.)
async fn segment_txns(
    log: &Log,
    partition: &Arc<Partition>,
    info: &SegmentInfo,
) -> Result<segment::SegmentTxns, LogError> {
    let end = info.next_offset;
    let aborted = partition.aborted_in(info.base_offset, end);
    let mut unresolved: Vec<OpenTxn> =
        partition.open_transactions().into_iter().filter(|txn| txn.first_offset < end).collect();
    // Those whose marker is at or after `end` and whose first record is before it.
    let aborted_later: Vec<AbortedTxn> = partition.aborted_between(end, end);
    if !aborted_later.is_empty() {
        // A marker names no epoch in the index: the producer's latest epoch here will do.
        let epochs: HashMap<i64, i16> =
            log.producers(partition).await?.into_iter().map(|(id, entry)| (id, entry.epoch)).collect();
        unresolved.extend(aborted_later.into_iter().map(|txn| OpenTxn {
            producer_id: txn.producer_id,
            producer_epoch: epochs.get(&txn.producer_id).copied().unwrap_or(0),
            first_offset: txn.first_offset,
        }));
    }
    unresolved.sort_by_key(|txn| (txn.first_offset, txn.producer_id));
    Ok(segment::SegmentTxns { aborted, unresolved })
}

/// Stores `body` at `object`, or finds there what an earlier attempt that failed after storing
/// it left: contents that `same` accepts.
async fn put_exactly(tier: &Tier, object: &str, body: Bytes, same: impl Fn(&Bytes) -> bool) -> Result<(), LogError> {
    match tier.store().put_if_absent(object, body).await.map_err(remote)? {
        Put::Created => Ok(()),
        Put::AlreadyExists => {
            let existing = tier.store().get(object).await.map_err(remote)?;
            match existing.as_ref().is_some_and(same) {
                true => Ok(()),
                false => Err(LogError::Remote(format!(
                    "{object} exists with other contents: is another broker writing here?"
                ))),
            }
        }
    }
}

/// Makes the object store and the remote index agree, once per partition after start.
async fn reconcile(log: &Log, tier: &Arc<Tier>, partition: &Arc<Partition>) -> Result<(), LogError> {
    let prefix = segment::partition_prefix(partition.topic_id, partition.index);
    let listed = tier.store().list(&prefix).await.map_err(remote)?;
    let known: HashSet<String> = partition
        .remote_segments()
        .iter()
        .map(|s| segment::segment_key(partition.topic_id, partition.index, s))
        .collect();
    let mut end = partition.remote_end().max(partition.log_start());
    // An `.aborted` object stays with its segment: it is judged once the segments are.
    let (aborted, listed): (Vec<_>, Vec<_>) =
        listed.into_iter().partition(|o| o.key.ends_with(segment::ABORTED_SUFFIX));
    let mut kept = known;
    let mut found: Vec<(String, Option<SegmentInfo>)> = listed
        .into_iter()
        .filter(|o| !kept.contains(&o.key))
        .map(|o| {
            let info = segment::parse_segment_key(&o.key, o.size).map(|(_, _, info)| info);
            (o.key, info)
        })
        .collect();
    found.sort_by_key(|(_, info)| info.map(|i| i.base_offset));
    for (object, info) in found {
        let Some(info) = info else {
            // Not a segment name: not ours to judge, so left alone.
            tracing::warn!(%object, "unexpected object beside the segments");
            continue;
        };
        let continues =
            info.base_offset <= end && info.next_offset > end && info.next_offset <= partition.high_watermark();
        if continues && partition.remote_end() <= info.base_offset {
            let bytes = tier.store().get(&object).await.map_err(remote)?;
            let checked = match bytes {
                Some(bytes) => blocking(move || Ok(Segment::parse(bytes, &info).is_ok())).await?,
                None => false,
            };
            if checked {
                log.record_segment(partition, info).await?;
                kept.insert(object.clone());
                end = info.next_offset;
                tracing::info!(%object, "adopted a segment uploaded before a restart");
                continue;
            }
        }
        tier.store().delete(&object).await.map_err(remote)?;
        tracing::info!(%object, "deleted an orphaned object");
    }
    for object in aborted {
        let segment = format!("{}{}", object.key.trim_end_matches(segment::ABORTED_SUFFIX), segment::SEGMENT_SUFFIX);
        if !kept.contains(&segment) {
            tier.store().delete(&object.key).await.map_err(remote)?;
            tracing::info!(object = %object.key, "deleted the aborted transactions of an orphaned segment");
        }
    }
    Ok(())
}

/// Deletes the segments retention or DeleteRecords put wholly below the log start.
async fn delete_expired(log: &Log, tier: &Arc<Tier>, partition: &Arc<Partition>) -> Result<(), LogError> {
    let log_start = partition.log_start();
    for info in partition.remote_segments_below(log_start) {
        let object = segment::segment_key(partition.topic_id, partition.index, &info);
        tier.store().delete(&object).await.map_err(remote)?;
        log.delete_segment(partition, info.base_offset).await?;
        // Whether the segment had one or not: deleting what is not there succeeds, and costs
        // nothing on S3.
        tier.store().delete(&segment::aborted_key(partition.topic_id, partition.index, &info)).await.map_err(remote)?;
        tier.forget(&object);
        tracing::debug!(%object, "expired segment deleted");
    }
    Ok(())
}

/// Drops uploaded segments from the hot tier once `local.retention.*` lets it.
async fn trim_local(log: &Log, topic: &Topic, partition: &Arc<Partition>) -> Result<(), LogError> {
    let local_start = partition.local_start();
    let (retention_ms, retention_bytes) = (topic.config.local_retention_ms, topic.config.local_retention_bytes);
    let cutoff = now_ms().saturating_sub(retention_ms.max(0));
    let uploaded: Vec<SegmentInfo> = partition.remote_segments_from(local_start);
    let mut local_bytes: i64 = uploaded.iter().map(|s| s.size_bytes as i64).sum();
    let mut trim_to = local_start;
    for segment in &uploaded {
        let expired = retention_ms >= 0 && segment.max_timestamp < cutoff;
        let too_big = retention_bytes >= 0 && local_bytes > retention_bytes;
        if !expired && !too_big {
            break;
        }
        trim_to = segment.next_offset;
        local_bytes -= segment.size_bytes as i64;
    }
    if trim_to <= local_start {
        return Ok(());
    }
    log.trim_local(partition, trim_to).await?;
    tracing::debug!(topic = %topic.name, partition = partition.index, local_start = trim_to, "hot tier trimmed");
    Ok(())
}
