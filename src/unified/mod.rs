//! The unified log (Kafka's `UnifiedLog`): one log per partition over the hot tier and the object
//! store, and the background work that moves the log between them.
//!
//! - this module: reads that go to the hot tier first and to the object store for offsets below
//!   the partition's local start, and time lookups over both;
//! - [`remote_log_manager`]: Kafka's `RemoteLogManager`: copies sealed ranges to the object store,
//!   deletes expired segments, trims the hot tier;
//! - [`recovery`]: rebuilds the log of a fresh data dir from the object store.
//!
//! It sits above [`crate::log`] (the local log: store and writer) and [`crate::tier`] (the object
//! store and the segment cache), which know nothing of each other's state: the remote index is
//! log metadata, changed only through the log's writer.

pub mod metrics;
pub mod recovery;
pub mod remote_log_manager;
#[cfg(test)]
mod remote_log_manager_tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use crate::config::{Config, Durability, WalConfig};
use crate::log::{
    Isolation, Log, LogError, MetadataWrapper, Partition, ReadRequest, ReadResult, SegmentInfo, Topic, first_record_in,
};
use crate::tier::{Tier, segment};
use crate::wal::{Wal, WalSettings};
use remote_log_manager::TopicMeta;

/// The log and the tier together; cheap to clone.
#[derive(Clone)]
pub struct UnifiedLog {
    log: Log,
    tier: Arc<Tier>,
    /// The shared write-ahead log, with `--wal-store`.
    wal: Option<Arc<Wal>>,
    /// The description last written per topic, with its version (see `describe_topic`).
    described: Arc<tokio::sync::Mutex<HashMap<Uuid, (u64, TopicMeta)>>>,
    /// Whether a cluster's coordinator holds the log's metadata (then it decides what the
    /// write-ahead log's objects may go).
    in_cluster: bool,
}

impl std::fmt::Debug for UnifiedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedLog").finish_non_exhaustive()
    }
}

impl UnifiedLog {
    /// Opens the object store and the log, rebuilds a fresh data dir from the object store and,
    /// with a write-ahead log, claims this broker's stream and replays the earlier ones.
    pub async fn open(config: &Config) -> Result<UnifiedLog, LogError> {
        Self::open_with(config, None).await
    }

    /// Opens as `open` does, with the log's metadata store wrapped by `metadata` (a cluster's
    /// coordinator). In a cluster the local log is a cache: topics come from the coordinator
    /// and partitions are rebuilt when taken over, so nothing is recovered here but the claim
    /// of this broker's write-ahead log stream (which seals its earlier ones).
    pub async fn open_with(config: &Config, metadata: Option<MetadataWrapper>) -> Result<UnifiedLog, LogError> {
        let tier = Arc::new(Tier::open(&config.tier).await.map_err(|e| LogError::Remote(e.to_string()))?);
        let wal = match &config.wal {
            Some(settings) => Some(Arc::new(open_wal(config, settings).await?)),
            None => None,
        };
        let commit_log = match &wal {
            Some(wal) => wal.commit_log(),
            None => Arc::new(crate::log::commit_log::LocalCommitLog),
        };
        let in_cluster = metadata.is_some();
        let log = Log::open_with(config, commit_log, metadata).await?;
        let unified = UnifiedLog { wal, in_cluster, ..UnifiedLog::new(log, tier) };
        match &unified.wal {
            Some(wal) if in_cluster => {
                wal.index_sealed().await?;
            }
            Some(wal) => {
                recovery::recover_if_fresh(&unified).await?;
                wal.recover(&unified.log).await?;
            }
            None => recovery::recover_if_fresh(&unified).await?,
        }
        Ok(unified)
    }

    pub fn new(log: Log, tier: Arc<Tier>) -> UnifiedLog {
        UnifiedLog { log, tier, wal: None, described: Arc::default(), in_cluster: false }
    }

    pub fn in_cluster(&self) -> bool {
        self.in_cluster
    }

    /// The shared write-ahead log, if this broker acknowledges through one.
    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.as_ref()
    }

    /// Writes the topic's description to the object store when it changed: a new version, then
    /// the older ones go. The remote log manager calls it every pass; with a write-ahead log,
    /// every topic change calls it before it is answered, so that a broker rebuilt from the
    /// bucket knows every topic its log holds records of.
    pub async fn describe_topic(&self, topic: &Topic) -> Result<(), LogError> {
        let mut described = self.described.lock().await;
        let store = self.tier.store();
        let meta = TopicMeta::of(topic);
        let version = match described.get(&topic.id) {
            Some((_, known)) if *known == meta => return Ok(()),
            Some((version, _)) => *version,
            None => {
                // First look since start: find what the store has.
                let prefix = format!("{}{}/", segment::TOPIC_META_PREFIX, topic.id);
                let listed = store.list(&prefix).await.map_err(remote)?;
                let latest = listed.iter().filter_map(|o| segment::parse_topic_meta_key(&o.key)).map(|(_, v)| v).max();
                if let Some(latest) = latest {
                    let key = segment::topic_meta_key(topic.id, latest);
                    let stored = store.get(&key).await.map_err(remote)?;
                    let stored: Option<TopicMeta> = stored.and_then(|b| serde_json::from_slice(&b).ok());
                    if stored.as_ref() == Some(&meta) {
                        described.insert(topic.id, (latest, meta));
                        return Ok(());
                    }
                }
                latest.unwrap_or(0)
            }
        };
        let next = version + 1;
        let body = bytes::Bytes::from(serde_json::to_vec(&meta).unwrap_or_default());
        store.put_if_absent(&segment::topic_meta_key(topic.id, next), body).await.map_err(remote)?;
        for old in 1..=version {
            store.delete(&segment::topic_meta_key(topic.id, old)).await.map_err(remote)?;
        }
        described.insert(topic.id, (next, meta));
        Ok(())
    }

    /// Forgets a deleted topic's description.
    pub async fn forget_description(&self, topic_id: Uuid) {
        self.described.lock().await.remove(&topic_id);
    }

    /// With a write-ahead log, describes the topic `name` now (see `describe_topic`).
    pub async fn topic_changed(&self, name: &str) -> Result<(), LogError> {
        if self.wal.is_none() {
            return Ok(());
        }
        match self.log.topic(name) {
            Some(topic) => self.describe_topic(&topic).await,
            None => Ok(()),
        }
    }

    /// The local log: topics, appends, the hot tier.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The object store and the remote read cache.
    pub fn tier(&self) -> &Arc<Tier> {
        &self.tier
    }

    /// Reads several partitions; each result stands alone. The hot tier is read on the blocking
    /// pool in one go, then the partitions whose offsets only the object store holds.
    ///
    /// `total_bytes_max` bounds the sum; the first batch of the first partition with data is returned
    /// even when larger than the limits, so consumers always make progress (KIP-74).
    pub async fn read(&self, requests: Vec<ReadRequest>, total_bytes_max: usize) -> Vec<Result<ReadResult, LogError>> {
        let local = self.log.read_local(requests, total_bytes_max).await;
        let read_bytes: usize =
            local.iter().filter_map(|(_, r)| r.as_ref().ok()?.as_ref()).map(|r| r.records.len()).sum();
        let mut remaining = total_bytes_max.saturating_sub(read_bytes);
        let mut any = local.iter().any(|(_, r)| matches!(r, Ok(Some(read)) if !read.records.is_empty()));
        let mut results = Vec::with_capacity(local.len());
        for (request, result) in local {
            let result = match result {
                Ok(Some(read)) => Ok(read),
                Err(error) => Err(error),
                Ok(None) => {
                    let max_bytes = request.max_bytes.min(remaining);
                    let read = self.read_remote(&request, max_bytes, !any).await;
                    if let Ok(read) = &read {
                        remaining = remaining.saturating_sub(read.records.len());
                        any |= !read.records.is_empty();
                    }
                    read
                }
            };
            results.push(result.map(|read| with_aborted(&request, read)));
        }
        results
    }

    async fn read_remote(
        &self,
        request: &ReadRequest,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadResult, LogError> {
        let (partition, offset) = (&request.partition, request.offset);
        let (last_stable_offset, high_watermark) = (partition.last_stable_offset(), partition.high_watermark());
        let log_start = partition.log_start();
        let Some(segment) = partition.remote_segment(offset) else {
            // Retention moved the log start past the offset while it was being read.
            if offset < partition.log_start() {
                return Err(LogError::OffsetOutOfRange);
            }
            return Err(LogError::Remote(format!("no segment holds offset {offset}")));
        };
        let next = partition.remote_segment(segment.next_offset);
        let mut records =
            self.tier.read(partition.topic_id, partition.index, segment, next, offset, max_bytes, at_least_one).await?;
        if request.isolation == Isolation::Committed {
            // A segment may reach past the last stable offset; a read_committed reader stops there.
            records = records.slice(..batches_before(&records, last_stable_offset));
        }
        Ok(ReadResult { records, high_watermark, last_stable_offset, log_start, aborted: Vec::new() })
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        partition: &Arc<Partition>,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = partition.log_start();
        // Segments hold the oldest offsets: the first whose max timestamp reaches the target holds
        // the answer, unless all its records that do are below the log start.
        for info in partition.remote_segments_from(log_start) {
            if info.max_timestamp < timestamp_ms {
                continue;
            }
            let segment = self.tier.segment(partition.topic_id, partition.index, info).await?;
            let from = log_start.max(info.base_offset);
            let limit = self.log.record_batch_decompressed_bytes_max();
            let found = tokio::task::spawn_blocking(move || match segment.batch_reaching(from, timestamp_ms) {
                Some(batch) => first_record_in(batch, from, timestamp_ms, limit),
                None => Ok(None),
            })
            .await
            .map_err(|_| LogError::Unavailable)??;
            if found.is_some() {
                return Ok(found);
            }
        }
        self.log.local_offset_for_timestamp(partition, log_start, timestamp_ms).await
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub async fn max_timestamp(&self, partition: &Arc<Partition>) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = partition.log_start();
        let local = self.log.local_max_timestamp(partition).await?;
        // The hot tier's time index only has entries that raised the running maximum, so a local
        // answer is the maximum unless an older segment holds a larger timestamp.
        let remote =
            partition.remote_segments_from(log_start).into_iter().fold(None::<SegmentInfo>, |best, s| match best {
                Some(best) if best.max_timestamp >= s.max_timestamp => Some(best),
                _ => Some(s),
            });
        match (local, remote) {
            (Some(local), Some(remote)) if local.1 >= remote.max_timestamp => Ok(Some(local)),
            (local, None) => Ok(local),
            (_, Some(remote)) => {
                let found = self.offset_for_timestamp(partition, remote.max_timestamp).await?;
                Ok(found.filter(|(_, timestamp)| *timestamp == remote.max_timestamp))
            }
        }
    }
}

fn remote(error: crate::tier::object_store::ObjectStoreError) -> LogError {
    LogError::Remote(error.to_string())
}

/// Opens the write-ahead log's store and claims this broker's stream in it.
async fn open_wal(config: &Config, settings: &WalConfig) -> Result<Wal, LogError> {
    let store = crate::tier::object_store::open(&settings.store, &config.tier.s3).await.map_err(remote)?;
    let requests = store.counts.clone();
    let wal_settings = WalSettings {
        interval_ms: settings.interval_ms,
        bytes_max: settings.bytes_max,
        in_flight_max: crate::wal::IN_FLIGHT_MAX,
        queue_max: config.log.append_queue_max,
        roll_ms: settings.stream_roll_ms,
    };
    Wal::open(Arc::new(store), requests, config.node_id, wal_settings).await
}

/// Opens a unified log at `path` with test-sized defaults (used by tests and benchmarks).
pub async fn open_for_tests(path: &Path, durability: Durability) -> Result<UnifiedLog, LogError> {
    let config = Config::for_tests(path, durability).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    UnifiedLog::open(&config).await
}

/// The bytes of the whole batches at the start of `records` that begin before `end`.
fn batches_before(records: &[u8], end: i64) -> usize {
    let mut position = 0;
    while let Ok(header) = crate::log::batch::BatchHeader::parse(&records[position..]) {
        let size = header.size_bytes();
        if header.base_offset >= end || position + size > records.len() {
            break;
        }
        position += size;
    }
    position
}

/// A read_committed read carries the aborted transactions among its records (Kafka's
/// `collectAbortedTransactions` up to the offset after the last batch returned).
fn with_aborted(request: &ReadRequest, mut read: ReadResult) -> ReadResult {
    if request.isolation != Isolation::Committed || read.records.is_empty() {
        return read;
    }
    let mut upper = request.offset;
    let mut position = 0;
    while let Ok(header) = crate::log::batch::BatchHeader::parse(&read.records[position..]) {
        upper = upper.max(header.last_offset() + 1);
        position += header.size_bytes();
        if position >= read.records.len() {
            break;
        }
    }
    read.aborted = request.partition.aborted_between(request.offset, upper);
    read
}
