//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords; and
//! InitProducerId, which the producer-id manager answers (`coordinator::producer_ids`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, InitProducerIdRequest, InitProducerIdResponse,
    RequestKind,
};

use super::{Broker, Handled, str_bytes, topic_name};
use crate::log::{LogError, topic_config};
use crate::protocol::apis::Family;
use crate::protocol::{CountErrors, ErrorCounts};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

/// DescribeConfigs' config source for a value set on the topic, and for a default.
pub(super) const SOURCE_TOPIC: i8 = 1;
pub(super) const SOURCE_DEFAULT: i8 = 5;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let handled = match request {
        RequestKind::CreateTopics(body) => Handled::counted(create_topics(broker, body, version, session).await),
        RequestKind::DeleteTopics(body) => Handled::counted(delete_topics(broker, body, session).await),
        RequestKind::CreatePartitions(body) => Handled::counted(create_partitions(broker, body, session).await),
        RequestKind::DeleteRecords(body) => Handled::counted(delete_records(broker, body, session).await),
        RequestKind::InitProducerId(body) => Handled::counted(init_producer_id(broker, body, version, session).await),
        _ => return super::misrouted(Family::Admin),
    };
    Some(handled)
}

pub(super) async fn create_topics(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
    session: &Session,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    // A name given twice creates nothing and is answered once, as Kafka does.
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for wanted in &request.topics {
        *counts.entry(wanted.name.as_str().to_string()).or_default() += 1;
    }
    let mut answered = std::collections::HashSet::new();
    for wanted in request.topics {
        let name = wanted.name.as_str().to_string();
        if !answered.insert(name.clone()) {
            continue;
        }
        let mut result = CreatableTopicResult::default();
        result.name = wanted.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        if counts.get(&name).is_some_and(|&count| count > 1) {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message =
                Some(str_bytes(format!("Create topics request from client contains a duplicate topic {name}")));
            response.topics.push(result);
            continue;
        }
        if !broker.service.may_create_topic(session, &name) {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Authorization failed."));
            response.topics.push(result);
            continue;
        }
        let created = create_one(broker, &wanted, request.validate_only).await;
        match created {
            Ok(topic) => {
                result.topic_id = if request.validate_only { Default::default() } else { topic.id };
                result.num_partitions = topic.partitions.len() as i32;
                result.replication_factor = 1;
                // The configs come back to those who may describe them, as in Kafka.
                if version >= 5 && !broker.service.allowed(session, Operation::DescribeConfigs, Resource::Topic(&name))
                {
                    result.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
                } else if version >= 5 {
                    result.configs = Some(
                        topic_config::describe(&topic.config)
                            .into_iter()
                            .map(|(name, value, explicit)| {
                                let mut config = CreatableTopicConfigs::default();
                                config.name = str_bytes(name);
                                config.value = Some(str_bytes(value));
                                config.config_source = if explicit { SOURCE_TOPIC } else { SOURCE_DEFAULT };
                                config
                            })
                            .collect(),
                    );
                }
            }
            Err(error) => {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(error.to_string()));
            }
        }
        response.topics.push(result);
    }
    response
}

impl CountErrors for CreateTopicsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().map(|t| t.error_code));
    }
}

async fn create_one(
    broker: &Broker,
    wanted: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<Arc<crate::log::Topic>, LogError> {
    if !wanted.assignments.is_empty() {
        if wanted.num_partitions != -1 || wanted.replication_factor != -1 {
            return Err(LogError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set.".into(),
            ));
        }
        let ids = || wanted.assignments.iter().flat_map(|a| a.broker_ids.iter().map(|id| id.0));
        if ids().any(|id| broker.cluster.broker(id).is_none()) {
            return Err(LogError::InvalidReplicaAssignment("Unknown broker(s) in replica assignment".into()));
        }
        let node = broker.cluster.this_broker();
        if wanted.assignments.iter().any(|a| a.broker_ids.iter().any(|id| id.0 != node) || a.broker_ids.len() != 1) {
            return Err(LogError::InvalidReplicationFactor(2));
        }
    }
    let partitions = match (wanted.num_partitions, wanted.assignments.len()) {
        (-1, 0) => broker.config.log.num_partitions,
        (-1, assigned) => assigned as i32,
        (count, _) => count,
    };
    if !matches!(wanted.replication_factor, -1 | 1) {
        return Err(LogError::InvalidReplicationFactor(wanted.replication_factor));
    }
    let mut configs = BTreeMap::new();
    for config in &wanted.configs {
        let Some(value) = &config.value else {
            return Err(LogError::InvalidConfig(format!(
                "Null value not supported for topic config {}",
                config.name.as_str()
            )));
        };
        configs.insert(config.name.as_str().to_string(), value.as_str().to_string());
    }
    topic_config::validate_all(&configs).map_err(LogError::InvalidConfig)?;
    broker.service.create_topic(wanted.name.as_str(), partitions, configs, validate_only).await
}

pub(super) async fn delete_topics(
    broker: &Arc<Broker>,
    request: DeleteTopicsRequest,
    session: &Session,
) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    // v0–5 name topics in topic_names; v6 in topics, by name or id.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        request.topic_names.iter().map(|n| (Some(n.as_str().to_string()), uuid::Uuid::nil())).collect();
    targets.extend(request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.as_str().to_string()), t.topic_id)));
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default();
        result.topic_id = id;
        let may_delete = |name: &str| broker.service.allowed(session, Operation::Delete, Resource::Topic(name));
        let topic = match &name {
            Some(name) if !may_delete(name) => Err(LogError::TopicAuthorizationFailed(name.clone())),
            Some(name) => broker.log.topic(name).ok_or(LogError::UnknownTopicOrPartition),
            None => match broker.log.topic_by_id(id) {
                Some(topic) if !may_delete(&topic.name) => Err(LogError::TopicAuthorizationFailed(String::new())),
                Some(topic) => Ok(topic),
                None => Err(LogError::UnknownTopicId),
            },
        };
        let outcome = match topic {
            Ok(topic) => {
                result.name = Some(topic_name(&topic.name));
                result.topic_id = topic.id;
                let deleted = broker.service.delete_topic(&topic.name).await;
                if deleted.is_ok() {
                    broker.coordinator.topic_deleted(&topic.name).await;
                }
                deleted
            }
            Err(error) => {
                result.name = name.as_deref().map(topic_name);
                Err(error)
            }
        };
        if let Err(error) = outcome {
            result.error_code = error.code();
            result.error_message = Some(str_bytes(error.to_string()));
        }
        response.responses.push(result);
    }
    response
}

impl CountErrors for DeleteTopicsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.responses.iter().map(|t| t.error_code));
    }
}

pub(super) async fn create_partitions(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
    session: &Session,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for wanted in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = wanted.name.clone();
        let outcome = if !broker.service.allowed(session, Operation::Alter, Resource::Topic(wanted.name.as_str())) {
            Err(LogError::TopicAuthorizationFailed(wanted.name.to_string()))
        } else if wanted.assignments.as_ref().is_some_and(|a| {
            a.iter().any(|assignment| assignment.broker_ids.iter().any(|id| id.0 != broker.cluster.this_broker()))
        }) {
            Err(LogError::InvalidRequest("Replica assignments may only name this broker.".into()))
        } else {
            let assignments = wanted.assignments.as_ref().map(Vec::len);
            broker
                .service
                .create_partitions(wanted.name.as_str(), wanted.count, assignments, request.validate_only)
                .await
        };
        if let Err(error) = outcome {
            result.error_code = error.code();
            result.error_message = Some(str_bytes(error.to_string()));
        }
        response.results.push(result);
    }
    response
}

impl CountErrors for CreatePartitionsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.results.iter().map(|t| t.error_code));
    }
}

pub(super) async fn delete_records(
    broker: &Arc<Broker>,
    request: DeleteRecordsRequest,
    session: &Session,
) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let found = broker.service.topic(session, topic.name.as_str(), Operation::Delete);
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name;
        for wanted in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = wanted.partition_index;
            let outcome = match &found {
                Err(error) => Err(super::same_error(error)),
                Ok(t) => match t.partition(wanted.partition_index) {
                    Some(partition) => broker.log.delete_records(partition, wanted.offset).await,
                    None => Err(LogError::UnknownTopicOrPartition),
                },
            };
            match outcome {
                Ok(low_watermark) => result.low_watermark = low_watermark,
                Err(error) => {
                    result.error_code = error.code();
                    result.low_watermark = -1;
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

impl CountErrors for DeleteRecordsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
    }
}

/// InitProducerId: with a transactional id, answered by the transaction coordinator
/// (`coordinator::txn`); without, by the producer-id manager (`coordinator::producer_ids`).
pub(super) async fn init_producer_id(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    version: i16,
    session: &Session,
) -> InitProducerIdResponse {
    let transactional_id = request.transactional_id.as_ref().map(|id| id.as_str());
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let refused = |error: ResponseError| crate::coordinator::producer_ids::InitProducerIdResult {
        producer_id: -1,
        producer_epoch: -1,
        error: error.code(),
    };
    let service = &broker.service;
    // A transactional producer needs WRITE on its transactional id; an idempotent one
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
    let authorized = match transactional_id {
        Some("") => true,
        Some(id) => service.allowed(session, Operation::Write, Resource::TransactionalId(id)),
        None => {
            service.allowed(session, Operation::IdempotentWrite, Resource::Cluster)
                || service.allowed_on_any_topic(session, Operation::Write)
        }
    };
    let mut result = match (transactional_id, &broker.transactions) {
        (Some(""), _) => refused(ResponseError::InvalidRequest),
        (Some(_), _) if !authorized => refused(ResponseError::TransactionalIdAuthorizationFailed),
        (None, _) if !authorized => refused(ResponseError::ClusterAuthorizationFailed),
        (Some(id), Some(transactions)) => {
            transactions.init_producer_id(id, request.transaction_timeout_ms, producer_id, epoch).await
        }
        _ => broker.producer_ids.init_producer_id(transactional_id, producer_id, epoch).await,
    };
    if result.error == ResponseError::ProducerFenced.code() && version < 4 {
        result.error = ResponseError::InvalidProducerEpoch.code();
    }
    let mut response = InitProducerIdResponse::default();
    response.producer_id = result.producer_id.into();
    response.producer_epoch = result.producer_epoch;
    response.error_code = result.error;
    response
}

impl CountErrors for InitProducerIdResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}
