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

mod compact;
pub mod records;
mod sink;
pub mod storage;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::log::Log;
use crate::tier::object_store::{Location, S3Options};
use crate::tier::s3::S3Path;

pub use compact::MaintenanceSettings;
pub use sink::{SinkError, run};

/// The catalog name in the SQL catalog's tables (pyiceberg: `SqlCatalog("zombi", uri=...)`).
pub const CATALOG_NAME: &str = "zombi";
/// Snapshot summary property prefix: `zombi.next-offset.<partition>` = the offset after the last
/// record of that partition in the table.
pub const NEXT_OFFSET_PROPERTY_PREFIX: &str = "zombi.next-offset.";
/// Snapshot summary property: the Kafka topic id the table's rows came from.
pub const TOPIC_ID_PROPERTY: &str = "zombi.topic-id";

/// Where the catalog lives: a SQLite file, or a PostgreSQL database (the same tables as
/// pyiceberg's SqlCatalog and Iceberg's JDBC catalog). REST catalogs are refused by name.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogLocation {
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database?options` as given (sqlx's URL); shown with
    /// the password replaced (see `Display`).
    Postgres(String),
}

impl CatalogLocation {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".to_string());
            }
            return Ok(CatalogLocation::Sqlite(absolute(Path::new(path))));
        }
        if let Some(rest) = text.strip_prefix("postgres://").or_else(|| text.strip_prefix("postgresql://")) {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
            if host.is_empty() {
                return Err(format!("{}: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE", redact(text)));
            }
            return Ok(CatalogLocation::Postgres(text.to_string()));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Err("Iceberg REST catalogs are not built yet; use sqlite://PATH or postgres://...".to_string());
        }
        Err(format!(
            "unknown catalog {}: expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            redact(text)
        ))
    }

    /// Whether SQL statements take `$1`-style placeholders (Postgres) rather than `?`.
    pub fn dollar_placeholders(&self) -> bool {
        match self {
            CatalogLocation::Sqlite(_) => false,
            CatalogLocation::Postgres(_) => true,
        }
    }

    /// The sqlx connection string (SQLite: the file is created if missing). Holds the password.
    pub fn uri(&self) -> String {
        match self {
            CatalogLocation::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            CatalogLocation::Postgres(url) => url.clone(),
        }
    }
}

/// A database URL with its password (in the user info or a `password=` query parameter)
/// replaced by `***`, for logs, errors and the admin view.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The user info ends at the last '@' before the query, even if an unencoded '/' or '@' in the
    // password would make a URL parser stop earlier.
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (user_info, after) = match rest[..query_start].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let (host, tail) = after.split_at(host_end);
    let authority = match user_info {
        Some(user_info) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => host.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    if scheme.is_empty() { format!("{authority}{tail}") } else { format!("{scheme}://{authority}{tail}") }
}

impl std::fmt::Display for CatalogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogLocation::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            CatalogLocation::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// As `Display`: the password never reaches a log through `{:?}` of the settings either.
impl std::fmt::Debug for CatalogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CatalogLocation({self})")
    }
}

/// The partition spec of newly created tables (`--iceberg-partition-by`). A table keeps the spec
/// it was created with: changing the flag does not change existing tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionBy {
    /// `day(timestamp)`, field `timestamp_day`.
    #[default]
    Day,
    /// `hour(timestamp)`, field `timestamp_hour`: for topics that fill files within an hour.
    Hour,
    /// `month(timestamp)`, field `timestamp_month`: for quiet topics.
    Month,
    /// `identity(partition)`, field `partition`: one Iceberg partition per Kafka partition.
    Partition,
    /// Unpartitioned: one file per commit whatever the timestamps.
    None,
}

impl std::str::FromStr for PartitionBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "day" => Ok(PartitionBy::Day),
            "hour" => Ok(PartitionBy::Hour),
            "month" => Ok(PartitionBy::Month),
            "partition" => Ok(PartitionBy::Partition),
            "none" => Ok(PartitionBy::None),
            other => Err(format!("{other:?}: expected day, hour, month, partition or none")),
        }
    }
}

/// The Iceberg flags as given (`config.rs` merges the layers); [`IcebergSettings::resolve`]
/// checks them and fills in the defaults.
#[derive(Debug, Clone)]
pub struct IcebergFlags {
    pub catalog: Option<String>,
    pub warehouse: Option<String>,
    pub namespace: String,
    pub commit_interval_ms: u64,
    pub target_file_bytes: usize,
    pub enable: bool,
    pub partition_by: Option<String>,
}

impl Default for IcebergFlags {
    fn default() -> Self {
        IcebergFlags {
            catalog: None,
            warehouse: None,
            namespace: "zombi".to_string(),
            commit_interval_ms: 60_000,
            target_file_bytes: 128 * 1024 * 1024,
            enable: true,
            partition_by: None,
        }
    }
}

/// The sink's settings (flags in `config.rs`).
#[derive(Debug, Clone)]
pub struct IcebergSettings {
    pub catalog: CatalogLocation,
    /// `file:///DIR` or `s3://BUCKET/PATH` URL of the warehouse (no trailing slash).
    pub warehouse: String,
    /// Endpoint and region for an S3 warehouse: the object store's flags.
    pub s3: S3Options,
    pub namespace: String,
    /// The partition spec of tables the sink creates.
    pub partition_by: PartitionBy,
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
    /// Compaction, snapshot expiry and removal of unreferenced files.
    pub maintenance: MaintenanceSettings,
}

impl IcebergSettings {
    /// Defaults under `data_dir`, or under the object store's S3 prefix for the warehouse when
    /// the log goes to S3; errors name the flag.
    pub fn resolve(
        data_dir: &Path,
        flags: IcebergFlags,
        object_store: &Location,
        s3: &S3Options,
    ) -> Result<Self, (&'static str, String)> {
        let data_dir = absolute(data_dir);
        let catalog = match flags.catalog {
            Some(text) => CatalogLocation::parse(&text).map_err(|e| ("iceberg-catalog", e))?,
            None => CatalogLocation::Sqlite(data_dir.join("iceberg").join("catalog.db")),
        };
        let warehouse = match (flags.warehouse, object_store) {
            (Some(text), _) if text.starts_with("file:///") => text.trim_end_matches('/').to_string(),
            (Some(text), _) if text.starts_with("s3://") => match S3Path::parse(&text) {
                Some(_) => text.trim_end_matches('/').to_string(),
                None => return Err(("iceberg-warehouse", format!("{text:?}: expected s3://BUCKET/PATH"))),
            },
            (Some(text), _) => {
                return Err((
                    "iceberg-warehouse",
                    format!("{text:?}: expected file:///ABSOLUTE/DIR or s3://BUCKET/PATH"),
                ));
            }
            (None, Location::S3 { bucket, prefix }) if prefix.is_empty() => format!("s3://{bucket}/iceberg/warehouse"),
            (None, Location::S3 { bucket, prefix }) => format!("s3://{bucket}/{prefix}/iceberg/warehouse"),
            (None, Location::Directory(_)) => {
                format!("file://{}", data_dir.join("iceberg").join("warehouse").display())
            }
        };
        let partition_by = match flags.partition_by {
            Some(text) => text.parse().map_err(|e| ("iceberg-partition-by", e))?,
            None => PartitionBy::default(),
        };
        let IcebergFlags { namespace, commit_interval_ms, target_file_bytes, enable, .. } = flags;
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
            s3: s3.clone(),
            namespace,
            partition_by,
            commit_interval_ms,
            target_file_bytes,
            commit_bytes_max: target_file_bytes.saturating_mul(4),
            read_bytes_max: 4 * 1024 * 1024,
            row_group_rows_max: 64 * 1024,
            retry_backoff_ms_max: 300_000,
            enable,
            maintenance: MaintenanceSettings::default(),
        })
    }

    /// The defaults under `data_dir` with a local warehouse (tests and benchmarks).
    pub fn local(data_dir: &Path, flags: IcebergFlags) -> Result<Self, (&'static str, String)> {
        Self::resolve(data_dir, flags, &Location::Directory(data_dir.join("objects")), &S3Options::default())
    }
}

impl IcebergSettings {
    /// These settings with `maintenance`, checked; errors name the flag.
    pub fn with_maintenance(self, maintenance: MaintenanceSettings) -> Result<Self, (&'static str, String)> {
        if maintenance.min_files < 2 {
            return Err(("iceberg-compaction-min-files", "must be at least 2".to_string()));
        }
        Ok(IcebergSettings { maintenance, ..self })
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
        catalog_error: sink.catalog_error.lock().ok().and_then(|e| e.clone()),
        topics,
    }
}
