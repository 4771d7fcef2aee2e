//! The coordinators, each a folder of pure state machines (state in, records and answers out,
//! time passed in) behind a thin async shell that makes the records durable before answering:
//! consumer groups in `group/` (Kafka's `GroupCoordinator`), producer ids in `producer_ids.rs`
//! (Kafka's `ProducerIdManager` and the idempotent part of InitProducerId), transactions in
//! `txn/` (Kafka's `TransactionCoordinator`).

pub mod group;
pub mod producer_ids;
pub mod txn;

pub use group::{GroupStore, group_slot};

/// The name `src/cluster` uses for the group coordinator (to become `group::GroupCoordinator`
/// there when that code is next touched).
pub type Coordinator = group::GroupCoordinator;
