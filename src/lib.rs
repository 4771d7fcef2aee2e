//! Zombi: a Kafka wire-protocol compatible broker with a RocksDB hot tier.
//!
//! # Layout
//! In data-path order:
//! - [`server`]: the listeners, the connection limit and the shutdown drain.
//! - [`connection`]: size-prefixed frames, the request size limit, in-order pipelined responses;
//!   TLS and SASL authentication ([`security`]) before any other request.
//! - [`protocol`]: the wire format only (headers, versions, framing); no I/O, no state.
//! - [`handler`]: one file per Kafka API family, each `decode → apply → encode`.
//! - [`service`]: the broker service both front doors (handlers and HTTP) call: produce, read
//!   with an isolation level, topic rules, the authorizer, traffic metrics; with [`cluster`], the
//!   metadata cache (brokers, leaders and leader epochs, coordinators).
//! - [`coordinator`]: consumer groups (the classic protocol) and committed offsets.
//! - [`unified`]: the unified log over the hot tier and the object store (local-then-remote
//!   reads), the remote log manager (copy, expire, trim local) and recovery from the bucket.
//! - [`log`]: the local log: validation, the one writer thread, producer state, indexes, the
//!   remote index, and the RocksDB store (the only module that imports `rocksdb`).
//! - [`wal`]: the shared write-ahead log in object storage (`--wal-store`): the commit log that
//!   acknowledges a produce once the object holding it exists, and its replay at start.
//! - [`tier`]: object storage: the store trait, the segment format, the segment cache.
//! - [`iceberg`]: the Iceberg sink: every topic as an Iceberg table (the only module that imports
//!   `iceberg`).
//! - [`http`]: health, the events API (produce and read over HTTP), group offsets and lag, admin
//!   views, `/metrics` and the web console.
//! - [`metrics`]: Prometheus metrics and the hooks later stages register theirs with.
//! - [`config`]: every setting and limit, with units.
//! - [`alloc`]: the global allocator, which keeps hostile array lengths from aborting the broker.

pub mod alloc;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod coordinator;
pub mod failpoint;
pub mod handler;
pub mod http;
pub mod iceberg;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod security;
pub mod server;
pub mod service;
pub mod tier;
pub mod unified;
pub mod wal;

#[global_allocator]
static ALLOCATOR: alloc::LazyHugeAllocator = alloc::LazyHugeAllocator;
