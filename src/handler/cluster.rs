//! Replica and log-dir administration of a one-broker, one-replica cluster: ElectLeaders,
//! List/AlterPartitionReassignments, DescribeLogDirs and AlterReplicaLogDirs. Each answers what
//! Apache Kafka answers for a cluster where every partition has exactly this broker as replica.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, AlterReplicaLogDirsRequest,
    AlterReplicaLogDirsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestKind,
};

use super::{Broker, Handled, str_bytes, topic_name};
use crate::protocol::apis::Family;
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

/// None of these answers waits on anything. Their error codes are not counted (docs/metrics.md
/// lists the APIs whose are).
pub(super) fn handle(broker: &Arc<Broker>, request: RequestKind, version: i16, session: &Session) -> Option<Handled> {
    // Each needs ALTER or DESCRIBE on the cluster; without it, every code in the answer is
    // CLUSTER_AUTHORIZATION_FAILED and nothing is described.
    let may = |operation: Operation| broker.service.allowed(session, operation, Resource::Cluster);
    let refused = ResponseError::ClusterAuthorizationFailed.code();
    let handled = match request {
        RequestKind::ElectLeaders(body) => {
            let mut response = elect_leaders(broker, body);
            if !may(Operation::Alter) {
                response.error_code = refused;
                let results = response.replica_election_results.iter_mut().flat_map(|r| &mut r.partition_result);
                results.for_each(|p| p.error_code = refused);
            }
            Handled::uncounted(response)
        }
        RequestKind::ListPartitionReassignments(body) => {
            let mut response = list_partition_reassignments(body);
            if !may(Operation::Describe) {
                response.error_code = refused;
            }
            Handled::uncounted(response)
        }
        RequestKind::AlterPartitionReassignments(body) => {
            let mut response = alter_partition_reassignments(broker, body);
            if !may(Operation::Alter) {
                response.error_code = refused;
                response.responses.iter_mut().flat_map(|r| &mut r.partitions).for_each(|p| {
                    p.error_code = refused;
                    p.error_message = None;
                });
            }
            Handled::uncounted(response)
        }
        RequestKind::DescribeLogDirs(_) if !may(Operation::Describe) => {
            let mut response = DescribeLogDirsResponse::default();
            if version >= 3 {
                response.error_code = refused;
            }
            Handled::uncounted(response)
        }
        RequestKind::DescribeLogDirs(body) => Handled::uncounted(describe_log_dirs(broker, body, version)),
        RequestKind::AlterReplicaLogDirs(body) => {
            let mut response = alter_replica_log_dirs(broker, body);
            if !may(Operation::Alter) {
                response.results.iter_mut().flat_map(|r| &mut r.partitions).for_each(|p| p.error_code = refused);
            }
            Handled::uncounted(response)
        }
        _ => return super::misrouted(Family::Cluster),
    };
    Some(handled)
}

/// The partitions a request names, or (when it names none, with null) every partition.
fn requested_or_all(broker: &Broker, named: Option<Vec<(String, Vec<i32>)>>) -> Vec<(String, Vec<i32>)> {
    named.unwrap_or_else(|| {
        broker.log.topics().iter().map(|t| (t.name.clone(), t.partitions.iter().map(|p| p.index).collect())).collect()
    })
}

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker.log.topic(topic).is_some_and(|t| t.partition(partition).is_some())
}

/// The one leader is always the preferred one: every election is ELECTION_NOT_NEEDED.
pub(super) fn elect_leaders(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let named = request
        .topic_partitions
        .map(|topics| topics.into_iter().map(|t| (t.topic.as_str().to_string(), t.partitions)).collect());
    let wanted = requested_or_all(broker, named);
    let mut response = ElectLeadersResponse::default();
    for (topic, partitions) in wanted {
        let mut result = ReplicaElectionResult::default();
        result.topic = topic_name(&topic);
        for partition in partitions {
            let mut outcome = PartitionResult::default();
            outcome.partition_id = partition;
            outcome.error_code = if partition_exists(broker, &topic, partition) {
                ResponseError::ElectionNotNeeded.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            result.partition_result.push(outcome);
        }
        response.replica_election_results.push(result);
    }
    response
}

/// Nothing is ever being reassigned.
pub(super) fn list_partition_reassignments(
    _request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}

/// The only valid assignment is this broker alone, which is already in place.
pub(super) fn alter_partition_reassignments(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let node = broker.cluster.this_broker();
    let mut response = AlterPartitionReassignmentsResponse::default();
    for topic in request.topics {
        let mut result = ReassignableTopicResponse::default();
        for partition in topic.partitions {
            let mut outcome = ReassignablePartitionResponse::default();
            outcome.partition_index = partition.partition_index;
            let (code, message) = match &partition.replicas {
                _ if !partition_exists(broker, topic.name.as_str(), partition.partition_index) => {
                    (ResponseError::UnknownTopicOrPartition.code(), None)
                }
                None => (ResponseError::NoReassignmentInProgress.code(), Some("No reassignment is in progress.")),
                Some(replicas) if replicas.len() == 1 && replicas[0].0 == node => (0, None),
                Some(_) => (ResponseError::InvalidReplicaAssignment.code(), Some("This cluster has one broker.")),
            };
            outcome.error_code = code;
            outcome.error_message = message.map(str_bytes);
            result.partitions.push(outcome);
        }
        result.name = topic.name;
        response.responses.push(result);
    }
    response
}

/// One log dir, the data dir, holding every partition.
pub(super) fn describe_log_dirs(
    broker: &Arc<Broker>,
    request: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let named =
        request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.as_str().to_string(), t.partitions)).collect());
    let wanted = requested_or_all(broker, named);
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(log_dir(broker));
    for (topic, partitions) in wanted {
        let mut entry = DescribeLogDirsTopic::default();
        entry.name = topic_name(&topic);
        for partition in partitions.into_iter().filter(|p| partition_exists(broker, &topic, *p)) {
            let mut p = DescribeLogDirsPartition::default();
            p.partition_index = partition;
            entry.partitions.push(p);
        }
        if !entry.partitions.is_empty() {
            result.topics.push(entry);
        }
    }
    if version >= 4 {
        result.total_bytes = -1;
        result.usable_bytes = -1;
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results.push(result);
    response
}

fn log_dir(broker: &Broker) -> String {
    let path = broker.config.data_dir.join("hot");
    std::fs::canonicalize(&path).unwrap_or(path).display().to_string()
}

/// Moving a replica to the log dir it is in is a no-op; there is no other.
pub(super) fn alter_replica_log_dirs(
    broker: &Arc<Broker>,
    request: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let ours = log_dir(broker);
    let mut response = AlterReplicaLogDirsResponse::default();
    for dir in request.dirs {
        let known = dir.path.as_str() == ours;
        for topic in dir.topics {
            let mut result = AlterReplicaLogDirTopicResult::default();
            for partition in topic.partitions {
                let mut outcome = AlterReplicaLogDirPartitionResult::default();
                outcome.partition_index = partition;
                outcome.error_code = match () {
                    _ if !partition_exists(broker, topic.name.as_str(), partition) => {
                        ResponseError::UnknownTopicOrPartition.code()
                    }
                    _ if !known => ResponseError::LogDirNotFound.code(),
                    _ => 0,
                };
                result.partitions.push(outcome);
            }
            result.topic_name = topic.name;
            response.results.push(result);
        }
    }
    response
}
