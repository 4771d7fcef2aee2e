//! The Iceberg sink: every topic becomes an Apache Iceberg table (Parquet files committed through
//! a catalog) that Spark, Trino, DuckDB and pyiceberg read.
//!
//! - [`records`]: record batches decoded into rows (headers in order, repeated keys kept).
//! - [`table`]: the table's schema, partition spec and the Arrow/Parquet writing.
//! - [`sink`]: the background loop: per topic, read from the log where the table's last snapshot
//!   says it stopped, write Parquet, and commit one fast-append snapshot that records the next
//!   offset of every partition. That summary is the sink's only state, so a crash at any point
//!   resumes exactly where the last commit ended.
//! - [`storage`]: the warehouse's file I/O, a local directory or S3 (multipart uploads through
//!   the broker's own S3 client).
//!
//! Catalogs: SQLite (the default) or PostgreSQL, both through iceberg-catalog-sql.
//!
//! The sink runs on its own thread with its own single-threaded runtime: the SQL catalog, the
//! local-file I/O of iceberg-rust (synchronous `std::fs` inside async functions), S3 requests
//! and Parquet encoding never take a worker of the runtime that serves produce and fetch, and a slow or down
//! catalog only delays the tables. This is the only module that imports `iceberg`.

mod commit;
mod compact;
pub mod metrics;
pub mod records;
pub mod rest;
mod sink;
pub mod storage;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::Serialize;

use crate::log::Log;

pub use crate::config::iceberg::{CatalogLocation, IcebergSettings, MaintenanceSettings, PartitionBy};
pub use sink::{SinkError, open_reader_catalog, run};

/// The catalog name in the SQL catalog's tables (pyiceberg: `SqlCatalog("zombi", uri=...)`).
pub const CATALOG_NAME: &str = "zombi";
/// Snapshot summary property prefix: `zombi.next-offset.<partition>` = the offset after the last
/// record of that partition in the table.
pub const NEXT_OFFSET_PROPERTY_PREFIX: &str = "zombi.next-offset.";
/// Snapshot summary property: the Kafka topic id the table's rows came from.
pub const TOPIC_ID_PROPERTY: &str = "zombi.topic-id";

/// The sink's shared state: what the tables hold, for the status view. Written by the sink
/// thread, read by anyone; the lock is never held across an await.
#[derive(Debug)]
pub struct IcebergSink {
    pub settings: IcebergSettings,
    tables: Mutex<HashMap<String, TableState>>,
    catalog_error: Mutex<Option<String>>,
    /// When this sink started (ms since the epoch): the lag of a table not yet seen caught up
    /// counts from here.
    started_ms: i64,
}

/// What the sink knows of one topic's table.
#[derive(Debug, Default, Clone)]
struct TableState {
    /// Next offset per partition as of the table's current snapshot.
    committed: BTreeMap<i32, i64>,
    last_commit_ms: Option<i64>,
    commits: u64,
    records_written: u64,
    data_files: u64,
    data_file_bytes: u64,
    errors: u64,
    last_error: Option<String>,
    /// Records below the log start when the sink got to them (retention or DeleteRecords).
    skipped_below_log_start: u64,
    control_records: u64,
    aborted_records: u64,
    header_keys_replaced: u64,
    timestamps_out_of_range: u64,
    /// The last time (ms since the epoch) the sink saw the table hold every record the log had
    /// then: every record appended before this instant is in the table. Set when a round that
    /// started then committed everything up to the high watermarks it read, and when a tick finds
    /// the table caught up.
    caught_up_at_ms: Option<i64>,
    /// Replace snapshots committed by compaction.
    compactions: u64,
    compaction_files_rewritten: u64,
    compaction_files_written: u64,
    compaction_bytes_rewritten: u64,
    snapshots_expired: u64,
    /// Files deleted because no snapshot references them any more.
    unreferenced_files_deleted: u64,
    /// Files deleted that no snapshot ever referenced (older than the orphan age).
    orphan_files_deleted: u64,
    maintenance_errors: u64,
    last_maintenance_error: Option<String>,
    /// Live data files in the table's current snapshot (as of the last maintenance pass).
    live_data_files: Option<u64>,
}

impl IcebergSink {
    pub fn new(settings: IcebergSettings) -> Arc<Self> {
        Arc::new(IcebergSink {
            settings,
            tables: Mutex::new(HashMap::new()),
            catalog_error: Mutex::new(None),
            started_ms: crate::log::now_ms(),
        })
    }

    fn update(&self, topic: &str, change: impl FnOnce(&mut TableState)) {
        change(self.tables.lock().entry(topic.to_string()).or_default());
    }

    /// Whether the table of `topic` is known to hold everything the log has: then the round can
    /// be skipped without asking the catalog (idle topics cost nothing).
    /// When it is, that is also the freshest proof that the table holds the log (see
    /// `caught_up_at_ms`).
    fn caught_up(&self, topic: &crate::log::Topic) -> bool {
        // Taken before the high watermarks are read: everything appended before now is below them.
        let now_ms = crate::log::now_ms();
        let mut tables = self.tables.lock();
        let Some(state) = tables.get_mut(&topic.name) else { return false };
        let caught_up = state.last_error.is_none()
            && !state.committed.is_empty()
            // A partition led by another broker reaches the table from there.
            && topic.partitions.iter().filter(|p| p.is_leading()).all(|p| {
                let committed = state.committed.get(&p.index).copied();
                committed == Some(p.high_watermark()) || (committed.is_none() && p.high_watermark() == 0)
            });
        if caught_up {
            state.caught_up_at_ms = Some(now_ms);
        }
        caught_up
    }

    fn set_catalog_error(&self, error: Option<String>) {
        *self.catalog_error.lock() = error;
    }
}

/// The sink's state, for the admin view and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct IcebergStatus {
    pub catalog: String,
    pub warehouse: String,
    pub namespace: String,
    /// Why the catalog cannot be opened, while it cannot.
    pub catalog_error: Option<String>,
    pub topics: Vec<TopicIcebergStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicIcebergStatus {
    pub topic: String,
    pub enabled: bool,
    /// Records produced but not yet in the table (over all partitions).
    pub records_behind: i64,
    /// 0 while the table holds every record of the log; otherwise the seconds since the sink
    /// last saw it do so (since the sink started, if it has not yet). Every record missing from
    /// the table was appended after that instant, so this bounds the age of the oldest one.
    pub lag_seconds: f64,
    /// The instant behind `lag_seconds` (ms since the epoch), once seen.
    pub caught_up_at_ms: Option<i64>,
    /// When the table's last commit by this broker happened (ms since the epoch).
    pub last_commit_ms: Option<i64>,
    pub commits: u64,
    pub records_written: u64,
    pub data_files: u64,
    pub data_file_bytes: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub skipped_below_log_start: u64,
    pub control_records: u64,
    /// Records of aborted transactions, never rows.
    pub aborted_records: u64,
    pub header_keys_replaced: u64,
    pub timestamps_out_of_range: u64,
    /// Replace snapshots committed by compaction, and what they rewrote.
    pub compactions: u64,
    pub compaction_files_rewritten: u64,
    pub compaction_files_written: u64,
    pub compaction_bytes_rewritten: u64,
    pub snapshots_expired: u64,
    /// Files deleted because no snapshot references them any more.
    pub unreferenced_files_deleted: u64,
    /// Files no snapshot ever referenced, deleted once older than the orphan age.
    pub orphan_files_deleted: u64,
    pub maintenance_errors: u64,
    pub last_maintenance_error: Option<String>,
    /// Live data files in the table's current snapshot, as of the last maintenance pass.
    pub live_data_files: Option<u64>,
    pub partitions: Vec<PartitionIcebergStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionIcebergStatus {
    pub partition: i32,
    /// The offset after the last record in the table.
    pub committed_offset: i64,
    pub high_watermark: i64,
}

/// A snapshot of the sink's state, with lag measured against the log's high watermarks now.
pub fn status(sink: &IcebergSink, log: &Log) -> IcebergStatus {
    let tables = sink.tables.lock().clone();
    let now_ms = crate::log::now_ms();
    let topics = log
        .topics()
        .iter()
        .map(|topic| {
            let state = tables.get(&topic.name).cloned().unwrap_or_default();
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| PartitionIcebergStatus {
                    partition: p.index,
                    committed_offset: state.committed.get(&p.index).copied().unwrap_or(0),
                    high_watermark: p.high_watermark(),
                })
                .collect();
            let records_behind: i64 = partitions.iter().map(|p| (p.high_watermark - p.committed_offset).max(0)).sum();
            let lag_seconds = match records_behind {
                0 => 0.0,
                _ => (now_ms - state.caught_up_at_ms.unwrap_or(sink.started_ms)).max(0) as f64 / 1000.0,
            };
            TopicIcebergStatus {
                topic: topic.name.clone(),
                enabled: topic.config.iceberg_enable,
                records_behind,
                lag_seconds,
                caught_up_at_ms: state.caught_up_at_ms,
                last_commit_ms: state.last_commit_ms,
                commits: state.commits,
                records_written: state.records_written,
                data_files: state.data_files,
                data_file_bytes: state.data_file_bytes,
                errors: state.errors,
                last_error: state.last_error,
                skipped_below_log_start: state.skipped_below_log_start,
                control_records: state.control_records,
                aborted_records: state.aborted_records,
                header_keys_replaced: state.header_keys_replaced,
                timestamps_out_of_range: state.timestamps_out_of_range,
                compactions: state.compactions,
                compaction_files_rewritten: state.compaction_files_rewritten,
                compaction_files_written: state.compaction_files_written,
                compaction_bytes_rewritten: state.compaction_bytes_rewritten,
                snapshots_expired: state.snapshots_expired,
                unreferenced_files_deleted: state.unreferenced_files_deleted,
                orphan_files_deleted: state.orphan_files_deleted,
                maintenance_errors: state.maintenance_errors,
                last_maintenance_error: state.last_maintenance_error,
                live_data_files: state.live_data_files,
                partitions,
            }
        })
        .collect();
    IcebergStatus {
        catalog: sink.settings.catalog.to_string(),
        warehouse: sink.settings.warehouse.clone(),
        namespace: sink.settings.namespace.clone(),
        catalog_error: sink.catalog_error.lock().clone(),
        topics,
    }
}
