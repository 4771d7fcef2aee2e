//! The group-commit writer: a dedicated thread that owns offset assignment and producer state.
//!
//! It takes the first queued command, drains whatever else is queued (up to a byte limit), applies
//! the appends to staged copies of their partitions' state, and writes everything in one RocksDB
//! write. Only when that write (and its fsync, if configured) succeeds do the staged states become
//! current, the high watermarks move and the producers hear back; on failure every append of the
//! group fails and nothing of it is visible, so offsets stay dense.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::batch::{self, BatchHeader, ValidBatch};
use super::commit_log::{CommitLog, CommittedBatches};
use super::producer::{self, BatchSequence, ProducerEntry, SequenceCheck};
use super::remote_index::SegmentInfo;
use super::store::{PartitionKey, Store, StoreError, StoreWrite};
use super::topic_config::TimestampType;
use super::{
    AbortedTxn, AppendInfo, GroupWrite, LogError, Partition, RestoredPartition, TopicRecord, encode_record, now_ms,
};

/// One partition's batches from a produce request.
pub(super) struct Append {
    pub partition: Arc<Partition>,
    pub timestamp_type: TimestampType,
    pub batches: Vec<ValidBatch>,
    pub reply: oneshot::Sender<Result<AppendInfo, LogError>>,
}

/// A request written under an idempotency key (HTTP writes): the key and what answers a retry
/// are stored in the same write as the request's batches, or not at all.
pub struct Keyed {
    pub topic_id: uuid::Uuid,
    pub key: String,
    /// The door's part of the stored answer (its records' partitions and timestamps).
    pub request: serde_json::Value,
    /// Partitions written elsewhere before (through their leaders): index, base offset, append time.
    pub forwarded: Vec<(i32, i64, i64)>,
}

/// Every durable change to the store, so that RocksDB has exactly one writer: this thread.
pub(super) enum Command {
    /// Every partition of one produce request, so that they share a group commit; with a key,
    /// the request's answer is stored with its batches.
    Append(Vec<Append>, Option<Keyed>),
    /// Stores a keyed request's answer on its own, when all its partitions were written through
    /// other brokers (in a cluster).
    StoreIdempotency {
        keyed: Keyed,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Deletes idempotency keys (by store name) whose window has passed.
    ExpireIdempotency {
        names: Vec<String>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Truncate {
        partition: Arc<Partition>,
        log_start: i64,
        reply: oneshot::Sender<Result<i64, LogError>>,
    },
    DeleteTopic {
        name: String,
        id: uuid::Uuid,
        keys: Vec<PartitionKey>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// The next `count` producer ids, never handed out before.
    AllocateProducerIds {
        count: i64,
        reply: oneshot::Sender<Result<std::ops::Range<i64>, LogError>>,
    },
    /// A new topic: its number is allocated here and written with its record; a topic restored
    /// from the object store comes with each partition's segments, which become its remote index.
    CreateTopic {
        record: TopicRecord,
        restored: Vec<RestoredPartition>,
        reply: oneshot::Sender<Result<TopicRecord, LogError>>,
    },
    /// A topic's changed record (partition count, configs).
    UpdateTopic {
        record: TopicRecord,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    DynamicConfigs {
        scope: String,
        configs: Vec<u8>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    ClusterId {
        id: String,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// The group coordinator's records and committed offsets, written together.
    Groups {
        writes: Vec<GroupWrite>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// A segment now in the object store: its index entry is made durable, then readers see it.
    RecordSegment {
        partition: Arc<Partition>,
        segment: SegmentInfo,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// A segment deleted from the object store (below the log start).
    DeleteSegment {
        partition: Arc<Partition>,
        base_offset: i64,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Drops the uploaded batches below `below` from the hot tier: readers move to the object
    /// store first, then the batches go.
    TrimLocal {
        partition: Arc<Partition>,
        below: i64,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// A deleted topic's objects are gone: its marker goes too.
    TopicObjectsDeleted {
        id: uuid::Uuid,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// The data dir was rebuilt from the object store (or found not to need it).
    MarkRecovered {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Drops the partition's batches from `end` on (records that never became durable), and the
    /// producer state and time index entries that came with them. Replies with the new log end.
    TruncateSuffix {
        partition: Arc<Partition>,
        end: i64,
        reply: oneshot::Sender<Result<i64, LogError>>,
    },
    /// Forgets the producers whose last write is older than `cutoff_ms` and that hold no
    /// transaction open (Kafka's `producer.id.expiration.ms`); answers how many.
    ExpireProducers {
        cutoff_ms: i64,
        reply: oneshot::Sender<Result<usize, LogError>>,
    },
    /// Stores batches that already have their offsets (a write-ahead log replayed), continuing
    /// the partition's log exactly, and publishes them: recovery, not a produce.
    Restore {
        partition: Arc<Partition>,
        producers: Vec<(i64, ProducerEntry)>,
        batches: Vec<bytes::Bytes>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Starts a partition's local log afresh at `start` (see `Log::reset_partition`).
    Reset {
        partition: Arc<Partition>,
        log_start: i64,
        start: i64,
        segments: Vec<SegmentInfo>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// The transaction coordinator's records: `(transactional id, record)`, `None` deleting it.
    Transactions {
        writes: Vec<(String, Option<Vec<u8>>)>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Answers once every append queued before it is durable (or failed).
    Barrier {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Finish what is queued before, then stop the thread (and release the store).
    Stop,
}

/// The writer's view of one partition.
#[derive(Debug, Clone)]
struct PartitionState {
    next_offset: i64,
    log_start: i64,
    /// Running max timestamp: the time index gets an entry only when a batch raises it.
    max_timestamp: i64,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions on the partition: `(first offset, producer id)`.
    open_txns: BTreeSet<(i64, i64)>,
    /// Bytes staged by the group commit in progress.
    staged_bytes: u64,
    /// The partition's leader epoch when the group commit began, stamped into its batches.
    leader_epoch: i32,
}

impl PartitionState {
    /// The last stable offset: the first offset of the earliest open transaction, else the log end.
    fn last_stable(&self) -> i64 {
        self.open_txns.first().map_or(self.next_offset, |&(first, _)| first.min(self.next_offset))
    }

    /// The open transactions as readers see them.
    fn open_list(&self) -> Vec<super::OpenTxn> {
        self.open_txns
            .iter()
            .map(|&(first_offset, producer_id)| super::OpenTxn {
                producer_id,
                producer_epoch: self.producers.get(&producer_id).map_or(0, |entry| entry.epoch),
                first_offset,
            })
            .collect()
    }

    fn open_txns_of(producers: &HashMap<i64, ProducerEntry>) -> BTreeSet<(i64, i64)> {
        producers.iter().filter_map(|(&id, entry)| entry.txn_first_offset.map(|first| (first, id))).collect()
    }

    /// What appending `header`'s batch at `base_offset` does to transactions, after its sequence
    /// was recorded: a transactional data batch opens its producer's transaction here (if not
    /// open yet); a marker closes it, and an abort marker yields the aborted transaction. Returns
    /// the producer's entry to store, if it changed.
    fn apply_transaction(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        base_offset: i64,
        aborted: &mut Vec<AbortedTxn>,
    ) -> Option<&ProducerEntry> {
        let producer_id = header.producer_id;
        if header.is_control() {
            let entry =
                self.producers.entry(producer_id).or_insert_with(|| ProducerEntry::empty(header.producer_epoch));
            if header.producer_epoch > entry.epoch {
                entry.epoch = header.producer_epoch;
                entry.batches.clear();
            }
            entry.last_timestamp = header.max_timestamp;
            entry.coordinator_epoch = batch::marker_coordinator_epoch(bytes).unwrap_or(entry.coordinator_epoch);
            if let Some(first_offset) = entry.txn_first_offset.take() {
                self.open_txns.remove(&(first_offset, producer_id));
                if batch::marker_commits(bytes) == Some(false) {
                    aborted.push(AbortedTxn { producer_id, first_offset, last_offset: base_offset });
                }
            }
            return Some(entry);
        }
        if !header.is_transactional() {
            return None;
        }
        let entry = self.producers.get_mut(&producer_id)?;
        if entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(base_offset);
            self.open_txns.insert((base_offset, producer_id));
        }
        Some(entry)
    }
}

/// Reads a partition's log start and log end from the store; `remote_end` is where the segments
/// in the object store end (the hot tier may hold nothing after them).
pub(super) fn recover_offsets(store: &Store, key: PartitionKey, remote_end: i64) -> Result<(i64, i64), StoreError> {
    let log_start = store.log_start(key)?.unwrap_or(0);
    let log_end = store.last_batch(key)?.map_or(0, |header| header.last_offset() + 1);
    Ok((log_start, log_end.max(remote_end).max(log_start)))
}

struct Writer {
    store: Store,
    sync_each_commit: bool,
    group_bytes_max: usize,
    partitions: HashMap<PartitionKey, PartitionState>,
    producers: HashMap<PartitionKey, HashMap<i64, ProducerEntry>>,
    /// Where a group commit becomes durable before it is published and acknowledged.
    commit_log: Arc<dyn CommitLog>,
    appended: Arc<watch::Sender<u64>>,
}

/// How the writer commits: the store write's fsync, the group's size bound, the commit log.
pub(super) struct WriterSettings {
    pub sync_each_commit: bool,
    pub group_bytes_max: usize,
    pub commit_log: Arc<dyn CommitLog>,
}

pub(super) fn spawn(
    store: Store,
    mut commands: mpsc::Receiver<Command>,
    appended: watch::Sender<u64>,
    settings: WriterSettings,
) -> Result<std::thread::JoinHandle<()>, LogError> {
    let WriterSettings { sync_each_commit, group_bytes_max, commit_log } = settings;
    let mut producers: HashMap<PartitionKey, HashMap<i64, ProducerEntry>> = HashMap::new();
    for (key, producer_id, bytes) in store.scan_producers()? {
        let entry = ProducerEntry::decode(&bytes).ok_or_else(|| StoreError::corrupt("producer entry"))?;
        producers.entry(key).or_default().insert(producer_id, entry);
    }
    let mut writer = Writer {
        store,
        sync_each_commit,
        group_bytes_max,
        partitions: HashMap::new(),
        producers,
        commit_log,
        appended: Arc::new(appended),
    };
    let handle = std::thread::Builder::new()
        .name("zombi-log-writer".into())
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while let Some(first) = commands.blocking_recv() {
                    if writer.run(first, &mut commands) {
                        break;
                    }
                }
            }));
            if ran.is_err() {
                // A broken invariant of the log (see the asserts): going on could corrupt it, and
                // a broker that silently stops writing is worse than one that stops.
                tracing::error!("the log writer broke an invariant; aborting");
                std::process::abort();
            }
            tracing::debug!("log writer stopped");
        })
        .map_err(|e| StoreError::corrupt(format!("cannot start the log writer: {e}")))?;
    Ok(handle)
}

/// Waits for the writer's answer to a command other than an append (metadata, group records,
/// remote index) on the blocking pool, where the store write itself used to run: tokio then
/// counts the wait as work in flight, so a paused clock (the coordinator's timer tests) does not
/// jump ahead while a write is on its way. These commands are rare next to appends, whose replies
/// are awaited directly.
pub(super) async fn wait<T: Send + 'static>(receiver: oneshot::Receiver<Result<T, LogError>>) -> Result<T, LogError> {
    tokio::task::spawn_blocking(move || receiver.blocking_recv())
        .await
        .map_err(|_| LogError::Unavailable)?
        .map_err(|_| LogError::Unavailable)?
}

/// With `--durability periodic`, a thread that fsyncs the WAL on an interval until `stop` is set.
pub(super) fn spawn_wal_syncer(
    store: Store,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, LogError> {
    std::thread::Builder::new()
        .name("zombi-wal-sync".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(interval);
                if let Err(error) = store.sync_wal() {
                    tracing::error!(%error, "WAL fsync failed");
                }
            }
        })
        .map_err(|e| StoreError::corrupt(format!("cannot start the WAL syncer: {e}")).into())
}

/// The order of a partition's published offsets, which every reader relies on.
fn assert_offsets(partition: &Partition) {
    let (log_start, local_start, high_watermark) =
        (partition.log_start(), partition.local_start(), partition.high_watermark());
    assert!(
        log_start <= local_start && local_start <= high_watermark,
        "partition {:?}: log start {log_start}, local start {local_start}, high watermark {high_watermark}",
        partition.key
    );
}

/// Stages a keyed request's answer: its door's part, every partition's base offset and append
/// time (`bases` written here, then those written elsewhere), and when.
fn put_keyed(store: &Store, write: &mut StoreWrite, keyed: Keyed, mut bases: Vec<(i32, i64, i64)>, now: i64) {
    bases.extend(keyed.forwarded.iter().copied());
    let value = serde_json::json!({ "request": keyed.request, "bases": bases, "at_ms": now });
    store.put_idempotency(write, keyed.topic_id, &keyed.key, value.to_string().as_bytes());
}

/// The appends of one group commit, and the keyed requests among them (by their appends' range).
#[derive(Default)]
struct Group {
    appends: Vec<Append>,
    keyed: Vec<(std::ops::Range<usize>, Keyed)>,
}

/// One partition's state and stored batches in the group commit being built.
struct Staged {
    partition: Arc<Partition>,
    state: PartitionState,
    batches: Vec<bytes::Bytes>,
    /// Transactions aborted by markers in this group commit.
    aborted: Vec<AbortedTxn>,
}

/// An append applied to staged state, waiting for the write.
struct Pending {
    reply: oneshot::Sender<Result<AppendInfo, LogError>>,
    result: Result<AppendInfo, LogError>,
}

impl Writer {
    /// Runs one group of commands; true when asked to stop.
    fn run(&mut self, first: Command, commands: &mut mpsc::Receiver<Command>) -> bool {
        let mut group = Group::default();
        let mut group_bytes = 0;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(appends, keyed) => {
                    let first = group.appends.len();
                    for append in appends {
                        group_bytes += append.batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                        group.appends.push(append);
                    }
                    if let Some(keyed) = keyed {
                        group.keyed.push((first..group.appends.len(), keyed));
                    }
                }
                Command::Stop => {
                    self.commit_appends(group);
                    return true;
                }
                other => {
                    // Everything but appends runs alone, after the appends queued before it.
                    self.commit_appends(std::mem::take(&mut group));
                    group_bytes = 0;
                    self.run_other(other);
                }
            }
            if group_bytes < self.group_bytes_max {
                next = commands.try_recv().ok();
            }
        }
        self.commit_appends(group);
        false
    }

    /// The partition's state, recovered on first use from what the log published at open.
    fn state(&mut self, partition: &Partition) -> Result<PartitionState, LogError> {
        let key = partition.key;
        if let Some(state) = self.partitions.get(&key) {
            return Ok(state.clone());
        }
        let (log_start, next_offset) = (partition.log_start(), partition.high_watermark());
        let local_max = self.store.last_time_entry(key)?.map_or(i64::MIN, |(timestamp, _)| timestamp);
        let remote_max = partition.remote_segments().iter().map(|s| s.max_timestamp).max().unwrap_or(i64::MIN);
        let max_timestamp = local_max.max(remote_max);
        let producers = self.producers.remove(&key).unwrap_or_default();
        let open_txns = PartitionState::open_txns_of(&producers);
        let leader_epoch = partition.leader_epoch();
        let state = PartitionState {
            next_offset,
            log_start,
            max_timestamp,
            producers,
            open_txns,
            staged_bytes: 0,
            leader_epoch,
        };
        self.partitions.insert(key, state.clone());
        Ok(state)
    }

    fn commit_appends(&mut self, group: Group) {
        let Group { appends: group, keyed } = group;
        if group.is_empty() && keyed.is_empty() {
            return;
        }
        // Each batch is a value with a 24-byte key, plus a time-index entry and framing.
        let bytes: usize = group.iter().flat_map(|a| &a.batches).map(|b| b.bytes.len() + 128).sum();
        let mut write = StoreWrite::with_capacity(bytes + 4096);
        let mut staged: HashMap<PartitionKey, Staged> = HashMap::new();
        let mut pending = Vec::with_capacity(group.len());
        let group_indexes: Vec<i32> = group.iter().map(|a| a.partition.index).collect();
        let now = now_ms();
        for Append { partition, timestamp_type, batches, reply } in group {
            let key = partition.key;
            if partition.deleted.load(Ordering::Acquire) {
                pending.push(Pending { reply, result: Err(LogError::UnknownTopicOrPartition) });
                continue;
            }
            // Handed over (or never taken over) since the append was validated.
            if !partition.is_leading() {
                pending.push(Pending { reply, result: Err(LogError::NotLeaderOrFollower) });
                continue;
            }
            let entry = match staged.entry(key) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match self.state(&partition) {
                    Ok(state) => entry.insert(Staged {
                        partition: partition.clone(),
                        state,
                        batches: Vec::new(),
                        aborted: Vec::new(),
                    }),
                    Err(error) => {
                        pending.push(Pending { reply, result: Err(error) });
                        continue;
                    }
                },
            };
            entry.state.leader_epoch = partition.leader_epoch();
            let result = self.apply(&mut write, key, entry, timestamp_type, batches, now);
            pending.push(Pending { reply, result });
        }
        // Each keyed request whose appends all succeeded stores its answer with them.
        for (range, keyed) in keyed {
            let results: Option<Vec<(i32, i64, i64)>> = pending[range.clone()]
                .iter()
                .zip(&group_indexes[range])
                .map(|(p, index)| {
                    p.result.as_ref().ok().map(|info| (*index, info.base_offset, info.log_append_time_ms))
                })
                .collect();
            let Some(bases) = results else { continue };
            put_keyed(&self.store, &mut write, keyed, bases, now);
        }
        let started = std::time::Instant::now();
        let written = self.store.write(write, self.sync_each_commit);
        tracing::trace!(appends = pending.len(), write_us = started.elapsed().as_micros() as u64, "group commit");
        if let Err(error) = written {
            tracing::error!(%error, "group commit failed");
            for item in pending {
                let _ = item.reply.send(Err(LogError::Storage(StoreError::corrupt(error.to_string()))));
            }
            return;
        }
        // The writer goes on from the staged state at once; readers and producers see the group
        // only once the commit log has made it durable.
        let needs_batches = self.commit_log.needs_batches();
        let mut published = Vec::with_capacity(staged.len());
        let mut committed = Vec::new();
        for (key, Staged { partition, mut state, batches, aborted }) in staged {
            let transactions = (state.last_stable(), aborted, state.open_list());
            published.push((
                partition.clone(),
                state.next_offset,
                std::mem::take(&mut state.staged_bytes),
                transactions,
            ));
            if needs_batches && !batches.is_empty() {
                committed.push(CommittedBatches { partition, batches });
            }
            self.partitions.insert(key, state);
        }
        let appended = self.appended.clone();
        self.commit_log.commit(
            committed,
            Box::new(move |durable| {
                if let Err(failure) = durable {
                    for item in pending {
                        // An append refused on its own (a sequence error) keeps its own error.
                        let _ = item.reply.send(item.result.and(Err(failure.into())));
                    }
                    return;
                }
                for (partition, next_offset, bytes, (last_stable, aborted, open)) in published {
                    // The last stable offset first: it never runs ahead of the high watermark
                    // a reader sees (readers take the smaller of the two).
                    partition.publish_transactions(last_stable, aborted, open);
                    partition.high_watermark.fetch_max(next_offset, Ordering::AcqRel);
                    partition.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                appended.send_modify(|generation| *generation = generation.wrapping_add(1));
                for item in pending {
                    let _ = item.reply.send(item.result);
                }
            }),
        );
    }

    /// Checks sequences, assigns offsets and stages the writes of one partition's batches.
    fn apply(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        staged: &mut Staged,
        timestamp_type: TimestampType,
        batches: Vec<ValidBatch>,
        now: i64,
    ) -> Result<AppendInfo, LogError> {
        let state = &mut staged.state;
        // Check every batch before staging any, so a refused request changes nothing.
        let mut checks = Vec::with_capacity(batches.len());
        let mut expected = state.producers.clone();
        for batch in &batches {
            let header = &batch.header;
            if !header.is_idempotent() {
                checks.push(SequenceCheck::Next);
                continue;
            }
            let entry = expected.get(&header.producer_id);
            if header.is_control() {
                // A marker carries no sequence; the coordinator fences with its epoch.
                if entry.is_some_and(|entry| entry.epoch > header.producer_epoch) {
                    return Err(LogError::InvalidProducerEpoch);
                }
                checks.push(SequenceCheck::Next);
                continue;
            }
            let check = producer::check(entry, header.producer_epoch, header.base_sequence, header.last_sequence());
            match check {
                SequenceCheck::OutOfOrder => return Err(LogError::OutOfOrderSequence),
                SequenceCheck::FencedEpoch => return Err(LogError::InvalidProducerEpoch),
                SequenceCheck::Duplicate(_) => {}
                SequenceCheck::Next => {
                    let sequence = BatchSequence {
                        first_sequence: header.base_sequence,
                        last_sequence: header.last_sequence(),
                        base_offset: -1,
                    };
                    let previous = expected.remove(&header.producer_id);
                    let recorded = ProducerEntry::record(previous, header.producer_epoch, sequence);
                    expected.insert(header.producer_id, recorded);
                }
            }
            checks.push(check);
        }
        let mut info = AppendInfo { base_offset: -1, log_append_time_ms: -1, log_start: state.log_start };
        for (mut batch, check) in batches.into_iter().zip(checks) {
            let base_offset = match check {
                SequenceCheck::Duplicate(original) => original,
                _ => {
                    let base_offset =
                        self.stage_batch(write, key, state, timestamp_type, &mut batch, now, &mut staged.aborted);
                    staged.batches.push(std::mem::take(&mut batch.bytes).freeze());
                    base_offset
                }
            };
            if info.base_offset < 0 {
                info.base_offset = base_offset;
            }
            if timestamp_type == TimestampType::LogAppendTime {
                info.log_append_time_ms = now;
            }
        }
        Ok(info)
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_batch(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        state: &mut PartitionState,
        timestamp_type: TimestampType,
        batch: &mut ValidBatch,
        now: i64,
        aborted: &mut Vec<AbortedTxn>,
    ) -> i64 {
        let base_offset = state.next_offset;
        batch.assign_offset(base_offset, state.leader_epoch);
        if timestamp_type == TimestampType::LogAppendTime {
            batch.set_log_append_time(now);
        }
        let header = batch.header;
        self.store.put_batch(write, key, base_offset, &batch.bytes);
        state.staged_bytes += batch.bytes.len() as u64;
        if header.max_timestamp > state.max_timestamp {
            state.max_timestamp = header.max_timestamp;
            self.store.put_time_index(write, key, header.max_timestamp, base_offset);
        }
        self.stage_producer(write, key, state, &header, &batch.bytes, base_offset, aborted);
        state.next_offset = header.last_offset() + 1;
        // Offsets only move forward: a broken invariant here would corrupt the log.
        assert!(state.next_offset > base_offset, "offsets must increase");
        base_offset
    }

    /// Records an idempotent batch's sequence and its transactional effects in the producer's
    /// entry, and stages the entry (and any transaction it aborted).
    #[allow(clippy::too_many_arguments)]
    fn stage_producer(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        state: &mut PartitionState,
        header: &BatchHeader,
        bytes: &[u8],
        base_offset: i64,
        aborted: &mut Vec<AbortedTxn>,
    ) {
        if !header.is_idempotent() {
            return;
        }
        if !header.is_control() {
            let sequence = BatchSequence {
                first_sequence: header.base_sequence,
                last_sequence: header.last_sequence(),
                base_offset,
            };
            let previous = state.producers.remove(&header.producer_id);
            let mut entry = ProducerEntry::record(previous, header.producer_epoch, sequence);
            entry.last_timestamp = header.max_timestamp;
            state.producers.insert(header.producer_id, entry);
        }
        let aborted_before = aborted.len();
        state.apply_transaction(header, bytes, base_offset, aborted);
        if let Some(entry) = state.producers.get(&header.producer_id) {
            self.store.put_producer(write, key, header.producer_id, &entry.encode());
        }
        for txn in &aborted[aborted_before..] {
            self.store.put_aborted(write, key, txn);
        }
    }

    fn run_other(&mut self, command: Command) {
        match command {
            Command::Append(..) | Command::Stop => unreachable!("handled by run"),
            Command::StoreIdempotency { keyed, reply } => {
                let _ = reply.send(self.write_with(self.sync_each_commit, |store, write| {
                    put_keyed(store, write, keyed, Vec::new(), now_ms());
                    Ok(())
                }));
            }
            Command::ExpireIdempotency { names, reply } => {
                let _ = reply.send(self.write_with(false, |store, write| {
                    for name in &names {
                        store.delete_idempotency(write, name);
                    }
                    Ok(())
                }));
            }
            Command::Truncate { partition, log_start, reply } => {
                let _ = reply.send(self.truncate(&partition, log_start));
            }
            Command::DeleteTopic { name, id, keys, reply } => {
                let _ = reply.send(self.delete_topic(&name, id, &keys));
            }
            Command::AllocateProducerIds { count, reply } => {
                let _ = reply.send(self.allocate_producer_ids(count));
            }
            Command::CreateTopic { record, restored, reply } => {
                let _ = reply.send(self.create_topic(record, &restored));
            }
            Command::UpdateTopic { record, reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    store.put_topic(write, &record.name, &encode_record(&record));
                    Ok(())
                }));
            }
            Command::DynamicConfigs { scope, configs, reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    store.put_dynamic_configs(write, &scope, &configs);
                    Ok(())
                }));
            }
            Command::ClusterId { id, reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    store.put_cluster_id(write, &id);
                    Ok(())
                }));
            }
            Command::Groups { writes, reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    for item in &writes {
                        match item {
                            GroupWrite::Group { group, record } => store.put_group(write, group, record),
                            GroupWrite::DeleteGroup { group } => store.delete_group(write, group),
                            GroupWrite::Offset { group, topic, partition, record } => {
                                store.put_offset(write, group, topic, *partition, record)
                            }
                            GroupWrite::DeleteOffset { group, topic, partition } => {
                                store.delete_offset(write, group, topic, *partition)
                            }
                            GroupWrite::PendingOffsets { group, producer_id, record } => {
                                store.put_pending_offsets(write, group, *producer_id, record.as_deref())
                            }
                        }
                    }
                    Ok(())
                }));
            }
            Command::RecordSegment { partition, segment, reply } => {
                let _ = reply.send(self.record_segment(&partition, segment));
            }
            Command::DeleteSegment { partition, base_offset, reply } => {
                let key = partition.key;
                // Losing this delete to a power loss only leaves an entry below the log start,
                // which the next pass deletes again.
                let written = self.write_with(false, |store, write| {
                    store.delete_remote(write, key, base_offset);
                    Ok(())
                });
                if written.is_ok() {
                    partition.remove_remote(base_offset);
                }
                let _ = reply.send(written);
            }
            Command::TrimLocal { partition, below, reply } => {
                let _ = reply.send(self.trim_local(&partition, below));
            }
            Command::TopicObjectsDeleted { id, reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    store.delete_remote_gc(write, id);
                    Ok(())
                }));
            }
            Command::TruncateSuffix { partition, end, reply } => {
                let _ = reply.send(self.truncate_suffix(&partition, end));
            }
            Command::ExpireProducers { cutoff_ms, reply } => {
                let _ = reply.send(self.expire_producers(cutoff_ms));
            }
            Command::Restore { partition, producers, batches, reply } => {
                let _ = reply.send(self.restore(&partition, producers, batches));
            }
            Command::Reset { partition, log_start, start, segments, reply } => {
                let _ = reply.send(self.reset(&partition, log_start, start, segments));
            }
            Command::Transactions { writes, reply } => {
                let _ = reply.send(self.write_with(self.sync_each_commit, |store, write| {
                    for (id, record) in &writes {
                        match record {
                            Some(record) => store.put_txn(write, id, record),
                            None => store.delete_txn(write, id),
                        }
                    }
                    Ok(())
                }));
            }
            Command::Barrier { reply } => {
                // The commit log answers in commit order: after every group committed before.
                self.commit_log.commit(
                    Vec::new(),
                    Box::new(move |durable| {
                        let _ = reply.send(durable.map_err(LogError::from));
                    }),
                );
            }
            Command::MarkRecovered { reply } => {
                let _ = reply.send(self.write_one(|store, write| {
                    store.put_recovered(write);
                    Ok(())
                }));
            }
        }
    }

    /// Stages mutations with `stage` and writes them durably on their own.
    fn write_one(&self, stage: impl FnOnce(&Store, &mut StoreWrite) -> Result<(), StoreError>) -> Result<(), LogError> {
        self.write_with(true, stage)
    }

    fn write_with(
        &self,
        sync: bool,
        stage: impl FnOnce(&Store, &mut StoreWrite) -> Result<(), StoreError>,
    ) -> Result<(), LogError> {
        let mut write = StoreWrite::default();
        stage(&self.store, &mut write)?;
        self.store.write(write, sync)?;
        Ok(())
    }

    fn create_topic(&mut self, record: TopicRecord, restored: &[RestoredPartition]) -> Result<TopicRecord, LogError> {
        let mut write = StoreWrite::default();
        let number = self.store.allocate_topic_number(&mut write)?;
        let record = TopicRecord { number, ..record };
        self.store.put_topic(&mut write, &record.name, &encode_record(&record));
        for (index, restored) in restored.iter().enumerate() {
            let key = PartitionKey { topic_number: number, partition: index as u32 };
            if let Some(first) = restored.segments.first() {
                self.store.put_log_start(&mut write, key, first.base_offset);
            }
            for segment in &restored.segments {
                self.store.put_remote(&mut write, key, segment.base_offset, &segment.encode_value());
            }
            for txn in &restored.aborted {
                self.store.put_aborted(&mut write, key, txn);
            }
        }
        self.store.write(write, true)?;
        Ok(record)
    }

    fn record_segment(&mut self, partition: &Partition, segment: SegmentInfo) -> Result<(), LogError> {
        let remote_end = partition.remote_end();
        // The remote index is one contiguous run from the log start: a segment must continue it.
        let continues_from = remote_end.max(partition.log_start());
        assert!(
            segment.base_offset <= continues_from,
            "segment {segment:?} would leave a gap after offset {continues_from}"
        );
        assert!(segment.next_offset > segment.base_offset, "segment {segment:?} holds no offsets");
        assert!(
            segment.next_offset <= partition.high_watermark(),
            "segment {segment:?} reaches past the high watermark {}",
            partition.high_watermark()
        );
        let key = partition.key;
        self.write_one(|store, write| {
            store.put_remote(write, key, segment.base_offset, &segment.encode_value());
            Ok(())
        })?;
        partition.add_remote(segment);
        Ok(())
    }

    fn trim_local(&mut self, partition: &Partition, below: i64) -> Result<(), LogError> {
        if below <= partition.local_start() {
            return Ok(());
        }
        // Only what the object store holds may leave the hot tier.
        assert!(below <= partition.remote_end(), "trimming to {below} past the remote end {}", partition.remote_end());
        partition.set_local_start(below);
        assert_offsets(partition);
        let key = partition.key;
        // A trim lost to a power loss is redone by the next pass.
        self.write_with(false, |store, write| store.trim_local_below(write, key, below))
    }

    fn truncate(&mut self, partition: &Partition, log_start: i64) -> Result<i64, LogError> {
        let key = partition.key;
        let mut state = self.state(partition)?;
        if log_start <= state.log_start {
            return Ok(state.log_start);
        }
        // Only acknowledged records may go: a group still on its way to the commit log is not.
        if log_start > partition.high_watermark() {
            return Err(LogError::OffsetOutOfRange);
        }
        // Whole batches below the new start go; a batch that straddles it stays readable from it.
        let first_kept = match self.store.batch_containing(key, log_start)? {
            Some(bytes) => i64::from_be_bytes(bytes[..8].try_into().map_err(|_| StoreError::corrupt("batch"))?),
            None => log_start,
        };
        let time_index_end = self.store.time_entry_from_offset(key, first_kept)?;
        let mut write = StoreWrite::default();
        self.store.delete_batches_below(&mut write, key, first_kept, time_index_end);
        self.store.delete_aborted_below(&mut write, key, first_kept);
        self.store.put_log_start(&mut write, key, log_start);
        self.store.write(write, self.sync_each_commit)?;
        partition.forget_aborted(Some(first_kept), None);
        state.log_start = log_start;
        if time_index_end.is_none() {
            state.max_timestamp = i64::MIN;
        }
        self.partitions.insert(key, state);
        partition.log_start.store(log_start, Ordering::Release);
        // The hot tier no longer holds anything below the new log start either.
        partition.set_local_start(log_start);
        assert_offsets(partition);
        Ok(log_start)
    }

    fn truncate_suffix(&mut self, partition: &Partition, end: i64) -> Result<i64, LogError> {
        let key = partition.key;
        let mut state = self.state(partition)?;
        if end >= state.next_offset {
            return Ok(state.next_offset);
        }
        // Only records that were never acknowledged go: none below what is in the object store.
        assert!(end >= partition.remote_end(), "cutting {key:?} at {end}, below its remote end");
        // Whole batches: one that straddles `end` goes too.
        let cut = match self.store.batch_containing(key, end)? {
            Some(bytes) => i64::from_be_bytes(bytes[..8].try_into().map_err(|_| StoreError::corrupt("batch"))?),
            None => end,
        };
        let cut = cut.max(state.log_start);
        let mut write = StoreWrite::default();
        let time_index_from = self.store.time_entry_from_offset(key, cut)?;
        self.store.delete_batches_from(&mut write, key, cut, time_index_from);
        self.store.delete_aborted_from(&mut write, key, cut);
        for (producer_id, entry) in state.producers.clone() {
            match entry.before(cut) {
                Some(kept) if kept == entry => {}
                Some(kept) => {
                    self.store.put_producer(&mut write, key, producer_id, &kept.encode());
                    state.producers.insert(producer_id, kept);
                }
                None => {
                    self.store.delete_producer(&mut write, key, producer_id);
                    state.producers.remove(&producer_id);
                }
            }
        }
        self.store.write(write, self.sync_each_commit)?;
        state.next_offset = cut;
        state.open_txns = PartitionState::open_txns_of(&state.producers);
        partition.forget_aborted(None, Some(cut));
        partition.publish_transactions(state.last_stable(), Vec::new(), state.open_list());
        state.max_timestamp = match self.store.last_time_entry(key)? {
            Some((timestamp, _)) => timestamp,
            None => partition.remote_segments().iter().map(|s| s.max_timestamp).max().unwrap_or(i64::MIN),
        };
        self.partitions.insert(key, state);
        partition.high_watermark.fetch_min(cut, Ordering::AcqRel);
        assert_offsets(partition);
        Ok(cut)
    }

    fn expire_producers(&mut self, cutoff_ms: i64) -> Result<usize, LogError> {
        let store = &self.store;
        let mut write = StoreWrite::default();
        let mut expired = 0;
        let loaded = self.partitions.iter_mut().map(|(key, state)| (key, &mut state.producers));
        for (key, producers) in loaded.chain(self.producers.iter_mut()) {
            producers.retain(|&producer_id, entry| {
                let keep = entry.txn_first_offset.is_some() || entry.last_timestamp >= cutoff_ms;
                if !keep {
                    store.delete_producer(&mut write, *key, producer_id);
                    expired += 1;
                }
                keep
            });
        }
        if expired > 0 {
            self.store.write(write, self.sync_each_commit)?;
        }
        Ok(expired)
    }

    fn restore(
        &mut self,
        partition: &Partition,
        producers: Vec<(i64, ProducerEntry)>,
        batches: Vec<bytes::Bytes>,
    ) -> Result<(), LogError> {
        let key = partition.key;
        let mut state = self.state(partition)?;
        let mut write = StoreWrite::default();
        let mut aborted = Vec::new();
        for (producer_id, entry) in producers {
            self.store.put_producer(&mut write, key, producer_id, &entry.encode());
            if let Some(first_offset) = entry.txn_first_offset {
                state.open_txns.insert((first_offset, producer_id));
            }
            state.producers.insert(producer_id, entry);
        }
        for (at, bytes) in batches.into_iter().enumerate() {
            let header = super::batch::BatchHeader::parse(&bytes)?;
            // The first batch may hold the partition's start past its base (a log start that
            // DeleteRecords moved inside it), as a truncated log keeps that batch whole.
            let holds_start =
                at == 0 && header.base_offset < state.next_offset && header.last_offset() >= state.next_offset;
            if header.base_offset != state.next_offset && !holds_start {
                return Err(LogError::Storage(StoreError::corrupt(format!(
                    "restoring {key:?}: batch at {} where {} was due",
                    header.base_offset, state.next_offset
                ))));
            }
            self.store.put_batch(&mut write, key, header.base_offset, &bytes);
            if header.max_timestamp > state.max_timestamp {
                state.max_timestamp = header.max_timestamp;
                self.store.put_time_index(&mut write, key, header.max_timestamp, header.base_offset);
            }
            self.stage_producer(&mut write, key, &mut state, &header, &bytes, header.base_offset, &mut aborted);
            state.next_offset = header.last_offset() + 1;
            partition.appended_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        self.store.write(write, self.sync_each_commit)?;
        partition.publish_transactions(state.last_stable(), aborted, state.open_list());
        partition.high_watermark.fetch_max(state.next_offset, Ordering::AcqRel);
        self.partitions.insert(key, state);
        self.appended.send_modify(|generation| *generation = generation.wrapping_add(1));
        Ok(())
    }

    fn reset(
        &mut self,
        partition: &Partition,
        log_start: i64,
        start: i64,
        segments: Vec<SegmentInfo>,
    ) -> Result<(), LogError> {
        assert!(log_start <= start, "resetting {:?}: log start {log_start} after {start}", partition.key);
        let key = partition.key;
        let mut write = StoreWrite::default();
        self.store.delete_partition(&mut write, key);
        self.store.put_log_start(&mut write, key, log_start);
        for segment in &segments {
            self.store.put_remote(&mut write, key, segment.base_offset, &segment.encode_value());
        }
        self.store.write(write, self.sync_each_commit)?;
        self.partitions.remove(&key);
        self.producers.remove(&key);
        partition.reset(log_start, start, segments);
        assert_offsets(partition);
        Ok(())
    }

    fn delete_topic(&mut self, name: &str, id: uuid::Uuid, keys: &[PartitionKey]) -> Result<(), LogError> {
        let mut write = StoreWrite::default();
        for &key in keys {
            self.store.delete_partition(&mut write, key);
            self.partitions.remove(&key);
            self.producers.remove(&key);
        }
        self.store.delete_topic(&mut write, name);
        // The remote log manager deletes the topic's objects and then this marker (after a
        // crash, later).
        self.store.put_remote_gc(&mut write, id);
        self.store.write(write, true)?;
        Ok(())
    }

    fn allocate_producer_ids(&mut self, count: i64) -> Result<std::ops::Range<i64>, LogError> {
        let mut write = StoreWrite::default();
        let ids = self.store.allocate_producer_ids(&mut write, count)?;
        self.store.write(write, true)?;
        Ok(ids)
    }
}
