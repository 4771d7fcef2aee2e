//! Produce: the broker service validates each partition's batches; they are queued for the group commit in request order,
//! answer once every partition's append is durable (or at once, with no answer, for acks=0).

use std::sync::Arc;

use super::{Broker, Handled, PendingResponse, Response, same_error, str_bytes};
use crate::log::batch::BatchError;
use crate::log::{AppendInfo, LogError};
use crate::protocol::apis::Family;
use crate::protocol::legacy_produce::{self, LegacyProduce};
use crate::protocol::{CountErrors, ErrorCounts};
use crate::service::PendingAppend;
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceResponse, RequestKind};

enum Outcome {
    Done(Result<AppendInfo, LogError>),
    /// Valid, about to be queued with the request's other partitions.
    Queued,
    Waiting(PendingAppend),
}

/// A transactional write must name its transactional id in the request (Kafka authorizes its
/// WRITE on it: without one, TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and belong to a transaction
/// in progress that holds the partition (KIP-890's verification, asked of the id's coordinator
/// when that is another broker); a broker without a transaction coordinator refuses it.
/// `id_authorized`: whether the session may WRITE the request's transactional id, decided once
/// per request.
async fn check_transaction(
    broker: &Broker,
    validated: &crate::service::Validated,
    transactional_id: Option<&str>,
    id_authorized: bool,
    topic: &str,
) -> Result<(), LogError> {
    if let Some(id) = transactional_id
        && !id_authorized
    {
        return Err(LogError::TransactionalIdAuthorizationFailed(id.to_string()));
    }
    let Some((producer_id, producer_epoch)) = validated.transactional_producer() else { return Ok(()) };
    let Some(id) = transactional_id else {
        return Err(LogError::TransactionalIdAuthorizationFailed("null".into()));
    };
    match &broker.transactions {
        Some(transactions) => {
            transactions.verify_write(id, producer_id, producer_epoch, topic, validated.partition()).await
        }
        None => Err(LogError::TransactionsUnsupported),
    }
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> PendingResponse {
    let RequestKind::Produce(request) = request else { return super::ready(super::misrouted(Family::Produce)) };
    let acks = request.acks;
    let transactional_id = request.transactional_id.as_ref().map(|id| id.as_str().to_string());
    let transactional_id = transactional_id.as_deref();
    let service = &broker.service;
    let id_authorized =
        transactional_id.is_none_or(|id| service.allowed(session, Operation::Write, Resource::TransactionalId(id)));
    // First resolve and validate every partition through the broker service (the topic rules the
    // HTTP door applies too); then queue all valid ones as one unit, so a request's partitions
    // share one group commit (and one fsync).
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut ready = Vec::new();
    for topic_data in request.topic_data {
        let topic = if version >= 13 {
            service.topic_by_id(session, topic_data.topic_id, Operation::Write)
        } else {
            // As in Kafka, only Metadata creates topics; a produce to an unknown one is refused.
            service.topic_for_write(session, topic_data.name.as_str(), false).await
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let outcome = match &topic {
                Err(error) => Outcome::Done(Err(same_error(error))),
                Ok(topic) => match service.validate(topic, data.index, &data.records.unwrap_or_default(), acks) {
                    Ok(validated) => {
                        match check_transaction(broker, &validated, transactional_id, id_authorized, &topic.name).await
                        {
                            Ok(()) => {
                                ready.push(validated);
                                Outcome::Queued
                            }
                            Err(error) => Outcome::Done(Err(error)),
                        }
                    }
                    Err(error) => Outcome::Done(Err(error)),
                },
            };
            partitions.push((data.index, outcome));
        }
        topics.push((topic_data.name, topic_data.topic_id, topic.ok(), partitions));
    }
    let pending = if ready.is_empty() { Ok(Vec::new()) } else { service.append(ready).await };
    // If queueing failed, every queued partition fails the same way.
    let mut pending = pending.unwrap_or_default().into_iter();
    for (_, _, _, partitions) in &mut topics {
        for (_, outcome) in partitions.iter_mut() {
            if matches!(outcome, Outcome::Queued) {
                *outcome = match pending.next() {
                    Some(append) => Outcome::Waiting(append),
                    None => Outcome::Done(Err(LogError::Unavailable)),
                };
            }
        }
    }
    if acks == 0 {
        // Kafka sends no response at all for acks=0; a failure closes the connection, which
        // tells the client (the Java producer then refreshes its metadata).
        return Box::pin(async move {
            let mut failed = false;
            for (_, _, _, partitions) in topics {
                for (_, outcome) in partitions {
                    if let Err(error) = finish(outcome).await {
                        tracing::debug!(%error, "acks=0 produce failed");
                        failed = true;
                    }
                }
            }
            failed.then(|| Handled { response: Response::Close, errors: ErrorCounts::default() })
        });
    }
    let (broker, listener) = (broker.clone(), session.listener.clone());
    Box::pin(async move {
        let mut response = ProduceResponse::default();
        for (name, topic_id, topic, partitions) in topics {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = name;
            topic_response.topic_id = topic_id;
            for (index, outcome) in partitions {
                let log_start = || topic.as_ref().and_then(|t| t.partition(index)).map_or(-1, |p| p.log_start());
                let mut answer = partition_response(index, finish(outcome).await, log_start);
                let moved = answer.error_code == ResponseError::NotLeaderOrFollower.code() && version >= 10;
                let leader = topic.as_ref().and_then(|t| t.partition(index)).filter(|_| moved);
                if let Some((leader, epoch, address)) =
                    leader.and_then(|p| super::current_leader(&broker, &listener, p))
                {
                    answer.current_leader =
                        LeaderIdAndEpoch::default().with_leader_id(leader.into()).with_leader_epoch(epoch);
                    if !response.node_endpoints.iter().any(|n| n.node_id.0 == leader) {
                        response.node_endpoints.push(
                            NodeEndpoint::default()
                                .with_node_id(leader.into())
                                .with_host(str_bytes(address.host))
                                .with_port(address.port)
                                .with_rack(address.rack.map(str_bytes)),
                        );
                    }
                }
                topic_response.partition_responses.push(answer);
            }
            response.responses.push(topic_response);
        }
        Some(Handled::counted(response))
    })
}

impl CountErrors for ProduceResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.responses.iter().flat_map(|t| &t.partition_responses).map(|p| p.error_code));
    }
}

/// The partition's append result once durable (the service counts it in the topic's metrics).
async fn finish(outcome: Outcome) -> Result<AppendInfo, LogError> {
    match outcome {
        Outcome::Done(result) => result,
        Outcome::Queued => Err(LogError::Unavailable),
        Outcome::Waiting(append) => append.wait().await,
    }
}

/// The partition's answer; `log_start` gives its log start for the errors Kafka reports it with.
fn partition_response(
    index: i32,
    result: Result<AppendInfo, LogError>,
    log_start: impl FnOnce() -> i64,
) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    match result {
        Ok(info) => {
            response.base_offset = info.base_offset;
            response.log_append_time_ms = info.log_append_time_ms;
            response.log_start_offset = info.log_start;
        }
        Err(error) => {
            response.error_code = error.code();
            response.base_offset = -1;
            response.log_append_time_ms = -1;
            // Kafka's ReplicaManager answers -1 for errors found before the partition's log is
            // reached, and the log start for those the log found (records, sequences, epochs).
            response.log_start_offset = match error {
                LogError::UnknownTopicOrPartition
                | LogError::UnknownTopicId
                | LogError::NotLeaderOrFollower
                | LogError::InvalidRequiredAcks(_)
                | LogError::Batch(
                    BatchError::Corrupt | BatchError::CrcMismatch | BatchError::TooLarge { .. } | BatchError::Empty,
                )
                | LogError::TransactionsUnsupported
                | LogError::TransactionalIdAuthorizationFailed(_)
                | LogError::Storage(_)
                | LogError::Unavailable => -1,
                _ => log_start(),
            };
            response.error_message = Some(str_bytes(error.to_string()));
            if let LogError::InvalidRecords { record_errors, .. } | LogError::InvalidTimestamp { record_errors, .. } =
                error
            {
                response.record_errors = record_errors
                    .into_iter()
                    .map(|(batch_index, message)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(batch_index)
                            .with_batch_index_error_message(Some(str_bytes(message)))
                    })
                    .collect();
            }
        }
    }
    response
}

/// Produce v0–v2 is advertised for librdkafka's sake and refused, as Apache Kafka 4 does. The
/// refusal's error codes are not counted.
pub(super) fn refuse_legacy(request: &LegacyProduce, version: i16) -> Option<Handled> {
    if request.acks == 0 {
        return None;
    }
    let body = legacy_produce::encode_error(request, version, ResponseError::UnsupportedVersion.code());
    Some(Handled { response: Response::RawV0(body), errors: ErrorCounts::default() })
}
