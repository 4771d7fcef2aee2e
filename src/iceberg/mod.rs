//! The Iceberg sink: every topic becomes an Apache Iceberg table (Parquet files committed through
//! a catalog) that Spark, Trino, DuckDB and pyiceberg read.
//!
//! - [`records`]: record batches decoded into rows (headers in order, repeated keys kept).
//! - [`table`]: the table's schema, partition spec and the Arrow/Parquet writing.
//! - [`sink`]: the background loop: per topic, read from the log where the table's last snapshot
//!   says it stopped, write Parquet, and commit one fast-append snapshot that records the next
//!   offset of every partition. That summary is the sink's only state, so a crash at any point
//!   resumes exactly where the last commit ended.
//!
//! The sink runs on its own thread with its own single-threaded runtime: the SQL catalog, the
//! local-file I/O of iceberg-rust (synchronous `std::fs` inside async functions) and Parquet
//! encoding never take a worker of the runtime that serves produce and fetch, and a slow or down
//! catalog only delays the tables. This is the only module that imports `iceberg`.

pub mod records;
mod sink;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::log::Log;

pub use sink::{SinkError, run};

/// The catalog name in the SQL catalog's tables (pyiceberg: `SqlCatalog("zombi", uri=...)`).
pub const CATALOG_NAME: &str = "zombi";
/// Snapshot summary property prefix: `zombi.next-offset.<partition>` = the offset after the last
/// record of that partition in the table.
pub const NEXT_OFFSET_PROPERTY_PREFIX: &str = "zombi.next-offset.";
/// Snapshot summary property: the Kafka topic id the table's rows came from.
pub const TOPIC_ID_PROPERTY: &str = "zombi.topic-id";

/// Where the catalog lives. Only SQLite is built; the others are refused by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogLocation {
    Sqlite(PathBuf),
}

impl CatalogLocation {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".to_string());
            }
            return Ok(CatalogLocation::Sqlite(absolute(Path::new(path))));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Err("Postgres catalogs are not built yet; use sqlite://PATH".to_string());
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Err("Iceberg REST catalogs are not built yet; use sqlite://PATH".to_string());
        }
        Err(format!("unknown catalog {text:?}: expected sqlite://PATH"))
    }

    /// The sqlx connection string; the file is created if missing.
    pub fn uri(&self) -> String {
        match self {
            CatalogLocation::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
        }
    }
}

impl std::fmt::Display for CatalogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogLocation::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// The sink's settings (flags in `config.rs`).
#[derive(Debug, Clone)]
pub struct IcebergSettings {
    pub catalog: CatalogLocation,
    /// `file://` URL of the warehouse directory.
    pub warehouse: String,
    pub namespace: String,
    /// How often each table gets a commit (when something was produced).
    pub commit_interval_ms: u64,
    /// Data files are closed near this size.
    pub target_file_bytes: usize,
    /// Decoded record bytes (keys, values, headers) one commit of one table takes in at most:
    /// four times the target file size, since Parquet with zstd is usually several times smaller
    /// than the records, so that a backlog is committed in files near the target size. Memory
    /// does not grow with it (rows stream into the writers; see `row_group_rows_max`).
    pub commit_bytes_max: usize,
    /// Bytes of record batches read from the log at once.
    pub read_bytes_max: usize,
    /// Rows per Parquet row group (a row group is buffered in memory until written).
    pub row_group_rows_max: usize,
    /// Longest wait between retries of a failing table or catalog.
    pub retry_backoff_ms_max: u64,
    /// Default of `zombi.iceberg.enable`.
    pub enable: bool,
}

impl IcebergSettings {
    /// Defaults under `data_dir`; errors name the flag.
    pub fn resolve(
        data_dir: &Path,
        catalog: Option<String>,
        warehouse: Option<String>,
        namespace: String,
        commit_interval_ms: u64,
        target_file_bytes: usize,
        enable: bool,
    ) -> Result<Self, (&'static str, String)> {
        let data_dir = absolute(data_dir);
        let catalog = match catalog {
            Some(text) => CatalogLocation::parse(&text).map_err(|e| ("iceberg-catalog", e))?,
            None => CatalogLocation::Sqlite(data_dir.join("iceberg").join("catalog.db")),
        };
        let warehouse = match warehouse {
            Some(text) if text.starts_with("file:///") => text.trim_end_matches('/').to_string(),
            Some(text) if text.starts_with("s3://") || text.starts_with("s3a://") => {
                return Err(("iceberg-warehouse", "S3 warehouses are not built yet; use file:///DIR".to_string()));
            }
            Some(text) => return Err(("iceberg-warehouse", format!("{text:?}: expected file:///ABSOLUTE/DIR"))),
            None => format!("file://{}", data_dir.join("iceberg").join("warehouse").display()),
        };
        if namespace.is_empty() || namespace.contains('.') {
            return Err(("iceberg-namespace", "must be a non-empty name without '.'".to_string()));
        }
        if commit_interval_ms == 0 {
            return Err(("iceberg-commit-interval-ms", "must be at least 1".to_string()));
        }
        if target_file_bytes < 1024 * 1024 {
            return Err(("iceberg-target-file-bytes", "must be at least 1 MiB".to_string()));
        }
        Ok(IcebergSettings {
            catalog,
            warehouse,
            namespace,
            commit_interval_ms,
            target_file_bytes,
            commit_bytes_max: target_file_bytes.saturating_mul(4),
            read_bytes_max: 4 * 1024 * 1024,
            row_group_rows_max: 64 * 1024,
            retry_backoff_ms_max: 300_000,
            enable,
        })
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

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
    header_keys_replaced: u64,
    timestamps_out_of_range: u64,
    /// The last time (ms since the epoch) the sink saw the table hold every record the log had
    /// then: every record appended before this instant is in the table. Set when a round that
    /// started then committed everything up to the high watermarks it read, and when a tick finds
    /// the table caught up.
    caught_up_at_ms: Option<i64>,
    /// Iceberg file compaction (not Kafka's key compaction): rewrite commits of small files into
    /// larger ones, and the files each removed from and added to the table.
    compactions: u64,
    compaction_files_rewritten: u64,
    compaction_files_written: u64,
    /// Snapshots removed from the table's metadata by expiry.
    snapshots_expired: u64,
    /// Files in the table's location that no snapshot references (a crash leaves some), deleted.
    orphan_files_deleted: u64,
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
        if let Ok(mut tables) = self.tables.lock() {
            change(tables.entry(topic.to_string()).or_default());
        }
    }

    /// Whether the table of `topic` is known to hold everything the log has: then the round can
    /// be skipped without asking the catalog (idle topics cost nothing).
    /// When it is, that is also the freshest proof that the table holds the log (see
    /// `caught_up_at_ms`).
    fn caught_up(&self, topic: &crate::log::Topic) -> bool {
        // Taken before the high watermarks are read: everything appended before now is below them.
        let now_ms = crate::log::now_ms();
        let Ok(mut tables) = self.tables.lock() else { return false };
        let Some(state) = tables.get_mut(&topic.name) else { return false };
        let caught_up = state.last_error.is_none()
            && !state.committed.is_empty()
            && topic.partitions.iter().all(|p| {
                let committed = state.committed.get(&p.index).copied();
                committed == Some(p.high_watermark()) || (committed.is_none() && p.high_watermark() == 0)
            });
        if caught_up {
            state.caught_up_at_ms = Some(now_ms);
        }
        caught_up
    }

    fn set_catalog_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.catalog_error.lock() {
            *slot = error;
        }
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
    pub header_keys_replaced: u64,
    pub timestamps_out_of_range: u64,
    pub compactions: u64,
    pub compaction_files_rewritten: u64,
    pub compaction_files_written: u64,
    pub snapshots_expired: u64,
    pub orphan_files_deleted: u64,
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
    let tables = sink.tables.lock().map(|t| t.clone()).unwrap_or_default();
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
                header_keys_replaced: state.header_keys_replaced,
                timestamps_out_of_range: state.timestamps_out_of_range,
                compactions: state.compactions,
                compaction_files_rewritten: state.compaction_files_rewritten,
                compaction_files_written: state.compaction_files_written,
                snapshots_expired: state.snapshots_expired,
                orphan_files_deleted: state.orphan_files_deleted,
                partitions,
            }
        })
        .collect();
    IcebergStatus {
        catalog: sink.settings.catalog.to_string(),
        warehouse: sink.settings.warehouse.clone(),
        namespace: sink.settings.namespace.clone(),
        catalog_error: sink.catalog_error.lock().ok().and_then(|e| e.clone()),
        topics,
    }
}
