//! Fetch (with long polling), ListOffsets and OffsetForLeaderEpoch.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, RequestKind,
};
use tokio::time::Instant;

use super::{Broker, Handled, same_error};
use crate::log::{Isolation, LogError, Partition, ReadResult};
use crate::protocol::apis::Family;
use crate::protocol::{CountErrors, ErrorCounts};
use crate::security::quota::QuotaKind;
use crate::service::authorizer::Operation;
use crate::service::session::Session;
use crate::service::{PartitionRead, ReadWait};

const READ_COMMITTED: i8 = 1;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let handled = match request {
        RequestKind::Fetch(body) => Handled::counted(fetch(broker, body, version, session).await),
        RequestKind::ListOffsets(body) => Handled::counted(list_offsets(broker, body, version, session).await),
        RequestKind::OffsetForLeaderEpoch(body) => Handled::uncounted(offset_for_leader_epoch(broker, body, session)),
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
    target: Result<PartitionRead, LogError>,
}

pub(super) async fn fetch(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
    session: &Session,
) -> FetchResponse {
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
                Ok(found) => found.partition(partition.partition).ok_or(LogError::UnknownTopicOrPartition).map(|p| {
                    let max_bytes = partition.partition_max_bytes.max(0) as usize;
                    let mut read = PartitionRead::new(found.clone(), p.clone(), partition.fetch_offset, max_bytes);
                    read.current_leader_epoch = partition.current_leader_epoch;
                    read
                }),
                Err(LogError::UnknownTopicId) => Err(LogError::UnknownTopicId),
                Err(_) => Err(LogError::UnknownTopicOrPartition),
            };
            wanted.push(Wanted { topic_index, partition_index: partition.partition, target });
        }
    }
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0).min(broker.config.network.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    // A partition the request could not resolve answers at once, as Kafka's fetch does.
    let wait = wanted
        .iter()
        .all(|w| w.target.is_ok())
        .then_some(ReadWait { min_bytes: request.min_bytes.max(0) as usize, deadline });
    // Kafka caps a fetch response with fetch.max.bytes whatever the client asks for.
    let mut total_bytes_max = (request.max_bytes.max(0) as usize).min(broker.config.network.fetch_bytes_max);
    // And, for a client with a consumer quota, with what one quota window allows.
    let quota_bytes_max = broker.quotas.fetch_bytes_max(session);
    if let Some(quota_bytes_max) = quota_bytes_max {
        total_bytes_max = total_bytes_max.min(quota_bytes_max.max(1));
    }
    let isolation =
        if request.isolation_level == READ_COMMITTED { Isolation::Committed } else { Isolation::HighWatermark };
    let reads = wanted.iter().filter_map(|w| w.target.as_ref().ok().cloned()).collect();
    let results = broker.service.read(session, reads, isolation, total_bytes_max, wait).await;
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
        let (result, target) = match w.target {
            Ok(target) => (results.next().unwrap_or(Err(LogError::Unavailable)), Some(target)),
            Err(error) => (Err(error), None),
        };
        let moved = matches!(result, Err(LogError::NotLeaderOrFollower | LogError::FencedLeaderEpoch));
        let mut data = partition_data(w.partition_index, result, request.isolation_level);
        // KIP-951: where the partition's leader is now (v16+).
        let leader = target.filter(|_| moved && version >= 16);
        if let Some((leader, epoch, address)) =
            leader.and_then(|t| super::current_leader(broker, &session.listener, &t.partition))
        {
            data.current_leader = LeaderIdAndEpoch::default().with_leader_id(leader.into()).with_leader_epoch(epoch);
            if !response.node_endpoints.iter().any(|n| n.node_id.0 == leader) {
                response.node_endpoints.push(
                    NodeEndpoint::default()
                        .with_node_id(leader.into())
                        .with_host(super::str_bytes(address.host))
                        .with_port(address.port)
                        .with_rack(address.rack.map(super::str_bytes)),
                );
            }
        }
        topics[w.topic_index].partitions.push(data);
    }
    response.responses = topics;
    if quota_bytes_max.is_some() {
        return throttled(broker, session, response);
    }
    response
}

/// A fetch by a client with a consumer quota: its response's bytes are recorded, and one that
/// takes the client over its quota is answered empty with the throttle time instead (and not
/// counted), as Kafka does.
fn throttled(broker: &Broker, session: &Session, response: FetchResponse) -> FetchResponse {
    let bytes: usize =
        response.responses.iter().flat_map(|t| &t.partitions).filter_map(|p| p.records.as_ref()).map(|r| r.len()).sum();
    let throttle = broker.quotas.record(QuotaKind::Fetch, session, bytes as f64);
    if throttle.is_zero() {
        return response;
    }
    broker.quotas.unrecord(QuotaKind::Fetch, session, bytes as f64);
    let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    FetchResponse::default().with_throttle_time_ms(ms).with_session_id(response.session_id)
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
            data.aborted_transactions = (isolation_level == READ_COMMITTED).then(|| {
                read.aborted
                    .iter()
                    .map(|txn| {
                        kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                            .with_producer_id(txn.producer_id.into())
                            .with_first_offset(txn.first_offset)
                    })
                    .collect()
            });
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
const LATEST_TIERED: i64 = -5;

pub(super) async fn list_offsets(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
    session: &Session,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    let isolation_level = request.isolation_level;
    for topic in request.topics {
        let found = broker.service.topic(session, topic.name.as_str(), Operation::Describe);
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name;
        for wanted in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = wanted.partition_index;
            let partition = found.as_ref().ok().and_then(|t| t.partition(wanted.partition_index));
            let result = match (&found, partition) {
                (Err(error), _) => Err(same_error(error)),
                (_, None) => Err(LogError::UnknownTopicOrPartition),
                (_, Some(partition)) => match broker.cluster.check_leader(partition, wanted.current_leader_epoch) {
                    Ok(()) => offset_at(broker, partition, wanted.timestamp, isolation_level).await,
                    Err(error) => Err(error),
                },
            };
            match result {
                Ok((offset, timestamp)) => {
                    out.offset = offset;
                    out.timestamp = timestamp;
                    // The leader epoch is a v4+ field; encoding it earlier is an error. As in
                    // Kafka: the epoch that wrote the offset (the latest for the log end), -1
                    // when no offset was found.
                    if version >= 4 {
                        out.leader_epoch = match partition {
                            Some(_) if offset < 0 => -1,
                            Some(p) if offset >= p.high_watermark() => p.leader_epoch(),
                            Some(p) => p.epoch_at(offset).unwrap_or(-1),
                            None => -1,
                        };
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
        // The last offset in the object store (KIP-1005), -1 when nothing is there yet.
        LATEST_TIERED => Ok((partition.remote_end() - 1, -1)),
        t if t >= 0 => Ok(broker.unified.offset_for_timestamp(partition, t).await?.unwrap_or((-1, -1))),
        // A special timestamp of a later version (-6, EARLIEST_PENDING_UPLOAD, is v11): Kafka
        // answers UNSUPPORTED_VERSION.
        _ => Err(LogError::UnsupportedVersion),
    }
}

pub(super) fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    session: &Session,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let found = broker.service.topic(session, topic.topic.as_str(), Operation::Describe);
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic;
        for wanted in topic.partitions {
            let mut out = EpochEndOffset::default();
            out.partition = wanted.partition;
            let partition = found.as_ref().ok().and_then(|t| t.partition(wanted.partition));
            let checked = match (&found, partition) {
                (Err(error), _) => Err(same_error(error)),
                (_, None) => Err(LogError::UnknownTopicOrPartition),
                (_, Some(p)) => broker.cluster.check_leader(p, wanted.current_leader_epoch).map(|()| p),
            };
            match checked {
                Err(error) => {
                    out.error_code = error.code();
                    out.leader_epoch = -1;
                    out.end_offset = -1;
                }
                Ok(_) if wanted.leader_epoch < 0 => {
                    out.leader_epoch = -1;
                    out.end_offset = -1;
                }
                Ok(partition) => match partition.epoch_end_offset(wanted.leader_epoch) {
                    Some((epoch, end_offset)) => {
                        out.leader_epoch = epoch;
                        out.end_offset = end_offset;
                    }
                    None => {
                        out.leader_epoch = -1;
                        out.end_offset = -1;
                    }
                },
            }
            topic_result.partitions.push(out);
        }
        response.topics.push(topic_result);
    }
    response
}
