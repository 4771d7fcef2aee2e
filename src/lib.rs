//! Zombi: a Kafka wire-protocol compatible broker with a RocksDB hot tier.
//!
//! # Layout
//! In data-path order:
//! - [`server`]: the listeners, the connection limit and the shutdown drain.
//! - [`connection`]: size-prefixed frames, the request size limit, in-order pipelined responses.
//! - [`protocol`]: the wire format only (headers, versions, framing); no I/O, no state.
//! - [`handler`]: one file per Kafka API family, each `decode → apply → encode`.
//! - [`log`]: the partition log: validation, the group-commit writer, producer state, indexes, and
//!   the RocksDB store (the only module that imports `rocksdb`).
//! - [`coordinator`]: consumer groups (the classic protocol) and committed offsets.
//! - [`tier`]: tiering to object storage and reads back from it.
//! - [`iceberg`]: the Iceberg sink: every topic as an Iceberg table (the only module that imports
//!   `iceberg`).
//! - [`http`]: health, the events API (produce and read over HTTP), group offsets and lag, admin
//!   views, `/metrics` and the web console.
//! - [`metrics`]: Prometheus metrics and the hooks later stages register theirs with.
//! - [`config`]: every setting and limit, with units; [`error`]: error kinds → Kafka error codes.
//! - [`alloc`]: the global allocator, which keeps hostile array lengths from aborting the broker.

pub mod alloc;
pub mod config;
pub mod connection;
pub mod coordinator;
pub mod error;
pub mod failpoint;
pub mod handler;
pub mod http;
pub mod iceberg;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod tier;

#[global_allocator]
static ALLOCATOR: alloc::LazyHugeAllocator = alloc::LazyHugeAllocator;
