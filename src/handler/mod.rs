//! One file per Kafka API family, each `decode → apply → encode`: the request arrives decoded, the
//! handler applies it to the log, and returns the response for the connection to encode.

mod admin;
mod cluster;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod produce;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::log::{Log, Topic};
use crate::protocol::{Body, Request};

/// A response that is still being worked on (a produce waiting for its group commit).
pub type PendingResponse = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

/// What goes back on the wire: a typed response, or a body encoded by hand (Produce v0–v2).
/// Moved once per request, so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Response {
    Kind(ResponseKind),
    RawV0(bytes::Bytes),
}

/// Everything a handler may use.
pub struct Broker {
    pub log: Log,
    pub coordinator: Coordinator,
    pub config: Arc<Config>,
    /// KiB of requests read and not yet answered (see `queued_request_bytes_max`).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The Iceberg sink's shared state, for the admin view.
    pub iceberg: Arc<crate::iceberg::IcebergSink>,
}

impl Broker {
    pub fn new(
        log: Log,
        coordinator: Coordinator,
        config: Arc<Config>,
        iceberg: Arc<crate::iceberg::IcebergSink>,
    ) -> Broker {
        let budget_kib = (config.queued_request_bytes_max / 1024).max(1);
        Broker {
            iceberg,
            log,
            coordinator,
            config,
            request_budget: Arc::new(tokio::sync::Semaphore::new(budget_kib)),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }

    /// A topic's traffic counters, resolved once per topic so that recording takes no lock.
    pub fn topic_metrics<'t>(&self, topic: &'t Topic) -> &'t crate::metrics::TopicMetrics {
        topic.metrics.get_or_init(|| self.metrics.topic(&topic.name))
    }
}

impl Broker {
    /// Starts handling one request. Work that must keep the connection's order (queueing appends)
    /// is done before this returns; the returned future finishes the response.
    pub async fn handle(self: &Arc<Self>, request: Request, client_host: &str) -> PendingResponse {
        let version = request.version;
        let client_id = request.client_id.unwrap_or_default();
        let kind = match request.body {
            Body::Kind(kind) => kind,
            Body::UnsupportedApiVersions => {
                return ready(Some(Response::Kind(ResponseKind::ApiVersions(metadata::api_versions_unsupported()))));
            }
            Body::LegacyProduce(legacy) => {
                return ready(produce::refuse_legacy(&legacy, version));
            }
        };
        let response = match kind {
            RequestKind::Produce(body) => return produce::handle(self, body, version).await,
            RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::fetch(self, body, version).await),
            RequestKind::ListOffsets(body) => ResponseKind::ListOffsets(fetch::list_offsets(self, body, version).await),
            RequestKind::OffsetForLeaderEpoch(body) => {
                ResponseKind::OffsetForLeaderEpoch(fetch::offset_for_leader_epoch(self, body))
            }
            RequestKind::Metadata(body) => ResponseKind::Metadata(metadata::metadata(self, body, version).await),
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(metadata::api_versions()),
            RequestKind::DescribeCluster(body) => ResponseKind::DescribeCluster(metadata::describe_cluster(self, body)),
            RequestKind::CreateTopics(body) => {
                ResponseKind::CreateTopics(admin::create_topics(self, body, version).await)
            }
            RequestKind::DeleteTopics(body) => ResponseKind::DeleteTopics(admin::delete_topics(self, body).await),
            RequestKind::FindCoordinator(body) => {
                ResponseKind::FindCoordinator(groups::find_coordinator(self, body, version))
            }
            RequestKind::JoinGroup(body) => {
                ResponseKind::JoinGroup(groups::join(self, body, version, &client_id, client_host).await)
            }
            RequestKind::SyncGroup(body) => ResponseKind::SyncGroup(groups::sync(self, body).await),
            RequestKind::Heartbeat(body) => ResponseKind::Heartbeat(groups::heartbeat(self, body)),
            RequestKind::LeaveGroup(body) => ResponseKind::LeaveGroup(groups::leave(self, body, version).await),
            RequestKind::OffsetCommit(body) => ResponseKind::OffsetCommit(groups::offset_commit(self, body).await),
            RequestKind::OffsetFetch(body) => ResponseKind::OffsetFetch(groups::offset_fetch(self, body, version)),
            RequestKind::DescribeGroups(body) => {
                ResponseKind::DescribeGroups(groups::describe_groups(self, body, version))
            }
            RequestKind::ListGroups(body) => ResponseKind::ListGroups(groups::list_groups(self, body)),
            RequestKind::DeleteGroups(body) => ResponseKind::DeleteGroups(groups::delete_groups(self, body).await),
            RequestKind::DescribeTopicPartitions(body) => {
                ResponseKind::DescribeTopicPartitions(metadata::describe_topic_partitions(self, body))
            }
            RequestKind::ElectLeaders(body) => ResponseKind::ElectLeaders(cluster::elect_leaders(self, body)),
            RequestKind::ListPartitionReassignments(body) => {
                ResponseKind::ListPartitionReassignments(cluster::list_partition_reassignments(body))
            }
            RequestKind::AlterPartitionReassignments(body) => {
                ResponseKind::AlterPartitionReassignments(cluster::alter_partition_reassignments(self, body))
            }
            RequestKind::DescribeLogDirs(body) => {
                ResponseKind::DescribeLogDirs(cluster::describe_log_dirs(self, body, version))
            }
            RequestKind::AlterReplicaLogDirs(body) => {
                ResponseKind::AlterReplicaLogDirs(cluster::alter_replica_log_dirs(self, body))
            }
            RequestKind::OffsetDelete(body) => ResponseKind::OffsetDelete(groups::offset_delete(self, body).await),
            RequestKind::CreatePartitions(body) => {
                ResponseKind::CreatePartitions(admin::create_partitions(self, body).await)
            }
            RequestKind::DeleteRecords(body) => ResponseKind::DeleteRecords(admin::delete_records(self, body).await),
            RequestKind::InitProducerId(body) => {
                ResponseKind::InitProducerId(admin::init_producer_id(self, body).await)
            }
            RequestKind::DescribeConfigs(body) => ResponseKind::DescribeConfigs(configs::describe(self, body, version)),
            RequestKind::AlterConfigs(body) => ResponseKind::AlterConfigs(configs::alter(self, body).await),
            RequestKind::IncrementalAlterConfigs(body) => {
                ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(self, body).await)
            }
            _ => {
                // protocol::decode only lets through the APIs in protocol::apis.
                tracing::error!("request for an API without a handler");
                return ready(None);
            }
        };
        ready(Some(Response::Kind(response)))
    }

    /// Finds a topic, creating it when auto-creation is on and `create` is asked for.
    pub async fn topic_or_create(&self, name: &str, create: bool) -> Result<Arc<Topic>, crate::log::LogError> {
        if let Some(topic) = self.log.topic(name) {
            return Ok(topic);
        }
        if !(create && self.config.auto_create_topics) {
            return Err(crate::log::LogError::UnknownTopicOrPartition);
        }
        match self.log.create_topic(name, self.config.num_partitions, Default::default(), false).await {
            Ok(topic) => Ok(topic),
            // Another connection created it first.
            Err(crate::log::LogError::TopicAlreadyExists(_)) => {
                self.log.topic(name).ok_or(crate::log::LogError::UnknownTopicOrPartition)
            }
            Err(error) => Err(error),
        }
    }
}

fn ready(response: Option<Response>) -> PendingResponse {
    Box::pin(std::future::ready(response))
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
