//! One file per Kafka API family, each `decode → apply → encode`: the request arrives decoded, the
//! handler applies it to the log, and returns the response for the connection to encode, with the
//! error codes it put in it counted. `protocol::apis` says which family answers each API; each
//! family's `handle` matches its own request kinds.

mod acls;
mod admin;
mod cluster;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod quotas;
mod security;
mod txn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{MetadataCache, SingleNode};
use crate::config::Config;
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::coordinator::txn::TransactionCoordinator;
use crate::log::{Log, LogError};
use crate::protocol::apis::Family;
use crate::protocol::{Body, CountErrors, ErrorCounts, Request};
use crate::security::acl::StandardAuthorizer;
use crate::security::quota::{QuotaWindow, Quotas};
use crate::service::authorizer::{AllowAll, Authorizer};
use crate::service::session::Session;
use crate::service::{BrokerService, ServiceSettings};
use crate::unified::UnifiedLog;

/// A response that is still being worked on (a produce waiting for its group commit); `None`
/// when the request gets no answer (Produce with acks=0).
pub type PendingResponse = Pin<Box<dyn Future<Output = Option<Handled>> + Send>>;

/// A response with the error codes in it, counted by the family that built it, for
/// `kafka_network_requestmetrics_errors`.
pub struct Handled {
    pub response: Response,
    pub errors: ErrorCounts,
}

impl Handled {
    /// A response whose error codes are counted.
    fn counted<R: CountErrors + Into<ResponseKind>>(response: R) -> Handled {
        let mut errors = ErrorCounts::default();
        response.count_errors(&mut errors);
        Handled { response: Response::Kind(response.into()), errors }
    }

    /// A response of an API whose errors are not counted (docs/metrics.md lists those that are).
    fn uncounted(response: impl Into<ResponseKind>) -> Handled {
        Handled { response: Response::Kind(response.into()), errors: ErrorCounts::default() }
    }
}

/// What goes back on the wire: a typed response, a body encoded by hand (Produce v0–v2), a
/// bare SASL token (after a SaslHandshake v0), or nothing and the end of the connection (a failed
/// acks=0 produce: as in Kafka, the client's only sign of the error). Moved once per request, so
/// the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Response {
    Kind(ResponseKind),
    RawV0(bytes::Bytes),
    /// A SASL token in a frame of its own: a size and the bytes, no response header.
    SaslToken(bytes::Bytes),
    Close,
}

/// Everything a handler may use.
pub struct Broker {
    /// Produce, read, topic lookups and authorization: what both front doors share.
    pub service: Arc<BrokerService>,
    /// Brokers, leaders, leader epochs and coordinators.
    pub cluster: Arc<dyn MetadataCache>,
    pub log: Log,
    /// The log over the hot tier and the object store, for reads.
    pub unified: UnifiedLog,
    pub coordinator: GroupCoordinator,
    /// InitProducerId's producer ids.
    pub producer_ids: Arc<ProducerIdManager>,
    /// The transaction coordinator (`None`: transactional producers are refused).
    pub transactions: Option<TransactionCoordinator>,
    pub config: Arc<Config>,
    /// KiB of requests read and not yet answered (see `queued_request_bytes_max`).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The Iceberg sink's shared state, for the admin view.
    pub iceberg: Arc<crate::iceberg::IcebergSink>,
    /// SCRAM credentials, which SASL listeners check and the SCRAM admin APIs manage.
    pub credentials: crate::security::Credentials,
    /// Client quotas: what each client is measured against, and how long to throttle it.
    pub quotas: Arc<Quotas>,
    /// How a client certificate names its principal on an SSL listener.
    pub principals: crate::security::tls::PrincipalMapper,
}

/// How this broker calls another on the inter-broker listener (over TLS and SASL as that
/// listener says), as itself.
pub fn inter_broker_forwarder(config: &Config) -> Arc<dyn crate::cluster::forward::Forwarder> {
    let listener = config.security.inter_broker();
    let tls = match listener.protocol.tls() {
        true => crate::security::tls::ClientTls::from_config(&config.security)
            .map(|tls| Arc::new(tls) as Arc<dyn crate::cluster::forward::BrokerTls>),
        false => None,
    };
    let sasl = match listener.protocol.sasl() {
        true => crate::security::sasl::InterBrokerClient::from_config(&config.security)
            .map(|sasl| Arc::new(sasl) as Arc<dyn crate::cluster::forward::BrokerSasl>),
        false => None,
    };
    Arc::new(crate::cluster::forward::KafkaForwarder::new(&listener.name, tls, sasl))
}

impl Broker {
    /// `cluster` answers who leads what: `None` for a single broker leading everything.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unified: UnifiedLog,
        coordinator: GroupCoordinator,
        config: Arc<Config>,
        iceberg: Arc<crate::iceberg::IcebergSink>,
        cluster: Option<Arc<dyn MetadataCache>>,
        // In a cluster, the HTTP door forwards to the leaders of partitions led elsewhere.
        forwarder: Option<Arc<dyn crate::cluster::forward::Forwarder>>,
        producer_ids: Arc<ProducerIdManager>,
        transactions: Option<TransactionCoordinator>,
    ) -> Broker {
        let budget_kib = (config.network.queued_request_bytes_max / 1024).max(1);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let cluster: Arc<dyn MetadataCache> = cluster.unwrap_or_else(|| SingleNode::new(&config));
        let settings = ServiceSettings {
            auto_create_topics: config.log.auto_create_topics,
            num_partitions: config.log.num_partitions,
            record_batch_decompressed_bytes_max: config.log.record_batch_decompressed_bytes_max,
        };
        let authorizer: Arc<dyn Authorizer> = if config.security.acls {
            let super_users = config.security.super_users.iter().cloned().collect();
            let open = config.security.allow_everyone_if_no_acl_found;
            Arc::new(StandardAuthorizer::new(unified.log().clone(), super_users, open))
        } else {
            Arc::new(AllowAll)
        };
        let mut service = BrokerService::new(unified.clone(), cluster.clone(), authorizer, metrics.clone(), settings);
        if let Some(forwarder) = forwarder {
            service = service.with_forwarder(forwarder);
        }
        Broker {
            credentials: crate::security::Credentials::new(unified.log().clone(), &config.security),
            principals: crate::security::tls::PrincipalMapper::new(&config.security.ssl_principal_mapping_rules),
            quotas: Arc::new(Quotas::new(
                unified.log().clone(),
                QuotaWindow {
                    samples: config.network.quota_window_num.max(1),
                    size: std::time::Duration::from_secs(u64::from(config.network.quota_window_size_seconds.max(1))),
                },
            )),
            service: Arc::new(service),
            cluster,
            iceberg,
            log: unified.log().clone(),
            unified,
            coordinator,
            producer_ids,
            transactions,
            config,
            request_budget: Arc::new(tokio::sync::Semaphore::new(budget_kib)),
            metrics,
        }
    }
}

impl Broker {
    /// Starts handling one request. Work that must keep the connection's order (queueing appends)
    /// is done before this returns; the returned future finishes the response.
    ///
    /// `session` is the connection's (its principal, listener and client host), with the client
    /// id of this request.
    pub async fn handle(self: &Arc<Self>, request: Request, session: &Session) -> PendingResponse {
        let version = request.version;
        let kind = match request.body {
            Body::Kind(kind) => kind,
            Body::UnsupportedApiVersions => {
                return ready(Some(Handled::counted(metadata::api_versions_unsupported())));
            }
            Body::LegacyProduce(legacy) => return ready(produce::refuse_legacy(&legacy, version)),
        };
        // The family in the API's row of protocol::apis answers it; each matches its own kinds.
        let handled = match request.api.family {
            Family::Produce => return produce::handle(self, kind, version, session).await,
            Family::Fetch => fetch::handle(self, kind, version, session).await,
            Family::Metadata => metadata::handle(self, kind, version, session).await,
            Family::Admin => admin::handle(self, kind, version, session).await,
            Family::Configs => configs::handle(self, kind, version, session).await,
            Family::Groups => groups::handle(self, kind, version, session).await,
            Family::Cluster => cluster::handle(self, kind, version, session),
            Family::Txn => txn::handle(self, kind, version, session).await,
            Family::Security => security::handle(self, kind, version, session).await,
        };
        ready(handled)
    }
}

fn ready(handled: Option<Handled>) -> PendingResponse {
    Box::pin(std::future::ready(handled))
}

/// A request routed to a family that has no handler for its kind: a wrong row in protocol::apis.
fn misrouted(family: Family) -> Option<Handled> {
    tracing::error!(?family, "request routed to a family without a handler for it; see protocol::apis");
    None
}

/// A topic lookup's error, repeated for each of its partitions.
pub(crate) fn same_error(error: &LogError) -> LogError {
    match error {
        LogError::UnknownTopicId => LogError::UnknownTopicId,
        LogError::InvalidTopic(reason) => LogError::InvalidTopic(reason.clone()),
        LogError::Unavailable => LogError::Unavailable,
        LogError::TopicAuthorizationFailed(name) => LogError::TopicAuthorizationFailed(name.clone()),
        _ => LogError::UnknownTopicOrPartition,
    }
}

/// KIP-951: who leads `partition` now, at which epoch, and at which address on `listener`, for
/// a client that got NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH (Produce v10+, Fetch v16+):
/// it goes straight there instead of refreshing its metadata first. `None` when this broker
/// leads it or no live leader is known.
pub(crate) fn current_leader(
    broker: &Broker,
    listener: &str,
    partition: &crate::log::Partition,
) -> Option<(i32, i32, crate::cluster::BrokerInfo)> {
    let leadership = broker.cluster.leadership(partition);
    if leadership.leader < 0 || leadership.leader == broker.cluster.this_broker() {
        return None;
    }
    let address = broker.cluster.broker_on(leadership.leader, listener)?;
    Some((leadership.leader, leadership.leader_epoch, address))
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::{FetchResponse, OffsetFetchResponse, ProduceResponse, fetch_response};
    use kafka_protocol::messages::{offset_fetch_response, produce_response};

    use super::*;

    fn counted(response: impl CountErrors + Into<ResponseKind>) -> Vec<(i16, u64)> {
        Handled::counted(response).errors.iter().collect()
    }

    /// Each partition's error is counted once, and a partition without an error is not counted.
    #[test]
    fn produce_counts_partition_errors() {
        let corrupt = ResponseError::CorruptMessage.code();
        let mut topic = produce_response::TopicProduceResponse::default();
        for code in [corrupt, 0, corrupt] {
            topic.partition_responses.push(produce_response::PartitionProduceResponse::default().with_error_code(code));
        }
        let response = ProduceResponse::default().with_responses(vec![topic]);
        assert_eq!(counted(response), vec![(corrupt, 2)]);
    }

    /// Fetch counts its top-level error and each partition's.
    #[test]
    fn fetch_counts_top_level_and_partition_errors() {
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let session = ResponseError::FetchSessionIdNotFound.code();
        let partition = fetch_response::PartitionData::default().with_error_code(unknown);
        let topic =
            fetch_response::FetchableTopicResponse::default().with_partitions(vec![partition.clone(), partition]);
        let response = FetchResponse::default().with_error_code(session).with_responses(vec![topic]);
        assert_eq!(counted(response), vec![(session, 1), (unknown, 2)]);
    }

    /// OffsetFetch v8+ answers per group: each group's error and its partitions' are counted.
    #[test]
    fn offset_fetch_counts_group_errors() {
        let not_coordinator = ResponseError::NotCoordinator.code();
        let unstable = ResponseError::UnstableOffsetCommit.code();
        let partition = offset_fetch_response::OffsetFetchResponsePartitions::default().with_error_code(unstable);
        let topic = offset_fetch_response::OffsetFetchResponseTopics::default().with_partitions(vec![partition]);
        let groups = vec![
            offset_fetch_response::OffsetFetchResponseGroup::default().with_error_code(not_coordinator),
            offset_fetch_response::OffsetFetchResponseGroup::default().with_topics(vec![topic]),
        ];
        let response = OffsetFetchResponse::default().with_groups(groups);
        assert_eq!(counted(response), vec![(not_coordinator, 1), (unstable, 1)]);
    }

    /// The KIP-511 answer to an ApiVersions above ours counts its UNSUPPORTED_VERSION.
    #[test]
    fn api_versions_above_ours_count_unsupported_version() {
        let handled = Handled::counted(metadata::api_versions_unsupported());
        assert_eq!(handled.errors.iter().collect::<Vec<_>>(), vec![(ResponseError::UnsupportedVersion.code(), 1)]);
    }
}
