//! Transactions: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
//! DescribeTransactions, ListTransactions, answered by the transaction coordinator
//! (`coordinator::txn`); and the partition leader's side, answered from the log: DescribeProducers
//! and WriteTxnMarkers (KIP-664's tooling: `kafka-transactions.sh describe-producers`,
//! `find-hanging` and `abort`). InitProducerId is dispatched by `admin.rs`, FindCoordinator by
//! `groups.rs`.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, RequestKind,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    describe_producers_response, describe_transactions_response, list_transactions_response,
    write_txn_markers_response,
};

use super::{Broker, Handled, misrouted, str_bytes, topic_name};
use crate::coordinator::group::{CommitRequest, OFFSET_METADATA_BYTES_MAX, OFFSETS_TOPIC};
use crate::coordinator::txn::{TransactionCoordinator, TxnState};
use crate::protocol::apis::Family;
use crate::protocol::{CountErrors, ErrorCounts};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    kind: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    Some(match kind {
        RequestKind::AddPartitionsToTxn(body) => Handled::counted(add_partitions(broker, body, version, session).await),
        RequestKind::AddOffsetsToTxn(body) => Handled::counted(add_offsets(broker, body, version, session).await),
        RequestKind::EndTxn(body) => Handled::counted(end_txn(broker, body, version, session).await),
        RequestKind::TxnOffsetCommit(body) => Handled::counted(txn_offset_commit(broker, body, version, session).await),
        RequestKind::DescribeTransactions(body) => Handled::counted(describe(broker, body, session)),
        RequestKind::ListTransactions(body) => Handled::counted(list(broker, body, session)),
        RequestKind::DescribeProducers(body) => Handled::counted(describe_producers(broker, body, session).await),
        RequestKind::WriteTxnMarkers(body) => Handled::counted(write_markers(broker, body, session).await),
        _ => return misrouted(Family::Txn),
    })
}

/// The coordinator, or the error a client gets where there is none.
fn coordinator(broker: &Broker) -> Result<&TransactionCoordinator, ResponseError> {
    broker.transactions.as_ref().ok_or(ResponseError::CoordinatorNotAvailable)
}

/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED when the session may not do `operation` on the
/// transactional id.
fn authorize_txn(broker: &Broker, session: &Session, operation: Operation, id: &str) -> Result<(), ResponseError> {
    match broker.service.allowed(session, operation, Resource::TransactionalId(id)) {
        true => Ok(()),
        false => Err(ResponseError::TransactionalIdAuthorizationFailed),
    }
}

/// GROUP_AUTHORIZATION_FAILED when the session may not read (commit offsets for) the group.
fn authorize_group(broker: &Broker, session: &Session, group: &str) -> Result<(), ResponseError> {
    match broker.service.allowed(session, Operation::Read, Resource::Group(group)) {
        true => Ok(()),
        false => Err(ResponseError::GroupAuthorizationFailed),
    }
}

/// PRODUCER_FENCED for the versions that know it; INVALID_PRODUCER_EPOCH for older ones, as
/// Kafka's `KafkaApis` maps it (KIP-588).
pub(super) fn fenced_for(version: i16, known_from: i16, error: ResponseError) -> i16 {
    if error == ResponseError::ProducerFenced && version < known_from {
        return ResponseError::InvalidProducerEpoch.code();
    }
    error.code()
}

async fn add_partitions(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
    session: &Session,
) -> AddPartitionsToTxnResponse {
    if version >= 4 {
        return verify_partitions(broker, request, session);
    }
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str().to_string(), *p)))
        .collect();
    // As in Kafka: a topic the session may not write fails the whole request, its partitions
    // with TOPIC_AUTHORIZATION_FAILED and the others with OPERATION_NOT_ATTEMPTED.
    let may_write = |topic: &str| broker.service.allowed(session, Operation::Write, Resource::Topic(topic));
    let topics_refused = partitions.iter().any(|(topic, _)| !may_write(topic));
    let authorized = authorize_txn(broker, session, Operation::Write, request.v3_and_below_transactional_id.as_str());
    let result = match coordinator(broker) {
        _ if authorized.is_err() => authorized.map(|()| Vec::new()),
        _ if topics_refused => Ok(partitions
            .iter()
            .map(|(topic, index)| {
                let code = match may_write(topic) {
                    true => ResponseError::OperationNotAttempted.code(),
                    false => ResponseError::TopicAuthorizationFailed.code(),
                };
                (topic.clone(), *index, code)
            })
            .collect()),
        Ok(transactions) => {
            transactions
                .add_partitions(
                    request.v3_and_below_transactional_id.as_str(),
                    request.v3_and_below_producer_id.0,
                    request.v3_and_below_producer_epoch,
                    partitions.clone(),
                )
                .await
        }
        Err(error) => Err(error),
    };
    // A refusal of the whole request is every partition's error.
    let codes: Vec<(String, i32, i16)> = match result {
        Ok(codes) => codes,
        Err(error) => {
            let code = fenced_for(version, 2, error);
            partitions.into_iter().map(|(topic, index)| (topic, index, code)).collect()
        }
    };
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(codes))
}

/// Per-partition codes, grouped by topic in the order they come.
fn topic_results(codes: impl IntoIterator<Item = (String, i32, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (topic, index, code) in codes {
        let result =
            AddPartitionsToTxnPartitionResult::default().with_partition_index(index).with_partition_error_code(code);
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry.results_by_partition.push(result),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic_name(&topic))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    topics
}

/// AddPartitionsToTxn v4+, the brokers' batched form (KIP-890): a partition's leader asks
/// whether each producer's transaction is in progress at its epoch and holds the partitions
/// (`verify_only`). CLUSTER_ACTION on the cluster, as in Kafka. Adding partitions this way
/// (transaction version 2's implicit add) is not offered: INVALID_REQUEST.
fn verify_partitions(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    session: &Session,
) -> AddPartitionsToTxnResponse {
    use kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnResult;
    if !broker.service.allowed(session, Operation::ClusterAction, Resource::Cluster) {
        return AddPartitionsToTxnResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut response = AddPartitionsToTxnResponse::default();
    for transaction in request.transactions {
        let id = transaction.transactional_id.as_str();
        let partitions: Vec<(String, i32)> = transaction
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str().to_string(), *p)))
            .collect();
        let codes = match coordinator(broker) {
            _ if !transaction.verify_only => Err(ResponseError::InvalidRequest),
            Ok(transactions) => {
                transactions.verify(id, transaction.producer_id.0, transaction.producer_epoch, &partitions)
            }
            Err(error) => Err(error),
        };
        let codes = match codes {
            Ok(codes) => codes,
            Err(error) => vec![error.code(); partitions.len()],
        };
        let codes = partitions.into_iter().zip(codes).map(|((topic, index), code)| (topic, index, code));
        response.results_by_transaction.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id)
                .with_topic_results(topic_results(codes)),
        );
    }
    response
}

impl CountErrors for AddPartitionsToTxnResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
        counts.add_all(
            self.results_by_topic_v3_and_below
                .iter()
                .chain(self.results_by_transaction.iter().flat_map(|t| &t.topic_results))
                .flat_map(|t| &t.results_by_partition)
                .map(|p| p.partition_error_code),
        );
    }
}

async fn add_offsets(
    broker: &Broker,
    request: AddOffsetsToTxnRequest,
    version: i16,
    session: &Session,
) -> AddOffsetsToTxnResponse {
    let authorized = authorize_txn(broker, session, Operation::Write, request.transactional_id.as_str())
        .and_then(|()| authorize_group(broker, session, request.group_id.as_str()));
    let result = match coordinator(broker) {
        _ if authorized.is_err() => authorized,
        Ok(transactions) => {
            transactions
                .add_offsets(
                    request.transactional_id.as_str(),
                    request.producer_id.0,
                    request.producer_epoch,
                    request.group_id.as_str(),
                )
                .await
        }
        Err(error) => Err(error),
    };
    AddOffsetsToTxnResponse::default().with_error_code(result.err().map_or(0, |e| fenced_for(version, 2, e)))
}

impl CountErrors for AddOffsetsToTxnResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

async fn end_txn(broker: &Broker, request: EndTxnRequest, version: i16, session: &Session) -> EndTxnResponse {
    let authorized = authorize_txn(broker, session, Operation::Write, request.transactional_id.as_str());
    let result = match coordinator(broker) {
        _ if authorized.is_err() => authorized,
        Ok(transactions) => {
            transactions
                .end_txn(
                    request.transactional_id.as_str(),
                    request.producer_id.0,
                    request.producer_epoch,
                    request.committed,
                )
                .await
        }
        Err(error) => Err(error),
    };
    EndTxnResponse::default()
        .with_error_code(result.err().map_or(0, |e| fenced_for(version, 2, e)))
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}

impl CountErrors for EndTxnResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

async fn txn_offset_commit(
    broker: &Broker,
    request: TxnOffsetCommitRequest,
    version: i16,
    session: &Session,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.as_str().to_string();
    let mut offsets = Vec::new();
    let mut codes: Vec<(String, i32, i16)> = Vec::new();
    let authorized = authorize_txn(broker, session, Operation::Write, request.transactional_id.as_str())
        .and_then(|()| authorize_group(broker, session, &group));
    for topic in &request.topics {
        let may_read = broker.service.allowed(session, Operation::Read, Resource::Topic(topic.name.as_str()));
        for partition in &topic.partitions {
            let name = topic.name.as_str().to_string();
            if let Err(error) = authorized {
                codes.push((name, partition.partition_index, error.code()));
                continue;
            }
            if !may_read {
                codes.push((name, partition.partition_index, ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let metadata = partition.committed_metadata.as_ref().map(|m| m.as_str().to_string());
            if metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
                codes.push((name, partition.partition_index, ResponseError::OffsetMetadataTooLarge.code()));
                continue;
            }
            codes.push((name.clone(), partition.partition_index, 0));
            offsets.push(CommitRequest {
                topic: name,
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata,
            });
        }
    }
    // Sent to the group's coordinator, which keeps the offsets until the transaction's marker
    // reaches it, once the transaction's coordinator (here or on another broker) vouches for
    // the producer.
    let id = request.transactional_id.as_str();
    let checked = match (super::groups::not_coordinating(broker, &group), coordinator(broker)) {
        (Some(error), _) | (None, Err(error)) => Err(error),
        (None, Ok(transactions)) => {
            transactions.verify_offsets(id, request.producer_id.0, request.producer_epoch, &group).await
        }
    };
    let member = checked.and_then(|()| {
        broker.coordinator.check_transactional_member(
            &group,
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|id| id.as_str()),
            request.generation_id,
        )
    });
    let result = match member {
        _ if authorized.is_err() => Ok(Vec::new()),
        Err(error) => Err(error),
        Ok(()) => {
            broker.coordinator.commit_pending(&group, request.producer_id.0, request.producer_epoch, offsets).await
        }
    };
    match result {
        Err(error) => {
            let code = fenced_for(version, 2, error);
            codes.iter_mut().filter(|(_, _, c)| *c == 0).for_each(|(_, _, c)| *c = code);
        }
        // One code per offset sent, in order, for those not refused before.
        Ok(sent) => {
            let mut sent = sent.into_iter();
            for code in codes.iter_mut().filter(|(_, _, c)| *c == 0) {
                code.2 = sent.next().unwrap_or(0);
            }
        }
    }
    let mut response = TxnOffsetCommitResponse::default();
    for (topic, index, code) in codes {
        let partition = TxnOffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(code);
        match response.topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry.partitions.push(partition),
            None => response.topics.push(
                TxnOffsetCommitResponseTopic::default().with_name(topic_name(&topic)).with_partitions(vec![partition]),
            ),
        }
    }
    response
}

impl CountErrors for TxnOffsetCommitResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
    }
}

fn describe(broker: &Broker, request: DescribeTransactionsRequest, session: &Session) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    for id in &request.transactional_ids {
        let mut state = describe_transactions_response::TransactionState::default().with_transactional_id(id.clone());
        let found = authorize_txn(broker, session, Operation::Describe, id.as_str())
            .and_then(|()| coordinator(broker))
            .and_then(|c| c.describe(id.as_str()));
        match found {
            Err(error) => state.error_code = error.code(),
            Ok(None) => state.error_code = ResponseError::TransactionalIdNotFound.code(),
            Ok(Some(txn)) => {
                state.transaction_state = str_bytes(txn.state.name());
                state.transaction_timeout_ms = txn.timeout_ms;
                state.transaction_start_time_ms = if txn.state == TxnState::Ongoing { txn.start_ms } else { -1 };
                state.producer_id = txn.producer_id.into();
                state.producer_epoch = txn.producer_epoch;
                let mut topics: Vec<describe_transactions_response::TopicData> = Vec::new();
                // Only the topics the session may describe are named.
                let held = txn.held_partitions();
                let described = held
                    .iter()
                    .filter(|(topic, _)| broker.service.allowed(session, Operation::Describe, Resource::Topic(topic)));
                for (topic, index) in described {
                    match topics.iter_mut().find(|t| t.topic.as_str() == topic) {
                        Some(entry) => entry.partitions.push(*index),
                        None => topics.push(
                            describe_transactions_response::TopicData::default()
                                .with_topic(topic_name(topic))
                                .with_partitions(vec![*index]),
                        ),
                    }
                }
                state.topics = topics;
            }
        }
        response.transaction_states.push(state);
    }
    response
}

impl CountErrors for DescribeTransactionsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.transaction_states.iter().map(|s| s.error_code));
    }
}

/// ListTransactions, with Kafka's filters: states (unknown names reported back), producer ids,
/// and (v1) transactions running longer than a duration.
fn list(broker: &Broker, request: ListTransactionsRequest, session: &Session) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let transactions = match coordinator(broker) {
        Ok(transactions) => transactions,
        Err(error) => return response.with_error_code(error.code()),
    };
    const STATES: [&str; 6] = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];
    response.unknown_state_filters =
        request.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    let now = crate::log::now_ms();
    for (id, txn) in transactions.list() {
        let state_ok =
            request.state_filters.is_empty() || request.state_filters.iter().any(|s| s.as_str() == txn.state.name());
        let producer_ok = request.producer_id_filters.is_empty()
            || request.producer_id_filters.iter().any(|p| p.0 == txn.producer_id);
        let duration_ok = request.duration_filter < 0
            || (txn.state == TxnState::Ongoing && now - txn.start_ms > request.duration_filter);
        let described = broker.service.allowed(session, Operation::Describe, Resource::TransactionalId(&id));
        if state_ok && producer_ok && duration_ok && described {
            response.transaction_states.push(
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(str_bytes(id).into())
                    .with_producer_id(txn.producer_id.into())
                    .with_transaction_state(str_bytes(txn.state.name())),
            );
        }
    }
    response
}

impl CountErrors for ListTransactionsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

/// DescribeProducers (KIP-664): the producers with state on each partition this broker leads,
/// with the first offset of the transaction each has open there. READ on the topic, as in Kafka.
async fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
    session: &Session,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let mut answered = describe_producers_response::TopicResponse::default().with_name(topic.name.clone());
        for index in topic.partition_indexes {
            let mut partition = describe_producers_response::PartitionResponse::default().with_partition_index(index);
            match producers_of(broker, session, topic.name.as_str(), index).await {
                Ok(producers) => partition.active_producers = producers,
                Err(error) => partition.error_code = error.code(),
            }
            answered.partitions.push(partition);
        }
        response.topics.push(answered);
    }
    response
}

async fn producers_of(
    broker: &Broker,
    session: &Session,
    topic: &str,
    index: i32,
) -> Result<Vec<describe_producers_response::ProducerState>, crate::log::LogError> {
    let topic = broker.service.topic(session, topic, Operation::Read)?;
    let partition = topic.partition(index).ok_or(crate::log::LogError::UnknownTopicOrPartition)?;
    broker.service.metadata().check_leader(partition, -1)?;
    let mut producers = broker.service.log().producers(partition).await?;
    producers.sort_by_key(|(producer_id, _)| *producer_id);
    Ok(producers
        .into_iter()
        .map(|(producer_id, entry)| {
            describe_producers_response::ProducerState::default()
                .with_producer_id(producer_id.into())
                .with_producer_epoch(i32::from(entry.epoch))
                .with_last_sequence(entry.last_sequence())
                .with_last_timestamp(entry.last_timestamp)
                .with_coordinator_epoch(entry.coordinator_epoch)
                .with_current_txn_start_offset(entry.txn_first_offset.unwrap_or(-1))
        })
        .collect())
}

impl CountErrors for DescribeProducersResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
    }
}

/// WriteTxnMarkers: a commit or abort marker for a producer in partitions this broker leads,
/// what a transaction coordinator sends and what `Admin.abortTransaction` sends to end a hanging
/// transaction. CLUSTER_ACTION on the cluster, as in Kafka. A partition this broker does not lead
/// is NOT_LEADER_OR_FOLLOWER; a marker older than the producer's epoch there is
/// INVALID_PRODUCER_EPOCH.
async fn write_markers(broker: &Broker, request: WriteTxnMarkersRequest, session: &Session) -> WriteTxnMarkersResponse {
    let allowed = broker.service.allowed(session, Operation::ClusterAction, Resource::Cluster);
    // A partition whose marker is still to be written.
    const PENDING: i16 = i16::MIN;
    let mut response = WriteTxnMarkersResponse::default();
    for marker in request.markers {
        let mut codes: Vec<(kafka_protocol::messages::TopicName, i32, i16)> = Vec::new();
        let mut writable = Vec::new();
        for topic in &marker.topics {
            for &index in &topic.partition_indexes {
                // A group slot: the producer's transactional offsets there end (Kafka's marker
                // in a partition of `__consumer_offsets`).
                if topic.name.as_str() == OFFSETS_TOPIC {
                    let code = match u32::try_from(index) {
                        _ if !allowed => ResponseError::ClusterAuthorizationFailed.code(),
                        Err(_) => ResponseError::UnknownTopicOrPartition.code(),
                        Ok(slot) => broker
                            .coordinator
                            .end_transaction(
                                slot,
                                marker.producer_id.0,
                                marker.producer_epoch,
                                marker.transaction_result,
                            )
                            .await
                            .map_or_else(|e| e.code(), |()| 0),
                    };
                    codes.push((topic.name.clone(), index, code));
                    continue;
                }
                let found = broker.service.log().topic(topic.name.as_str()).and_then(|t| t.partition(index).cloned());
                let checked = match found {
                    _ if !allowed => Err(ResponseError::ClusterAuthorizationFailed.code()),
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(partition) => match broker.service.metadata().check_leader(&partition, -1) {
                        Ok(()) => Ok(partition),
                        Err(error) => Err(error.code()),
                    },
                };
                match checked {
                    Ok(partition) => {
                        writable.push(partition);
                        codes.push((topic.name.clone(), index, PENDING));
                    }
                    Err(code) => codes.push((topic.name.clone(), index, code)),
                }
            }
        }
        if !writable.is_empty() {
            let log = broker.service.log();
            let (producer_id, epoch) = (marker.producer_id.0, marker.producer_epoch);
            let written =
                log.write_markers(writable, producer_id, epoch, marker.transaction_result, marker.coordinator_epoch);
            let mut results = match written.await {
                Ok(results) => results.into_iter().map(|r| r.map_or_else(|e| e.code(), |_| 0)).collect(),
                Err(error) => vec![error.code(); codes.iter().filter(|c| c.2 == PENDING).count()],
            }
            .into_iter();
            for code in codes.iter_mut().filter(|c| c.2 == PENDING) {
                code.2 = results.next().unwrap_or(ResponseError::UnknownServerError.code());
            }
        }
        let mut result =
            write_txn_markers_response::WritableTxnMarkerResult::default().with_producer_id(marker.producer_id);
        for (name, index, code) in codes {
            let partition = write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                .with_partition_index(index)
                .with_error_code(code);
            match result.topics.iter_mut().find(|t| t.name == name) {
                Some(topic) => topic.partitions.push(partition),
                None => result.topics.push(
                    write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                        .with_name(name)
                        .with_partitions(vec![partition]),
                ),
            }
        }
        response.markers.push(result);
    }
    response
}

impl CountErrors for WriteTxnMarkersResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(
            self.markers.iter().flat_map(|m| m.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))),
        );
    }
}
