//! The write-ahead log's writer: the commit log that acknowledges a group commit only once the
//! object holding its batches exists in the object store.
//!
//! Group commits queue here from the log's writer thread. A task gathers them into one object
//! and creates it at the stream's next slot, conditionally. It starts an object when
//! `--wal-interval-ms` has passed since the previous one began (at once when the store is idle
//! and that interval has passed, so a quiet broker adds no wait), or as soon as `--wal-bytes-max`
//! has gathered; at most `in_flight_max` creates run at once, and slot `s` begins only after slot
//! `s - in_flight_max` is done, which is what lets a successor seal the stream (see `stream`).
//!
//! Completions are handed back in slot order: a group is acknowledged only when its object and
//! every object before it exist. A create that finds its slot taken by anything but its own
//! earlier attempt means a successor sealed the stream: the writer is fenced, fails every group
//! it holds and every later one, and never creates another object.
//!
//! The writer never deletes an object of the stream it writes (a successor's seal relies on
//! that). So that covered objects can go, it moves to a new stream every `roll_ms`: it lets its
//! creates finish, seals its stream after its last object, and claims the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::format::{self, Body, Entry, StreamId};
use crate::log::commit_log::{CommitDone, CommitFailure, CommitLog, CommittedBatches};
use crate::tier::object_store::{ObjectStore, Put};

/// How the writer paces its objects.
#[derive(Debug, Clone, Copy)]
pub struct WalSettings {
    /// Least time between the starts of two objects (`--wal-interval-ms`).
    pub interval_ms: u64,
    /// An object is started as soon as this many batch bytes have gathered (`--wal-bytes-max`).
    pub bytes_max: usize,
    /// Objects being created at once.
    pub in_flight_max: usize,
    /// Group commits queued for the writer before the log's writer thread waits.
    pub queue_max: usize,
    /// How long the writer keeps one stream before sealing it and claiming the next.
    pub roll_ms: u64,
}

/// What the writer's owner can watch and count.
#[derive(Debug, Default)]
pub struct WalStats {
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
}

/// What the writer reports to its owner, in order.
#[derive(Debug, Clone)]
pub enum Written {
    /// A data object exists, holding these partitions' offsets (topic, partition, first, next).
    Object { stream: StreamId, slot: u64, entries: Vec<(Uuid, i32, i64, i64)> },
    /// The writer sealed `stream` (its objects all lie below `cut`) and went on to the next.
    Retired { stream: StreamId, cut: u64 },
}

struct Group {
    batches: Vec<CommittedBatches>,
    done: CommitDone,
}

/// The commit log over the write-ahead log; `commit` is called from the log's writer thread.
pub struct WalWriter {
    groups: mpsc::Sender<Group>,
    fenced: watch::Receiver<bool>,
    node_id: i32,
    /// The epoch of the stream being written.
    current_epoch: Arc<AtomicU64>,
    pub stats: Arc<WalStats>,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter").finish_non_exhaustive()
    }
}

impl WalWriter {
    /// Starts the writer of `stream`, claimed (its slot 0 created) by `nonce`'s owner, from
    /// slot 1 on the current runtime. Every object it creates, and every stream it retires, is
    /// reported on `written` (for the collector of covered objects).
    pub fn start(
        store: Arc<dyn ObjectStore>,
        stream: StreamId,
        nonce: u64,
        settings: WalSettings,
        written: mpsc::UnboundedSender<Written>,
    ) -> WalWriter {
        let (groups, receiver) = mpsc::channel(settings.queue_max.max(1));
        let (fence, fenced) = watch::channel(false);
        let stats = Arc::new(WalStats::default());
        let current_epoch = Arc::new(AtomicU64::new(stream.broker_epoch));
        let task = Uploader {
            current_epoch: current_epoch.clone(),
            store,
            stream,
            nonce,
            settings,
            next_slot: 1,
            started: Instant::now(),
            fence,
            stats: stats.clone(),
            written,
        };
        tokio::spawn(task.run(receiver));
        WalWriter { groups, fenced, node_id: stream.node_id, current_epoch, stats }
    }

    /// The stream being written now.
    pub fn stream(&self) -> StreamId {
        StreamId { node_id: self.node_id, broker_epoch: self.current_epoch.load(Ordering::Acquire) }
    }

    /// Turns true once a successor has sealed this writer's stream.
    pub fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.clone()
    }
}

impl CommitLog for WalWriter {
    fn commit(&self, batches: Vec<CommittedBatches>, done: CommitDone) {
        if *self.fenced.borrow() {
            done(Err(CommitFailure::Fenced));
            return;
        }
        // The log's writer thread waits here when the store falls behind: backpressure.
        if let Err(refused) = self.groups.blocking_send(Group { batches, done }) {
            (refused.0.done)(Err(CommitFailure::Closed));
        }
    }

    fn needs_batches(&self) -> bool {
        true
    }
}

/// A random number that tells this process's objects from any other's.
pub fn rand_nonce() -> u64 {
    let id = Uuid::new_v4().as_u128();
    (id as u64) ^ ((id >> 64) as u64)
}

struct Uploader {
    store: Arc<dyn ObjectStore>,
    stream: StreamId,
    nonce: u64,
    settings: WalSettings,
    next_slot: u64,
    /// When the current stream was claimed.
    started: Instant,
    /// Shared with the writer's handle: the epoch of the stream being written.
    current_epoch: Arc<AtomicU64>,
    fence: watch::Sender<bool>,
    stats: Arc<WalStats>,
    written: mpsc::UnboundedSender<Written>,
}

/// What one object's create came to, with the acknowledgements it carries.
struct Outcome {
    result: Result<Written, CommitFailure>,
    dones: Vec<CommitDone>,
}

/// Longest wait between two tries of a create that failed for a reason other than its slot.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a closing writer keeps trying to create the objects it holds.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

impl Uploader {
    async fn run(mut self, mut groups: mpsc::Receiver<Group>) {
        let interval = Duration::from_millis(self.settings.interval_ms);
        let roll = Duration::from_millis(self.settings.roll_ms.max(1));
        let mut puts = FuturesOrdered::new();
        let mut pending: Vec<Group> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut last_start = Instant::now().checked_sub(interval).unwrap_or_else(Instant::now);
        let mut open = true;
        let mut fenced = false;
        let mut close_by = None;
        // Barriers (groups with no batches) waiting for every object before a slot.
        let mut barriers: std::collections::VecDeque<(u64, CommitDone)> = std::collections::VecDeque::new();
        loop {
            if fenced {
                for group in pending.drain(..) {
                    (group.done)(Err(CommitFailure::Fenced));
                }
                for (_, done) in barriers.drain(..) {
                    done(Err(CommitFailure::Fenced));
                }
            }
            // Time for a new stream: once this one's creates are done, seal it and claim the next.
            let rolling = open && !fenced && self.next_slot > 1 && self.started.elapsed() >= roll;
            if rolling && puts.is_empty() {
                if let Err(failure) = self.roll().await {
                    fenced = failure == CommitFailure::Fenced;
                    if fenced {
                        tracing::error!(stream = ?self.stream, "write-ahead log sealed by a successor: fenced");
                        let _ = self.fence.send(true);
                    }
                }
                continue;
            }
            let due = pending_bytes >= self.settings.bytes_max || last_start.elapsed() >= interval || !open;
            if !pending.is_empty() && !fenced && !rolling && puts.len() < self.settings.in_flight_max.max(1) && due {
                let (object, dones, written) = self.build(&mut pending, &mut pending_bytes);
                let store = self.store.clone();
                let stats = self.stats.clone();
                puts.push_back(async move {
                    let result = create(&*store, written, object, &stats, close_by).await;
                    Outcome { result, dones }
                });
                last_start = Instant::now();
                continue;
            }
            if !open && pending.is_empty() && puts.is_empty() {
                return;
            }
            let wake_at = last_start + interval;
            tokio::select! {
                biased;
                Some(outcome) = puts.next(), if !puts.is_empty() => {
                    match outcome.result {
                        Ok(written) if !fenced => {
                            self.stats.objects.fetch_add(1, Ordering::Relaxed);
                            let slot = match &written {
                                Written::Object { slot, .. } => *slot,
                                Written::Retired { .. } => 0,
                            };
                            let _ = self.written.send(written);
                            for done in outcome.dones {
                                done(Ok(()));
                            }
                            while barriers.front().is_some_and(|(before, _)| *before <= slot + 1) {
                                if let Some((_, done)) = barriers.pop_front() {
                                    done(Ok(()));
                                }
                            }
                        }
                        // A later object of a fenced stream is never acknowledged, even if created.
                        Ok(_) | Err(CommitFailure::Fenced) => {
                            if !fenced {
                                tracing::error!(stream = ?self.stream, "write-ahead log sealed by a successor: fenced");
                                let _ = self.fence.send(true);
                            }
                            fenced = true;
                            for done in outcome.dones {
                                done(Err(CommitFailure::Fenced));
                            }
                        }
                        Err(CommitFailure::Closed) => {
                            for done in outcome.dones {
                                done(Err(CommitFailure::Closed));
                            }
                        }
                    }
                }
                group = groups.recv(), if open => match group {
                    // A barrier: done once every object before it is.
                    Some(group) if group.batches.is_empty() && pending.is_empty() => {
                        if puts.is_empty() {
                            (group.done)(if fenced { Err(CommitFailure::Fenced) } else { Ok(()) });
                        } else {
                            barriers.push_back((self.next_slot, group.done));
                        }
                    }
                    Some(group) => {
                        pending_bytes += group.batches.iter().flat_map(|b| &b.batches).map(Bytes::len).sum::<usize>();
                        pending.push(group);
                    }
                    None => {
                        open = false;
                        close_by = Some(Instant::now() + CLOSE_DEADLINE);
                    }
                },
                () = tokio::time::sleep_until(wake_at), if !pending.is_empty() && wake_at > Instant::now() => {}
                () = tokio::time::sleep_until(self.started + roll), if open && !fenced && self.next_slot > 1 => {}
            }
        }
    }

    /// Seals the current stream right after its last object and claims the next one. A seal or
    /// claim that finds its slot taken means a successor got there first: fenced.
    async fn roll(&mut self) -> Result<(), CommitFailure> {
        let cut = self.next_slot;
        let seal = format::encode(self.stream, cut, self.nonce, &Body::RetiredSeal);
        create_or_fence(&*self.store, &self.stream.key(cut), seal, &self.stats).await?;
        let _ = self.written.send(Written::Retired { stream: self.stream, cut });
        let next = StreamId { node_id: self.stream.node_id, broker_epoch: self.stream.broker_epoch + 1 };
        let claim = format::encode(next, 0, self.nonce, &Body::Data(Vec::new()));
        create_or_fence(&*self.store, &next.key(0), claim, &self.stats).await?;
        tracing::debug!(retired = ?self.stream, stream = ?next, "write-ahead log moved to a new stream");
        self.stream = next;
        self.current_epoch.store(next.broker_epoch, Ordering::Release);
        self.next_slot = 1;
        self.started = Instant::now();
        Ok(())
    }

    /// Takes pending groups, up to `bytes_max` of batches (at least one group), into an object.
    fn build(&mut self, pending: &mut Vec<Group>, pending_bytes: &mut usize) -> (Bytes, Vec<CommitDone>, Written) {
        let mut taken = 0;
        let mut bytes = 0;
        for group in pending.iter() {
            let size: usize = group.batches.iter().flat_map(|b| &b.batches).map(Bytes::len).sum();
            if taken > 0 && bytes + size > self.settings.bytes_max {
                break;
            }
            bytes += size;
            taken += 1;
        }
        *pending_bytes -= bytes;
        let mut entries: Vec<Entry> = Vec::new();
        let mut buffers: Vec<BytesMut> = Vec::new();
        let mut last_entry: HashMap<(Uuid, i32), usize> = HashMap::new();
        let mut dones = Vec::with_capacity(taken);
        for group in pending.drain(..taken) {
            for committed in group.batches {
                let partition = &committed.partition;
                let key = (partition.topic_id, partition.index);
                for batch in committed.batches {
                    let Some((first, next)) = offsets_of(&batch) else { continue };
                    // A partition's batches continue its entry when their offsets do.
                    let index = match last_entry.get(&key) {
                        Some(&index) if entries[index].next_offset == first => index,
                        _ => {
                            entries.push(Entry {
                                topic_id: key.0,
                                partition: key.1,
                                first_offset: first,
                                next_offset: first,
                                batches: Bytes::new(),
                            });
                            buffers.push(BytesMut::new());
                            last_entry.insert(key, entries.len() - 1);
                            entries.len() - 1
                        }
                    };
                    entries[index].next_offset = next;
                    buffers[index].extend_from_slice(&batch);
                }
            }
            dones.push(group.done);
        }
        for (entry, buffer) in entries.iter_mut().zip(buffers) {
            entry.batches = buffer.freeze();
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let written = Written::Object {
            stream: self.stream,
            slot,
            entries: entries.iter().map(|e| (e.topic_id, e.partition, e.first_offset, e.next_offset)).collect(),
        };
        let object = format::encode(self.stream, slot, self.nonce, &Body::Data(entries));
        (object, dones, written)
    }
}

/// The first offset of a stored batch and the offset after its last record.
fn offsets_of(batch: &Bytes) -> Option<(i64, i64)> {
    let header = crate::log::batch::BatchHeader::parse(batch).ok()?;
    Some((header.base_offset, header.last_offset() + 1))
}

/// Creates `object` at its slot, trying again on store errors until it exists, the slot turns
/// out to be taken (fenced), or a closing writer's deadline passes.
async fn create(
    store: &dyn ObjectStore,
    written: Written,
    object: Bytes,
    stats: &WalStats,
    close_by: Option<Instant>,
) -> Result<Written, CommitFailure> {
    let Written::Object { stream, slot, .. } = &written else { return Ok(written) };
    let key = stream.key(*slot);
    let mut backoff = Duration::from_millis(50);
    loop {
        match try_create(store, &key, &object).await {
            Ok(()) => return Ok(written),
            Err(None) => return Err(CommitFailure::Fenced),
            Err(Some(error)) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%key, %error, "write-ahead log object not created yet; trying again");
            }
        }
        if close_by.is_some_and(|deadline| Instant::now() + backoff > deadline) {
            return Err(CommitFailure::Closed);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

/// Creates a seal or a claim, trying again on store errors; fenced if the slot is taken.
async fn create_or_fence(
    store: &dyn ObjectStore,
    key: &str,
    object: Bytes,
    stats: &WalStats,
) -> Result<(), CommitFailure> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match try_create(store, key, &object).await {
            Ok(()) => return Ok(()),
            Err(None) => return Err(CommitFailure::Fenced),
            Err(Some(error)) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%key, %error, "write-ahead log seal or claim not created yet; trying again");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

/// One conditional create: `Ok` once the object is there and ours, `Err(None)` when the slot
/// holds anything else, `Err(Some(reason))` when the store failed. Objects carry their writer's
/// nonce, so byte equality tells a lost answer to our own create from anyone else's object.
async fn try_create(store: &dyn ObjectStore, key: &str, object: &Bytes) -> Result<(), Option<String>> {
    match store.put_if_absent(key, object.clone()).await {
        Ok(Put::Created) => Ok(()),
        Ok(Put::AlreadyExists) => match store.get(key).await {
            // An earlier try that succeeded although its answer was lost.
            Ok(Some(found)) if found == *object => Ok(()),
            Ok(_) => Err(None),
            Err(error) => Err(Some(error.to_string())),
        },
        Err(error) => Err(Some(error.to_string())),
    }
}
