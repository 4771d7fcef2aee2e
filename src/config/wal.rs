//! The shared write-ahead log's settings (`--wal-*`): with `--wal-store`, a produce is
//! acknowledged only once the object store holds its batch (docs/wal.md).

use super::ConfigError;
use super::storage::Location;

/// The flags as given; the flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Write-ahead log")]
pub struct WalFlags {
    #[arg(long = "wal-store", env = "ZOMBI_WAL_STORE")]
    pub store: Option<String>,
    #[arg(long = "wal-interval-ms", env = "ZOMBI_WAL_INTERVAL_MS")]
    pub interval_ms: u64,
    #[arg(long = "wal-bytes-max", env = "ZOMBI_WAL_BYTES_MAX")]
    pub bytes_max: usize,
    #[arg(long = "wal-stream-roll-ms", env = "ZOMBI_WAL_STREAM_ROLL_MS")]
    pub stream_roll_ms: u64,
}

/// Where the write-ahead log goes and how it paces its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// `--wal-store`: `file://DIR` or `s3://BUCKET/PREFIX` (same S3 flags as the object store).
    pub store: Location,
    /// `--wal-interval-ms`: least time between the starts of two objects. It bounds the PUTs
    /// per hour (3,600,000 / interval at most, under load); an idle broker waits for nothing.
    pub interval_ms: u64,
    /// `--wal-bytes-max`: an object is started as soon as this many batch bytes have gathered.
    pub bytes_max: usize,
    /// `--wal-stream-roll-ms`: how long the writer keeps one stream before sealing it and
    /// claiming the next, so that the old one's objects can be deleted once in segments.
    pub stream_roll_ms: u64,
}

impl WalFlags {
    /// The write-ahead log, when `--wal-store` is given; its other flags are checked only then.
    pub(super) fn resolve(self) -> Result<Option<WalConfig>, ConfigError> {
        let Some(text) = self.store else { return Ok(None) };
        let store = Location::parse(&text).map_err(|reason| ConfigError::Invalid { name: "wal-store", reason })?;
        let wal = WalConfig {
            store,
            interval_ms: self.interval_ms,
            bytes_max: self.bytes_max,
            stream_roll_ms: self.stream_roll_ms,
        };
        wal.validate().map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
        Ok(Some(wal))
    }
}

impl WalConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval_ms == 0 {
            return Err(("wal-interval-ms", "must be at least 1".into()));
        }
        if self.bytes_max < 1024 {
            return Err(("wal-bytes-max", "must be at least 1024".into()));
        }
        if self.stream_roll_ms < 1000 {
            return Err(("wal-stream-roll-ms", "must be at least 1000".into()));
        }
        Ok(())
    }
}
