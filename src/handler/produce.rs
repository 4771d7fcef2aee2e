//! Produce: validate each partition's batches, queue them for the group commit in request order,
//! answer once every partition's append is durable (or at once, with no answer, for acks=0).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceResponse, RequestKind};
use tokio::sync::oneshot;

use super::{Broker, Handled, PendingResponse, Response, str_bytes};
use crate::log::{AppendInfo, LogError, batch};
use crate::protocol::apis::Family;
use crate::protocol::legacy_produce::{self, LegacyProduce};
use crate::protocol::{CountErrors, ErrorCounts};

enum Outcome {
    Done(Result<AppendInfo, LogError>),
    /// Valid, about to be queued with the request's other partitions.
    Queued,
    Waiting(oneshot::Receiver<Result<AppendInfo, LogError>>),
}

pub(super) async fn handle(broker: &Arc<Broker>, request: RequestKind, version: i16) -> PendingResponse {
    let RequestKind::Produce(request) = request else { return super::ready(super::misrouted(Family::Produce)) };
    let acks = request.acks;
    // First resolve and validate every partition; then queue all valid ones as one unit, so a
    // request's partitions share one group commit (and one fsync).
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut ready = Vec::new();
    for topic_data in request.topic_data {
        let topic = if version >= 13 {
            broker.log.topic_by_id(topic_data.topic_id).ok_or(LogError::UnknownTopicId)
        } else {
            // As in Kafka, only Metadata creates topics; a produce to an unknown one is refused.
            broker.log.topic(topic_data.name.as_str()).ok_or(LogError::UnknownTopicOrPartition)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let mut counted = None;
            let outcome = match &topic {
                Err(error) => Outcome::Done(Err(same_error(error))),
                Ok(topic) => match validate(
                    topic,
                    data.index,
                    data.records,
                    acks,
                    broker.log.record_batch_decompressed_bytes_max(),
                ) {
                    Ok((partition, batches)) => {
                        counted = Some(Counted::of(broker.service.topic_metrics(topic), &batches));
                        ready.push((topic.config.timestamp_type, partition, batches));
                        Outcome::Queued
                    }
                    Err(error) => Outcome::Done(Err(error)),
                },
            };
            partitions.push((data.index, outcome, counted));
        }
        topics.push((topic_data.name, topic_data.topic_id, partitions));
    }
    let receivers = if ready.is_empty() { Ok(Vec::new()) } else { broker.log.submit_appends(ready).await };
    // If queueing failed, every queued partition fails the same way.
    let mut receivers = receivers.unwrap_or_default().into_iter();
    for (_, _, partitions) in &mut topics {
        for (_, outcome, _) in partitions.iter_mut() {
            if matches!(outcome, Outcome::Queued) {
                *outcome = match receivers.next() {
                    Some(receiver) => Outcome::Waiting(receiver),
                    None => Outcome::Done(Err(LogError::Unavailable)),
                };
            }
        }
    }
    if acks == 0 {
        // Kafka sends no response at all for acks=0; errors are only logged.
        return Box::pin(async move {
            for (_, _, partitions) in topics {
                for (_, outcome, counted) in partitions {
                    if let Err(error) = finish(outcome, counted).await {
                        tracing::debug!(%error, "acks=0 produce failed");
                    }
                }
            }
            None
        });
    }
    Box::pin(async move {
        let mut response = ProduceResponse::default();
        for (name, topic_id, partitions) in topics {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = name;
            topic_response.topic_id = topic_id;
            for (index, outcome, counted) in partitions {
                topic_response.partition_responses.push(partition_response(index, finish(outcome, counted).await));
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

/// Checks one partition's records against the topic's rules.
fn validate(
    topic: &crate::log::Topic,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
    decompressed_bytes_max: usize,
) -> Result<(Arc<crate::log::Partition>, Vec<batch::ValidBatch>), LogError> {
    let partition = topic.partition(index).ok_or(LogError::UnknownTopicOrPartition)?;
    if !matches!(acks, -1..=1) {
        return Err(LogError::InvalidRequest(format!("acks must be -1, 0 or 1, not {acks}")));
    }
    if acks == -1 && topic.config.min_insync_replicas > 1 {
        return Err(LogError::NotEnoughReplicas);
    }
    let records = records.unwrap_or_default();
    let batches = batch::validate(&records, topic.config.max_message_bytes.max(0) as usize)?;
    if topic.config.compacted {
        check_keys(topic, index, &batches, decompressed_bytes_max)?;
    }
    Ok((partition.clone(), batches))
}

/// Kafka refuses records without a key on compacted topics, naming each one.
fn check_keys(
    topic: &crate::log::Topic,
    index: i32,
    batches: &[batch::ValidBatch],
    decompressed_bytes_max: usize,
) -> Result<(), LogError> {
    let mut record_errors = Vec::new();
    for valid in batches {
        for position in batch::records_without_key(valid, decompressed_bytes_max)? {
            let message =
                format!("Compacted topic cannot accept message without key in topic partition {}-{index}.", topic.name);
            record_errors.push((position, message));
        }
    }
    if record_errors.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = record_errors.iter().take(3).map(|(_, m)| m.as_str()).collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: {shown:?}",
        record_errors.len()
    );
    Err(LogError::InvalidRecords { message, record_errors })
}

/// What a partition's append adds to its topic's `BytesIn` and `MessagesIn` once it is durable.
struct Counted {
    metrics: crate::metrics::TopicMetrics,
    bytes: usize,
    records: u64,
}

impl Counted {
    fn of(metrics: &crate::metrics::TopicMetrics, batches: &[batch::ValidBatch]) -> Counted {
        let bytes = batches.iter().map(|b| b.bytes.len()).sum();
        let records = batches.iter().map(|b| u64::try_from(b.header.record_count).unwrap_or(0)).sum();
        Counted { metrics: metrics.clone(), bytes, records }
    }
}

async fn finish(outcome: Outcome, counted: Option<Counted>) -> Result<AppendInfo, LogError> {
    let result = match outcome {
        Outcome::Done(result) => result,
        Outcome::Queued => Err(LogError::Unavailable),
        Outcome::Waiting(receiver) => receiver.await.unwrap_or(Err(LogError::Unavailable)),
    };
    if let (Ok(_), Some(counted)) = (&result, counted) {
        counted.metrics.appended(counted.bytes, counted.records);
    }
    result
}

fn partition_response(index: i32, result: Result<AppendInfo, LogError>) -> PartitionProduceResponse {
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
            response.log_start_offset = -1;
            response.error_message = Some(str_bytes(error.to_string()));
            if let LogError::InvalidRecords { record_errors, .. } = error {
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

/// The topic lookup error, repeated for each of its partitions.
fn same_error(error: &LogError) -> LogError {
    match error {
        LogError::UnknownTopicId => LogError::UnknownTopicId,
        LogError::InvalidTopic(reason) => LogError::InvalidTopic(reason.clone()),
        LogError::Unavailable => LogError::Unavailable,
        _ => LogError::UnknownTopicOrPartition,
    }
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
