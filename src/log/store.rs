//! The RocksDB hot tier: the only module that imports `rocksdb`.
//!
//! Column families, all keys big-endian so that byte order is numeric order:
//! - `batches`:   `[topic number u32][partition u32][base offset u64]` → the record batch bytes
//! - `timeindex`: `[topic number u32][partition u32][max timestamp, sign-flipped u64][base offset u64]` → empty;
//!   an entry is written only when a batch raises the partition's running max timestamp, so entries
//!   are monotonic in both timestamp and offset
//! - `producers`: `[topic number u32][partition u32][producer id u64]` → [`ProducerEntry`] bytes
//! - `meta`:      UTF-8 keys → JSON or big-endian integers: `topic/<name>` (topic records),
//!   `log-start/<number>/<partition>`, `dynamic/<scope>` (dynamic configs), `cluster-id`,
//!   `next-topic-number`, `next-producer-id`, `remote-gc/<topic id>` (a deleted topic whose objects
//!   are still to be deleted), `tier/recovered` (the data dir was rebuilt from the object store once)
//! - `remote`:    `[topic number u32][partition u32][base offset u64]` → a segment in the object store
//!   (next offset, max timestamp, size; see `log::remote_index`)
//! - `groups`:    `g` + group id → the group's record; `o` + group, topic (each u16-length-prefixed),
//!   partition u32 → a committed offset
//! - `aborted`:   `[topic number u32][partition u32][abort marker offset u64]` → producer id i64,
//!   first offset i64 (Kafka's transaction index)
//! - `meta` also holds `txn/<transactional id>` → the transaction coordinator's record (JSON)
//!
//! Every key is built here, and only the log's writer thread calls the methods that take a
//! [`StoreWrite`], so RocksDB has one writer. Every call blocks: callers run it on the writer
//! thread or `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction, IteratorMode,
    Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions,
};

use super::batch::{BatchHeader, HEADER_BYTES};

const CF_BATCHES: &str = "batches";
const CF_TIMEINDEX: &str = "timeindex";
const CF_PRODUCERS: &str = "producers";
const CF_META: &str = "meta";
const CF_GROUPS: &str = "groups";
const CF_REMOTE: &str = "remote";
const CF_ABORTED: &str = "aborted";

const META_TOPIC_PREFIX: &str = "topic/";
const META_DYNAMIC_PREFIX: &str = "dynamic/";
const META_REMOTE_GC_PREFIX: &str = "remote-gc/";
const META_CLUSTER_ID: &str = "cluster-id";
const META_NEXT_TOPIC_NUMBER: &str = "next-topic-number";
const META_NEXT_PRODUCER_ID: &str = "next-producer-id";
const META_RECOVERED: &str = "tier/recovered";
/// `idem/<topic id>/<key>`: what a request with an idempotency key was answered (HTTP writes).
const META_IDEMPOTENCY_PREFIX: &str = "idem/";
const META_TXN_PREFIX: &str = "txn/";

fn log_start_key(key: PartitionKey) -> String {
    format!("log-start/{}/{}", key.topic_number, key.partition)
}

#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(String);

impl From<rocksdb::Error> for StoreError {
    fn from(error: rocksdb::Error) -> Self {
        StoreError(error.into_string())
    }
}

impl StoreError {
    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError(what.into())
    }
}

/// Identifies one partition's key range: a topic's number (never reused) and the partition index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic_number: u32,
    pub partition: u32,
}

impl PartitionKey {
    fn prefix(&self) -> [u8; 8] {
        let mut key = [0u8; 8];
        key[..4].copy_from_slice(&self.topic_number.to_be_bytes());
        key[4..].copy_from_slice(&self.partition.to_be_bytes());
        key
    }

    fn with_u64(&self, value: u64) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.prefix());
        key[8..].copy_from_slice(&value.to_be_bytes());
        key
    }

    fn batch_key(&self, offset: i64) -> [u8; 16] {
        self.with_u64(offset.max(0) as u64)
    }

    fn time_key(&self, timestamp_ms: i64, offset: i64) -> [u8; 24] {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(&self.with_u64(flip_sign(timestamp_ms)));
        key[16..].copy_from_slice(&(offset.max(0) as u64).to_be_bytes());
        key
    }

    /// The first key after every key of this partition.
    fn end(&self) -> Vec<u8> {
        let mut key = self.prefix().to_vec();
        key.extend_from_slice(&[0xff; 17]);
        key
    }
}

fn group_key(group: &str) -> Vec<u8> {
    let mut key = vec![b'g'];
    key.extend_from_slice(group.as_bytes());
    key
}

fn push_prefixed(key: &mut Vec<u8>, text: &str) {
    key.extend_from_slice(&(text.len().min(u16::MAX as usize) as u16).to_be_bytes());
    key.extend_from_slice(text.as_bytes());
}

fn offset_prefix(group: &str) -> Vec<u8> {
    let mut key = vec![b'o'];
    push_prefixed(&mut key, group);
    key
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = offset_prefix(group);
    push_prefixed(&mut key, topic);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn pending_key(group: &str, producer_id: i64) -> Vec<u8> {
    let mut key = vec![b'p'];
    push_prefixed(&mut key, group);
    key.extend_from_slice(&producer_id.to_be_bytes());
    key
}

fn utf8(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::corrupt("key is not UTF-8"))
}

fn split_prefixed(bytes: &[u8]) -> Result<(String, &[u8]), StoreError> {
    if bytes.len() < 2 {
        return Err(StoreError::corrupt("truncated key"));
    }
    let length = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    let rest = &bytes[2..];
    if rest.len() < length {
        return Err(StoreError::corrupt("truncated key"));
    }
    Ok((utf8(&rest[..length])?, &rest[length..]))
}

fn flip_sign(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

fn unflip_sign(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(array)
}

/// Reads up to this size are copied out of a buffer much larger than they are.
const SMALL_READ_BYTES: usize = 64 * 1024;

/// How much one read takes (see `Store::read`).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_bytes: usize,
    pub at_least_one: bool,
    pub reserve: usize,
}

/// Sizes that bound the store's memory.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub memtable_bytes: usize,
    pub memtables_max: i32,
    /// All column families' memtables together: over it, the largest is flushed early.
    pub memtables_total_bytes: usize,
    pub block_cache_bytes: usize,
    /// Write rate of flushes and compactions.
    pub background_bytes_per_second: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

/// Mutations gathered for one atomic RocksDB write (one group commit).
#[derive(Default)]
pub struct StoreWrite {
    batch: WriteBatch,
}

impl StoreWrite {
    /// A write with room for about `bytes` of keys and values: a group commit knows its size,
    /// and a buffer grown by doubling would hold up to twice that while it copies.
    pub fn with_capacity(bytes: usize) -> StoreWrite {
        StoreWrite { batch: WriteBatch::with_capacity_bytes(bytes) }
    }
}

impl Store {
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_block_size(64 * 1024);
        let family = |name: &str, memtable_bytes: usize| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            // Batches arrive compressed by producers or are cheap to send uncompressed; RocksDB
            // compression would spend CPU on the hot path for little gain.
            cf.set_compression_type(DBCompressionType::None);
            cf.set_write_buffer_size(memtable_bytes);
            cf.set_max_write_buffer_number(options.memtables_max);
            cf.set_target_file_size_base(64 * 1024 * 1024);
            ColumnFamilyDescriptor::new(name, cf)
        };
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        db_options.set_bytes_per_sync(1 << 20);
        // Memtable flushes and compactions compete with the WAL fsync that every acknowledgement
        // waits for; pacing their writes keeps that fsync's tail latency down.
        db_options.set_ratelimiter(options.background_bytes_per_second, 10_000, 10);
        db_options.set_max_total_wal_size(256 * 1024 * 1024);
        db_options.set_keep_log_file_num(4);
        // Over the total, the largest memtable is flushed early; writes are not stalled for it
        // (acknowledgements would wait for a flush), since each family's own limit (size times
        // count) still bounds it.
        db_options.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager(
            options.memtables_total_bytes,
            false,
        ));
        let families = vec![
            family(CF_BATCHES, options.memtable_bytes),
            family(CF_TIMEINDEX, 4 << 20),
            family(CF_PRODUCERS, 4 << 20),
            family(CF_META, 4 << 20),
            family(CF_GROUPS, 8 << 20),
            family(CF_REMOTE, 4 << 20),
            family(CF_ABORTED, 4 << 20),
        ];
        let db = DB::open_cf_descriptors(&db_options, path, families)?;
        Ok(Store { db: Arc::new(db) })
    }

    /// RocksDB's own figures for the metrics: per column family `(family, property, value)` for
    /// memtable and SST sizes and pending compaction bytes, then database-wide ones under the family
    /// name `""` (block cache usage, whether writes are stopped, the delayed write rate).
    /// Properties RocksDB does not report are left out.
    pub fn properties(&self) -> Vec<(&'static str, &'static str, u64)> {
        const PER_FAMILY: [&str; 4] = [
            "rocksdb.cur-size-all-mem-tables",
            "rocksdb.live-sst-files-size",
            "rocksdb.total-sst-files-size",
            "rocksdb.estimate-pending-compaction-bytes",
        ];
        const DATABASE: [&str; 3] =
            ["rocksdb.block-cache-usage", "rocksdb.is-write-stopped", "rocksdb.actual-delayed-write-rate"];
        let mut out = Vec::new();
        for family in [CF_BATCHES, CF_TIMEINDEX, CF_PRODUCERS, CF_META, CF_GROUPS] {
            for property in PER_FAMILY {
                if let Ok(Some(value)) = self.db.property_int_value_cf(self.cf(family), property) {
                    out.push((family, property, value));
                }
            }
        }
        for property in DATABASE {
            if let Ok(Some(value)) = self.db.property_int_value(property) {
                out.push(("", property, value));
            }
        }
        out
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // The families are created at open, so their absence is a programming error.
        self.db.cf_handle(name).expect("column family created at open")
    }

    pub fn write(&self, write: StoreWrite, sync: bool) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(write.batch, &options)?;
        Ok(())
    }

    /// Makes every write so far durable against power loss.
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    pub fn put_batch(&self, write: &mut StoreWrite, key: PartitionKey, base_offset: i64, bytes: &[u8]) {
        write.batch.put_cf(self.cf(CF_BATCHES), key.batch_key(base_offset), bytes);
    }

    pub fn put_time_index(&self, write: &mut StoreWrite, key: PartitionKey, timestamp_ms: i64, base_offset: i64) {
        write.batch.put_cf(self.cf(CF_TIMEINDEX), key.time_key(timestamp_ms, base_offset), []);
    }

    pub fn put_producer(&self, write: &mut StoreWrite, key: PartitionKey, producer_id: i64, entry: &[u8]) {
        write.batch.put_cf(self.cf(CF_PRODUCERS), key.with_u64(producer_id as u64), entry);
    }

    pub fn delete_producer(&self, write: &mut StoreWrite, key: PartitionKey, producer_id: i64) {
        write.batch.delete_cf(self.cf(CF_PRODUCERS), key.with_u64(producer_id as u64));
    }

    pub fn put_idempotency(&self, write: &mut StoreWrite, topic_id: uuid::Uuid, key: &str, value: &[u8]) {
        self.put_meta(write, &format!("{META_IDEMPOTENCY_PREFIX}{topic_id}/{key}"), value);
    }

    pub fn get_idempotency(&self, topic_id: uuid::Uuid, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_meta(&format!("{META_IDEMPOTENCY_PREFIX}{topic_id}/{key}"))
    }

    /// Every stored idempotency key (its full store name) with its value.
    pub fn scan_idempotency(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_meta(META_IDEMPOTENCY_PREFIX)
    }

    /// Deletes a key by the name `scan_idempotency` gave.
    pub fn delete_idempotency(&self, write: &mut StoreWrite, name: &str) {
        if name.starts_with(META_IDEMPOTENCY_PREFIX) {
            self.delete_meta(write, name);
        }
    }

    fn put_meta(&self, write: &mut StoreWrite, name: &str, value: &[u8]) {
        write.batch.put_cf(self.cf(CF_META), name.as_bytes(), value);
    }

    fn delete_meta(&self, write: &mut StoreWrite, name: &str) {
        write.batch.delete_cf(self.cf(CF_META), name.as_bytes());
    }

    fn get_i64(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.get_meta(name)? {
            None => Ok(None),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::corrupt(format!("{name} has the wrong length")))?;
                Ok(Some(i64::from_be_bytes(array)))
            }
        }
    }

    /// A topic's record (JSON), by name.
    pub fn put_topic(&self, write: &mut StoreWrite, name: &str, record: &[u8]) {
        self.put_meta(write, &format!("{META_TOPIC_PREFIX}{name}"), record);
    }

    pub fn delete_topic(&self, write: &mut StoreWrite, name: &str) {
        self.delete_meta(write, &format!("{META_TOPIC_PREFIX}{name}"));
    }

    /// Every topic record.
    pub fn scan_topics(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.scan_meta(META_TOPIC_PREFIX)?.into_iter().map(|(_, value)| value).collect())
    }

    /// The next topic number (never reused), counted up in `write`.
    pub fn allocate_topic_number(&self, write: &mut StoreWrite) -> Result<u32, StoreError> {
        let number = match self.get_meta(META_NEXT_TOPIC_NUMBER)? {
            Some(bytes) => {
                let array: [u8; 4] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::corrupt("topic counter has the wrong length"))?;
                u32::from_be_bytes(array)
            }
            None => 1,
        };
        self.put_meta(write, META_NEXT_TOPIC_NUMBER, &(number + 1).to_be_bytes());
        Ok(number)
    }

    /// The next `count` producer ids (never reused), counted up in `write`.
    pub fn allocate_producer_ids(
        &self,
        write: &mut StoreWrite,
        count: i64,
    ) -> Result<std::ops::Range<i64>, StoreError> {
        let next = self.get_i64(META_NEXT_PRODUCER_ID)?.unwrap_or(0);
        let end = next.checked_add(count).ok_or_else(|| StoreError::corrupt("producer ids are exhausted"))?;
        self.put_meta(write, META_NEXT_PRODUCER_ID, &end.to_be_bytes());
        Ok(next..end)
    }

    pub fn log_start(&self, key: PartitionKey) -> Result<Option<i64>, StoreError> {
        self.get_i64(&log_start_key(key))
    }

    pub fn put_log_start(&self, write: &mut StoreWrite, key: PartitionKey, offset: i64) {
        self.put_meta(write, &log_start_key(key), &offset.to_be_bytes());
    }

    /// The dynamic configs of a scope (`broker`, `group/<id>`), as JSON.
    pub fn put_dynamic_configs(&self, write: &mut StoreWrite, scope: &str, configs: &[u8]) {
        self.put_meta(write, &format!("{META_DYNAMIC_PREFIX}{scope}"), configs);
    }

    /// Every scope's dynamic configs: `(scope, JSON)`.
    pub fn scan_dynamic_configs(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let entries = self.scan_meta(META_DYNAMIC_PREFIX)?;
        Ok(entries.into_iter().map(|(key, value)| (key[META_DYNAMIC_PREFIX.len()..].to_string(), value)).collect())
    }

    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self.get_meta(META_CLUSTER_ID)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    pub fn put_cluster_id(&self, write: &mut StoreWrite, id: &str) {
        self.put_meta(write, META_CLUSTER_ID, id.as_bytes());
    }

    /// Marks a deleted topic whose objects the remote log manager still has to delete.
    pub fn put_remote_gc(&self, write: &mut StoreWrite, topic_id: uuid::Uuid) {
        self.put_meta(write, &format!("{META_REMOTE_GC_PREFIX}{topic_id}"), b"");
    }

    pub fn delete_remote_gc(&self, write: &mut StoreWrite, topic_id: uuid::Uuid) {
        self.delete_meta(write, &format!("{META_REMOTE_GC_PREFIX}{topic_id}"));
    }

    /// Deleted topics whose objects are still to be deleted.
    pub fn scan_remote_gc(&self) -> Result<Vec<uuid::Uuid>, StoreError> {
        let entries = self.scan_meta(META_REMOTE_GC_PREFIX)?;
        Ok(entries
            .iter()
            .filter_map(|(key, _)| uuid::Uuid::parse_str(&key[META_REMOTE_GC_PREFIX.len()..]).ok())
            .collect())
    }

    pub fn is_recovered(&self) -> Result<bool, StoreError> {
        Ok(self.get_meta(META_RECOVERED)?.is_some())
    }

    pub fn put_recovered(&self, write: &mut StoreWrite) {
        self.put_meta(write, META_RECOVERED, b"1");
    }

    /// Deletes every batch whose base offset is below `offset`, and their time index entries.
    pub fn delete_batches_below(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        offset: i64,
        time_index_end: Option<(i64, i64)>,
    ) {
        write.batch.delete_range_cf(self.cf(CF_BATCHES), key.batch_key(0), key.batch_key(offset));
        let start = key.with_u64(0).to_vec();
        match time_index_end {
            Some((timestamp_ms, base_offset)) => write.batch.delete_range_cf(
                self.cf(CF_TIMEINDEX),
                start,
                key.time_key(timestamp_ms, base_offset).to_vec(),
            ),
            None => write.batch.delete_range_cf(self.cf(CF_TIMEINDEX), start, key.end()),
        }
    }

    /// Deletes every batch whose base offset is at or after `offset`, and the time index entries
    /// from `time_index_from` on (the first entry whose batch starts at or after `offset`).
    pub fn delete_batches_from(
        &self,
        write: &mut StoreWrite,
        key: PartitionKey,
        offset: i64,
        time_index_from: Option<(i64, i64)>,
    ) {
        write.batch.delete_range_cf(self.cf(CF_BATCHES), key.batch_key(offset).to_vec(), key.end());
        if let Some((timestamp_ms, base_offset)) = time_index_from {
            write.batch.delete_range_cf(
                self.cf(CF_TIMEINDEX),
                key.time_key(timestamp_ms, base_offset).to_vec(),
                key.end(),
            );
        }
    }

    /// Removes everything a partition stored.
    pub fn delete_partition(&self, write: &mut StoreWrite, key: PartitionKey) {
        let start = key.with_u64(0).to_vec();
        for name in [CF_BATCHES, CF_TIMEINDEX, CF_PRODUCERS, CF_REMOTE, CF_ABORTED] {
            write.batch.delete_range_cf(self.cf(name), start.clone(), key.end());
        }
        self.delete_meta(write, &log_start_key(key));
    }

    /// Records a segment that is safely in the object store.
    pub fn put_remote(&self, write: &mut StoreWrite, key: PartitionKey, base_offset: i64, value: &[u8]) {
        write.batch.put_cf(self.cf(CF_REMOTE), key.batch_key(base_offset), value);
    }

    pub fn delete_remote(&self, write: &mut StoreWrite, key: PartitionKey, base_offset: i64) {
        write.batch.delete_cf(self.cf(CF_REMOTE), key.batch_key(base_offset));
    }

    /// The partition's remote index: `(base offset, value)` in offset order.
    pub fn scan_remote(&self, key: PartitionKey) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.scan_partition(CF_REMOTE, key, "remote index")
    }

    /// Every entry of `family` under the partition `key`, in key order: the number that ends its
    /// key (an offset, a producer id) and its value; `what` names the entries in an error.
    fn scan_partition(&self, family: &str, key: PartitionKey, what: &str) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(key.end());
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(family), options);
        iter.seek(key.with_u64(0));
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if k.len() != 16 {
                return Err(StoreError::corrupt(format!("{what} key has the wrong length")));
            }
            out.push((read_u64(&k[8..]) as i64, v.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// An aborted transaction, by the offset of its marker.
    pub fn put_aborted(&self, write: &mut StoreWrite, key: PartitionKey, txn: &super::AbortedTxn) {
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&txn.producer_id.to_be_bytes());
        value[8..].copy_from_slice(&txn.first_offset.to_be_bytes());
        write.batch.put_cf(self.cf(CF_ABORTED), key.batch_key(txn.last_offset), value);
    }

    /// Deletes the aborted transactions whose markers lie below `below`.
    pub fn delete_aborted_below(&self, write: &mut StoreWrite, key: PartitionKey, below: i64) {
        write.batch.delete_range_cf(self.cf(CF_ABORTED), key.batch_key(0), key.batch_key(below));
    }

    /// Deletes the aborted transactions whose markers lie at or after `from`.
    pub fn delete_aborted_from(&self, write: &mut StoreWrite, key: PartitionKey, from: i64) {
        write.batch.delete_range_cf(self.cf(CF_ABORTED), key.batch_key(from).to_vec(), key.end());
    }

    /// The partition's aborted transactions, by marker offset.
    pub fn scan_aborted(&self, key: PartitionKey) -> Result<Vec<super::AbortedTxn>, StoreError> {
        self.scan_partition(CF_ABORTED, key, "aborted transaction")?
            .into_iter()
            .map(|(last_offset, value)| {
                if value.len() != 16 {
                    return Err(StoreError::corrupt("aborted transaction entry has the wrong length"));
                }
                Ok(super::AbortedTxn {
                    producer_id: read_u64(&value[..8]) as i64,
                    first_offset: read_u64(&value[8..]) as i64,
                    last_offset,
                })
            })
            .collect()
    }

    /// The producer entries of one partition: `(producer id, entry bytes)`.
    pub fn scan_partition_producers(&self, key: PartitionKey) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.scan_partition(CF_PRODUCERS, key, "producer")
    }

    /// The transaction coordinator's record of a transactional id.
    pub fn put_txn(&self, write: &mut StoreWrite, transactional_id: &str, record: &[u8]) {
        self.put_meta(write, &format!("{META_TXN_PREFIX}{transactional_id}"), record);
    }

    pub fn delete_txn(&self, write: &mut StoreWrite, transactional_id: &str) {
        self.delete_meta(write, &format!("{META_TXN_PREFIX}{transactional_id}"));
    }

    /// Every transactional id's record: `(transactional id, record)`.
    pub fn scan_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .scan_meta(META_TXN_PREFIX)?
            .into_iter()
            .map(|(key, value)| (key[META_TXN_PREFIX.len()..].to_string(), value))
            .collect())
    }

    /// Deletes the local batches wholly below `offset` (already in the object store) and their
    /// time index entries, leaving the log start where it is.
    pub fn trim_local_below(&self, write: &mut StoreWrite, key: PartitionKey, offset: i64) -> Result<(), StoreError> {
        let time_index_end = self.time_entry_from_offset(key, offset)?;
        self.delete_batches_below(write, key, offset, time_index_end);
        Ok(())
    }

    /// Header of the partition's first local batch.
    pub fn first_batch(&self, key: PartitionKey) -> Result<Option<BatchHeader>, StoreError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(key.end());
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_BATCHES), options);
        iter.seek(key.batch_key(0));
        match iter.value() {
            Some(v) => Ok(Some(
                BatchHeader::parse(v)
                    .map_err(|_| StoreError::corrupt(format!("stored batch of {key:?} has a corrupt header")))?,
            )),
            None => {
                iter.status()?;
                Ok(None)
            }
        }
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), name.as_bytes())?)
    }

    /// Every meta entry whose key starts with `prefix`.
    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(self.cf(CF_META), IteratorMode::From(prefix.as_bytes(), Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::corrupt("meta key is not UTF-8"))?;
            out.push((key, value.to_vec()));
        }
        Ok(out)
    }

    /// Every producer entry of every partition.
    pub fn scan_producers(&self) -> Result<Vec<(PartitionKey, i64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_PRODUCERS), IteratorMode::Start) {
            let (key, value) = item?;
            if key.len() != 16 {
                return Err(StoreError::corrupt("producer key has the wrong length"));
            }
            let partition_key = PartitionKey {
                topic_number: u32::from_be_bytes([key[0], key[1], key[2], key[3]]),
                partition: u32::from_be_bytes([key[4], key[5], key[6], key[7]]),
            };
            out.push((partition_key, read_u64(&key[8..]) as i64, value.to_vec()));
        }
        Ok(out)
    }

    pub fn put_group(&self, write: &mut StoreWrite, group: &str, record: &[u8]) {
        write.batch.put_cf(self.cf(CF_GROUPS), group_key(group), record);
    }

    /// Deletes a group's record and every offset it committed.
    pub fn delete_group(&self, write: &mut StoreWrite, group: &str) {
        write.batch.delete_cf(self.cf(CF_GROUPS), group_key(group));
        let prefix = offset_prefix(group);
        let mut end = prefix.clone();
        end.push(0xff);
        end.push(0xff);
        write.batch.delete_range_cf(self.cf(CF_GROUPS), prefix, end);
    }

    pub fn put_offset(&self, write: &mut StoreWrite, group: &str, topic: &str, partition: i32, record: &[u8]) {
        write.batch.put_cf(self.cf(CF_GROUPS), offset_key(group, topic, partition), record);
    }

    pub fn delete_offset(&self, write: &mut StoreWrite, group: &str, topic: &str, partition: i32) {
        write.batch.delete_cf(self.cf(CF_GROUPS), offset_key(group, topic, partition));
    }

    /// The offsets a producer's transaction in progress commits for the group (`None`: none).
    pub fn put_pending_offsets(&self, write: &mut StoreWrite, group: &str, producer_id: i64, record: Option<&[u8]>) {
        let key = pending_key(group, producer_id);
        match record {
            Some(record) => write.batch.put_cf(self.cf(CF_GROUPS), key, record),
            None => write.batch.delete_cf(self.cf(CF_GROUPS), key),
        }
    }

    /// Every group record, committed offset and pending transactional offset, for the
    /// coordinator's recovery.
    pub fn scan_groups(&self) -> Result<crate::log::GroupRecords, StoreError> {
        let mut records = crate::log::GroupRecords::default();
        for item in self.db.iterator_cf(self.cf(CF_GROUPS), IteratorMode::Start) {
            let (key, value) = item?;
            match key.first() {
                Some(b'g') => records.groups.push((utf8(&key[1..])?, value.to_vec())),
                Some(b'o') => {
                    let (group, rest) = split_prefixed(&key[1..])?;
                    let (topic, rest) = split_prefixed(rest)?;
                    let partition: [u8; 4] = rest.try_into().map_err(|_| StoreError::corrupt("offset key"))?;
                    records.offsets.push((group, topic, i32::from_be_bytes(partition), value.to_vec()));
                }
                Some(b'p') => {
                    let (group, rest) = split_prefixed(&key[1..])?;
                    let producer: [u8; 8] = rest.try_into().map_err(|_| StoreError::corrupt("pending offsets key"))?;
                    records.pending.push((group, i64::from_be_bytes(producer), value.to_vec()));
                }
                _ => return Err(StoreError::corrupt("unknown key in the groups family")),
            }
        }
        Ok(records)
    }

    /// Header of the partition's last batch.
    pub fn last_batch(&self, key: PartitionKey) -> Result<Option<BatchHeader>, StoreError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_BATCHES));
        iter.seek_for_prev(key.batch_key(i64::MAX));
        match (iter.key(), iter.value()) {
            (Some(k), Some(v)) if k.starts_with(&key.prefix()) => Ok(Some(
                BatchHeader::parse(v)
                    .map_err(|_| StoreError::corrupt(format!("stored batch of {key:?} has a corrupt header")))?,
            )),
            _ => {
                iter.status()?;
                Ok(None)
            }
        }
    }

    /// The last time index entry: the partition's max timestamp and the batch that holds it.
    pub fn last_time_entry(&self, key: PartitionKey) -> Result<Option<(i64, i64)>, StoreError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_TIMEINDEX));
        iter.seek_for_prev(key.end());
        self.time_entry_at(&iter, key)
    }

    /// The first time index entry with a timestamp at or after `timestamp_ms`.
    pub fn time_lookup(&self, key: PartitionKey, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_TIMEINDEX));
        iter.seek(key.time_key(timestamp_ms, 0));
        self.time_entry_at(&iter, key)
    }

    /// The first time index entry whose batch starts at or after `offset`.
    pub fn time_entry_from_offset(&self, key: PartitionKey, offset: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_TIMEINDEX));
        iter.seek(key.with_u64(0));
        while let Some((timestamp_ms, base_offset)) = self.time_entry_at(&iter, key)? {
            if base_offset >= offset {
                return Ok(Some((timestamp_ms, base_offset)));
            }
            iter.next();
        }
        Ok(None)
    }

    fn time_entry_at(
        &self,
        iter: &rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
        key: PartitionKey,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        match iter.key() {
            Some(k) if k.len() == 24 && k.starts_with(&key.prefix()) => {
                Ok(Some((unflip_sign(read_u64(&k[8..16])), read_u64(&k[16..24]) as i64)))
            }
            _ => {
                iter.status()?;
                Ok(None)
            }
        }
    }

    /// The batch that contains `offset`, if any.
    pub fn batch_containing(&self, key: PartitionKey, offset: i64) -> Result<Option<Bytes>, StoreError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_BATCHES));
        iter.seek_for_prev(key.batch_key(offset));
        if let (Some(k), Some(v)) = (iter.key(), iter.value())
            && k.starts_with(&key.prefix())
            && let Ok(header) = BatchHeader::parse(v)
            && header.last_offset() >= offset
        {
            return Ok(Some(Bytes::copy_from_slice(v)));
        }
        iter.status()?;
        Ok(None)
    }

    /// Reads whole batches from the one containing `offset` up to (not including) `end_offset`.
    ///
    /// Stops before a batch that would take the total past `max_bytes`, except that the first batch is
    /// always returned whole when `at_least_one` is set (Kafka's KIP-74 rule), so consumers progress.
    /// `reserve` is the capacity to start with (the bytes expected, when known), so that a large
    /// read is not copied again each time its buffer doubles.
    pub fn read(
        &self,
        key: PartitionKey,
        offset: i64,
        end_offset: i64,
        limits: ReadLimits,
        verify_checksums: bool,
    ) -> Result<Bytes, StoreError> {
        let mut out = BytesMut::with_capacity(limits.reserve.min(limits.max_bytes));
        self.visit_batches(key, offset, end_offset, limits, verify_checksums, |batch| {
            out.extend_from_slice(batch);
            true
        })?;
        // A small read (a consumer at the tail) gives its large buffer back at once rather than
        // holding it until the response is written.
        if out.len() <= SMALL_READ_BYTES && out.capacity() > 2 * out.len().max(SMALL_READ_BYTES / 2) {
            return Ok(Bytes::copy_from_slice(&out));
        }
        Ok(out.freeze())
    }

    /// The bytes `read` would return with these limits, counted without copying them, stopping
    /// as soon as the count reaches `enough`.
    pub fn count_bytes(
        &self,
        key: PartitionKey,
        offset: i64,
        end_offset: i64,
        limits: ReadLimits,
        enough: usize,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        self.visit_batches(key, offset, end_offset, limits, true, |batch| {
            total += batch.len();
            total < enough
        })?;
        Ok(total)
    }

    fn visit_batches(
        &self,
        key: PartitionKey,
        offset: i64,
        end_offset: i64,
        limits: ReadLimits,
        verify_checksums: bool,
        mut take: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(key.batch_key(end_offset).to_vec());
        options.set_verify_checksums(verify_checksums);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_BATCHES), options);
        iter.seek_for_prev(key.batch_key(offset));
        if !iter.valid() || !iter.key().is_some_and(|k| k.starts_with(&key.prefix())) {
            iter.seek(key.batch_key(offset));
        }
        let mut taken = 0;
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&key.prefix()) {
                break;
            }
            if v.len() < HEADER_BYTES {
                return Err(StoreError::corrupt(format!("stored batch of {key:?} is truncated")));
            }
            let base_offset = read_u64(&k[8..]) as i64;
            let last_offset = base_offset + i64::from(i32::from_be_bytes([v[23], v[24], v[25], v[26]]));
            if last_offset >= offset {
                let first = taken == 0;
                if taken + v.len() > limits.max_bytes && !(first && limits.at_least_one) {
                    break;
                }
                taken += v.len();
                if !take(v) {
                    break;
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// Walks batches from the partition's start, handing each header to `visit` until it returns false.
    pub fn scan_headers(
        &self,
        key: PartitionKey,
        mut visit: impl FnMut(&BatchHeader, usize) -> bool,
    ) -> Result<(), StoreError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(key.end());
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_BATCHES), options);
        iter.seek(key.batch_key(0));
        while let Some(v) = iter.value() {
            let header = BatchHeader::parse(v)
                .map_err(|_| StoreError::corrupt(format!("stored batch of {key:?} is corrupt")))?;
            if !visit(&header, v.len()) {
                break;
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }
}
