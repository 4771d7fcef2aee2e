//! Fetch (with long polling), ListOffsets and OffsetForLeaderEpoch.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, RequestKind,
};
use tokio::time::Instant;

use super::{Broker, Handled};
use crate::log::{Isolation, LogError, Partition, ReadRequest, ReadResult};
use crate::protocol::apis::Family;
use crate::protocol::{CountErrors, ErrorCounts};

const READ_COMMITTED: i8 = 1;

pub(super) async fn handle(broker: &Arc<Broker>, request: RequestKind, version: i16) -> Option<Handled> {
    let handled = match request {
        RequestKind::Fetch(body) => Handled::counted(fetch(broker, body, version).await),
        RequestKind::ListOffsets(body) => Handled::counted(list_offsets(broker, body, version).await),
        RequestKind::OffsetForLeaderEpoch(body) => Handled::uncounted(offset_for_leader_epoch(broker, body)),
        _ => return super::misrouted(Family::Fetch),
    };
    Some(handled)
}

impl CountErrors for FetchResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
        counts.add_all(self.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
    }
}

impl CountErrors for ListOffsetsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
    }
}

/// One requested partition, resolved against the catalog.
struct Wanted {
    topic_index: usize,
    partition_index: i32,
    metrics: Option<crate::metrics::TopicMetrics>,
    target: Result<(Arc<Partition>, i64, usize), LogError>,
}

pub(super) async fn fetch(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    let mut response = FetchResponse::default();
    // Incremental fetch sessions (KIP-227) are refused honestly: session id 0 tells the client that
    // no session exists, so it keeps sending full fetch requests.
    if request.session_id != 0 || request.session_epoch > 0 {
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return response;
    }
    let mut wanted = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let resolved = if version >= 13 {
            broker.log.topic_by_id(topic.topic_id).ok_or(LogError::UnknownTopicId)
        } else {
            broker.log.topic(topic.topic.as_str()).ok_or(LogError::UnknownTopicOrPartition)
        };
        for partition in &topic.partitions {
            let target = match &resolved {
                Ok(found) => {
                    found.partition(partition.partition).ok_or(LogError::UnknownTopicOrPartition).and_then(|p| {
                        p.check_leader_epoch(partition.current_leader_epoch)?;
                        Ok((p.clone(), partition.fetch_offset, partition.partition_max_bytes.max(0) as usize))
                    })
                }
                Err(LogError::UnknownTopicId) => Err(LogError::UnknownTopicId),
                Err(_) => Err(LogError::UnknownTopicOrPartition),
            };
            let metrics = resolved.as_ref().ok().map(|found| broker.service.topic_metrics(found).clone());
            wanted.push(Wanted { topic_index, partition_index: partition.partition, metrics, target });
        }
    }
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0).min(broker.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = request.min_bytes.max(0) as usize;
    // Kafka caps a fetch response with fetch.max.bytes whatever the client asks for.
    let total_bytes_max = (request.max_bytes.max(0) as usize).min(broker.config.fetch_bytes_max);
    let mut appended = broker.log.appended();
    let results = loop {
        appended.borrow_and_update();
        let reads: Vec<ReadRequest> = wanted
            .iter()
            .filter_map(|w| w.target.as_ref().ok())
            .map(|(partition, offset, max_bytes)| ReadRequest {
                partition: partition.clone(),
                offset: *offset,
                max_bytes: *max_bytes,
                at_least_one: false,
                isolation: if request.isolation_level == READ_COMMITTED {
                    Isolation::Committed
                } else {
                    Isolation::HighWatermark
                },
            })
            .collect();
        let results = broker.unified.read(reads, total_bytes_max).await;
        let bytes: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.records.len()).sum();
        let failed = results.iter().any(Result::is_err) || wanted.iter().any(|w| w.target.is_err());
        if bytes >= min_bytes.max(1) || failed || Instant::now() >= deadline {
            break results;
        }
        // Woken by a group commit or the deadline; either way read again (at the deadline, for the
        // last time) so the response carries whatever has arrived.
        let _ = tokio::time::timeout_at(deadline, appended.changed()).await;
    };
    let mut results = results.into_iter();
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|topic| {
            let mut out = FetchableTopicResponse::default();
            out.topic = topic.topic.clone();
            out.topic_id = topic.topic_id;
            out
        })
        .collect();
    for w in wanted {
        let result = match w.target {
            Ok(_) => results.next().unwrap_or(Err(LogError::Unavailable)),
            Err(error) => Err(error),
        };
        if let (Ok(read), Some(metrics)) = (&result, &w.metrics) {
            let (bytes, records) = crate::log::batch::totals(&read.records);
            metrics.fetched(bytes, records);
        }
        let data = partition_data(w.partition_index, result, request.isolation_level);
        topics[w.topic_index].partitions.push(data);
    }
    response.responses = topics;
    response
}

fn partition_data(index: i32, result: Result<ReadResult, LogError>, isolation_level: i8) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.preferred_read_replica = (-1).into();
    match result {
        Ok(read) => {
            data.high_watermark = read.high_watermark;
            data.last_stable_offset = read.last_stable_offset;
            data.log_start_offset = read.log_start;
            data.aborted_transactions = (isolation_level == READ_COMMITTED).then(Vec::new);
            data.records = Some(read.records);
        }
        Err(error) => {
            data.error_code = error.code();
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            data.log_start_offset = -1;
            data.records = Some(bytes::Bytes::new());
        }
    }
    data
}

/// ListOffsets special timestamps (KIP-734, KIP-1005).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) async fn list_offsets(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    let isolation_level = request.isolation_level;
    for topic in request.topics {
        let found = broker.log.topic(topic.name.as_str());
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name;
        for wanted in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = wanted.partition_index;
            let partition = found.as_ref().and_then(|t| t.partition(wanted.partition_index));
            let result = match partition {
                None => Err(LogError::UnknownTopicOrPartition),
                Some(partition) => offset_at(broker, partition, wanted.timestamp, isolation_level).await,
            };
            match result {
                Ok((offset, timestamp)) => {
                    out.offset = offset;
                    out.timestamp = timestamp;
                    // The leader epoch is a v4+ field; encoding it earlier is an error.
                    if version >= 4 {
                        out.leader_epoch = 0;
                    }
                }
                Err(error) => {
                    out.error_code = error.code();
                    out.offset = -1;
                    out.timestamp = -1;
                    out.leader_epoch = -1;
                }
            }
            topic_response.partitions.push(out);
        }
        response.topics.push(topic_response);
    }
    response
}

async fn offset_at(
    broker: &Broker,
    partition: &Arc<Partition>,
    timestamp: i64,
    isolation_level: i8,
) -> Result<(i64, i64), LogError> {
    match timestamp {
        // What a consumer of that isolation level may read up to, as Kafka's Partition answers.
        LATEST if isolation_level == READ_COMMITTED => Ok((partition.last_stable_offset(), -1)),
        LATEST => Ok((partition.high_watermark(), -1)),
        EARLIEST => Ok((partition.log_start(), -1)),
        // The hot tier's first offset (below it, the object store only), never below the log
        // start; for a topic that never tiered that is the log start, which Kafka answers for a
        // topic without remote storage (UnifiedLog.fetchOffsetByTimestamp).
        EARLIEST_LOCAL => Ok((partition.local_start().max(partition.log_start()), -1)),
        MAX_TIMESTAMP => Ok(broker.unified.max_timestamp(partition).await?.unwrap_or((-1, -1))),
        t if t >= 0 => Ok(broker.unified.offset_for_timestamp(partition, t).await?.unwrap_or((-1, -1))),
        other => Err(LogError::InvalidRequest(format!("unknown ListOffsets timestamp {other}"))),
    }
}

pub(super) fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let found = broker.log.topic(topic.topic.as_str());
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic;
        for wanted in topic.partitions {
            let mut out = EpochEndOffset::default();
            out.partition = wanted.partition;
            match found.as_ref().and_then(|t| t.partition(wanted.partition)) {
                None => {
                    out.error_code = ResponseError::UnknownTopicOrPartition.code();
                    out.leader_epoch = -1;
                    out.end_offset = -1;
                }
                // This log has had one leader epoch, 0, since its first record.
                Some(_) if wanted.current_leader_epoch > 0 => {
                    out.error_code = ResponseError::UnknownLeaderEpoch.code();
                    out.leader_epoch = -1;
                    out.end_offset = -1;
                }
                Some(_) if wanted.leader_epoch < 0 => {
                    out.leader_epoch = -1;
                    out.end_offset = -1;
                }
                Some(partition) => {
                    out.leader_epoch = 0;
                    out.end_offset = partition.high_watermark();
                }
            }
            topic_result.partitions.push(out);
        }
        response.topics.push(topic_result);
    }
    response
}
