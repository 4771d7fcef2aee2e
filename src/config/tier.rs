//! The tier: where the object store is, and the remote log manager's pace.

use std::path::Path;

use super::storage::{Location, S3Options};
use super::{ConfigError, MemoryBudget};

/// The flags as given; the flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Tier (object store)")]
pub struct TierFlags {
    #[arg(long = "object-store", env = "ZOMBI_OBJECT_STORE")]
    pub object_store: Option<String>,
    #[arg(long = "s3-endpoint", env = "ZOMBI_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long = "s3-region", env = "ZOMBI_S3_REGION")]
    pub s3_region: Option<String>,
    #[arg(long = "remote-log-manager-task-interval-ms", env = "ZOMBI_REMOTE_LOG_MANAGER_TASK_INTERVAL_MS")]
    pub task_interval_ms: u64,
    #[arg(long = "remote-fetch-cache-bytes", env = "ZOMBI_REMOTE_FETCH_CACHE_BYTES")]
    pub fetch_cache_bytes: usize,
}

/// The object store and the remote log manager, resolved.
#[derive(Debug, Clone)]
pub struct TierConfig {
    pub object_store: Location,
    /// Endpoint and region of S3 (also used by an S3 write-ahead log and an S3 warehouse).
    pub s3: S3Options,
    /// How often the remote log manager looks for work.
    pub task_interval_ms: u64,
    /// Memory for segments read back from the object store.
    pub fetch_cache_bytes: usize,
    /// Segments uploaded (or read back) at once.
    pub requests_max: usize,
    /// Bytes of segments being uploaded at once (from `--memory-max-bytes`); a segment larger
    /// than this still goes, alone.
    pub upload_bytes_max: usize,
}

impl TierFlags {
    /// The object store defaults to `<data-dir>/objects`.
    pub(super) fn resolve(self, data_dir: &Path, budget: &MemoryBudget) -> Result<TierConfig, ConfigError> {
        let object_store = match self.object_store {
            Some(text) => {
                Location::parse(&text).map_err(|reason| ConfigError::Invalid { name: "object-store", reason })?
            }
            None => Location::Directory(data_dir.join("objects")),
        };
        Ok(TierConfig {
            object_store,
            s3: S3Options { endpoint: self.s3_endpoint, region: self.s3_region },
            task_interval_ms: self.task_interval_ms,
            fetch_cache_bytes: self.fetch_cache_bytes.min(budget.remote_fetch_cache),
            requests_max: 4,
            upload_bytes_max: budget.uploads,
        })
    }
}
