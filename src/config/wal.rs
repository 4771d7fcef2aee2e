//! The shared write-ahead log's settings (`--wal-*`): with `--wal-store`, a produce is
//! acknowledged only once the object store holds its batch (docs/wal.md).

use super::storage::Location;

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

pub const WAL_INTERVAL_MS_DEFAULT: u64 = 250;
pub const WAL_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
pub const WAL_STREAM_ROLL_MS_DEFAULT: u64 = 600_000;

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
