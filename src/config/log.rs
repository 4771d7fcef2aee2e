//! The log: durability of the hot tier, retention, what topics get by default, and the limits of
//! the writer and of RocksDB.

use super::ConfigError;

/// Partitions a topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// How the hot tier makes appends durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// fsync the RocksDB WAL once per group commit, before acknowledging: survives power loss.
    Fsync,
    /// Write the WAL to the OS on every group commit and fsync it every `fsync_interval_ms`:
    /// survives `kill -9` of the broker; a power loss may lose the last interval.
    Periodic,
}

/// The flags' help, defaults and TOML keys are their rows in `definitions.rs`; the defaults of
/// topics (`retention_ms` …) are Kafka's `log.*` broker configs.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Log")]
pub struct LogConfig {
    #[arg(long = "durability", env = "ZOMBI_DURABILITY", value_enum)]
    pub durability: Durability,
    #[arg(long = "fsync-interval-ms", env = "ZOMBI_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: u64,
    #[arg(long = "auto-create-topics", env = "ZOMBI_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    #[arg(long = "num-partitions", env = "ZOMBI_NUM_PARTITIONS")]
    pub num_partitions: i32,
    #[arg(long = "message-max-bytes", env = "ZOMBI_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: i32,
    #[arg(long = "log-retention-ms", env = "ZOMBI_LOG_RETENTION_MS")]
    pub retention_ms: i64,
    #[arg(long = "log-retention-bytes", env = "ZOMBI_LOG_RETENTION_BYTES")]
    pub retention_bytes: i64,
    #[arg(long = "retention-check-interval-ms", env = "ZOMBI_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: u64,
    #[arg(long = "producer-id-expiration-ms", env = "ZOMBI_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: i64,
    #[arg(long = "log-segment-bytes", env = "ZOMBI_LOG_SEGMENT_BYTES")]
    pub segment_bytes: i64,
    #[arg(long = "log-roll-ms", env = "ZOMBI_LOG_ROLL_MS")]
    pub roll_ms: i64,
    #[arg(long = "log-local-retention-ms", env = "ZOMBI_LOG_LOCAL_RETENTION_MS")]
    pub local_retention_ms: i64,
    #[arg(long = "log-local-retention-bytes", env = "ZOMBI_LOG_LOCAL_RETENTION_BYTES")]
    pub local_retention_bytes: i64,
    #[arg(long = "remote-storage-enable", env = "ZOMBI_REMOTE_STORAGE_ENABLE", action = clap::ArgAction::Set)]
    pub remote_storage_enable: bool,
    /// Largest decompressed size of a stored batch the broker decodes (see `log::records`).
    #[arg(long = "record-batch-decompressed-max-bytes", env = "ZOMBI_RECORD_BATCH_DECOMPRESSED_MAX_BYTES")]
    pub record_batch_decompressed_bytes_max: usize,
    /// Appends waiting for the group-commit writer.
    #[arg(skip = 4096_usize)]
    pub append_queue_max: usize,
    /// Bytes one group commit gathers before it writes.
    #[arg(skip = 16 * 1024 * 1024_usize)]
    pub group_commit_bytes_max: usize,
    /// RocksDB memtable size and count: bounds the hot tier's write memory. The size, the total
    /// (RocksDB's write buffer manager over every family) and the block cache are shares of
    /// `--memory-max-bytes` (`Config::resolve`).
    #[arg(skip)]
    pub memtable_bytes: usize,
    #[arg(skip = 3_i32)]
    pub memtables_max: i32,
    #[arg(skip)]
    pub memtables_total_bytes: usize,
    /// RocksDB block cache for reads.
    #[arg(skip)]
    pub block_cache_bytes: usize,
    /// Pace of RocksDB's own writes (memtable flushes, compactions).
    #[arg(skip = 256 * 1024 * 1024_i64)]
    pub background_write_bytes_per_second: i64,
    /// Partitions a topic may have.
    #[arg(skip = PARTITIONS_PER_TOPIC_MAX)]
    pub partitions_per_topic_max: i32,
}

impl LogConfig {
    /// The checks that span several settings (each one alone is checked by its row).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| Err(ConfigError::Invalid { name, reason: reason.to_string() });
        // AlterConfigs takes any non-negative message.max.bytes, as Kafka does; a broker does not
        // start with one too small for a batch header and a record.
        if self.message_max_bytes < 64 {
            return invalid("message-max-bytes", "must be at least 64");
        }
        if self.record_batch_decompressed_bytes_max < self.message_max_bytes.max(0) as usize {
            return invalid("record-batch-decompressed-max-bytes", "must be at least message.max.bytes");
        }
        if self.durability == Durability::Periodic && self.fsync_interval_ms == 0 {
            return invalid("fsync-interval-ms", "must be at least 1");
        }
        Ok(())
    }
}
