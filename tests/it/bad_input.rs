//! Bad input gets Apache Kafka's error codes or a closed connection, never a crash, and a refused
//! request stores nothing.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, TopicName,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::common::{TestBroker, unique_topic};
use crate::raw::Raw;

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_CONFIG: i16 = 40;
const OUT_OF_ORDER_SEQUENCE: i16 = 45;

pub fn batch(values: &[&[u8]], producer: Option<(i64, i16, i32)>) -> Bytes {
    batch_with_key(None, values, producer)
}

/// As [`batch`], every record with `key`.
pub fn batch_with_key(key: Option<&[u8]>, values: &[&[u8]], producer: Option<(i64, i16, i32)>) -> Bytes {
    encode_batch(key, values, producer, false)
}

/// A transactional batch of `producer` (id, epoch, first sequence).
pub fn transactional_batch(values: &[&[u8]], producer: (i64, i16, i32)) -> Bytes {
    encode_batch(None, values, Some(producer), true)
}

fn encode_batch(key: Option<&[u8]>, values: &[&[u8]], producer: Option<(i64, i16, i32)>, transactional: bool) -> Bytes {
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch whenever offset - sequence changes, so the
            // sequence follows the offset even without a producer id: one batch, always.
            sequence: if sequence < 0 { i as i32 } else { sequence + i as i32 },
            timestamp: 1_700_000_000_000,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(value)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &records, &options).expect("encode");
    out.freeze()
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.to_string()));
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic_data];
    request
}

/// (error code, base offset) of the single partition of a produce.
pub fn produce(raw: &mut Raw, topic: &str, records: Bytes) -> (i16, i64) {
    let response = raw.call(9, &produce_request(topic, 0, records));
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn latest_offset(raw: &mut Raw, topic: &str) -> i64 {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = -1;
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_string()));
    wanted.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = (-1).into();
    request.topics = vec![wanted];
    let response = raw.call(7, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

fn api_versions_works(address: &str) {
    let mut raw = Raw::connect(address);
    let response = raw.call(3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = TestBroker::start(&["--socket-request-max-bytes", "1048576"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length beyond socket.request.max.bytes", (64 * 1024 * 1024i32).to_be_bytes().to_vec()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("frame shorter than a header", [3i32.to_be_bytes().to_vec(), vec![0, 18, 0]].concat()),
        ("unknown api key", [8i32.to_be_bytes().to_vec(), vec![3, 231, 0, 0, 0, 0, 0, 1]].concat()),
        (
            "unsupported metadata version",
            [10i32.to_be_bytes().to_vec(), vec![0, 3, 0, 99, 0, 0, 0, 1, 255, 255]].concat(),
        ),
        ("garbage body", [14i32.to_be_bytes().to_vec(), vec![0, 0, 0, 9, 0, 0, 0, 1, 255, 255, 1, 2, 3, 4]].concat()),
        // Metadata v0 claiming i32::MAX topics in a 14-byte frame: kafka-protocol would ask for
        // ~150 GiB up front, which used to abort the whole broker.
        (
            "array length far beyond the frame",
            [14i32.to_be_bytes().to_vec(), vec![0, 3, 0, 0, 0, 0, 0, 1, 255, 255, 0x7f, 0xff, 0xff, 0xff]].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(&broker.bootstrap);
        raw.send_bytes(&bytes);
        assert!(raw.is_closed(), "{what}: the connection is closed");
        api_versions_works(&broker.bootstrap);
    }
}

#[test]
fn api_versions_above_ours_get_unsupported_version_and_the_list() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    // A v0-encoded ApiVersions request claiming version 99.
    raw.send_bytes(&[0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 7, 255, 255]);
    let mut frame = raw.read_frame().expect("an answer");
    use kafka_protocol::protocol::Decodable;
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut frame, 0).expect("header");
    assert_eq!(header.correlation_id, 7);
    let response = kafka_protocol::messages::ApiVersionsResponse::decode(&mut frame, 0).expect("v0 body");
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    let produce = response.api_keys.iter().find(|k| k.api_key == 0).expect("produce listed");
    assert_eq!(produce.min_version, 0, "Produce is advertised from v0 for librdkafka");
    assert!(response.api_keys.iter().all(|k| k.api_key != 68), "ConsumerGroupHeartbeat is not advertised");
}

#[test]
fn produce_v0_to_v2_is_refused_with_unsupported_version() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("legacy");
    // Produce v2 = v3 without the transactional id: encode v3, drop the null string's two bytes.
    let v3 = raw.frame(3, &produce_request(&topic, 0, batch(&[b"x"], None)));
    let header_bytes = 4 + 2 + 2 + 4 + 2 + "raw-test".len();
    let mut v2 = BytesMut::new();
    v2.extend_from_slice(&((v3.len() - 4 - 2) as i32).to_be_bytes());
    v2.extend_from_slice(&v3[4..header_bytes]);
    v2[7] = 2; // api version low byte
    v2.extend_from_slice(&v3[header_bytes + 2..]);
    raw.send_bytes(&v2);
    let frame = raw.read_frame().expect("an answer");
    // v0 header (correlation id), then [topics: name, [partition, error_code, base_offset, log_append_time]], throttle.
    let body = &frame[4..];
    let name_len = i16::from_be_bytes([body[4], body[5]]) as usize;
    let partition_at = 6 + name_len + 4;
    let error = i16::from_be_bytes([body[partition_at + 4], body[partition_at + 5]]);
    assert_eq!(error, UNSUPPORTED_VERSION);
    api_versions_works(&broker.bootstrap);
}

#[test]
fn corrupt_and_oversized_batches_are_refused_and_nothing_is_stored() {
    let broker = TestBroker::start(&["--message-max-bytes", "2000"]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("corrupt");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);
    let good = batch(&[b"one", b"two"], None);
    assert_eq!(produce(&mut raw, &topic, good.clone()), (0, 0));

    let mut flipped = BytesMut::from(&good[..]);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    assert_eq!(produce(&mut raw, &topic, flipped.freeze()).0, CORRUPT_MESSAGE);
    assert_eq!(produce(&mut raw, &topic, good.slice(..good.len() - 3)).0, CORRUPT_MESSAGE);
    let big = vec![7u8; 4000];
    assert_eq!(produce(&mut raw, &topic, batch(&[&big], None)).0, MESSAGE_TOO_LARGE);
    assert_eq!(latest_offset(&mut raw, &topic), 2, "refused batches left nothing behind");
    assert_eq!(produce(&mut raw, &topic, good).0, 0);
    assert_eq!(latest_offset(&mut raw, &topic), 4);
}

/// Kafka creates topics on Metadata only: the request that creates one gets LEADER_NOT_AVAILABLE,
/// the next one the topic, and a produce to an unknown topic is refused.
#[test]
fn metadata_auto_creates_and_produce_does_not() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("auto");
    assert_eq!(produce(&mut raw, &topic, batch(&[b"x"], None)).0, UNKNOWN_TOPIC_OR_PARTITION);
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.clone())));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = true;
    assert_eq!(raw.call(12, &request).topics[0].error_code, 5, "LEADER_NOT_AVAILABLE while it is created");
    let answer = raw.call(12, &request);
    assert_eq!((answer.topics[0].error_code, answer.topics[0].partitions.len()), (0, 1));
    assert_eq!(produce(&mut raw, &topic, batch(&[b"x"], None)), (0, 0));
}

#[test]
fn unknown_topics_without_auto_create() {
    let broker = TestBroker::start(&["--auto-create-topics", "false"]);
    let mut raw = Raw::connect(&broker.bootstrap);
    assert_eq!(produce(&mut raw, "nobody-made-me", batch(&[b"x"], None)).0, UNKNOWN_TOPIC_OR_PARTITION);
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_static_str("nobody-made-me")));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = true;
    let response = raw.call(12, &request);
    assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn idempotent_sequences_are_checked_and_duplicates_get_their_first_offset() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("sequences");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);
    let request = kafka_protocol::messages::InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let init = raw.call(4, &request);
    assert_eq!(init.error_code, 0);
    let producer = (init.producer_id.0, init.producer_epoch, 0);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"a", b"b"], Some(producer))), (0, 0));
    let next = (producer.0, producer.1, 2);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"c"], Some(next))), (0, 2));
    // A retry of the first batch is answered with its original offset and not stored again.
    assert_eq!(produce(&mut raw, &topic, batch(&[b"a", b"b"], Some(producer))), (0, 0));
    let gap = (producer.0, producer.1, 7);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"x"], Some(gap))).0, OUT_OF_ORDER_SEQUENCE);
    assert_eq!(latest_offset(&mut raw, &topic), 3);
    // A producer the partition has no state for (expired, or its state lost with a broker) may
    // start anywhere, as in Kafka (KIP-360); from then on its sequences are checked.
    let stranger = (init.producer_id.0 + 1000, 0, 7);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"s7"], Some(stranger))), (0, 3));
    assert_eq!(produce(&mut raw, &topic, batch(&[b"s9"], Some((stranger.0, 0, 9)))).0, OUT_OF_ORDER_SEQUENCE);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"s8"], Some((stranger.0, 0, 8)))), (0, 4));
}

#[test]
fn create_topics_checks_names_counts_factors_and_configs() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = creatable;
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = vec![
        topic("bad name!", 1, 1, &[]),
        topic("zero-partitions", 0, 1, &[]),
        topic("three-replicas", 1, 3, &[]),
        topic("bad-config", 1, 1, &[("retention.ms", "soon")]),
        topic("unknown-config", 1, 1, &[("no.such.thing", "1")]),
        topic("fine", 3, 1, &[("retention.ms", "1000")]),
    ];
    let response = raw.call(7, &request);
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![INVALID_TOPIC, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_CONFIG, INVALID_CONFIG, 0]
    );
    assert_eq!(response.topics[5].num_partitions, 3);
    // Creating it again is TOPIC_ALREADY_EXISTS.
    request.topics = vec![topic("fine", 3, 1, &[])];
    assert_eq!(raw.call(7, &request).topics[0].error_code, 36);
}

/// Regression (found by kcat): ListOffsets below v4 has no leader epoch, and setting one made the
/// response unencodable, so the broker closed the connection.
#[test]
fn list_offsets_answers_at_every_advertised_version() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("list-offsets");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);
    assert_eq!(produce(&mut raw, &topic, batch(&[b"a", b"b", b"c"], None)), (0, 0));
    for version in 1..=10 {
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = -1;
        let mut wanted = ListOffsetsTopic::default();
        wanted.name = TopicName(StrBytes::from_string(topic.clone()));
        wanted.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = (-1).into();
        request.topics = vec![wanted];
        let response = raw.call(version, &request);
        let answer = &response.topics[0].partitions[0];
        assert_eq!((answer.error_code, answer.offset), (0, 3), "ListOffsets v{version}");
    }
}

/// Regression (found by confluent-kafka): librdkafka's Metadata v13 request for all topics carries
/// three bytes after the body; Apache Kafka ignores them, and so must we.
#[test]
fn metadata_with_trailing_bytes_is_answered() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let frame = [
        0x00, 0x03, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x06, 0x00, 0x07, b'r', b'd', b'k', b'a', b'f', b'k', b'a', 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    ];
    let mut bytes = (frame.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    raw.send_bytes(&bytes);
    let mut response = raw.read_frame().expect("an answer, not a closed connection");
    use kafka_protocol::protocol::Decodable;
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut response, 1).expect("header");
    assert_eq!(header.correlation_id, 6);
    let metadata = kafka_protocol::messages::MetadataResponse::decode(&mut response, 13).expect("body");
    assert_eq!(metadata.brokers.len(), 1);
}

#[test]
fn health_endpoints_answer_once_serving() {
    use std::io::{Read, Write};
    let broker = TestBroker::start(&[]);
    for path in ["/health/live", "/health/ready"] {
        let mut stream = std::net::TcpStream::connect(&broker.http).expect("connect");
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: zombi\r\nConnection: close\r\n\r\n").expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
}

/// One topic of a CreateTopics request.
fn creatable(name: &str, partitions: i32, factor: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.to_string()));
    topic.num_partitions = partitions;
    topic.replication_factor = factor;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    topic
}

/// Creates one topic with `partitions` partitions; returns the error code.
pub(crate) fn create_topic_partitions(raw: &mut Raw, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = vec![creatable(name, partitions, 1, configs)];
    raw.call(7, &request).topics[0].error_code
}

pub(crate) fn create_topic_raw(raw: &mut Raw, name: &str, configs: &[(&str, &str)]) -> i16 {
    create_topic_partitions(raw, name, 1, configs)
}

/// Regression (librdkafka 0011_produce_batch): a compacted topic refuses records without a key
/// with INVALID_RECORD and names each refused record, as Kafka's LogValidator does.
#[test]
fn compacted_topics_refuse_records_without_keys() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("compacted");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[("cleanup.policy", "compact")]), 0);
    let response = raw.call(9, &produce_request(&topic, 0, batch(&[b"no-key", b"no-key-either"], None)));
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 87, "INVALID_RECORD");
    let indexes: Vec<i32> = partition.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![0, 1]);
    assert_eq!(latest_offset(&mut raw, &topic), 0, "nothing was stored");
}

/// Regression (librdkafka 0081_admin, 0092_mixed_msgver): every topic config Kafka accepts is
/// accepted, including those this broker only stores.
#[test]
fn kafka_topic_configs_are_accepted() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let configs = [
        ("compression.type", "lz4"),
        ("delete.retention.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.1"),
        ("message.format.version", "0.10.0"),
        ("unclean.leader.election.enable", "false"),
        ("segment.index.bytes", "1048576"),
    ];
    assert_eq!(create_topic_raw(&mut raw, &unique_topic("configs"), &configs), 0);
    assert_eq!(create_topic_raw(&mut raw, &unique_topic("bad-ratio"), &[("min.cleanable.dirty.ratio", "2")]), 40);
}

/// Regression (kafka-python's admin suite): the replica and log-dir APIs of a one-broker cluster
/// answer as Kafka does instead of closing the connection.
#[test]
fn one_broker_cluster_admin_apis_answer() {
    use kafka_protocol::messages::{
        DescribeLogDirsRequest, DescribeTopicPartitionsRequest, ElectLeadersRequest, describe_topic_partitions_request,
        elect_leaders_request,
    };
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("cluster");
    assert_eq!(create_topic_partitions(&mut raw, &topic, 3, &[]), 0);

    let mut wanted = elect_leaders_request::TopicPartitions::default();
    wanted.topic = TopicName(StrBytes::from_string(topic.clone()));
    wanted.partitions = vec![0, 1, 7];
    let mut elect = ElectLeadersRequest::default();
    elect.topic_partitions = Some(vec![wanted]);
    let codes: Vec<i16> =
        raw.call(2, &elect).replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![84, 84, UNKNOWN_TOPIC_OR_PARTITION], "ELECTION_NOT_NEEDED for real partitions");

    let mut all_dirs = DescribeLogDirsRequest::default();
    all_dirs.topics = None; // null: every topic
    let dirs = raw.call(4, &all_dirs);
    assert_eq!(dirs.results.len(), 1);
    let listed = dirs.results[0].topics.iter().find(|t| t.name.as_str() == topic).expect("topic listed");
    assert_eq!(listed.partitions.len(), 3);

    // Paged two partitions at a time: the cursor picks up where the first page stopped.
    let mut page = DescribeTopicPartitionsRequest::default();
    page.topics = vec![
        describe_topic_partitions_request::TopicRequest::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone()))),
    ];
    page.response_partition_limit = 2;
    let first = raw.call(0, &page);
    assert_eq!(first.topics[0].partitions.len(), 2);
    let cursor = first.next_cursor.expect("a cursor for the rest");
    assert_eq!(cursor.partition_index, 2);
    page.cursor = Some(
        describe_topic_partitions_request::Cursor::default()
            .with_topic_name(cursor.topic_name)
            .with_partition_index(cursor.partition_index),
    );
    let second = raw.call(0, &page);
    let indexes: Vec<i32> = second.topics[0].partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!(indexes, vec![2]);
    assert!(second.next_cursor.is_none());
}

/// Regression (librdkafka 0081_admin): asked for authorized operations, a broker without an
/// authorizer reports every operation the resource supports, as Kafka does.
#[test]
fn authorized_operations_are_reported_when_asked() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("operations");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic)));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![wanted]);
    request.include_topic_authorized_operations = true;
    let operations = raw.call(12, &request).topics[0].topic_authorized_operations;
    assert_eq!(operations.count_ones(), 8, "READ through ALTER_CONFIGS: {operations:#b}");
    request.include_topic_authorized_operations = false;
    assert_eq!(raw.call(12, &request).topics[0].topic_authorized_operations, i32::MIN, "not asked, not given");
    let mut cluster = kafka_protocol::messages::DescribeClusterRequest::default();
    cluster.include_cluster_authorized_operations = true;
    assert_eq!(raw.call(1, &cluster).cluster_authorized_operations.count_ones(), 7);
}

/// Kafka 4.0's message for tiered storage asked of a compacted topic (LogConfig).
const REMOTE_STORAGE_COMPACTED: &str = "Remote log storage is unsupported for the compacted topics";

/// CreateTopics of one topic: (error code, error message).
fn create_topic_answer(raw: &mut Raw, name: &str, configs: &[(&str, &str)], validate_only: bool) -> (i16, String) {
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = 30_000;
    request.validate_only = validate_only;
    request.topics = vec![creatable(name, 1, 1, configs)];
    let response = raw.call(7, &request);
    let topic = &response.topics[0];
    (topic.error_code, topic.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// IncrementalAlterConfigs of one topic with (name, operation, value) changes: (code, message).
fn incremental_alter_topic(raw: &mut Raw, topic: &str, changes: &[(&str, i8, &str)]) -> (i16, String) {
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_string());
    resource.configs = changes
        .iter()
        .map(|(name, operation, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string(name.to_string());
            config.config_operation = *operation;
            config.value = Some(StrBytes::from_string(value.to_string()));
            config
        })
        .collect();
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let response = raw.call(1, &request);
    let answer = &response.responses[0];
    (answer.error_code, answer.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// AlterConfigs (the whole set of a topic's configs): (code, message).
fn alter_topic(raw: &mut Raw, topic: &str, configs: &[(&str, &str)]) -> (i16, String) {
    use kafka_protocol::messages::AlterConfigsRequest;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_string());
    resource.configs = configs
        .iter()
        .map(|(name, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string(name.to_string());
            config.value = Some(StrBytes::from_string(value.to_string()));
            config
        })
        .collect();
    let mut request = AlterConfigsRequest::default();
    request.resources = vec![resource];
    let response = raw.call(2, &request);
    let answer = &response.responses[0];
    (answer.error_code, answer.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// A topic's described configs that it set itself, by name.
fn explicit_topic_configs(raw: &mut Raw, topic: &str) -> Vec<(String, String)> {
    use kafka_protocol::messages::DescribeConfigsRequest;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_string());
    resource.configuration_keys = None; // every config
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response = raw.call(4, &request);
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    let mut explicit: Vec<(String, String)> = result
        .configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
        .collect();
    explicit.sort();
    explicit
}

/// Tiered storage and compaction exclude each other, as in Apache Kafka 4.0
/// (`LogConfig.validateNoRemoteStorageForCompactedTopic`): an explicit `remote.storage.enable=true`
/// beside a `cleanup.policy` that holds `compact` gets INVALID_CONFIG with Kafka's message from
/// CreateTopics (validate_only too), IncrementalAlterConfigs (SET and APPEND) and AlterConfigs, and
/// nothing is created or changed. A compacted topic that does not set `remote.storage.enable` is
/// created although the broker default is true (that default does not apply to compacted topics),
/// and so is one that sets it false.
#[test]
fn tiered_storage_is_refused_for_compacted_topics() {
    const OP_SET: i8 = 0;
    const OP_APPEND: i8 = 2;
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let refused = (INVALID_CONFIG, REMOTE_STORAGE_COMPACTED.to_string());
    let name = unique_topic("tiered-compacted");
    for (policy, remote) in [("compact", "true"), ("compact,delete", "true"), ("delete,compact", "TRUE")] {
        let configs = [("cleanup.policy", policy), ("remote.storage.enable", remote)];
        assert_eq!(create_topic_answer(&mut raw, &name, &configs, true), refused, "{policy} validate_only");
        assert_eq!(create_topic_answer(&mut raw, &name, &configs, false), refused, "{policy}");
    }
    // Nothing was created under that name: it is free for a topic that is allowed.
    let allowed = [("cleanup.policy", "compact"), ("remote.storage.enable", "false")];
    assert_eq!(create_topic_answer(&mut raw, &name, &allowed, false), (0, String::new()));

    let compacted = unique_topic("compacted");
    assert_eq!(create_topic_answer(&mut raw, &compacted, &[("cleanup.policy", "compact")], false), (0, String::new()));
    assert_eq!(incremental_alter_topic(&mut raw, &compacted, &[("remote.storage.enable", OP_SET, "true")]), refused);
    let kept = vec![("cleanup.policy".to_string(), "compact".to_string())];
    assert_eq!(explicit_topic_configs(&mut raw, &compacted), kept);

    let tiered = unique_topic("tiered");
    assert_eq!(create_topic_answer(&mut raw, &tiered, &[("remote.storage.enable", "true")], false), (0, String::new()));
    assert_eq!(incremental_alter_topic(&mut raw, &tiered, &[("cleanup.policy", OP_SET, "compact")]), refused);
    assert_eq!(incremental_alter_topic(&mut raw, &tiered, &[("cleanup.policy", OP_APPEND, "compact")]), refused);
    let both = [("remote.storage.enable", "true"), ("cleanup.policy", "compact,delete")];
    assert_eq!(alter_topic(&mut raw, &tiered, &both), refused);
    let kept = vec![("remote.storage.enable".to_string(), "true".to_string())];
    assert_eq!(explicit_topic_configs(&mut raw, &tiered), kept);
}

/// Produce errors as Apache Kafka answers them (compat/differential compares the rest): acks
/// outside -1..1, a zeroed batch, a failed acks=0 produce (the connection closes: the client's
/// only sign), and a failed produce that still names the partition's log start.
#[test]
fn produce_errors_are_kafkas() {
    let broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let topic = unique_topic("produce-errors");
    assert_eq!(create_topic_raw(&mut raw, &topic, &[("cleanup.policy", "compact")]), 0);
    let keyed = |value: &[u8]| batch_with_key(Some(b"k"), &[value], None);
    assert_eq!(produce(&mut raw, &topic, keyed(b"a")), (0, 0));

    let mut request = produce_request(&topic, 0, keyed(b"b"));
    request.acks = 2;
    let answer = raw.call(9, &request);
    assert_eq!(answer.responses[0].partition_responses[0].error_code, 21, "INVALID_REQUIRED_ACKS");

    let answer = raw.call(9, &produce_request(&topic, 0, Bytes::from(vec![0u8; 70])));
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.log_start_offset), (CORRUPT_MESSAGE, -1));

    // A record without a key on a compacted topic fails in the log, which reports its start.
    let answer = raw.call(9, &produce_request(&topic, 0, batch(&[b"no key"], None)));
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.log_start_offset), (87, 0), "INVALID_RECORD");

    // acks=0: a good produce gets no answer and the connection stays; a failed one closes it.
    let mut request = produce_request(&topic, 0, keyed(b"c"));
    request.acks = 0;
    raw.send(9, &request);
    assert_eq!(produce(&mut raw, &topic, keyed(b"d")), (0, 2), "the acks=0 record came first");
    let mut request = produce_request("no-such-topic", 0, keyed(b"e"));
    request.acks = 0;
    raw.send(9, &request);
    assert!(raw.is_closed(), "a failed acks=0 produce closes the connection");
    let mut raw = Raw::connect(&broker.bootstrap);
    assert_eq!(produce(&mut raw, &topic, keyed(b"f")), (0, 3), "nothing else was written");
}
