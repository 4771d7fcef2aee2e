//! The tier: object storage, where every partition's log goes in segments, and reads of
//! segments back from there.
//!
//! - [`object_store`]: the small store trait, a local directory and S3.
//! - [`s3`]: the S3 client both S3 users build from the flags, and S3 by bucket and key for the
//!   Iceberg warehouse (multipart uploads, ranged reads).
//! - [`segment`]: the object layout (self-describing) and the segment format.
//!
//! This module owns the remote read path: a bounded cache of whole segments, filled by GETs that
//! are shared by concurrent readers, with read-ahead of the next segment for sequential consumers.
//! It holds no partition state: which segments exist is the log's remote index, and what to
//! upload, delete or read is decided above it, in [`crate::unified`].

pub mod object_store;
pub mod s3;
pub mod segment;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};
use uuid::Uuid;

use crate::config::TierConfig;
use crate::log::{Log, LogError};
use object_store::{Counted, ObjectStore, ObjectStoreError, RequestCounts};
use segment::{Segment, SegmentInfo};

/// The object store, with the remote read cache.
pub struct Tier {
    store: Counted,
    cache: SegmentCache,
    /// Bounds the GETs in flight, and so the memory they hold beside the cache.
    gets: Semaphore,
    /// KiB of segments being uploaded (see `upload_permit`).
    uploads: Semaphore,
    pub settings: TierSettings,
}

#[derive(Debug, Clone)]
pub struct TierSettings {
    pub task_interval_ms: u64,
    pub requests_max: usize,
    pub upload_bytes_max: usize,
}

impl TierSettings {
    /// The uploads' share in KiB, the unit of their semaphore (at least one).
    fn upload_kib_max(&self) -> u32 {
        (self.upload_bytes_max / 1024).clamp(1, u32::MAX as usize) as u32
    }
}

impl Tier {
    pub async fn open(config: &TierConfig) -> Result<Tier, ObjectStoreError> {
        let store = object_store::open(&config.object_store, &config.s3).await?;
        tracing::info!(object_store = %store.describe(), "object store opened");
        Ok(Tier::new(
            store,
            config.fetch_cache_bytes,
            TierSettings {
                task_interval_ms: config.task_interval_ms,
                requests_max: config.requests_max,
                upload_bytes_max: config.upload_bytes_max,
            },
        ))
    }

    pub fn new(store: Counted, cache_bytes: usize, settings: TierSettings) -> Tier {
        Tier {
            store,
            cache: SegmentCache::new(cache_bytes),
            gets: Semaphore::new(settings.requests_max.max(1)),
            uploads: Semaphore::new(settings.upload_kib_max() as usize),
            settings,
        }
    }

    /// Room for an upload of up to `bytes` (a segment is read into memory whole before its PUT),
    /// within the uploads' share of the memory budget; a segment larger than the share waits for
    /// all of it, so it goes alone.
    pub async fn upload_permit(&self, bytes: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(self.settings.upload_kib_max())) as u32;
        self.uploads.acquire_many(kib).await.ok()
    }

    pub fn store(&self) -> &dyn ObjectStore {
        &self.store
    }

    /// PUT, GET, LIST and DELETE counts since start.
    pub fn request_counts(&self) -> &RequestCounts {
        &self.store.counts
    }

    /// A segment, from the cache or the object store.
    pub async fn segment(&self, topic_id: Uuid, partition: i32, info: SegmentInfo) -> Result<Arc<Segment>, LogError> {
        let key = segment::segment_key(topic_id, partition, &info);
        self.cache
            .get_or_load(&key, || async {
                let _permit = self.gets.acquire().await.map_err(|_| LogError::Unavailable)?;
                let bytes = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| LogError::Remote(e.to_string()))?
                    .ok_or_else(|| LogError::Remote(format!("segment {key} is missing from the object store")))?;
                let parsed = tokio::task::spawn_blocking(move || Segment::parse(bytes, &info))
                    .await
                    .map_err(|_| LogError::Unavailable)?;
                parsed.map(Arc::new).map_err(|e| LogError::Remote(format!("{key}: {e}")))
            })
            .await
    }

    /// Reads whole batches from `info`, the segment holding `offset`; `next` is the segment
    /// after it, if any, which a sequential reader will want next.
    #[allow(clippy::too_many_arguments)]
    pub async fn read(
        self: &Arc<Self>,
        topic_id: Uuid,
        partition: i32,
        info: SegmentInfo,
        next: Option<SegmentInfo>,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<Bytes, LogError> {
        let segment = self.segment(topic_id, partition, info).await?;
        let records = segment.read(offset, max_bytes, at_least_one);
        // A consumer past the middle of a segment will want the next one: fetch it ahead.
        let read_to = offset + (records.len() as i64).min(1);
        let middle = info.base_offset + (info.next_offset - info.base_offset) / 2;
        if read_to >= middle
            && let Some(next) = next
            && !self.cache.contains(&segment::segment_key(topic_id, partition, &next))
        {
            let tier = self.clone();
            let index = partition;
            tokio::spawn(async move {
                if let Err(error) = tier.segment(topic_id, index, next).await {
                    tracing::debug!(%error, "read-ahead failed");
                }
            });
        }
        Ok(records)
    }

    /// Drops a segment from the cache (after it was deleted).
    pub fn forget(&self, key: &str) {
        self.cache.remove(key);
    }
}

/// Tiering state of every partition, for the admin view and the metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TierStatus {
    pub object_store: String,
    pub puts: u64,
    pub gets: u64,
    pub lists: u64,
    pub deletes: u64,
    pub request_errors: u64,
    pub topics: Vec<TopicTierStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicTierStatus {
    pub topic: String,
    pub partitions: Vec<PartitionTierStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionTierStatus {
    pub partition: i32,
    pub log_start_offset: i64,
    /// The first offset the hot tier holds.
    pub local_start_offset: i64,
    /// The offset after the last one in the object store.
    pub remote_end_offset: i64,
    pub high_watermark: i64,
    pub remote_segments: usize,
    pub remote_bytes: u64,
    pub uploaded_bytes: u64,
    pub uploaded_segments: u64,
    pub upload_errors: u64,
}

/// A snapshot of the tiering state.
pub fn status(log: &Log, tier: &Tier) -> TierStatus {
    use std::sync::atomic::Ordering::Relaxed;
    let counts = tier.request_counts();
    let topics = log
        .topics()
        .iter()
        .map(|topic| TopicTierStatus {
            topic: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let (remote_segments, remote_bytes) = p.remote_summary();
                    PartitionTierStatus {
                        partition: p.index,
                        log_start_offset: p.log_start(),
                        local_start_offset: p.local_start(),
                        remote_end_offset: p.remote_end(),
                        high_watermark: p.high_watermark(),
                        remote_segments,
                        remote_bytes,
                        uploaded_bytes: p.tier_stats.uploaded_bytes.load(Relaxed),
                        uploaded_segments: p.tier_stats.uploaded_segments.load(Relaxed),
                        upload_errors: p.tier_stats.upload_errors.load(Relaxed),
                    }
                })
                .collect(),
        })
        .collect();
    TierStatus {
        object_store: tier.store().describe(),
        puts: counts.puts.load(Relaxed),
        gets: counts.gets.load(Relaxed),
        lists: counts.lists.load(Relaxed),
        deletes: counts.deletes.load(Relaxed),
        request_errors: counts.errors.load(Relaxed),
        topics,
    }
}

/// Whole segments by object key, least recently used evicted first, within a byte budget.
/// Concurrent readers of a missing segment share one GET.
struct SegmentCache {
    bytes_max: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<String, CacheEntry>,
    bytes: usize,
    clock: u64,
}

struct CacheEntry {
    cell: Arc<OnceCell<Arc<Segment>>>,
    used: u64,
    /// Counted in `CacheState::bytes` once loaded.
    bytes: usize,
}

impl SegmentCache {
    fn new(bytes_max: usize) -> Self {
        SegmentCache { bytes_max, state: Mutex::new(CacheState::default()) }
    }

    fn contains(&self, key: &str) -> bool {
        self.state.lock().entries.get(key).is_some_and(|e| e.cell.initialized())
    }

    fn remove(&self, key: &str) {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.remove(key) {
            state.bytes -= entry.bytes;
        }
    }

    async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Arc<Segment>, LogError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Segment>, LogError>>,
    {
        let cell = {
            let mut state = self.state.lock();
            state.clock += 1;
            let clock = state.clock;
            let entry = state.entries.entry(key.to_string()).or_insert_with(|| CacheEntry {
                cell: Arc::new(OnceCell::new()),
                used: clock,
                bytes: 0,
            });
            entry.used = clock;
            entry.cell.clone()
        };
        let segment = cell.get_or_try_init(load).await?.clone();
        let mut state = self.state.lock();
        let size = segment.bytes.len();
        let newly_counted = match state.entries.get_mut(key) {
            Some(entry) if entry.bytes == 0 && Arc::ptr_eq(&entry.cell, &cell) => {
                entry.bytes = size;
                true
            }
            _ => false,
        };
        if newly_counted {
            state.bytes += size;
            self.evict(&mut state, key);
        }
        Ok(segment)
    }

    /// Evicts least recently used loaded segments, never `keep`, until within budget.
    fn evict(&self, state: &mut CacheState, keep: &str) {
        while state.bytes > self.bytes_max {
            let victim = state
                .entries
                .iter()
                .filter(|(key, entry)| entry.bytes > 0 && key.as_str() != keep)
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone());
            let Some(victim) = victim else {
                // Only the segment just read is left: it may exceed the budget until the next read.
                break;
            };
            if let Some(entry) = state.entries.remove(&victim) {
                state.bytes -= entry.bytes;
            }
        }
        // Entries whose load failed hold nothing; drop them so the map stays small.
        state.entries.retain(|key, entry| entry.bytes > 0 || key == keep || Arc::strong_count(&entry.cell) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(bytes: usize) -> Arc<Segment> {
        Arc::new(Segment { bytes: Bytes::from(vec![0u8; bytes]), batches: Vec::new() })
    }

    #[tokio::test]
    async fn cache_stays_within_its_budget_and_shares_loads() {
        let cache = SegmentCache::new(250);
        for key in ["a", "b", "c"] {
            cache.get_or_load(key, || async { Ok(segment(100)) }).await.unwrap();
        }
        // a was least recently used and had to go.
        assert!(!cache.contains("a") && cache.contains("b") && cache.contains("c"));
        assert_eq!(cache.state.lock().bytes, 200);
        // A cached segment is not loaded again.
        let loaded = cache.get_or_load("b", || async { Err(LogError::Unavailable) }).await;
        assert!(loaded.is_ok());
        // A failed load leaves nothing behind and can be retried.
        assert!(cache.get_or_load("d", || async { Err(LogError::Unavailable) }).await.is_err());
        assert!(cache.get_or_load("d", || async { Ok(segment(10)) }).await.is_ok());
        assert_eq!(cache.state.lock().bytes, 210);
    }
}
