//! ApiVersions, Metadata and DescribeCluster: what the cluster (from the metadata cache) and its
//! topics are.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_topic_partitions_response::{
    self, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, RequestKind,
};

use super::{Broker, Handled, str_bytes, topic_name};
use crate::log::{LogError, Topic};
use crate::protocol::apis::{APIS, Family};
use crate::protocol::{CountErrors, ErrorCounts};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

/// The cluster's authorized operations as Kafka reports them: those the session may do, or none
/// at all without DESCRIBE on the cluster.
pub(super) fn cluster_operations(broker: &Broker, session: &Session) -> i32 {
    if !broker.service.allowed(session, Operation::Describe, Resource::Cluster) {
        return 0;
    }
    broker.service.authorized_operations(session, Resource::Cluster, &Operation::CLUSTER)
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let handled = match request {
        RequestKind::ApiVersions(_) => Handled::counted(api_versions()),
        RequestKind::Metadata(body) => Handled::counted(metadata(broker, body, version, session).await),
        RequestKind::DescribeCluster(body) => Handled::counted(describe_cluster(broker, body, session)),
        RequestKind::DescribeTopicPartitions(body) => {
            Handled::uncounted(describe_topic_partitions(broker, body, session))
        }
        _ => return super::misrouted(Family::Metadata),
    };
    Some(handled)
}

/// Every row of the API table, in its order (by key).
pub(super) fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect();
    response.finalized_features_epoch = -1;
    response
}

impl CountErrors for ApiVersionsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

/// KIP-511: a version above ours gets UNSUPPORTED_VERSION with our list, encoded at v0.
pub(super) fn api_versions_unsupported() -> ApiVersionsResponse {
    let mut response = api_versions();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.finalized_features_epoch = 0;
    response
}

pub(super) async fn metadata(
    broker: &Arc<Broker>,
    request: MetadataRequest,
    version: i16,
    session: &Session,
) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = cluster_operations(broker, session);
    }
    let service = &broker.service;
    let topic_operations_of =
        |name: &str| service.authorized_operations(session, Resource::Topic(name), &Operation::TOPIC);
    let topic_operations = version >= 8 && request.include_topic_authorized_operations;
    for info in broker.cluster.brokers_on(&session.listener) {
        let mut node = MetadataResponseBroker::default();
        node.node_id = info.node_id.into();
        node.host = str_bytes(info.host);
        node.port = info.port;
        // The rack is a v1+ field.
        node.rack = info.rack.filter(|_| version >= 1).map(str_bytes);
        response.brokers.push(node);
    }
    response.cluster_id = Some(str_bytes(broker.log.cluster_id()));
    response.controller_id = broker.cluster.controller().into();
    // v0 asks for all topics with an empty list, later versions with a null one.
    let all = match &request.topics {
        None => true,
        Some(topics) => topics.is_empty() && version == 0,
    };
    if all {
        // Only the topics the session may describe are listed.
        let described = broker
            .log
            .topics()
            .into_iter()
            .filter(|topic| service.allowed(session, Operation::Describe, Resource::Topic(&topic.name)));
        response.topics = described.map(|topic| describe_topic(broker, &topic)).collect();
        if topic_operations {
            for topic in &mut response.topics {
                let name = topic.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
                topic.topic_authorized_operations = topic_operations_of(name);
            }
        }
        return response;
    }
    // Before v4 the request had no flag and topics were always auto-created.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    for wanted in request.topics.unwrap_or_default() {
        let existed = wanted.name.as_ref().is_some_and(|name| broker.log.topic(name.as_str()).is_some());
        let found = match &wanted.name {
            Some(name) if !service.allowed(session, Operation::Describe, Resource::Topic(name.as_str())) => {
                Err((LogError::TopicAuthorizationFailed(name.to_string()), Some(name.clone())))
            }
            Some(name) => {
                lookup(broker, session, name.as_str(), allow_create).await.map_err(|e| (e, Some(name.clone())))
            }
            // A topic asked for by id that the session may not describe is not named.
            None => match broker.log.topic_by_id(wanted.topic_id) {
                Some(topic) if !service.allowed(session, Operation::Describe, Resource::Topic(&topic.name)) => {
                    Err((LogError::TopicAuthorizationFailed(String::new()), None))
                }
                Some(topic) => Ok(topic),
                None => Err((LogError::UnknownTopicId, None)),
            },
        };
        let topic = match found {
            // Kafka answers the request that auto-creates a topic with LEADER_NOT_AVAILABLE; clients
            // ask again, and some (and their tests) rely on that first answer.
            Ok(topic) if !existed && wanted.name.is_some() => {
                let mut out = MetadataResponseTopic::default();
                out.error_code = ResponseError::LeaderNotAvailable.code();
                out.name = Some(topic_name(&topic.name));
                out.topic_id = topic.id;
                out
            }
            Ok(topic) => {
                let mut described = describe_topic(broker, &topic);
                if topic_operations {
                    described.topic_authorized_operations = topic_operations_of(&topic.name);
                }
                described
            }
            Err((error, name)) => {
                let mut topic = MetadataResponseTopic::default();
                topic.error_code = error.code();
                topic.name = name;
                topic.topic_id = wanted.topic_id;
                topic
            }
        };
        response.topics.push(topic);
    }
    response
}

impl CountErrors for MetadataResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().map(|t| t.error_code));
    }
}

async fn lookup(broker: &Broker, session: &Session, name: &str, allow_create: bool) -> Result<Arc<Topic>, LogError> {
    if broker.log.topic(name).is_none() && allow_create && broker.config.log.auto_create_topics {
        crate::log::validate_topic_name(name)?;
    }
    broker.service.topic_or_create(session, name, allow_create).await
}

fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(topic_name(&topic.name));
    out.topic_id = topic.id;
    out.partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let leadership = broker.cluster.leadership(partition);
            let mut p = MetadataResponsePartition::default();
            p.partition_index = partition.index;
            p.leader_id = leadership.leader.into();
            p.leader_epoch = leadership.leader_epoch;
            p.replica_nodes = leadership.replicas.iter().map(|&n| n.into()).collect();
            p.isr_nodes = leadership.in_sync.iter().map(|&n| n.into()).collect();
            p
        })
        .collect();
    out
}

pub(super) fn describe_cluster(
    broker: &Broker,
    request: DescribeClusterRequest,
    session: &Session,
) -> DescribeClusterResponse {
    let listener = &session.listener;
    let mut response = DescribeClusterResponse::default();
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = cluster_operations(broker, session);
    }
    response.cluster_id = str_bytes(broker.log.cluster_id());
    response.controller_id = broker.cluster.controller().into();
    for info in broker.cluster.brokers_on(listener) {
        let mut node = DescribeClusterBroker::default();
        node.broker_id = info.node_id.into();
        node.host = str_bytes(info.host);
        node.port = info.port;
        node.rack = info.rack.map(str_bytes);
        response.brokers.push(node);
    }
    response
}

impl CountErrors for DescribeClusterResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

/// DescribeTopicPartitions (KIP-966): Metadata's partitions, paged with a cursor.
pub(super) fn describe_topic_partitions(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
    session: &Session,
) -> DescribeTopicPartitionsResponse {
    let limit = usize::try_from(request.response_partition_limit).unwrap_or(0).clamp(1, 2000);
    let may_describe = |name: &str| broker.service.allowed(session, Operation::Describe, Resource::Topic(name));
    let mut names: Vec<String> = if request.topics.is_empty() {
        broker.log.topics().iter().map(|t| t.name.clone()).filter(|name| may_describe(name)).collect()
    } else {
        request.topics.iter().map(|t| t.name.as_str().to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, cursor_partition) = match &request.cursor {
        Some(cursor) => (Some(cursor.topic_name.as_str().to_string()), cursor.partition_index),
        None => (None, 0),
    };
    let mut response = DescribeTopicPartitionsResponse::default();
    let mut emitted = 0;
    for name in names.into_iter().filter(|n| cursor_topic.as_ref().is_none_or(|c| n >= c)) {
        let mut out = DescribeTopicPartitionsResponseTopic::default();
        out.name = Some(topic_name(&name));
        if !may_describe(&name) {
            out.error_code = ResponseError::TopicAuthorizationFailed.code();
            response.topics.push(out);
            continue;
        }
        let Some(topic) = broker.log.topic(&name) else {
            out.error_code = ResponseError::UnknownTopicOrPartition.code();
            response.topics.push(out);
            continue;
        };
        out.topic_id = topic.id;
        // Always, as Kafka's handler does (the request has no flag for it).
        out.topic_authorized_operations =
            broker.service.authorized_operations(session, Resource::Topic(&name), &Operation::TOPIC);
        let first = if cursor_topic.as_deref() == Some(name.as_str()) { cursor_partition } else { 0 };
        for partition in topic.partitions.iter().filter(|p| p.index >= first) {
            if emitted == limit {
                response.next_cursor = Some(
                    describe_topic_partitions_response::Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(partition.index),
                );
                break;
            }
            let leadership = broker.cluster.leadership(partition);
            let mut p = DescribeTopicPartitionsResponsePartition::default();
            p.partition_index = partition.index;
            p.leader_id = leadership.leader.into();
            p.leader_epoch = leadership.leader_epoch;
            p.replica_nodes = leadership.replicas.iter().map(|&n| n.into()).collect();
            p.isr_nodes = leadership.in_sync.iter().map(|&n| n.into()).collect();
            // No eligible leader replicas (KIP-966) without replication, but a list, as Kafka
            // answers: the Java Admin client dereferences both.
            p.eligible_leader_replicas = Some(Vec::new());
            p.last_known_elr = Some(Vec::new());
            out.partitions.push(p);
            emitted += 1;
        }
        response.topics.push(out);
        if response.next_cursor.is_some() {
            break;
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;

    /// ApiVersions answers with exactly the table: one entry per row, in the table's order, with
    /// its pinned versions; the KIP-511 answer carries the same list.
    #[test]
    fn api_versions_lists_exactly_the_table() {
        let listed: Vec<(i16, i16, i16)> =
            api_versions().api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        let table: Vec<(i16, i16, i16)> =
            APIS.iter().map(|api| (api.key as i16, api.min_version, api.max_version)).collect();
        assert_eq!(listed, table);
        assert_eq!(api_versions_unsupported().api_keys, api_versions().api_keys);
        let produce = listed.iter().find(|(key, ..)| *key == ApiKey::Produce as i16);
        assert_eq!(produce.map(|(_, min, _)| *min), Some(0), "Produce is advertised from v0");
    }
}
