//! Whether a session may do an operation on a resource (Kafka's `Authorizer`). The broker service
//! asks before every produce, read and admin change, so both front doors get the same answer.
//! `--authorizer standard` is `security::acl::StandardAuthorizer`; without it, [`AllowAll`].

use super::session::Session;

/// Kafka's ACL operations, with their codes (`AclOperation`). `All` only appears in ACLs: it
/// grants or denies every operation, and is never asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

impl Operation {
    /// Every operation, in code order.
    pub const EVERY: [Operation; 14] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
        Operation::TwoPhaseCommit,
    ];

    /// What a topic supports (Kafka's authorized operations of a topic).
    pub const TOPIC: [Operation; 8] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
    ];

    /// What a group supports.
    pub const GROUP: [Operation; 5] =
        [Operation::Read, Operation::Delete, Operation::Describe, Operation::DescribeConfigs, Operation::AlterConfigs];

    /// What the cluster supports.
    pub const CLUSTER: [Operation; 7] = [
        Operation::Create,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    pub const fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
            Operation::CreateTokens => 13,
            Operation::DescribeTokens => 14,
            Operation::TwoPhaseCommit => 15,
        }
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::EVERY.into_iter().find(|op| op.code() == code)
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
            Operation::CreateTokens => "CREATE_TOKENS",
            Operation::DescribeTokens => "DESCRIBE_TOKENS",
            Operation::TwoPhaseCommit => "TWO_PHASE_COMMIT",
        }
    }

    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::EVERY.into_iter().find(|op| op.name() == name)
    }

    /// Whether an ACL granting `self` allows `wanted`: ALL allows everything, and READ, WRITE,
    /// DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS (as in Kafka).
    pub fn implies(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// Kafka's ACL resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
    TransactionalId(&'a str),
}

/// The name of the one cluster resource, as Kafka names it in ACLs.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

impl Resource<'_> {
    /// The resource's name as ACLs name it.
    pub fn name(&self) -> &str {
        match self {
            Resource::Topic(name) | Resource::Group(name) | Resource::TransactionalId(name) => name,
            Resource::Cluster => CLUSTER_RESOURCE_NAME,
        }
    }
}

/// Decides whether a session may do an operation; consulted by the broker service.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    fn authorize(&self, session: &Session, operation: Operation, resource: Resource<'_>) -> bool;

    /// Whether the session may do `operation` on at least one topic (Kafka's
    /// `authorizeByResourceType`, which lets an idempotent producer in without IDEMPOTENT_WRITE
    /// on the cluster when it may write somewhere, KIP-679).
    fn authorize_any_topic(&self, session: &Session, operation: Operation) -> bool;

    /// Whether ACLs are on: the ACL APIs answer SECURITY_DISABLED when they are not.
    fn enabled(&self) -> bool;

    /// What it decided since the broker started, and the ACLs it holds (for the metrics).
    fn counts(&self) -> AuthorizerCounts {
        AuthorizerCounts::default()
    }
}

/// An authorizer's decisions so far and the ACLs it holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizerCounts {
    pub allowed: u64,
    pub denied: u64,
    pub acls: u64,
}

/// The authorizer's series at scrape time (Kafka's authorizer metrics,
/// `authorization-{allowed,denied}-rate-per-minute` and `acls-total-count`, as counters).
pub struct AuthorizerCollector {
    pub authorizer: std::sync::Arc<dyn Authorizer>,
}

impl crate::metrics::ScrapeCollector for AuthorizerCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let counts = self.authorizer.counts();
        let decisions = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        decisions.get_or_create(&vec![("result", "allowed")]).inc_by(counts.allowed);
        decisions.get_or_create(&vec![("result", "denied")]).inc_by(counts.denied);
        let help = "Authorization checks by the ACLs, allowed or denied (super users included)";
        crate::metrics::encode_metric(&mut encoder, "zombi_authorizer_decisions", help, &decisions)?;
        let acls = Gauge::<i64>::default();
        acls.set(i64::try_from(counts.acls).unwrap_or(i64::MAX));
        crate::metrics::encode_metric(&mut encoder, "zombi_authorizer_acls", "ACLs the authorizer holds", &acls)
    }
}

/// Every session may do everything: `--authorizer none`, as Kafka with no authorizer configured.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _session: &Session, _operation: Operation, _resource: Resource<'_>) -> bool {
        true
    }

    fn authorize_any_topic(&self, _session: &Session, _operation: Operation) -> bool {
        true
    }

    fn enabled(&self) -> bool {
        false
    }
}
