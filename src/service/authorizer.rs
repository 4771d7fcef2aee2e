//! Whether a session may do an operation on a resource (Kafka's `Authorizer`). The broker service
//! asks before every produce, read and admin change, so both front doors get the same answer.

use super::session::Session;

/// Kafka's ACL operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    ClusterAction,
}

/// Kafka's ACL resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
    TransactionalId(&'a str),
}

/// Decides whether a session may do an operation; consulted by the broker service.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    fn authorize(&self, session: &Session, operation: Operation, resource: Resource<'_>) -> bool;
}

/// Every session may do everything: zombi's behaviour until ACLs exist (Kafka with no authorizer
/// configured behaves the same).
#[derive(Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _session: &Session, _operation: Operation, _resource: Resource<'_>) -> bool {
        true
    }
}
