//! The partition log: topics and partitions, the group-commit writer, reads and retention.
//!
//! One writer thread owns offset assignment and producer state for every partition: appends from all
//! connections queue to it, and it turns whatever has gathered into one atomic RocksDB write (group
//! commit) before acknowledging any of them. Readers never wait for it: they read RocksDB through
//! `spawn_blocking` up to the high watermark, which the writer publishes only after its write.

pub mod batch;
pub mod commit_log;
mod error;
pub use writer::Keyed;
pub mod metadata;
pub mod metrics;
pub mod producer;
pub mod records;
pub mod remote_index;
mod store;
pub mod topic_config;
mod writer;

#[cfg(test)]
mod model_tests;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex as SyncMutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::config::{Config, Durability};
use batch::ValidBatch;
pub use error::LogError;
use metadata::{LocalMetadata, MetadataStore};
pub use remote_index::SegmentInfo;
pub use store::{PartitionKey, StoreError};
use store::{ReadLimits, Store, StoreOptions};
use topic_config::{BrokerDefaults, TimestampType, TopicConfig};
use writer::Command;

/// Wraps the local metadata store in another (a cluster's coordinator) when the log opens.
pub type MetadataWrapper = Box<dyn FnOnce(Arc<dyn MetadataStore>) -> Arc<dyn MetadataStore> + Send>;

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One partition as readers see it: offsets and the remote index, which only the writer changes.
///
/// Offsets order as `log_start ≤ local_start ≤ high_watermark`: below `local_start` the records
/// are read from the object store (the remote index), from it on from the hot tier.
#[derive(Debug)]
pub struct Partition {
    pub key: PartitionKey,
    pub topic_id: Uuid,
    pub index: i32,
    high_watermark: AtomicI64,
    /// The first offset of the earliest open transaction, or the high watermark when none is
    /// open: what `read_committed` consumers may read up to. Published with the high watermark.
    last_stable: AtomicI64,
    /// Aborted transactions whose markers are in the log, for `read_committed` fetches.
    aborted: RwLock<AbortedIndex>,
    /// The transactions open on the partition, as the last durable write left them.
    open_txns: RwLock<Vec<OpenTxn>>,
    /// Producers with a transaction marker on its way to the partition (submitted, not yet
    /// durable): their open transaction there is ending, though `open_txns` still shows it.
    markers_in_flight: parking_lot::Mutex<HashMap<i64, u32>>,
    log_start: AtomicI64,
    local_start: AtomicI64,
    /// The epoch of this partition's leader: stamped into every batch it appends, checked against
    /// what clients send. A single broker leads every partition from epoch 0.
    leader_epoch: AtomicI32,
    /// Each leader epoch with the offset it began at, rising (Kafka's leader epoch cache).
    epochs: RwLock<Vec<(i32, i64)>>,
    deleted: AtomicBool,
    /// Whether this broker leads the partition and may append to it. Always on a single broker;
    /// in a cluster, on once its log has been taken over and off from when it is handed over.
    leading: AtomicBool,
    /// Segments in the object store by base offset; written only by the flusher.
    remote: RwLock<BTreeMap<i64, SegmentInfo>>,
    /// Bytes appended since the broker started (the flusher's cheap measure of pending data).
    appended_bytes: AtomicU64,
    pub tier_stats: TierStats,
}

/// What the flusher did for one partition since the broker started.
#[derive(Debug, Default)]
pub struct TierStats {
    pub uploaded_bytes: AtomicU64,
    pub uploaded_segments: AtomicU64,
    pub upload_errors: AtomicU64,
}

/// A partition's offsets as recovered from the store.
struct Recovered {
    log_start: i64,
    local_start: i64,
    log_end: i64,
    remote: BTreeMap<i64, SegmentInfo>,
    /// The transactions still open; the earliest holds the last stable offset.
    open_txns: Vec<OpenTxn>,
    aborted: Vec<AbortedTxn>,
}

/// A partition restored from the object store: its segments, which become its remote index, and
/// the transactions their abort markers abort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredPartition {
    pub segments: Vec<SegmentInfo>,
    pub aborted: Vec<AbortedTxn>,
}

/// An aborted transaction of one producer on one partition: its records lie between its first
/// offset and its abort marker (Kafka's `AbortedTxn`, as Fetch answers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

/// A transaction open on one partition: its producer, that producer's epoch there, and the
/// offset of its first batch (which holds the last stable offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_offset: i64,
}

/// A partition's aborted transactions by the offset of their markers (Kafka's transaction
/// index), with the widest span any of them has, which bounds a lookup.
#[derive(Debug, Default)]
struct AbortedIndex {
    by_last: BTreeMap<i64, AbortedTxn>,
    span_max: i64,
}

impl AbortedIndex {
    fn insert(&mut self, txn: AbortedTxn) {
        self.span_max = self.span_max.max(txn.last_offset - txn.first_offset);
        self.by_last.insert(txn.last_offset, txn);
    }
}

impl Partition {
    fn new(key: PartitionKey, topic_id: Uuid, recovered: Recovered) -> Self {
        Partition {
            key,
            topic_id,
            index: key.partition as i32,
            high_watermark: AtomicI64::new(recovered.log_end),
            last_stable: AtomicI64::new(
                recovered.open_txns.iter().map(|txn| txn.first_offset).min().unwrap_or(i64::MAX).min(recovered.log_end),
            ),
            aborted: RwLock::new({
                let mut index = AbortedIndex::default();
                recovered.aborted.into_iter().for_each(|txn| index.insert(txn));
                index
            }),
            open_txns: RwLock::new(recovered.open_txns),
            markers_in_flight: Default::default(),
            log_start: AtomicI64::new(recovered.log_start),
            local_start: AtomicI64::new(recovered.local_start),
            leader_epoch: AtomicI32::new(0),
            epochs: RwLock::new(vec![(0, recovered.log_start)]),
            deleted: AtomicBool::new(false),
            leading: AtomicBool::new(true),
            remote: RwLock::new(recovered.remote),
            appended_bytes: AtomicU64::new(0),
            tier_stats: TierStats::default(),
        }
    }

    /// The first offset the hot tier holds; older ones are only in the object store.
    pub fn local_start(&self) -> i64 {
        self.local_start.load(Ordering::Acquire)
    }

    /// The offset after the last one safely in the object store.
    pub fn remote_end(&self) -> i64 {
        self.remote.read().values().next_back().map_or(0, |s| s.next_offset)
    }

    /// The segments in the object store, in offset order.
    pub fn remote_segments(&self) -> Vec<SegmentInfo> {
        self.remote.read().values().copied().collect()
    }

    /// The segments holding offsets at or after `offset`, in offset order.
    pub fn remote_segments_from(&self, offset: i64) -> Vec<SegmentInfo> {
        let remote = self.remote.read();
        let start = remote.range(..=offset).next_back().map_or(i64::MIN, |(base, _)| *base);
        remote.range(start..).map(|(_, s)| *s).filter(|s| s.next_offset > offset).collect()
    }

    /// The segments wholly below `offset`.
    pub fn remote_segments_below(&self, offset: i64) -> Vec<SegmentInfo> {
        self.remote.read().range(..offset).map(|(_, s)| *s).filter(|s| s.next_offset <= offset).collect()
    }

    /// How many segments the object store holds for the partition, and their bytes.
    pub fn remote_summary(&self) -> (usize, u64) {
        let remote = self.remote.read();
        (remote.len(), remote.values().map(|s| s.size_bytes).sum())
    }

    /// The segment holding `offset`, if it is in the object store.
    pub fn remote_segment(&self, offset: i64) -> Option<SegmentInfo> {
        let remote = self.remote.read();
        remote.range(..=offset).next_back().map(|(_, s)| *s).filter(|s| s.next_offset > offset)
    }

    /// Starts the partition afresh (the writer, for `Log::reset_partition`): offsets from
    /// `start`, the log from `log_start`, the remote index `segments`.
    fn reset(&self, log_start: i64, start: i64, segments: Vec<SegmentInfo>) {
        *self.remote.write() = segments.into_iter().map(|s| (s.base_offset, s)).collect();
        *self.aborted.write() = AbortedIndex::default();
        self.open_txns.write().clear();
        self.high_watermark.store(start, Ordering::Release);
        self.last_stable.store(start, Ordering::Release);
        self.local_start.store(start, Ordering::Release);
        self.log_start.store(log_start, Ordering::Release);
    }

    /// Publishes an uploaded segment; only the writer calls it, after the index entry is durable.
    fn add_remote(&self, segment: SegmentInfo) {
        self.remote.write().insert(segment.base_offset, segment);
    }

    fn remove_remote(&self, base_offset: i64) {
        self.remote.write().remove(&base_offset);
    }

    /// Publishes a new local start before the hot tier drops what lies below it (the writer).
    fn set_local_start(&self, offset: i64) {
        self.local_start.fetch_max(offset, Ordering::AcqRel);
    }

    /// The epoch of the partition's current leader.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// OffsetForLeaderEpoch, as Kafka's leader epoch cache (`endOffsetFor`) answers: the current
    /// epoch ends at the log end; an earlier one, with the largest known epoch at or below it,
    /// where the next known epoch starts (an epoch before every known one: itself, ending where
    /// the first starts); `None` (undefined) for a negative epoch or one above the current.
    pub fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let epochs = self.epochs.read();
        let &(latest, _) = epochs.last()?;
        if epoch == latest {
            return Some((epoch, self.high_watermark()));
        }
        let position = epochs.partition_point(|&(e, _)| e <= epoch);
        let &(_, next_start) = epochs.get(position)?;
        let found = position.checked_sub(1).map_or(epoch, |floor| epochs[floor].0);
        Some((found, next_start))
    }

    /// The leader epoch that wrote `offset` (Kafka's `epochForOffset`), if the cache knows it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let epochs = self.epochs.read();
        let position = epochs.partition_point(|&(_, start)| start <= offset);
        epochs.get(position.checked_sub(1)?).map(|&(epoch, _)| epoch)
    }

    /// A new leadership of the partition from the log end on: later appends carry `epoch`.
    pub fn begin_leader_epoch(&self, epoch: i32) {
        let mut epochs = self.epochs.write();
        if epochs.last().is_some_and(|&(last, _)| last >= epoch) {
            return;
        }
        epochs.push((epoch, self.high_watermark()));
        self.leader_epoch.store(epoch, Ordering::Release);
    }

    /// Checks the leader epoch a client sent (-1: none) against the partition's, as Kafka's
    /// leaders do: an older one is fenced, a newer one is not known here yet.
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<(), LogError> {
        let current = self.leader_epoch();
        match client_epoch {
            epoch if epoch < 0 || epoch == current => Ok(()),
            epoch if epoch < current => Err(LogError::FencedLeaderEpoch),
            _ => Err(LogError::UnknownLeaderEpoch),
        }
    }

    /// Whether this broker leads the partition: appends, uploads, retention and its Iceberg
    /// table are this broker's to do.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Starts or stops leading the partition. Appends the writer takes up after a stop fail with
    /// NOT_LEADER_OR_FOLLOWER.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
    }

    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Offset after the last acknowledged record (single replica: log end).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// The offset `read_committed` consumers read up to: the first offset of the earliest open
    /// transaction, or the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable.load(Ordering::Acquire).min(self.high_watermark())
    }

    /// The aborted transactions a fetch from `from` that returns offsets below `upper` must
    /// report (Kafka's `collectAbortedTransactions`): those ending at or after `from` that began
    /// before `upper`.
    /// The aborted transactions whose markers lie in `from..to` (what a segment of those
    /// offsets carries to the object store).
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted.read().by_last.range(from..to.max(from)).map(|(_, txn)| *txn).collect()
    }

    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let index = self.aborted.read();
        // A transaction ending past `upper + span_max` began after `upper`.
        let last_bound = upper.saturating_add(index.span_max);
        index
            .by_last
            .range(from..=last_bound.max(from))
            .map(|(_, txn)| *txn)
            .filter(|txn| txn.first_offset < upper)
            .collect()
    }

    /// The transactions open on the partition (for the coordinator's search for hanging ones).
    pub fn open_transactions(&self) -> Vec<OpenTxn> {
        self.open_txns.read().clone()
    }

    /// Whether the producer's transaction is open on the partition at `producer_epoch`, with no
    /// marker on its way to end it: a write of that epoch then continues a transaction already
    /// checked when it began.
    pub fn transaction_continues(&self, producer_id: i64, producer_epoch: i16) -> bool {
        !self.markers_in_flight.lock().contains_key(&producer_id)
            && self
                .open_txns
                .read()
                .iter()
                .any(|open| open.producer_id == producer_id && open.producer_epoch == producer_epoch)
    }

    fn marker_submitted(&self, producer_id: i64) {
        *self.markers_in_flight.lock().entry(producer_id).or_default() += 1;
    }

    fn marker_settled(&self, producer_id: i64) {
        let mut in_flight = self.markers_in_flight.lock();
        if let Some(count) = in_flight.get_mut(&producer_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&producer_id);
            }
        }
    }

    /// Publishes what a durable write made stable (the writer, with the high watermark).
    fn publish_transactions(&self, last_stable: i64, aborted: Vec<AbortedTxn>, open: Vec<OpenTxn>) {
        if !aborted.is_empty() {
            let mut index = self.aborted.write();
            aborted.into_iter().for_each(|txn| index.insert(txn));
        }
        if !open.is_empty() || !self.open_txns.read().is_empty() {
            *self.open_txns.write() = open;
        }
        self.last_stable.store(last_stable, Ordering::Release);
    }

    /// Forgets aborted transactions whose markers lie below `offset` (retention) or, with
    /// `from`, at or after it (a cut log end).
    fn forget_aborted(&self, below: Option<i64>, from: Option<i64>) {
        let mut index = self.aborted.write();
        if let Some(below) = below {
            index.by_last = index.by_last.split_off(&below);
        }
        if let Some(from) = from {
            index.by_last.split_off(&from);
        }
    }
}

/// A topic as stored in the `meta` family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    name: String,
    id: Uuid,
    number: u32,
    partitions: u32,
    configs: BTreeMap<String, String>,
}

impl TopicRecord {
    /// A topic as a cluster's coordinator describes it (its number given there).
    pub fn new(name: String, id: Uuid, number: u32, partitions: u32, configs: BTreeMap<String, String>) -> Self {
        TopicRecord { name, id, number, partitions, configs }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn configs(&self) -> &BTreeMap<String, String> {
        &self.configs
    }
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub number: u32,
    pub partitions: Vec<Arc<Partition>>,
    pub config: TopicConfig,
    /// This topic's traffic counters, resolved on first use (see `Broker::topic_metrics`).
    pub metrics: std::sync::OnceLock<crate::metrics::TopicMetrics>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            number: self.number,
            partitions: self.partitions.len() as u32,
            configs: self.config.overrides.clone(),
        }
    }
}

#[derive(Default)]
struct Catalog {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// Markers of one producer on their way to partitions, for `Partition::transaction_continues`.
struct MarkersInFlight {
    partitions: Vec<Arc<Partition>>,
    producer_id: i64,
}

impl MarkersInFlight {
    fn new(partitions: &[Arc<Partition>], producer_id: i64) -> MarkersInFlight {
        partitions.iter().for_each(|p| p.marker_submitted(producer_id));
        MarkersInFlight { partitions: partitions.to_vec(), producer_id }
    }
}

impl Drop for MarkersInFlight {
    fn drop(&mut self) {
        self.partitions.iter().for_each(|p| p.marker_settled(self.producer_id));
    }
}

/// One durable change of the group coordinator's state (see `coordinator`).
#[derive(Debug, Clone)]
pub enum GroupWrite {
    /// The group's record (JSON), replacing the previous one.
    Group {
        group: String,
        record: Vec<u8>,
    },
    /// The group's record and every offset it committed.
    DeleteGroup {
        group: String,
    },
    /// A committed offset (JSON).
    Offset {
        group: String,
        topic: String,
        partition: i32,
        record: Vec<u8>,
    },
    DeleteOffset {
        group: String,
        topic: String,
        partition: i32,
    },
    /// The offsets a producer's transaction in progress commits for the group (TxnOffsetCommit,
    /// JSON), replacing the previous ones; `None` once its transaction ended.
    PendingOffsets {
        group: String,
        producer_id: i64,
        record: Option<Vec<u8>>,
    },
}

/// What the store holds for the group coordinator.
#[derive(Debug, Default)]
pub struct GroupRecords {
    /// `(group, record)`.
    pub groups: Vec<(String, Vec<u8>)>,
    /// `(group, topic, partition, offset record)`.
    pub offsets: Vec<(String, String, i32, Vec<u8>)>,
    /// `(group, producer id, pending offsets record)`.
    pub pending: Vec<(String, i64, Vec<u8>)>,
}

/// Resolves when an append is durable (or failed).
pub type AppendReceiver = oneshot::Receiver<Result<AppendInfo, LogError>>;

/// What an acknowledged append returns to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    /// The time stamped on the batch for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    pub log_start: i64,
}

/// How far a read may go (Kafka's isolation levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Up to the high watermark (`read_uncommitted`).
    #[default]
    HighWatermark,
    /// Up to the last stable offset (`read_committed`).
    Committed,
}

/// One partition read of a fetch.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub partition: Arc<Partition>,
    pub offset: i64,
    pub max_bytes: usize,
    pub at_least_one: bool,
    pub isolation: Isolation,
    /// Whether RocksDB checks the checksum of each block it reads from disk. Off for Kafka clients:
    /// every batch carries a CRC32C of its records that consumers check (`check.crcs`), Kafka
    /// serves them unchecked from the page cache, and the block checksum cost a consumer reading
    /// from disk a third of its throughput here (docs/performance.md). On for what the broker
    /// itself decodes or uploads.
    pub verify_checksums: bool,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start: i64,
    /// For a `read_committed` read, the aborted transactions among the records returned.
    pub aborted: Vec<AbortedTxn>,
}

/// Handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: RwLock<Catalog>,
    /// Serialises topic creation, deletion and config changes (rare) with one another.
    admin: Mutex<()>,
    commands: mpsc::Sender<Command>,
    /// Topics, producer-id blocks, dynamic configs and the remote index.
    metadata: Arc<dyn MetadataStore>,
    /// Bumped after every group commit; long-polling fetches watch it.
    appended: watch::Receiver<u64>,
    /// Defaults from flags and file; `defaults` adds the dynamic broker configs.
    static_defaults: BrokerDefaults,
    defaults: RwLock<BrokerDefaults>,
    /// Dynamic configs by scope (`broker`, `group/<id>`), as AlterConfigs left them.
    dynamic: RwLock<HashMap<String, BTreeMap<String, String>>>,
    /// Bumped after every change to `dynamic`, so that what is derived from it (the ACLs'
    /// index) is rebuilt only when it changed.
    dynamic_generation: AtomicU64,
    cluster_id: String,
    threads: SyncMutex<Vec<std::thread::JoinHandle<()>>>,
    stop_syncer: Arc<AtomicBool>,
    /// Largest size a stored batch may decompress to when its records are decoded.
    record_batch_decompressed_bytes_max: usize,
    /// Most partitions a topic may have.
    partitions_per_topic_max: i32,
    /// Whether partitions are led from the start (a single broker) or only once a cluster has
    /// handed them to this broker.
    leads_by_default: bool,
}

impl Log {
    /// Opens (or creates) the log in `config.data_dir` and recovers every partition's state;
    /// the local store is the durable copy of the log.
    pub async fn open(config: &Config) -> Result<Log, LogError> {
        Self::open_with(config, Arc::new(commit_log::LocalCommitLog), None).await
    }

    /// Opens the log with group commits made durable by `commit_log`. With a write-ahead log
    /// (`config.wal`), the local store is a cache of it and its own writes are not fsynced.
    /// `metadata`, when given, wraps the local metadata store: a cluster keeps topics, producer
    /// ids, dynamic configs and the remote index in its coordinator, and locally as a cache.
    pub async fn open_with(
        config: &Config,
        commit_log: Arc<dyn commit_log::CommitLog>,
        metadata: Option<MetadataWrapper>,
    ) -> Result<Log, LogError> {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&config, commit_log, metadata))
            .await
            .map_err(|_| LogError::Unavailable)?
    }

    fn open_blocking(
        config: &Config,
        commit_log: Arc<dyn commit_log::CommitLog>,
        wrap_metadata: Option<MetadataWrapper>,
    ) -> Result<Log, LogError> {
        let path = config.data_dir.join("hot");
        std::fs::create_dir_all(&path)
            .map_err(|e| StoreError::corrupt(format!("cannot create {}: {e}", path.display())))?;
        let store = Store::open(
            &path,
            StoreOptions {
                memtable_bytes: config.log.memtable_bytes,
                memtables_max: config.log.memtables_max,
                memtables_total_bytes: config.log.memtables_total_bytes,
                block_cache_bytes: config.log.block_cache_bytes,
                background_bytes_per_second: config.log.background_write_bytes_per_second,
            },
        )?;
        let defaults = BrokerDefaults {
            retention_ms: config.log.retention_ms,
            retention_bytes: config.log.retention_bytes,
            max_message_bytes: config.log.message_max_bytes,
            segment_bytes: config.log.segment_bytes,
            segment_ms: config.log.roll_ms,
            local_retention_ms: config.log.local_retention_ms,
            local_retention_bytes: config.log.local_retention_bytes,
            remote_storage_enable: config.log.remote_storage_enable,
            iceberg_enable: config.iceberg.enable,
        };
        let mut dynamic = HashMap::new();
        for (scope, value) in store.scan_dynamic_configs()? {
            let configs: BTreeMap<String, String> =
                serde_json::from_slice(&value).map_err(|e| StoreError::corrupt(format!("dynamic configs: {e}")))?;
            dynamic.insert(scope, configs);
        }
        let static_defaults = defaults.clone();
        let defaults = static_defaults.with_dynamic(dynamic.get("broker").unwrap_or(&BTreeMap::new()));
        // A single broker leads every partition; in a cluster a partition is led once taken over.
        let leads_by_default = config.coordinator.is_none();
        let mut catalog = Catalog::default();
        for value in store.scan_topics()? {
            let record: TopicRecord =
                serde_json::from_slice(&value).map_err(|e| StoreError::corrupt(format!("topic record: {e}")))?;
            let topic = Self::recover_topic(&store, record, &defaults, &[], leads_by_default)?;
            catalog.by_id.insert(topic.id, topic.clone());
            catalog.by_name.insert(topic.name.clone(), topic);
        }
        let stored_cluster_id = store.cluster_id()?;
        let (appended_tx, appended) = watch::channel(0u64);
        let (commands, receiver) = mpsc::channel(config.log.append_queue_max);
        let local_is_durable = config.wal.is_none();
        let settings = writer::WriterSettings {
            sync_each_commit: local_is_durable && config.log.durability == Durability::Fsync,
            group_bytes_max: config.log.group_commit_bytes_max,
            commit_log,
        };
        let mut threads = vec![writer::spawn(store.clone(), receiver, appended_tx, settings)?];
        let stop_syncer = Arc::new(AtomicBool::new(false));
        if local_is_durable && config.log.durability == Durability::Periodic {
            let interval = Duration::from_millis(config.log.fsync_interval_ms);
            threads.push(writer::spawn_wal_syncer(store.clone(), interval, stop_syncer.clone())?);
        }
        let cluster_id = match Self::cluster_id_from(stored_cluster_id, config.cluster_id.as_deref()) {
            Ok((id, false)) => id,
            Ok((id, true)) => {
                let (reply, done) = oneshot::channel();
                commands
                    .blocking_send(Command::ClusterId { id: id.clone(), reply })
                    .map_err(|_| LogError::Unavailable)?;
                done.blocking_recv().map_err(|_| LogError::Unavailable)??;
                id
            }
            Err(error) => {
                let _ = commands.blocking_send(Command::Stop);
                return Err(error);
            }
        };
        tracing::info!(topics = catalog.by_name.len(), %cluster_id, "log recovered");
        Ok(Log {
            inner: Arc::new(Inner {
                store,
                catalog: RwLock::new(catalog),
                admin: Mutex::new(()),
                metadata: {
                    let local: Arc<dyn MetadataStore> = Arc::new(LocalMetadata::new(commands.clone()));
                    match wrap_metadata {
                        Some(wrap) => wrap(local),
                        None => local,
                    }
                },
                commands,
                appended,
                static_defaults,
                defaults: RwLock::new(defaults),
                dynamic: RwLock::new(dynamic),
                dynamic_generation: AtomicU64::new(0),
                cluster_id,
                threads: SyncMutex::new(threads),
                stop_syncer,
                record_batch_decompressed_bytes_max: config.log.record_batch_decompressed_bytes_max,
                partitions_per_topic_max: config.log.partitions_per_topic_max,
                leads_by_default,
            }),
        })
    }

    /// Finishes queued work and stops the log's threads; the store closes when the last handle drops.
    pub async fn close(&self) {
        self.inner.stop_syncer.store(true, Ordering::Release);
        let _ = self.inner.commands.send(Command::Stop).await;
        let threads = std::mem::take(&mut *self.inner.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    /// The cluster id, and whether it is new and must be stored.
    fn cluster_id_from(stored: Option<String>, configured: Option<&str>) -> Result<(String, bool), LogError> {
        if let Some(stored) = stored {
            if let Some(configured) = configured
                && configured != stored
            {
                return Err(LogError::InvalidConfig(format!(
                    "the data dir belongs to cluster {stored}, not {configured}"
                )));
            }
            return Ok((stored, false));
        }
        let id = configured.map(str::to_string).unwrap_or_else(|| {
            let bytes = Uuid::new_v4().into_bytes();
            base64_url(&bytes)
        });
        Ok((id, true))
    }

    /// Builds a topic from its record, reading each partition's offsets from the store.
    fn recover_topic(
        store: &Store,
        record: TopicRecord,
        defaults: &BrokerDefaults,
        existing: &[Arc<Partition>],
        leading: bool,
    ) -> Result<Arc<Topic>, LogError> {
        let mut partitions = existing.to_vec();
        for index in existing.len() as u32..record.partitions {
            let key = PartitionKey { topic_number: record.number, partition: index };
            let partition = Partition::new(key, record.id, recover_partition(store, key)?);
            partition.set_leading(leading);
            partitions.push(Arc::new(partition));
        }
        Ok(Arc::new(Topic {
            name: record.name,
            id: record.id,
            number: record.number,
            partitions,
            config: TopicConfig::resolve(record.configs, defaults),
            metrics: std::sync::OnceLock::new(),
        }))
    }

    /// RocksDB's own figures for the metrics (see `Store::properties`).
    pub fn store_properties(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.inner.store.properties()
    }

    /// The limit on decompressing a stored batch (`--record-batch-decompressed-max-bytes`) that
    /// every reader of record contents passes to `records::records`.
    pub fn record_batch_decompressed_bytes_max(&self) -> usize {
        self.inner.record_batch_decompressed_bytes_max
    }

    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    pub fn defaults(&self) -> BrokerDefaults {
        self.inner.defaults.read().clone()
    }

    /// The dynamic configs of a scope (`broker`, or `group/<id>`).
    pub fn dynamic_configs(&self, scope: &str) -> BTreeMap<String, String> {
        self.inner.dynamic.read().get(scope).cloned().unwrap_or_default()
    }

    /// The scopes with dynamic configs that start with `prefix` (`user/`).
    pub fn dynamic_config_scopes(&self, prefix: &str) -> Vec<String> {
        self.inner.dynamic.read().keys().filter(|scope| scope.starts_with(prefix)).cloned().collect()
    }

    /// Every scope that starts with `prefix`, with its configs, read at one instant.
    pub fn dynamic_configs_under(&self, prefix: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let dynamic = self.inner.dynamic.read();
        dynamic.iter().filter(|(scope, _)| scope.starts_with(prefix)).map(|(s, c)| (s.clone(), c.clone())).collect()
    }

    /// Changes with every change to the dynamic configs (of any scope).
    pub fn dynamic_generation(&self) -> u64 {
        self.inner.dynamic_generation.load(Ordering::Acquire)
    }

    /// Replaces the dynamic configs of a scope (already validated); broker configs that are topic
    /// defaults take effect on every topic that does not set them itself.
    pub async fn set_dynamic_configs(&self, scope: &str, configs: BTreeMap<String, String>) -> Result<(), LogError> {
        let _admin = self.inner.admin.lock().await;
        self.inner.metadata.set_dynamic_configs(scope, &configs).await?;
        self.apply_dynamic_configs(scope, configs);
        Ok(())
    }

    /// Takes in dynamic configs a cluster's coordinator holds (changed through another broker),
    /// in memory only: the coordinator is where they live.
    pub fn apply_dynamic_configs(&self, scope: &str, configs: BTreeMap<String, String>) {
        if scope == "broker" {
            let defaults = self.inner.static_defaults.with_dynamic(&configs);
            *self.inner.defaults.write() = defaults.clone();
            for topic in self.topics() {
                let record = topic.record();
                let config = TopicConfig::resolve(record.configs, &defaults);
                self.publish(Arc::new(Topic { config, partitions: topic.partitions.clone(), ..Self::shell(&topic) }));
            }
        }
        self.inner.dynamic.write().insert(scope.to_string(), configs);
        self.inner.dynamic_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A copy of a topic's identity, to rebuild it with new configs.
    fn shell(topic: &Topic) -> Topic {
        Topic {
            name: topic.name.clone(),
            id: topic.id,
            number: topic.number,
            partitions: Vec::new(),
            config: topic.config.clone(),
            metrics: std::sync::OnceLock::new(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner.catalog.read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.inner.catalog.read().by_id.get(&id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.inner.catalog.read().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Watches group commits: the value changes after every one.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.inner.appended.clone()
    }

    /// Creates a topic; with `validate_only`, only checks that it could be created.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, LogError> {
        validate_topic_name(name)?;
        let partitions_max = self.inner.partitions_per_topic_max;
        if !(1..=partitions_max).contains(&partitions) {
            return Err(LogError::InvalidPartitions(format!(
                "Number of partitions must be between 1 and {partitions_max}, got {partitions}."
            )));
        }
        for (key, value) in &configs {
            topic_config::validate(key, value).map_err(LogError::InvalidConfig)?;
        }
        let _admin = self.inner.admin.lock().await;
        if let Some(existing) = self.topic(name) {
            return Err(LogError::TopicAlreadyExists(existing.name.clone()));
        }
        if let Some(clash) = self.topics().iter().find(|t| t.name.replace('.', "_") == name.replace('.', "_")) {
            return Err(LogError::InvalidTopic(format!("Topic '{name}' collides with existing topic: {}", clash.name)));
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            number: 0,
            partitions: partitions as u32,
            configs,
        };
        if validate_only {
            return Self::recover_topic(&self.inner.store, record, &self.defaults(), &[], self.inner.leads_by_default);
        }
        let topic = self.write_topic(record, Vec::new()).await?;
        tracing::info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    /// Recreates a topic from the object store: its identity and configs, and per partition the
    /// segments found there, which become its remote index. The topic starts where they start
    /// and continues where they end.
    pub async fn restore_topic(
        &self,
        name: &str,
        id: Uuid,
        configs: BTreeMap<String, String>,
        partitions: Vec<RestoredPartition>,
    ) -> Result<Arc<Topic>, LogError> {
        validate_topic_name(name)?;
        let _admin = self.inner.admin.lock().await;
        if self.topic(name).is_some() || self.topic_by_id(id).is_some() {
            return Err(LogError::TopicAlreadyExists(name.to_string()));
        }
        let record =
            TopicRecord { name: name.to_string(), id, number: 0, partitions: partitions.len() as u32, configs };
        self.write_topic(record, partitions).await
    }

    /// Writes a new topic through the writer (which numbers it), then publishes it.
    async fn write_topic(&self, record: TopicRecord, restored: Vec<RestoredPartition>) -> Result<Arc<Topic>, LogError> {
        let record = self.inner.metadata.create_topic(record, restored).await?;
        let log = self.clone();
        let topic = tokio::task::spawn_blocking(move || {
            Self::recover_topic(&log.inner.store, record, &log.defaults(), &[], log.inner.leads_by_default)
        })
        .await
        .map_err(|_| LogError::Unavailable)??;
        self.publish(topic.clone());
        Ok(topic)
    }

    /// Deletes a topic and, through the writer (after every append queued before), its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
        for partition in &topic.partitions {
            partition.deleted.store(true, Ordering::Release);
        }
        {
            let mut catalog = self.inner.catalog.write();
            catalog.by_name.remove(&topic.name);
            catalog.by_id.remove(&topic.id);
        }
        let keys = topic.partitions.iter().map(|p| p.key).collect();
        self.inner.metadata.delete_topic(&topic.name, topic.id, keys).await?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Raises a topic's partition count.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<usize>,
        validate_only: bool,
    ) -> Result<(), LogError> {
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(LogError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return Err(LogError::InvalidPartitions(format!("Topic already has {current} partitions.")));
        }
        let partitions_max = self.inner.partitions_per_topic_max;
        if count > partitions_max {
            return Err(LogError::InvalidPartitions(format!("Number of partitions must be at most {partitions_max}.")));
        }
        if let Some(given) = assignments
            && given != (count - current) as usize
        {
            return Err(LogError::InvalidReplicaAssignment(format!(
                "Increasing the number of partitions by {} but {given} assignments provided.",
                count - current
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record();
        record.partitions = count as u32;
        self.replace_topic(record, &topic.partitions).await
    }

    /// Replaces a topic's explicit configs (already validated by the caller's merge).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), LogError> {
        for (key, value) in &configs {
            topic_config::validate(key, value).map_err(LogError::InvalidConfig)?;
        }
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record();
        record.configs = configs;
        self.replace_topic(record, &topic.partitions).await
    }

    async fn replace_topic(&self, record: TopicRecord, existing: &[Arc<Partition>]) -> Result<(), LogError> {
        self.inner.metadata.update_topic(record.clone()).await?;
        let log = self.clone();
        let existing = existing.to_vec();
        let topic = tokio::task::spawn_blocking(move || {
            Self::recover_topic(&log.inner.store, record, &log.defaults(), &existing, log.inner.leads_by_default)
        })
        .await
        .map_err(|_| LogError::Unavailable)??;
        self.publish(topic);
        Ok(())
    }

    /// Takes in a topic as a cluster's coordinator has it (created or changed through another
    /// broker): its record is stored locally and the topic published, keeping the partitions
    /// already known. Only for a cluster's metadata sync; the coordinator is not told.
    pub async fn apply_topic(&self, record: TopicRecord) -> Result<Arc<Topic>, LogError> {
        let _admin = self.inner.admin.lock().await;
        let existing = match self.topic_by_id(record.id) {
            Some(topic) if topic.record() == record => return Ok(topic),
            Some(topic) => topic.partitions.clone(),
            None => Vec::new(),
        };
        let encoded = record.clone();
        self.call(|reply| Command::UpdateTopic { record: encoded, reply }).await?;
        let log = self.clone();
        let topic = tokio::task::spawn_blocking(move || {
            Self::recover_topic(&log.inner.store, record, &log.defaults(), &existing, log.inner.leads_by_default)
        })
        .await
        .map_err(|_| LogError::Unavailable)??;
        self.publish(topic.clone());
        Ok(topic)
    }

    /// Drops a topic the cluster no longer has (deleted through another broker), locally only.
    pub async fn forget_topic(&self, id: Uuid) -> Result<(), LogError> {
        let _admin = self.inner.admin.lock().await;
        let Some(topic) = self.topic_by_id(id) else { return Ok(()) };
        for partition in &topic.partitions {
            partition.deleted.store(true, Ordering::Release);
        }
        {
            let mut catalog = self.inner.catalog.write();
            catalog.by_name.remove(&topic.name);
            catalog.by_id.remove(&topic.id);
        }
        let keys = topic.partitions.iter().map(|p| p.key).collect();
        self.call(|reply| Command::DeleteTopic { name: topic.name.clone(), id: topic.id, keys, reply }).await?;
        Ok(())
    }

    /// Starts a partition's local log afresh at `start`, its log start at `log_start` and its
    /// remote index as `segments` (a cluster taking the partition over: the local records were
    /// a cache, and the tail after `start` is restored next).
    pub async fn reset_partition(
        &self,
        partition: &Arc<Partition>,
        log_start: i64,
        start: i64,
        segments: Vec<SegmentInfo>,
    ) -> Result<(), LogError> {
        let partition = partition.clone();
        self.call(|reply| Command::Reset { partition, log_start, start, segments, reply }).await
    }

    /// Resolves once every append queued before it is durable (or failed): a leader handing a
    /// partition over knows where its epoch ends.
    pub async fn barrier(&self) -> Result<(), LogError> {
        self.call(|reply| Command::Barrier { reply }).await
    }

    fn publish(&self, topic: Arc<Topic>) {
        let mut catalog = self.inner.catalog.write();
        catalog.by_id.insert(topic.id, topic.clone());
        catalog.by_name.insert(topic.name.clone(), topic);
    }

    async fn send(&self, command: Command) -> Result<(), LogError> {
        self.inner.commands.send(command).await.map_err(|_| LogError::Unavailable)
    }

    /// Sends a command built around its reply channel and waits for the writer's answer.
    async fn call<T: Send + 'static>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (reply, receiver) = oneshot::channel();
        self.send(command(reply)).await?;
        writer::wait(receiver).await
    }

    /// Queues validated batches for the group-commit writer, in call order.
    ///
    /// Returns once the append is queued; the receiver resolves after the write (and fsync).
    pub async fn submit_append(
        &self,
        topic: &Topic,
        partition: &Arc<Partition>,
        batches: Vec<ValidBatch>,
    ) -> Result<oneshot::Receiver<Result<AppendInfo, LogError>>, LogError> {
        let appends = vec![(topic.config.timestamp_type, partition.clone(), batches)];
        let mut receivers = self.submit_appends(appends).await?;
        receivers.pop().ok_or(LogError::Unavailable)
    }

    /// Queues the batches of several partitions (one produce request) as one unit, so that they
    /// are always written by the same group commit; one receiver per partition, in order.
    pub async fn submit_appends(
        &self,
        appends: Vec<(TimestampType, Arc<Partition>, Vec<ValidBatch>)>,
    ) -> Result<Vec<AppendReceiver>, LogError> {
        self.submit_appends_keyed(appends, None).await
    }

    /// As `submit_appends`, storing `keyed`'s answer in the same write when every append of the
    /// request succeeds (see `idempotent_answer`).
    pub async fn submit_appends_keyed(
        &self,
        appends: Vec<(TimestampType, Arc<Partition>, Vec<ValidBatch>)>,
        keyed: Option<Keyed>,
    ) -> Result<Vec<AppendReceiver>, LogError> {
        let mut receivers = Vec::with_capacity(appends.len());
        let mut command = Vec::with_capacity(appends.len());
        for (timestamp_type, partition, batches) in appends {
            let (reply, receiver) = oneshot::channel();
            command.push(writer::Append { partition, timestamp_type, batches, reply });
            receivers.push(receiver);
        }
        self.send(Command::Append(command, keyed)).await?;
        Ok(receivers)
    }

    /// What a request with idempotency key `key` on the topic was answered, if one was written
    /// (JSON: `request`, `bases` as [partition, base offset, append time], `at_ms`).
    pub async fn idempotent_answer(&self, topic_id: Uuid, key: &str) -> Result<Option<serde_json::Value>, LogError> {
        let (store, key) = (self.inner.store.clone(), key.to_string());
        let found = tokio::task::spawn_blocking(move || store.get_idempotency(topic_id, &key))
            .await
            .map_err(|_| LogError::Unavailable)??;
        found
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(format!("idempotency key: {e}")).into())
            })
            .transpose()
    }

    /// Stores a keyed request's answer when none of its partitions is written here (all went
    /// to their leaders elsewhere); durable when this returns.
    pub async fn store_idempotent_answer(&self, keyed: Keyed) -> Result<(), LogError> {
        self.call(|reply| Command::StoreIdempotency { keyed, reply }).await
    }

    /// Forgets the idempotent producers whose last write on a partition is more than
    /// `expiration_ms` old, unless they hold a transaction open there (Kafka's
    /// `producer.id.expiration.ms`); returns how many entries went.
    pub async fn expire_producers(&self, expiration_ms: i64) -> Result<usize, LogError> {
        if expiration_ms < 0 {
            return Ok(0);
        }
        let cutoff_ms = now_ms().saturating_sub(expiration_ms);
        self.call(|reply| Command::ExpireProducers { cutoff_ms, reply }).await
    }

    /// Forgets idempotency keys written more than `window_ms` ago; returns how many.
    pub async fn expire_idempotency(&self, window_ms: i64) -> Result<usize, LogError> {
        let store = self.inner.store.clone();
        let cutoff = now_ms() - window_ms;
        let names: Vec<String> = tokio::task::spawn_blocking(move || -> Result<Vec<String>, StoreError> {
            Ok(store
                .scan_idempotency()?
                .into_iter()
                .filter(|(_, value)| {
                    let at = serde_json::from_slice::<serde_json::Value>(value).ok().and_then(|v| v["at_ms"].as_i64());
                    at.is_none_or(|at| at < cutoff)
                })
                .map(|(name, _)| name)
                .collect())
        })
        .await
        .map_err(|_| LogError::Unavailable)??;
        let count = names.len();
        if count > 0 {
            self.call(|reply| Command::ExpireIdempotency { names, reply }).await?;
        }
        Ok(count)
    }

    /// Where topics, producer-id blocks, dynamic configs and the remote index are kept (the
    /// producer-id manager allocates its blocks there).
    pub fn metadata_store(&self) -> Arc<dyn MetadataStore> {
        self.inner.metadata.clone()
    }

    /// Moves a partition's log start to `offset` (DeleteRecords); -1 means the high watermark.
    pub async fn delete_records(&self, partition: &Arc<Partition>, offset: i64) -> Result<i64, LogError> {
        let high_watermark = partition.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange);
        }
        self.truncate(partition, offset).await
    }

    async fn truncate(&self, partition: &Arc<Partition>, log_start: i64) -> Result<i64, LogError> {
        // Where a takeover reads it first (a cluster's PostgreSQL): a new leader never serves
        // records below a log start this one answered.
        self.inner.metadata.set_log_start(partition, log_start).await?;
        self.call(|reply| Command::Truncate { partition: partition.clone(), log_start, reply }).await
    }

    /// Reads several partitions from the hot tier, on the blocking pool in one go; each result
    /// stands alone. `Ok(None)` marks a partition whose offset only the object store holds (the
    /// unified log reads those). The byte limits follow KIP-74 as in `Store::read`: the first
    /// batch of the first partition with data comes whole, so consumers always progress.
    pub async fn read_local(
        &self,
        requests: Vec<ReadRequest>,
        total_bytes_max: usize,
    ) -> Vec<(ReadRequest, Result<Option<ReadResult>, LogError>)> {
        let store = self.inner.store.clone();
        let count = requests.len();
        let failed = requests.clone();
        let local = tokio::task::spawn_blocking(move || {
            let mut remaining = total_bytes_max;
            let mut any = false;
            requests
                .into_iter()
                .map(|mut request| {
                    request.max_bytes = request.max_bytes.min(remaining);
                    request.at_least_one = !any;
                    let result = read_local(&store, &request);
                    if let Ok(Some(read)) = &result {
                        remaining = remaining.saturating_sub(read.records.len());
                        any |= !read.records.is_empty();
                    }
                    (request, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        match local {
            Ok(local) => local,
            Err(_) => failed.into_iter().take(count).map(|request| (request, Err(LogError::Unavailable))).collect(),
        }
    }

    /// The first offset of the hot tier at or after `from` whose record timestamp is at or after
    /// `timestamp_ms`, with that timestamp (the hot tier's half of ListOffsets by time).
    pub async fn local_offset_for_timestamp(
        &self,
        partition: &Arc<Partition>,
        from: i64,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let store = self.inner.store.clone();
        let key = partition.key;
        let limit = self.record_batch_decompressed_bytes_max();
        tokio::task::spawn_blocking(move || {
            let Some((_, base_offset)) = store.time_lookup(key, timestamp_ms)? else {
                return Ok(None);
            };
            first_record_at_or_after(&store, key, base_offset.max(from), timestamp_ms, limit)
        })
        .await
        .map_err(|_| LogError::Unavailable)?
    }

    /// The offset and timestamp of the hot tier's record with the largest timestamp.
    pub async fn local_max_timestamp(&self, partition: &Arc<Partition>) -> Result<Option<(i64, i64)>, LogError> {
        let store = self.inner.store.clone();
        let key = partition.key;
        let log_start = partition.log_start();
        let limit = self.record_batch_decompressed_bytes_max();
        tokio::task::spawn_blocking(move || {
            let Some((timestamp_ms, base_offset)) = store.last_time_entry(key)? else {
                return Ok(None);
            };
            first_record_at_or_after(&store, key, base_offset.max(log_start), timestamp_ms, limit)
        })
        .await
        .map_err(|_| LogError::Unavailable)?
    }

    /// Whole batches of the hot tier from `from` up to `end_offset` (at most `max_bytes`, but at
    /// least one batch), once the WAL is fsynced: what the remote log manager uploads must be
    /// durable whatever the durability setting, or a power loss could leave the object store
    /// holding records the hot tier forgot and then assigns again.
    pub async fn read_durable(
        &self,
        partition: &Arc<Partition>,
        from: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        let store = self.inner.store.clone();
        let key = partition.key;
        tokio::task::spawn_blocking(move || {
            store.sync_wal()?;
            // Counted first, so that a segment-sized read takes one buffer of its size rather
            // than a doubling one that copies itself and holds up to three times that.
            let limits = ReadLimits { max_bytes, at_least_one: true, reserve: 0 };
            let reserve = store.count_bytes(key, from, end_offset, limits, usize::MAX)?;
            Ok(store.read(key, from, end_offset, ReadLimits { reserve, ..limits }, true)?)
        })
        .await
        .map_err(|_| LogError::Unavailable)?
    }

    /// The bytes of whole batches in the hot tier from the one holding `from` up to `end_offset`
    /// when they are fewer than `bytes`, `None` when they reach it; found without reading them
    /// out (the remote log manager measures a partition's tail with it).
    pub async fn local_bytes_below(
        &self,
        partition: &Arc<Partition>,
        from: i64,
        end_offset: i64,
        bytes: usize,
    ) -> Result<Option<usize>, LogError> {
        let store = self.inner.store.clone();
        let key = partition.key;
        tokio::task::spawn_blocking(move || {
            let limits = ReadLimits { max_bytes: usize::MAX, at_least_one: true, reserve: 0 };
            let counted = store.count_bytes(key, from, end_offset, limits, bytes)?;
            Ok((counted < bytes).then_some(counted))
        })
        .await
        .map_err(|_| LogError::Unavailable)?
    }

    /// The base offset of the partition's first batch in the hot tier.
    pub async fn first_local_offset(&self, partition: &Arc<Partition>) -> Result<Option<i64>, LogError> {
        let store = self.inner.store.clone();
        let key = partition.key;
        tokio::task::spawn_blocking(move || Ok(store.first_batch(key)?.map(|header| header.base_offset)))
            .await
            .map_err(|_| LogError::Unavailable)?
    }

    /// Records a segment that is now in the object store; readers see it once its index entry
    /// is durable.
    /// A segment now in the object store, with the producers' state as of its end (what a
    /// cluster's next leader of the partition starts from, so that it still recognises a retry
    /// of a batch in the segment).
    pub async fn record_segment(&self, partition: &Arc<Partition>, segment: SegmentInfo) -> Result<(), LogError> {
        let mut snapshot = Vec::new();
        if self.inner.metadata.keeps_producer_snapshots() {
            let producers: Vec<(i64, producer::ProducerEntry)> = self
                .producers(partition)
                .await?
                .into_iter()
                .filter_map(|(id, entry)| entry.before(segment.next_offset).map(|kept| (id, kept)))
                .collect();
            snapshot = producer::encode_snapshot(&producers);
        }
        self.inner.metadata.record_segment(partition, segment, snapshot).await
    }

    /// Forgets a segment deleted from the object store.
    pub async fn delete_segment(&self, partition: &Arc<Partition>, base_offset: i64) -> Result<(), LogError> {
        self.inner.metadata.delete_segment(partition, base_offset).await
    }

    /// Drops the uploaded batches below `below` from the hot tier (`local.retention.*`).
    pub async fn trim_local(&self, partition: &Arc<Partition>, below: i64) -> Result<(), LogError> {
        self.call(|reply| Command::TrimLocal { partition: partition.clone(), below, reply }).await
    }

    /// Deleted topics whose objects are still in the object store.
    pub async fn topics_awaiting_object_deletion(&self) -> Result<Vec<Uuid>, LogError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.scan_remote_gc()?)).await.map_err(|_| LogError::Unavailable)?
    }

    /// A deleted topic's objects are all gone.
    pub async fn topic_objects_deleted(&self, id: Uuid) -> Result<(), LogError> {
        self.call(|reply| Command::TopicObjectsDeleted { id, reply }).await
    }

    /// Whether this data dir was already rebuilt from the object store (or found not to need it).
    pub async fn is_recovered(&self) -> Result<bool, LogError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.is_recovered()?)).await.map_err(|_| LogError::Unavailable)?
    }

    pub async fn mark_recovered(&self) -> Result<(), LogError> {
        self.call(|reply| Command::MarkRecovered { reply }).await
    }

    /// Drops a partition's records from `end` on: records written locally that the commit log
    /// never made durable (never acknowledged). Returns the new log end.
    pub async fn truncate_suffix(&self, partition: &Arc<Partition>, end: i64) -> Result<i64, LogError> {
        self.call(|reply| Command::TruncateSuffix { partition: partition.clone(), end, reply }).await
    }

    /// Stores batches that already carry their offsets, continuing the partition exactly (a
    /// write-ahead log replayed), with the producer state they imply on top of `producers` (the
    /// state before them), and publishes them.
    pub async fn restore(
        &self,
        partition: &Arc<Partition>,
        producers: Vec<(i64, producer::ProducerEntry)>,
        batches: Vec<Bytes>,
    ) -> Result<(), LogError> {
        if batches.is_empty() && producers.is_empty() {
            return Ok(());
        }
        self.call(|reply| Command::Restore { partition: partition.clone(), producers, batches, reply }).await
    }

    /// Writes the group coordinator's changes durably, in one write.
    pub async fn write_groups(&self, writes: Vec<GroupWrite>) -> Result<(), LogError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.call(|reply| Command::Groups { writes, reply }).await
    }

    /// Makes the transaction coordinator's records durable: `(transactional id, record)`, `None`
    /// deleting the id.
    pub async fn write_transactions(&self, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), LogError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.call(|reply| Command::Transactions { writes, reply }).await
    }

    /// Every transactional id's record, for the transaction coordinator's recovery.
    pub async fn load_transactions(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.scan_txns()?)).await.map_err(|_| LogError::Unavailable)?
    }

    /// Appends a transaction marker for `producer_id` at `producer_epoch` to each partition, in
    /// one group commit, and waits until they are durable: Kafka's `WriteTxnMarkers` on the
    /// partitions this broker leads. Each partition's result, in order.
    pub async fn write_markers(
        &self,
        partitions: Vec<Arc<Partition>>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Vec<Result<AppendInfo, LogError>>, LogError> {
        let now = now_ms();
        // Marked before the marker is queued, cleared once it is durable (open_txns then shows
        // the transaction ended) or failed, whichever way this call ends.
        let in_flight = MarkersInFlight::new(&partitions, producer_id);
        let appends = partitions
            .into_iter()
            .map(|partition| {
                let marker = batch::control_batch(producer_id, producer_epoch, commit, coordinator_epoch, now);
                (TimestampType::CreateTime, partition, vec![marker])
            })
            .collect();
        let receivers = self.submit_appends(appends).await?;
        let mut results = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            results.push(receiver.await.map_err(|_| LogError::Unavailable).and_then(|result| result));
        }
        drop(in_flight);
        Ok(results)
    }

    /// The producers with state on the partition (DescribeProducers), by producer id, as last
    /// made durable.
    pub async fn producers(&self, partition: &Partition) -> Result<Vec<(i64, producer::ProducerEntry)>, LogError> {
        let (store, key) = (self.inner.store.clone(), partition.key);
        tokio::task::spawn_blocking(move || Ok(partition_producers(&store, key)?))
            .await
            .map_err(|_| LogError::Unavailable)?
    }

    /// Every group record and committed offset, for the coordinator's recovery.
    pub async fn load_groups(&self) -> Result<GroupRecords, LogError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.scan_groups()?)).await.map_err(|_| LogError::Unavailable)?
    }

    /// Applies `retention.ms` and `retention.bytes` to every partition once.
    pub async fn enforce_retention(&self) -> Result<(), LogError> {
        let now = now_ms();
        for topic in self.topics() {
            let (retention_ms, retention_bytes) = (topic.config.retention_ms, topic.config.retention_bytes);
            if retention_ms < 0 && retention_bytes < 0 {
                continue;
            }
            // A cluster's partitions are their leaders' to trim.
            for partition in topic.partitions.iter().filter(|p| p.is_leading()) {
                let store = self.inner.store.clone();
                let key = partition.key;
                let high_watermark = partition.high_watermark();
                let log_start = partition.log_start();
                let remote = partition.remote_segments_from(log_start);
                let start = tokio::task::spawn_blocking(move || {
                    retention_start(&store, key, high_watermark, now, retention_ms, retention_bytes, &remote)
                })
                .await
                .map_err(|_| LogError::Unavailable)??;
                if start > partition.log_start() {
                    self.truncate(partition, start).await?;
                    tracing::debug!(topic = %topic.name, partition = partition.index, log_start = start, "retention");
                }
            }
        }
        Ok(())
    }
}

/// A partition's offsets and remote index, from the store.
/// The partition's producer entries in the store, decoded.
fn partition_producers(store: &Store, key: PartitionKey) -> Result<Vec<(i64, producer::ProducerEntry)>, StoreError> {
    store
        .scan_partition_producers(key)?
        .into_iter()
        .map(|(producer_id, bytes)| {
            producer::ProducerEntry::decode(&bytes)
                .map(|entry| (producer_id, entry))
                .ok_or_else(|| StoreError::corrupt(format!("producer entry of {key:?} is corrupt")))
        })
        .collect()
}

fn recover_partition(store: &Store, key: PartitionKey) -> Result<Recovered, LogError> {
    let mut remote = BTreeMap::new();
    for (base_offset, value) in store.scan_remote(key)? {
        let segment = SegmentInfo::decode_value(base_offset, &value)
            .ok_or_else(|| StoreError::corrupt(format!("remote index entry of {key:?} is corrupt")))?;
        remote.insert(base_offset, segment);
    }
    let remote_end = remote.values().next_back().map_or(0, |s: &SegmentInfo| s.next_offset);
    let (log_start, log_end) = writer::recover_offsets(store, key, remote_end)?;
    let local_start = store.first_batch(key)?.map_or(log_end, |header| header.base_offset).max(log_start);
    let mut open_txns = Vec::new();
    for (producer_id, entry) in partition_producers(store, key)? {
        if let Some(first_offset) = entry.txn_first_offset {
            open_txns.push(OpenTxn { producer_id, producer_epoch: entry.epoch, first_offset });
        }
    }
    let aborted = store.scan_aborted(key)?;
    Ok(Recovered { log_start, local_start, log_end, remote, open_txns, aborted })
}

/// The most a fetch's buffer starts with.
const FETCH_RESERVE_BYTES_MAX: usize = 1 << 20;

/// Reads one partition from the hot tier; `None` when the offset is only in the object store.
fn read_local(store: &Store, request: &ReadRequest) -> Result<Option<ReadResult>, LogError> {
    let partition = &request.partition;
    // Offsets are read before the data: the data may run ahead of them, never behind.
    let last_stable_offset = partition.last_stable_offset();
    let high_watermark = partition.high_watermark();
    let log_start = partition.log_start();
    let end = match request.isolation {
        Isolation::HighWatermark => high_watermark,
        Isolation::Committed => last_stable_offset,
    };
    if partition.deleted.load(Ordering::Acquire) {
        return Err(LogError::UnknownTopicOrPartition);
    }
    if request.offset < log_start || request.offset > high_watermark {
        return Err(LogError::OffsetOutOfRange);
    }
    let empty =
        ReadResult { records: Bytes::new(), high_watermark, last_stable_offset, log_start, aborted: Vec::new() };
    if request.offset >= end || request.max_bytes == 0 && !request.at_least_one {
        return Ok(Some(empty));
    }
    if request.offset < partition.local_start() {
        return Ok(None);
    }
    // A fetch is small (a partition's max bytes is 1 MiB by default): one buffer of that size
    // at most, never regrown for a typical fetch.
    let limits = ReadLimits {
        max_bytes: request.max_bytes,
        at_least_one: request.at_least_one,
        reserve: request.max_bytes.min(FETCH_RESERVE_BYTES_MAX),
    };
    let records = store.read(partition.key, request.offset, end, limits, request.verify_checksums)?;
    // The flusher may have dropped the batch holding the offset after local_start was read: then
    // what is read starts later (or is nothing), and the object store has the offset.
    let trimmed = match batch::BatchHeader::parse(&records) {
        Ok(first) => first.base_offset > request.offset,
        Err(_) => request.at_least_one,
    };
    if trimmed && request.offset < partition.local_start() {
        return Ok(None);
    }
    Ok(Some(ReadResult { records, ..empty }))
}

/// Decodes the batch at `from` onwards to find the first record with a timestamp ≥ `timestamp_ms`.
fn first_record_at_or_after(
    store: &Store,
    key: PartitionKey,
    from: i64,
    timestamp_ms: i64,
    decompressed_bytes_max: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    match store.batch_containing(key, from)? {
        Some(bytes) => first_record_in(bytes, from, timestamp_ms, decompressed_bytes_max),
        None => Ok(None),
    }
}

/// Decodes one batch to find its first record at or after `from` with a timestamp ≥ `timestamp_ms`.
pub fn first_record_in(
    bytes: Bytes,
    from: i64,
    timestamp_ms: i64,
    decompressed_bytes_max: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    let undecodable = |e: records::RecordsError| StoreError::corrupt(format!("stored batch does not decode: {e}"));
    let Some(batch) = records::Batches::new(bytes).next() else {
        return Err(StoreError::corrupt("stored batch is truncated".to_string()).into());
    };
    let (header, batch) = batch.map_err(undecodable)?;
    for record in records::records(&header, &batch, decompressed_bytes_max).map_err(undecodable)? {
        let record = record.map_err(undecodable)?;
        if record.offset >= from && record.timestamp_ms >= timestamp_ms {
            return Ok(Some((record.offset, record.timestamp_ms)));
        }
    }
    Ok(None)
}

/// The log start offset that retention allows: whole batches only, never past the high watermark.
#[allow(clippy::too_many_arguments)]
fn retention_start(
    store: &Store,
    key: PartitionKey,
    high_watermark: i64,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
    remote: &[SegmentInfo],
) -> Result<i64, LogError> {
    let remote_end = remote.last().map_or(0, |s| s.next_offset);
    let mut start = 0;
    if retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(retention_ms);
        // The log is the segments, then the hot tier after them; retention stops at the first
        // segment that holds a record newer than the cutoff.
        let kept = remote.iter().find(|s| s.max_timestamp >= cutoff);
        start = match kept {
            Some(segment) => segment.base_offset,
            None => {
                // Time index entries rise in both timestamp and offset, so every batch before the
                // first entry at or after the cutoff has only older records.
                let local = match store.time_lookup(key, cutoff)? {
                    Some((_, base_offset)) => base_offset,
                    None => high_watermark,
                };
                local.max(remote_end)
            }
        };
    }
    if retention_bytes >= 0 {
        let mut sizes: Vec<(i64, i64)> = remote.iter().map(|s| (s.next_offset, s.size_bytes as i64)).collect();
        store.scan_headers(key, |header, size| {
            if header.base_offset >= remote_end {
                sizes.push((header.last_offset() + 1, size as i64));
            }
            true
        })?;
        let mut total: i64 = sizes.iter().map(|(_, size)| size).sum();
        for (next, size) in sizes {
            if total <= retention_bytes {
                break;
            }
            total -= size;
            start = start.max(next);
        }
    }
    Ok(start.min(high_watermark))
}

/// Kafka's topic name rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let invalid = |reason: String| Err(LogError::InvalidTopic(reason));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(format!("Topic name is illegal, it can't be longer than {TOPIC_NAME_BYTES_MAX} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

pub(crate) fn encode_record(record: &TopicRecord) -> Vec<u8> {
    // Serialising a struct of strings and numbers cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 characters).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut bits = 0u32;
    let mut count = 0;
    for &byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            out.push(ALPHABET[((bits >> count) & 63) as usize] as char);
        }
    }
    if count > 0 {
        out.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
    }
    out
}

/// Opens a log at `path` with test-sized defaults (used by tests and benchmarks).
pub async fn open_for_tests(path: &Path, durability: Durability) -> Result<Log, LogError> {
    let config = Config::for_tests(path, durability).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    Log::open(&config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1-eu_2").is_ok());
        for bad in ["", ".", "..", "a b", "ünï", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// OffsetForLeaderEpoch's answers as Kafka's leader epoch cache gives them: an epoch ends
    /// where the next begins, the current one at the log end, an epoch between two known ones
    /// maps to the lower, and one before them all is unknown.
    #[test]
    fn leader_epochs_end_where_the_next_begins() {
        let key = PartitionKey { topic_number: 1, partition: 0 };
        let recovered = Recovered {
            log_start: 0,
            local_start: 0,
            log_end: 10,
            remote: BTreeMap::new(),
            open_txns: Vec::new(),
            aborted: Vec::new(),
        };
        let partition = Partition::new(key, Uuid::nil(), recovered);
        assert_eq!(partition.epoch_end_offset(0), Some((0, 10)));
        partition.begin_leader_epoch(3);
        partition.high_watermark.store(25, Ordering::Release);
        partition.begin_leader_epoch(5);
        partition.high_watermark.store(40, Ordering::Release);
        assert_eq!(partition.leader_epoch(), 5);
        assert_eq!(partition.epoch_end_offset(0), Some((0, 10)));
        assert_eq!(partition.epoch_end_offset(2), Some((0, 10)));
        assert_eq!(partition.epoch_end_offset(3), Some((3, 25)));
        assert_eq!(partition.epoch_end_offset(4), Some((3, 25)));
        assert_eq!(partition.epoch_end_offset(5), Some((5, 40)));
        assert_eq!(partition.epoch_end_offset(9), None, "above the current epoch: undefined, as in Kafka");
        assert_eq!(partition.epoch_end_offset(-1), None);
        // An epoch never goes back.
        partition.begin_leader_epoch(4);
        assert_eq!(partition.leader_epoch(), 5);
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
    }
}
