//! The commit log: where a group commit becomes durable before it is acknowledged.
//!
//! The writer assigns offsets, writes the group to the local store, and then hands the group's
//! batches to the commit log. Only when the commit log reports them durable do the high
//! watermarks move and the producers hear back. Two implementations:
//! - [`LocalCommitLog`]: the local store's own write (with its fsync, per `--durability`) is the
//!   durable copy, so a group is durable as soon as the store write returned;
//! - the shared write-ahead log in object storage (`crate::wal`), which acknowledges a group once
//!   the object holding it exists, so that no acknowledged record lives only on this disk.
//!
//! Completions arrive in the order groups were committed; a commit log that cannot make a group
//! durable fails it and every later one (its writer was fenced), never a group in the middle, so
//! the offsets a producer sees acknowledged stay dense.

use std::sync::Arc;

use bytes::Bytes;

use super::{LogError, Partition};

/// One partition's batches of a group commit, exactly as stored (offsets and leader epoch set).
#[derive(Debug, Clone)]
pub struct CommittedBatches {
    pub partition: Arc<Partition>,
    pub batches: Vec<Bytes>,
}

/// Why a group could not be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFailure {
    /// Another broker took over this broker's write-ahead log: it leads nothing any more.
    Fenced,
    /// The commit log is shutting down.
    Closed,
}

impl From<CommitFailure> for LogError {
    fn from(failure: CommitFailure) -> LogError {
        match failure {
            CommitFailure::Fenced => LogError::NotLeaderOrFollower,
            CommitFailure::Closed => LogError::Unavailable,
        }
    }
}

/// Called once the group is durable (or never will be); runs on the commit log's thread or task
/// and must not block.
pub type CommitDone = Box<dyn FnOnce(Result<(), CommitFailure>) + Send>;

/// Where group commits become durable.
pub trait CommitLog: Send + Sync + std::fmt::Debug {
    /// Makes `batches` durable, then calls `done`; `done` calls keep the order of `commit` calls.
    fn commit(&self, batches: Vec<CommittedBatches>, done: CommitDone);

    /// Whether the group needs `batches` at all (the local commit log does not look at them).
    fn needs_batches(&self) -> bool;
}

/// The local store is the durable copy: a group is durable once the store write returned.
#[derive(Debug, Default)]
pub struct LocalCommitLog;

impl CommitLog for LocalCommitLog {
    fn commit(&self, _batches: Vec<CommittedBatches>, done: CommitDone) {
        done(Ok(()));
    }

    fn needs_batches(&self) -> bool {
        false
    }
}
