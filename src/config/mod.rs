//! Every setting and limit of the broker, with units in the names.
//!
//! Precedence: command-line flag, then `ZOMBI_*` environment variable (both through clap), then the
//! optional TOML file given by `--config`, then the embedded default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

pub mod cluster;
pub mod iceberg_settings;
mod storage;
pub mod wal;

pub use cluster::ClusterConfig;
pub use storage::{Location, S3Options};
pub use wal::WalConfig;

/// How the hot tier makes appends durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync the RocksDB WAL once per group commit, before acknowledging: survives power loss.
    Fsync,
    /// Write the WAL to the OS on every group commit and fsync it every `fsync_interval_ms`:
    /// survives `kill -9` of the broker; a power loss may lose the last interval.
    Periodic,
}

/// Flags and file settings share one shape; every field is optional so that the layers can be merged.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "zombi", version, about = "Kafka-compatible broker with a RocksDB hot tier")]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Optional TOML file with the same settings (kebab-case keys).
    #[arg(long, env = "ZOMBI_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the RocksDB hot tier and broker metadata.
    #[arg(long, env = "ZOMBI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This broker's node id.
    #[arg(long, env = "ZOMBI_NODE_ID")]
    pub node_id: Option<i32>,
    /// Cluster id reported to clients (default: generated once and kept in the data dir).
    #[arg(long, env = "ZOMBI_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Address the Kafka listener binds to.
    #[arg(long, env = "ZOMBI_KAFKA_LISTEN")]
    pub kafka_listen: Option<SocketAddr>,
    /// host:port clients are told to connect to.
    #[arg(long, env = "ZOMBI_KAFKA_ADVERTISED")]
    pub kafka_advertised: Option<String>,
    /// Address of the HTTP listener (health, metrics, events API, admin views, web console).
    #[arg(long, env = "ZOMBI_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Largest HTTP request body accepted (the events API's produce routes).
    #[arg(long, env = "ZOMBI_HTTP_REQUEST_MAX_BYTES")]
    pub http_request_max_bytes: Option<usize>,
    /// Most HTTP connections served at once; more are answered 503 and closed.
    #[arg(long, env = "ZOMBI_HTTP_CONNECTIONS_MAX")]
    pub http_connections_max: Option<usize>,
    /// How long an HTTP client has to send a request's header, counted from when the server waits
    /// for it (a new connection, or the next request on a kept-alive one).
    #[arg(long, env = "ZOMBI_HTTP_HEADER_READ_TIMEOUT_MS")]
    pub http_header_read_timeout_ms: Option<u64>,
    /// An HTTP connection with no bytes read or written for this long is closed (a stalled body
    /// upload, a client that stopped reading its response).
    #[arg(long, env = "ZOMBI_HTTP_IDLE_TIMEOUT_MS")]
    pub http_idle_timeout_ms: Option<u64>,
    /// Largest size a stored record batch may decompress to when the broker decodes it (HTTP
    /// reads, the Iceberg sink, ListOffsets by time, key checks of compacted topics).
    #[arg(long, env = "ZOMBI_RECORD_BATCH_DECOMPRESSED_MAX_BYTES")]
    pub record_batch_decompressed_max_bytes: Option<usize>,
    /// Create unknown topics on Metadata and Produce requests.
    #[arg(long, env = "ZOMBI_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partition count of auto-created topics and of CreateTopics with -1.
    #[arg(long, env = "ZOMBI_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// `fsync` (per group commit) or `periodic`.
    #[arg(long, env = "ZOMBI_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Interval of the WAL fsync with `--durability periodic`.
    #[arg(long, env = "ZOMBI_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    #[arg(long = "socket-request-max-bytes", env = "ZOMBI_SOCKET_REQUEST_MAX_BYTES")]
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: Option<usize>,
    /// Default `max.message.bytes` of topics (largest record batch).
    #[arg(long = "message-max-bytes", env = "ZOMBI_MESSAGE_MAX_BYTES")]
    #[serde(rename = "message.max.bytes")]
    pub message_max_bytes: Option<i32>,
    /// Default `retention.ms` of topics (-1: forever).
    #[arg(long = "log-retention-ms", env = "ZOMBI_LOG_RETENTION_MS")]
    #[serde(rename = "log.retention.ms")]
    pub log_retention_ms: Option<i64>,
    /// Default `retention.bytes` of each partition (-1: unlimited).
    #[arg(long = "log-retention-bytes", env = "ZOMBI_LOG_RETENTION_BYTES")]
    #[serde(rename = "log.retention.bytes")]
    pub log_retention_bytes: Option<i64>,
    /// How often retention is enforced.
    #[arg(long, env = "ZOMBI_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Most client connections served at once.
    #[arg(long, env = "ZOMBI_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// How long an empty group waits for more members before its first rebalance.
    #[arg(long = "group-initial-rebalance-delay-ms", env = "ZOMBI_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a group member may ask for.
    #[arg(long = "group-min-session-timeout-ms", env = "ZOMBI_GROUP_MIN_SESSION_TIMEOUT_MS")]
    #[serde(rename = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a group member may ask for.
    #[arg(long = "group-max-session-timeout-ms", env = "ZOMBI_GROUP_MAX_SESSION_TIMEOUT_MS")]
    #[serde(rename = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// How long committed offsets of an empty group are kept.
    #[arg(long = "offsets-retention-minutes", env = "ZOMBI_OFFSETS_RETENTION_MINUTES")]
    #[serde(rename = "offsets.retention.minutes")]
    pub offsets_retention_minutes: Option<i64>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "ZOMBI_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Where the log's segments go: `file://DIR` (default `file://<data-dir>/objects`) or
    /// `s3://BUCKET/PREFIX` (credentials from the standard AWS environment and profile chain).
    #[arg(long, env = "ZOMBI_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Endpoint of an S3-compatible server (path-style addressing), e.g. `http://127.0.0.1:9000`.
    #[arg(long, env = "ZOMBI_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// AWS region of the bucket (default: from the AWS environment or profile).
    #[arg(long, env = "ZOMBI_S3_REGION")]
    pub s3_region: Option<String>,
    /// Default `segment.bytes`: upload a partition's tail once it holds this many bytes.
    #[arg(long = "log-segment-bytes", env = "ZOMBI_LOG_SEGMENT_BYTES")]
    #[serde(rename = "log.segment.bytes")]
    pub log_segment_bytes: Option<i64>,
    /// Default `segment.ms`: upload a partition's tail once its oldest record waited this long.
    #[arg(long = "log-roll-ms", env = "ZOMBI_LOG_ROLL_MS")]
    #[serde(rename = "log.roll.ms")]
    pub log_roll_ms: Option<i64>,
    /// Default `local.retention.ms`: how long uploaded records stay in the hot tier too (-2: as
    /// `retention.ms`).
    #[arg(long = "log-local-retention-ms", env = "ZOMBI_LOG_LOCAL_RETENTION_MS")]
    #[serde(rename = "log.local.retention.ms")]
    pub log_local_retention_ms: Option<i64>,
    /// Default `local.retention.bytes` per partition (-2: as `retention.bytes`).
    #[arg(long = "log-local-retention-bytes", env = "ZOMBI_LOG_LOCAL_RETENTION_BYTES")]
    #[serde(rename = "log.local.retention.bytes")]
    pub log_local_retention_bytes: Option<i64>,
    /// Default `remote.storage.enable` of topics: upload their logs to the object store.
    #[arg(long = "remote-storage-enable", env = "ZOMBI_REMOTE_STORAGE_ENABLE")]
    #[serde(rename = "remote.storage.enable")]
    pub remote_storage_enable: Option<bool>,
    /// How often the flusher looks for work (uploads, local trims, remote deletes).
    #[arg(long = "remote-log-manager-task-interval-ms", env = "ZOMBI_REMOTE_LOG_MANAGER_TASK_INTERVAL_MS")]
    #[serde(rename = "remote.log.manager.task.interval.ms")]
    pub remote_log_manager_task_interval_ms: Option<u64>,
    /// Memory for segments read back from the object store.
    #[arg(long = "remote-fetch-cache-bytes", env = "ZOMBI_REMOTE_FETCH_CACHE_BYTES")]
    pub remote_fetch_cache_bytes: Option<usize>,
    /// Iceberg catalog: `sqlite://PATH` (default `sqlite://<data-dir>/iceberg/catalog.db`) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (also `postgresql://`). REST catalogs are not
    /// built yet.
    #[arg(long, env = "ZOMBI_ICEBERG_CATALOG")]
    pub iceberg_catalog: Option<String>,
    /// Where tables' data and metadata files go: `file:///DIR` or `s3://BUCKET/PATH` (default
    /// `s3://BUCKET/PREFIX/iceberg/warehouse` when `--object-store` is S3, else
    /// `file://<data-dir>/iceberg/warehouse`). S3 uses `--s3-endpoint` and `--s3-region`.
    #[arg(long, env = "ZOMBI_ICEBERG_WAREHOUSE")]
    pub iceberg_warehouse: Option<String>,
    /// Partition spec of newly created tables: `day` (default, day(timestamp)), `hour`, `month`,
    /// `partition` (identity on the Kafka partition) or `none`. Existing tables keep theirs.
    #[arg(long, env = "ZOMBI_ICEBERG_PARTITION_BY")]
    pub iceberg_partition_by: Option<String>,
    /// Namespace of the topics' tables.
    #[arg(long, env = "ZOMBI_ICEBERG_NAMESPACE")]
    pub iceberg_namespace: Option<String>,
    /// How often each table gets a commit of what was produced since the last one (freshness).
    #[arg(long, env = "ZOMBI_ICEBERG_COMMIT_INTERVAL_MS")]
    pub iceberg_commit_interval_ms: Option<u64>,
    /// Size at which a data file is closed and the next begun; one commit of a table takes in at
    /// most four times this in record bytes (a backlog is committed in several).
    #[arg(long, env = "ZOMBI_ICEBERG_TARGET_FILE_BYTES")]
    pub iceberg_target_file_bytes: Option<usize>,
    /// Default of the topic config `zombi.iceberg.enable`: keep an Iceberg table of every topic.
    #[arg(long, env = "ZOMBI_ICEBERG_ENABLE")]
    pub iceberg_enable: Option<bool>,
    /// How often each table is compacted, its old snapshots expired and unreferenced files
    /// removed (0: never).
    #[arg(long, env = "ZOMBI_ICEBERG_COMPACTION_INTERVAL_MS")]
    pub iceberg_compaction_interval_ms: Option<u64>,
    /// Small files of one size tier in one table partition that are rewritten together.
    #[arg(long, env = "ZOMBI_ICEBERG_COMPACTION_MIN_FILES")]
    pub iceberg_compaction_min_files: Option<usize>,
    /// Snapshots older than this are expired (the current one never is).
    #[arg(long, env = "ZOMBI_ICEBERG_SNAPSHOT_MAX_AGE_MS")]
    pub iceberg_snapshot_max_age_ms: Option<u64>,
    /// Files in a table's directories that no snapshot references are deleted once this old.
    #[arg(long, env = "ZOMBI_ICEBERG_ORPHAN_MIN_AGE_MS")]
    pub iceberg_orphan_min_age_ms: Option<u64>,
    /// The shared write-ahead log: `file://DIR` or `s3://BUCKET/PREFIX`. With it a produce is
    /// acknowledged only once this store holds its batch, and the local disk is a cache.
    #[arg(long, env = "ZOMBI_WAL_STORE")]
    pub wal_store: Option<String>,
    /// Least time between the starts of two write-ahead log objects (bounds PUTs per hour).
    #[arg(long, env = "ZOMBI_WAL_INTERVAL_MS")]
    pub wal_interval_ms: Option<u64>,
    /// A write-ahead log object is started as soon as this many bytes have gathered.
    #[arg(long, env = "ZOMBI_WAL_BYTES_MAX")]
    pub wal_bytes_max: Option<usize>,
    /// How long the write-ahead log writer keeps one stream before sealing it and starting the
    /// next (older streams' objects are deleted once in segments).
    #[arg(long, env = "ZOMBI_WAL_STREAM_ROLL_MS")]
    pub wal_stream_roll_ms: Option<u64>,
    /// Cluster mode: the PostgreSQL that coordinates the brokers sharing `--object-store`
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`). Needs `--wal-store`.
    #[arg(long, env = "ZOMBI_COORDINATOR")]
    pub coordinator: Option<String>,
    /// This broker's rack (Kafka's `broker.rack`): leadership spreads over racks.
    #[arg(long = "broker-rack", env = "ZOMBI_BROKER_RACK")]
    #[serde(rename = "broker.rack", alias = "broker-rack")]
    pub broker_rack: Option<String>,
    /// A broker whose lease was not renewed for this long is dead to the controller (Kafka's
    /// `broker.session.timeout.ms`).
    #[arg(long = "broker-session-timeout-ms", env = "ZOMBI_BROKER_SESSION_TIMEOUT_MS")]
    #[serde(rename = "broker.session.timeout.ms", alias = "broker-session-timeout-ms")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often a broker renews its lease (Kafka's `broker.heartbeat.interval.ms`).
    #[arg(long = "broker-heartbeat-interval-ms", env = "ZOMBI_BROKER_HEARTBEAT_INTERVAL_MS")]
    #[serde(rename = "broker.heartbeat.interval.ms", alias = "broker-heartbeat-interval-ms")]
    pub broker_heartbeat_interval_ms: Option<u64>,
}

/// The resolved configuration: every value present, every limit with its unit.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub node_id: i32,
    pub cluster_id: Option<String>,
    pub kafka_listen: SocketAddr,
    pub kafka_advertised_host: String,
    pub kafka_advertised_port: i32,
    /// Whether the advertised address was given (else it follows the bound listener).
    pub kafka_advertised_explicit: bool,
    pub http_listen: SocketAddr,
    /// Largest HTTP request body (413 above it).
    pub http_request_bytes_max: usize,
    /// Most HTTP connections served at once (more are answered 503 and closed).
    pub http_connections_max: usize,
    /// Time to receive a request's header, from when the server starts waiting for it.
    pub http_header_read_timeout_ms: u64,
    /// Time without a byte read or written after which an HTTP connection is closed.
    pub http_idle_timeout_ms: u64,
    /// Largest decompressed size of a stored batch the broker decodes (see `log::records`).
    pub record_batch_decompressed_bytes_max: usize,
    /// Most records one `GET /events/{topic}` returns.
    pub http_read_records_max: usize,
    /// Most batch bytes one `GET /events/{topic}` reads from the log.
    pub http_read_bytes_max: usize,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub durability: Durability,
    pub fsync_interval_ms: u64,
    pub socket_request_max_bytes: usize,
    pub message_max_bytes: i32,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub retention_check_interval_ms: u64,
    pub connections_max: usize,
    pub log_format: String,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub offsets_retention_ms: i64,
    /// Members a group may have (Kafka's `group.max.size`).
    pub group_members_max: usize,
    /// How often committed offsets are checked for expiry (Kafka's
    /// `offsets.retention.check.interval.ms`); group sessions and rebalances have exact timers.
    pub offsets_retention_check_interval_ms: u64,
    /// Bytes of requests read but not yet answered, over all connections (Kafka's
    /// `queued.max.request.bytes`): bounds the memory a burst of large produce requests can take.
    pub queued_request_bytes_max: usize,
    /// Requests read ahead on one connection while earlier ones are still being answered.
    pub requests_in_flight_per_connection_max: usize,
    /// Appends waiting for the group-commit writer.
    pub append_queue_max: usize,
    /// Bytes one group commit gathers before it writes.
    pub group_commit_bytes_max: usize,
    /// Longest time a Fetch may wait (caps the client's max_wait_ms).
    pub fetch_wait_ms_max: u64,
    /// Largest fetch response (Kafka's `fetch.max.bytes`, 55 MiB), whatever the client asks for.
    pub fetch_bytes_max: usize,
    /// RocksDB memtable size and count: bounds the hot tier's write memory.
    pub memtable_bytes: usize,
    pub memtables_max: i32,
    /// RocksDB block cache for reads.
    pub block_cache_bytes: usize,
    /// Pace of RocksDB's own writes (memtable flushes, compactions).
    pub background_write_bytes_per_second: i64,
    /// Partitions a topic may have.
    pub partitions_per_topic_max: i32,
    pub object_store: Location,
    pub s3: S3Options,
    pub log_segment_bytes: i64,
    pub log_roll_ms: i64,
    pub log_local_retention_ms: i64,
    pub log_local_retention_bytes: i64,
    pub remote_storage_enable: bool,
    pub remote_task_interval_ms: u64,
    pub remote_fetch_cache_bytes: usize,
    /// Segments uploaded (or read back) at once.
    pub remote_requests_max: usize,
    pub iceberg: iceberg_settings::IcebergSettings,
    /// The shared write-ahead log, when `--wal-store` is given.
    pub wal: Option<WalConfig>,
    /// Cluster mode, when `--coordinator` is given.
    pub coordinator: Option<ClusterConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads flags and environment, then the TOML file they name, and resolves defaults.
    pub fn from_args() -> Result<Self, ConfigError> {
        let cli = Settings::parse();
        let file = match &cli.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<Settings>(&text)
                    .map_err(|source| ConfigError::Parse { path: path.clone(), source: Box::new(source) })?
            }
            None => Settings::default(),
        };
        Self::resolve(cli, file)
    }

    /// The defaults with `data_dir` and `durability` (tests and benchmarks).
    pub fn for_tests(data_dir: &std::path::Path, durability: Durability) -> Result<Self, ConfigError> {
        let settings =
            Settings { data_dir: Some(data_dir.to_path_buf()), durability: Some(durability), ..Settings::default() };
        Self::resolve(settings, Settings::default())
    }

    /// Merges two layers (the first wins) over the defaults and checks the result.
    pub fn resolve(first: Settings, second: Settings) -> Result<Self, ConfigError> {
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                first.$field.or(second.$field).unwrap_or_else(|| $default)
            };
        }
        let kafka_listen = pick!(kafka_listen, SocketAddr::from(([0, 0, 0, 0], 9092)));
        let advertised = first.kafka_advertised.or(second.kafka_advertised);
        let kafka_advertised_explicit = advertised.is_some();
        let (kafka_advertised_host, kafka_advertised_port) = advertised_address(kafka_listen, advertised)?;
        let data_dir = pick!(data_dir, PathBuf::from("./data"));
        let object_store = match first.object_store.or(second.object_store) {
            Some(text) => {
                Location::parse(&text).map_err(|reason| ConfigError::Invalid { name: "object-store", reason })?
            }
            None => Location::Directory(data_dir.join("objects")),
        };
        let s3 = S3Options {
            endpoint: first.s3_endpoint.or(second.s3_endpoint),
            region: first.s3_region.or(second.s3_region),
        };
        let iceberg_defaults = iceberg_settings::IcebergFlags::default();
        // In a cluster, the tables are shared: their catalog defaults to the coordinator's
        // PostgreSQL, and their warehouse to the shared object store even when it is a directory.
        let coordinator_url = first.coordinator.clone().or_else(|| second.coordinator.clone());
        let shared_warehouse = match (&coordinator_url, &object_store) {
            (Some(_), Location::Directory(dir)) => {
                Some(format!("file://{}", iceberg_settings::absolute(dir).join("iceberg").join("warehouse").display()))
            }
            _ => None,
        };
        let iceberg_flags = iceberg_settings::IcebergFlags {
            catalog: first.iceberg_catalog.or(second.iceberg_catalog).or(coordinator_url),
            warehouse: first.iceberg_warehouse.or(second.iceberg_warehouse).or(shared_warehouse),
            namespace: pick!(iceberg_namespace, iceberg_defaults.namespace),
            commit_interval_ms: pick!(iceberg_commit_interval_ms, iceberg_defaults.commit_interval_ms),
            target_file_bytes: pick!(iceberg_target_file_bytes, iceberg_defaults.target_file_bytes),
            enable: pick!(iceberg_enable, iceberg_defaults.enable),
            partition_by: first.iceberg_partition_by.or(second.iceberg_partition_by),
        };
        let iceberg = iceberg_settings::IcebergSettings::resolve(&data_dir, iceberg_flags, &object_store, &s3)
            .and_then(|settings| {
                let defaults = iceberg_settings::MaintenanceSettings::default();
                settings.with_maintenance(iceberg_settings::MaintenanceSettings {
                    interval_ms: pick!(iceberg_compaction_interval_ms, defaults.interval_ms),
                    min_files: pick!(iceberg_compaction_min_files, defaults.min_files),
                    snapshot_max_age_ms: pick!(iceberg_snapshot_max_age_ms, defaults.snapshot_max_age_ms),
                    orphan_min_age_ms: pick!(iceberg_orphan_min_age_ms, defaults.orphan_min_age_ms),
                })
            })
            .map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
        let wal = match first.wal_store.or(second.wal_store) {
            Some(text) => {
                let store =
                    Location::parse(&text).map_err(|reason| ConfigError::Invalid { name: "wal-store", reason })?;
                let wal = WalConfig {
                    store,
                    interval_ms: pick!(wal_interval_ms, wal::WAL_INTERVAL_MS_DEFAULT),
                    bytes_max: pick!(wal_bytes_max, wal::WAL_BYTES_MAX_DEFAULT),
                    stream_roll_ms: pick!(wal_stream_roll_ms, wal::WAL_STREAM_ROLL_MS_DEFAULT),
                };
                wal.validate().map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
                Some(wal)
            }
            None => None,
        };
        let coordinator = match first.coordinator.or(second.coordinator) {
            Some(coordinator_url) => {
                let cluster = ClusterConfig {
                    coordinator_url,
                    rack: first.broker_rack.or(second.broker_rack),
                    session_timeout_ms: pick!(broker_session_timeout_ms, cluster::SESSION_TIMEOUT_MS_DEFAULT),
                    heartbeat_interval_ms: pick!(broker_heartbeat_interval_ms, cluster::HEARTBEAT_INTERVAL_MS_DEFAULT),
                };
                cluster.validate().map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
                if wal.is_none() {
                    let reason = "cluster mode needs --wal-store: no acknowledged record may live on one disk only";
                    return Err(ConfigError::Invalid { name: "coordinator", reason: reason.into() });
                }
                Some(cluster)
            }
            None => None,
        };
        let with_wal = wal.is_some();
        let config = Config {
            coordinator,
            wal,
            iceberg,
            object_store,
            s3,
            log_segment_bytes: pick!(log_segment_bytes, 64 * 1024 * 1024),
            log_roll_ms: pick!(log_roll_ms, 600_000),
            log_local_retention_ms: pick!(log_local_retention_ms, 600_000),
            log_local_retention_bytes: pick!(log_local_retention_bytes, -2),
            remote_storage_enable: pick!(remote_storage_enable, true),
            remote_task_interval_ms: pick!(remote_log_manager_task_interval_ms, 1000),
            remote_fetch_cache_bytes: pick!(remote_fetch_cache_bytes, 256 * 1024 * 1024),
            remote_requests_max: 4,
            data_dir,
            node_id: pick!(node_id, 0),
            cluster_id: first.cluster_id.or(second.cluster_id),
            kafka_listen,
            kafka_advertised_host,
            kafka_advertised_port,
            kafka_advertised_explicit,
            http_listen: pick!(http_listen, SocketAddr::from(([0, 0, 0, 0], 8080))),
            http_request_bytes_max: pick!(http_request_max_bytes, 8 * 1024 * 1024),
            http_connections_max: pick!(http_connections_max, 1024),
            http_header_read_timeout_ms: pick!(http_header_read_timeout_ms, 10_000),
            http_idle_timeout_ms: pick!(http_idle_timeout_ms, 60_000),
            record_batch_decompressed_bytes_max: pick!(record_batch_decompressed_max_bytes, 64 * 1024 * 1024),
            http_read_records_max: 1000,
            http_read_bytes_max: 4 * 1024 * 1024,
            auto_create_topics: pick!(auto_create_topics, true),
            num_partitions: pick!(num_partitions, 1),
            durability: pick!(durability, Durability::Fsync),
            fsync_interval_ms: pick!(fsync_interval_ms, 50),
            socket_request_max_bytes: pick!(socket_request_max_bytes, 100 * 1024 * 1024),
            message_max_bytes: pick!(message_max_bytes, 1_048_588),
            log_retention_ms: pick!(log_retention_ms, 7 * 24 * 3600 * 1000),
            log_retention_bytes: pick!(log_retention_bytes, -1),
            retention_check_interval_ms: pick!(retention_check_interval_ms, 30_000),
            connections_max: pick!(connections_max, 4096),
            log_format: pick!(log_format, "text".to_string()),
            group_initial_rebalance_delay_ms: pick!(group_initial_rebalance_delay_ms, 3000),
            group_min_session_timeout_ms: pick!(group_min_session_timeout_ms, 6000),
            group_max_session_timeout_ms: pick!(group_max_session_timeout_ms, 1_800_000),
            offsets_retention_ms: pick!(offsets_retention_minutes, 10_080).saturating_mul(60_000),
            group_members_max: 1000,
            offsets_retention_check_interval_ms: 600_000,
            // With a write-ahead log a produce waits up to --wal-interval-ms for its object, so
            // a client pipelining small requests needs many in flight to keep its rate; memory
            // stays bounded by queued_request_bytes_max, which every pending request holds a
            // share of.
            requests_in_flight_per_connection_max: if with_wal { 1024 } else { 64 },
            queued_request_bytes_max: 96 * 1024 * 1024,
            append_queue_max: 4096,
            group_commit_bytes_max: 16 * 1024 * 1024,
            fetch_wait_ms_max: 30_000,
            fetch_bytes_max: 55 * 1024 * 1024,
            memtable_bytes: 32 * 1024 * 1024,
            memtables_max: 3,
            block_cache_bytes: 32 * 1024 * 1024,
            background_write_bytes_per_second: 256 * 1024 * 1024,
            partitions_per_topic_max: 10_000,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| Err(ConfigError::Invalid { name, reason: reason.to_string() });
        if self.num_partitions < 1 || self.num_partitions > self.partitions_per_topic_max {
            let reason = format!("must be between 1 and {}", self.partitions_per_topic_max);
            return invalid("num-partitions", &reason);
        }
        if self.node_id < 0 {
            return invalid("node-id", "must not be negative");
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize {
            return invalid("socket.request.max.bytes", "must be between 1024 and 2147483647");
        }
        if self.message_max_bytes < 64 {
            return invalid("message.max.bytes", "must be at least 64");
        }
        if self.http_request_bytes_max < 1024 {
            return invalid("http-request-max-bytes", "must be at least 1024");
        }
        if self.http_connections_max == 0 {
            return invalid("http-connections-max", "must be at least 1");
        }
        if self.http_header_read_timeout_ms == 0 || self.http_idle_timeout_ms == 0 {
            return invalid("http-*-timeout-ms", "must be at least 1");
        }
        if self.record_batch_decompressed_bytes_max < self.message_max_bytes.max(0) as usize {
            return invalid("record-batch-decompressed-max-bytes", "must be at least message.max.bytes");
        }
        if self.connections_max == 0 {
            return invalid("connections-max", "must be at least 1");
        }
        if self.log_format != "text" && self.log_format != "json" {
            return invalid("log-format", "must be text or json");
        }
        if self.log_segment_bytes < 14 || self.log_segment_bytes > i64::from(i32::MAX) {
            return invalid("log.segment.bytes", "must be between 14 and 2147483647");
        }
        if self.log_roll_ms < 1 {
            return invalid("log.roll.ms", "must be at least 1");
        }
        if self.log_local_retention_ms < -2 || self.log_local_retention_bytes < -2 {
            return invalid("log.local.retention.*", "must be -2 (as retention), -1 (unlimited) or more");
        }
        if self.remote_task_interval_ms == 0 {
            return invalid("remote.log.manager.task.interval.ms", "must be at least 1");
        }
        if self.durability == Durability::Periodic && self.fsync_interval_ms == 0 {
            return invalid("fsync-interval-ms", "must be at least 1");
        }
        Ok(())
    }
}

/// The advertised address defaults to the listen address, with an unspecified IP made loopback.
fn advertised_address(listen: SocketAddr, advertised: Option<String>) -> Result<(String, i32), ConfigError> {
    let Some(text) = advertised else {
        let ip = match listen.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        return Ok((ip.to_string(), i32::from(listen.port())));
    };
    let invalid = |reason: &str| ConfigError::Invalid { name: "kafka-advertised", reason: reason.to_string() };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("expected host:port"))?;
    let port: u16 = port.parse().map_err(|_| invalid("port must be a number from 1 to 65535"))?;
    if host.is_empty() || port == 0 {
        return Err(invalid("expected host:port"));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && (ip.is_unspecified() || ip.is_ipv6())
    {
        return Err(invalid("must be an IPv4 literal or a host name clients can resolve"));
    }
    Ok((host.to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let cli = Settings { num_partitions: Some(4), ..Settings::default() };
        let file = Settings { num_partitions: Some(2), node_id: Some(7), ..Settings::default() };
        let config = Config::resolve(cli, file).expect("valid");
        assert_eq!(config.num_partitions, 4);
        assert_eq!(config.node_id, 7);
        assert_eq!(config.kafka_advertised_host, "127.0.0.1");
        assert_eq!(config.kafka_advertised_port, 9092);
    }

    #[test]
    fn file_uses_kafka_names() {
        let file: Settings = toml::from_str("\"socket.request.max.bytes\" = 2048\ndata-dir = \"/x\"").expect("parses");
        assert_eq!(file.socket_request_max_bytes, Some(2048));
        assert!(toml::from_str::<Settings>("bogus = 1").is_err());
    }

    #[test]
    fn iceberg_defaults_live_in_the_data_dir_and_rest_catalogs_are_refused() {
        use super::iceberg_settings::{CatalogLocation, PartitionBy};
        let cli = Settings { data_dir: Some(PathBuf::from("/d")), ..Settings::default() };
        let config = Config::resolve(cli, Settings::default()).expect("valid");
        assert_eq!(config.iceberg.catalog, CatalogLocation::Sqlite(PathBuf::from("/d/iceberg/catalog.db")));
        assert_eq!(config.iceberg.warehouse, "file:///d/iceberg/warehouse");
        assert_eq!((config.iceberg.namespace.as_str(), config.iceberg.commit_interval_ms), ("zombi", 60_000));
        assert_eq!(config.iceberg.partition_by, PartitionBy::Day);
        for catalog in ["https://rest", "mysql://x", "postgres://", "postgres:///db"] {
            let cli = Settings { iceberg_catalog: Some(catalog.into()), ..Settings::default() };
            assert!(Config::resolve(cli, Settings::default()).is_err(), "{catalog}");
        }
        for warehouse in ["s3://", "http://x/w", "/relative/without/scheme", "file://relative"] {
            let cli = Settings { iceberg_warehouse: Some(warehouse.into()), ..Settings::default() };
            assert!(Config::resolve(cli, Settings::default()).is_err(), "{warehouse}");
        }
    }

    #[test]
    fn postgres_catalogs_never_show_their_password() {
        use super::iceberg_settings::CatalogLocation;
        for url in ["postgres://zombi:s3cr3t@postgres:5432/zombi", "postgresql://zombi:s3cr3t@db/zombi?sslmode=disable"]
        {
            let cli = Settings { iceberg_catalog: Some(url.into()), ..Settings::default() };
            let config = Config::resolve(cli, Settings::default()).expect("valid");
            assert_eq!(config.iceberg.catalog, CatalogLocation::Postgres(url.into()));
            assert_eq!(config.iceberg.catalog.uri(), url, "sqlx gets the URL as given");
            let shown = [config.iceberg.catalog.to_string(), format!("{:?}", config.iceberg), format!("{config:?}")];
            for text in shown {
                assert!(!text.contains("s3cr3t"), "{text}");
                assert!(text.contains("zombi:***@"), "{text}");
            }
        }
        let location = CatalogLocation::parse("postgres://u@h/db?password=p%40ss&application_name=z").unwrap();
        assert_eq!(location.to_string(), "postgres://u@h/db?password=***&application_name=z");
        assert_eq!(CatalogLocation::parse("postgres://h:5432/db").unwrap().to_string(), "postgres://h:5432/db");
        let odd = CatalogLocation::parse("postgres://u:pa/ss@w@ord@h:5432/db").unwrap().to_string();
        assert_eq!(odd, "postgres://u:***@h:5432/db");
        let refused = CatalogLocation::parse("mysql://u:hidden@h/db").unwrap_err();
        assert!(!refused.contains("hidden"), "{refused}");
    }

    #[test]
    fn the_warehouse_follows_an_s3_object_store() {
        let s3 = |object_store: &str, warehouse: Option<&str>| {
            let cli = Settings {
                object_store: Some(object_store.into()),
                iceberg_warehouse: warehouse.map(str::to_string),
                s3_endpoint: Some("http://127.0.0.1:9000".into()),
                ..Settings::default()
            };
            Config::resolve(cli, Settings::default()).expect("valid").iceberg
        };
        assert_eq!(s3("s3://logs/prod/", None).warehouse, "s3://logs/prod/iceberg/warehouse");
        assert_eq!(s3("s3://logs", None).warehouse, "s3://logs/iceberg/warehouse");
        assert_eq!(s3("s3://logs", None).s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3("s3://logs", Some("s3://lake/tables/")).warehouse, "s3://lake/tables");
        assert_eq!(s3("s3://logs", Some("file:///w")).warehouse, "file:///w");
        let local = s3("file:///objects", None).warehouse;
        assert!(local.starts_with("file:///") && local.ends_with("/data/iceberg/warehouse"), "{local}");
    }

    #[test]
    fn partition_specs_parse_by_name() {
        use super::iceberg_settings::PartitionBy;
        let by = |text: &str| {
            let cli = Settings { iceberg_partition_by: Some(text.into()), ..Settings::default() };
            Config::resolve(cli, Settings::default()).map(|c| c.iceberg.partition_by)
        };
        let named = [
            ("day", PartitionBy::Day),
            ("hour", PartitionBy::Hour),
            ("month", PartitionBy::Month),
            ("partition", PartitionBy::Partition),
            ("none", PartitionBy::None),
        ];
        for (text, expected) in named {
            assert_eq!(by(text).expect(text), expected);
        }
        for bad in ["", "Day", "week", "day(timestamp)"] {
            assert!(by(bad).is_err(), "{bad:?}");
        }
        let file: Settings = toml::from_str("iceberg-partition-by = \"hour\"").expect("parses");
        assert_eq!(file.iceberg_partition_by.as_deref(), Some("hour"));
    }

    /// Cluster mode needs a write-ahead log (no acknowledged record on one disk only); its
    /// Iceberg tables are shared: the catalog is the coordinator's PostgreSQL and the warehouse
    /// is in the shared object store, unless set; no password shows.
    #[test]
    fn cluster_mode_needs_the_write_ahead_log_and_shares_its_tables() {
        let coordinator = Some("postgres://z:hidden@127.0.0.1:5432/z".to_string());
        let without_wal = Settings { coordinator: coordinator.clone(), ..Settings::default() };
        assert!(Config::resolve(without_wal, Settings::default()).is_err());
        let cluster = || Settings {
            coordinator: coordinator.clone(),
            wal_store: Some("file:///w".into()),
            object_store: Some("file:///shared/bucket".into()),
            ..Settings::default()
        };
        let config = Config::resolve(cluster(), Settings::default()).expect("valid");
        assert!(config.iceberg.enable);
        assert_eq!(config.iceberg.catalog.uri(), "postgres://z:hidden@127.0.0.1:5432/z");
        assert_eq!(config.iceberg.warehouse, "file:///shared/bucket/iceberg/warehouse");
        assert!(!format!("{config:?}").contains("hidden"));
        let own_catalog = Settings { iceberg_catalog: Some("sqlite:///c.db".into()), ..cluster() };
        let config = Config::resolve(own_catalog, Settings::default()).expect("valid");
        assert!(config.iceberg.catalog.uri().starts_with("sqlite:///c.db"));
        let single = Config::resolve(Settings::default(), Settings::default()).expect("valid");
        assert!(single.iceberg.enable && single.coordinator.is_none() && single.wal.is_none());
    }

    #[test]
    fn advertised_rejects_unspecified_and_bad_ports() {
        let listen = SocketAddr::from(([0, 0, 0, 0], 9092));
        assert!(advertised_address(listen, Some("0.0.0.0:9092".into())).is_err());
        assert!(advertised_address(listen, Some("host:0".into())).is_err());
        assert!(advertised_address(listen, Some("host".into())).is_err());
        assert_eq!(
            advertised_address(listen, Some("kafka.local:19092".into())).expect("ok"),
            ("kafka.local".into(), 19092)
        );
    }
}
