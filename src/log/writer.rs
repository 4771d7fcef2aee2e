//! The group-commit writer: a dedicated thread that owns offset assignment and producer state.
//!
//! It takes the first queued command, drains whatever else is queued (up to a byte limit), applies
//! the appends to staged copies of their partitions' state, and writes everything in one RocksDB
//! write. Only when that write (and its fsync, if configured) succeeds do the staged states become
//! current, the high watermarks move and the producers hear back; on failure every append of the
//! group fails and nothing of it is visible, so offsets stay dense.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::batch::ValidBatch;
use super::producer::{self, BatchSequence, ProducerEntry, SequenceCheck};
use super::store::{PartitionKey, Store, StoreError, StoreWrite};
use super::topic_config::TimestampType;
use super::{AppendInfo, LogError, Partition, now_ms};

/// One partition's batches from a produce request.
pub(super) struct Append {
    pub partition: Arc<Partition>,
    pub timestamp_type: TimestampType,
    pub batches: Vec<ValidBatch>,
    pub reply: oneshot::Sender<Result<AppendInfo, LogError>>,
}

pub(super) enum Command {
    /// Every partition of one produce request, so that they share a group commit.
    Append(Vec<Append>),
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
    InitProducerId {
        reply: oneshot::Sender<Result<(i64, i16), LogError>>,
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
    /// Bytes staged by the group commit in progress.
    staged_bytes: u64,
}

/// Reads a partition's log start and log end from the store; `remote_end` is where the segments
/// in the object store end (the hot tier may hold nothing after them).
pub(super) fn recover_offsets(store: &Store, key: PartitionKey, remote_end: i64) -> Result<(i64, i64), StoreError> {
    let log_start = match store.get_meta(&log_start_key(key))? {
        Some(bytes) => i64::from_be_bytes(
            bytes.as_slice().try_into().map_err(|_| StoreError::corrupt("log start has the wrong length"))?,
        ),
        None => 0,
    };
    let log_end = store.last_batch(key)?.map_or(0, |header| header.last_offset() + 1);
    Ok((log_start, log_end.max(remote_end).max(log_start)))
}

pub(super) fn log_start_key(key: PartitionKey) -> String {
    format!("log-start/{}/{}", key.topic_number, key.partition)
}

struct Writer {
    store: Store,
    sync_each_commit: bool,
    group_bytes_max: usize,
    partitions: HashMap<PartitionKey, PartitionState>,
    producers: HashMap<PartitionKey, HashMap<i64, ProducerEntry>>,
    appended: watch::Sender<u64>,
}

pub(super) fn spawn(
    store: Store,
    mut commands: mpsc::Receiver<Command>,
    appended: watch::Sender<u64>,
    sync_each_commit: bool,
    group_bytes_max: usize,
) -> Result<std::thread::JoinHandle<()>, LogError> {
    let mut producers: HashMap<PartitionKey, HashMap<i64, ProducerEntry>> = HashMap::new();
    for (key, producer_id, bytes) in store.scan_producers()? {
        let entry = ProducerEntry::decode(&bytes).ok_or_else(|| StoreError::corrupt("producer entry"))?;
        producers.entry(key).or_default().insert(producer_id, entry);
    }
    let mut writer =
        Writer { store, sync_each_commit, group_bytes_max, partitions: HashMap::new(), producers, appended };
    let handle = std::thread::Builder::new()
        .name("zombi-log-writer".into())
        .spawn(move || {
            while let Some(first) = commands.blocking_recv() {
                if writer.run(first, &mut commands) {
                    break;
                }
            }
            tracing::debug!("log writer stopped");
        })
        .map_err(|e| StoreError::corrupt(format!("cannot start the log writer: {e}")))?;
    Ok(handle)
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

/// An append applied to staged state, waiting for the write.
struct Pending {
    reply: oneshot::Sender<Result<AppendInfo, LogError>>,
    result: Result<AppendInfo, LogError>,
}

impl Writer {
    /// Runs one group of commands; true when asked to stop.
    fn run(&mut self, first: Command, commands: &mut mpsc::Receiver<Command>) -> bool {
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(appends) => {
                    for append in appends {
                        group_bytes += append.batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                        group.push(append);
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
        let state = PartitionState { next_offset, log_start, max_timestamp, producers, staged_bytes: 0 };
        self.partitions.insert(key, state.clone());
        Ok(state)
    }

    fn commit_appends(&mut self, group: Vec<Append>) {
        if group.is_empty() {
            return;
        }
        let mut write = StoreWrite::default();
        let mut staged: HashMap<PartitionKey, (Arc<Partition>, PartitionState)> = HashMap::new();
        let mut pending = Vec::with_capacity(group.len());
        let now = now_ms();
        for Append { partition, timestamp_type, batches, reply } in group {
            let key = partition.key;
            if partition.deleted.load(Ordering::Acquire) {
                pending.push(Pending { reply, result: Err(LogError::UnknownTopicOrPartition) });
                continue;
            }
            let state = match staged.entry(key) {
                Entry::Occupied(entry) => &mut entry.into_mut().1,
                Entry::Vacant(entry) => match self.state(&partition) {
                    Ok(state) => &mut entry.insert((partition.clone(), state)).1,
                    Err(error) => {
                        pending.push(Pending { reply, result: Err(error) });
                        continue;
                    }
                },
            };
            let result = self.apply(&mut write, key, state, timestamp_type, batches, now);
            pending.push(Pending { reply, result });
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
        for (key, (partition, mut state)) in staged {
            partition.high_watermark.store(state.next_offset, Ordering::Release);
            partition.appended_bytes.fetch_add(std::mem::take(&mut state.staged_bytes), Ordering::Relaxed);
            self.partitions.insert(key, state);
        }
        self.appended.send_modify(|generation| *generation = generation.wrapping_add(1));
        for item in pending {
            let _ = item.reply.send(item.result);
        }
    }

    /// Checks sequences, assigns offsets and stages the writes of one partition's batches.
    fn apply(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        state: &mut PartitionState,
        timestamp_type: TimestampType,
        batches: Vec<ValidBatch>,
        now: i64,
    ) -> Result<AppendInfo, LogError> {
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
                _ => self.stage_batch(write, key, state, timestamp_type, &mut batch, now),
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

    fn stage_batch(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        state: &mut PartitionState,
        timestamp_type: TimestampType,
        batch: &mut ValidBatch,
        now: i64,
    ) -> i64 {
        let base_offset = state.next_offset;
        batch.assign_offset(base_offset);
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
        if header.is_idempotent() {
            let sequence = BatchSequence {
                first_sequence: header.base_sequence,
                last_sequence: header.last_sequence(),
                base_offset,
            };
            let previous = state.producers.remove(&header.producer_id);
            let entry = ProducerEntry::record(previous, header.producer_epoch, sequence);
            self.store.put_producer(write, key, header.producer_id, &entry.encode());
            state.producers.insert(header.producer_id, entry);
        }
        state.next_offset = header.last_offset() + 1;
        // Offsets only move forward: a broken invariant here would corrupt the log.
        assert!(state.next_offset > base_offset, "offsets must increase");
        base_offset
    }

    fn run_other(&mut self, command: Command) {
        match command {
            Command::Append(_) | Command::Stop => unreachable!("handled by run"),
            Command::Truncate { partition, log_start, reply } => {
                let _ = reply.send(self.truncate(&partition, log_start));
            }
            Command::DeleteTopic { name, id, keys, reply } => {
                let _ = reply.send(self.delete_topic(&name, id, &keys));
            }
            Command::InitProducerId { reply } => {
                let _ = reply.send(self.init_producer_id());
            }
        }
    }

    fn truncate(&mut self, partition: &Partition, log_start: i64) -> Result<i64, LogError> {
        let key = partition.key;
        let mut state = self.state(partition)?;
        if log_start <= state.log_start {
            return Ok(state.log_start);
        }
        if log_start > state.next_offset {
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
        self.store.put_meta(&mut write, &log_start_key(key), &log_start.to_be_bytes());
        self.store.write(write, self.sync_each_commit)?;
        state.log_start = log_start;
        if time_index_end.is_none() {
            state.max_timestamp = i64::MIN;
        }
        self.partitions.insert(key, state);
        partition.log_start.store(log_start, Ordering::Release);
        Ok(log_start)
    }

    fn delete_topic(&mut self, name: &str, id: uuid::Uuid, keys: &[PartitionKey]) -> Result<(), LogError> {
        let mut write = StoreWrite::default();
        for &key in keys {
            self.store.delete_partition(&mut write, key);
            self.store.delete_meta(&mut write, &log_start_key(key));
            self.partitions.remove(&key);
            self.producers.remove(&key);
        }
        self.store.delete_meta(&mut write, &format!("topic/{name}"));
        // The flusher deletes the topic's objects and then this marker (after a crash, later).
        self.store.put_meta(&mut write, &format!("{}{id}", crate::tier::flusher::REMOTE_GC_PREFIX), b"");
        self.store.write(write, true)?;
        Ok(())
    }

    fn init_producer_id(&mut self) -> Result<(i64, i16), LogError> {
        let next = match self.store.get_meta("next-producer-id")? {
            Some(bytes) => {
                i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| StoreError::corrupt("producer id counter"))?)
            }
            None => 0,
        };
        let mut write = StoreWrite::default();
        self.store.put_meta(&mut write, "next-producer-id", &(next + 1).to_be_bytes());
        self.store.write(write, true)?;
        Ok((next, 0))
    }
}
