//! Produce and consume through rdkafka, checking every byte, offset and header that comes back.

use std::time::Duration;

use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::common::{Received, TestBroker, consume, unique_topic};

/// What one test record should come back as.
struct Sent {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
}

type Headers = Vec<(String, Option<Vec<u8>>)>;

fn record_payload(i: usize) -> (Option<Vec<u8>>, Option<Vec<u8>>, Headers) {
    let key = if i.is_multiple_of(7) { None } else { Some(format!("key-{i}").into_bytes()) };
    // Every fifth value is null and every eleventh empty: both must survive, and differently.
    let value = match i {
        i if i % 5 == 0 => None,
        i if i % 11 == 0 => Some(Vec::new()),
        i => Some((0..(i % 300 + 1)).map(|b| ((b * 31 + i) % 256) as u8).collect()),
    };
    let headers = vec![
        ("trace".to_string(), Some(format!("t{i}").into_bytes())),
        ("dup".to_string(), Some(b"first".to_vec())),
        ("dup".to_string(), Some(b"second".to_vec())),
        ("none".to_string(), None),
    ];
    (key, value, headers)
}

async fn produce_all(producer: &FutureProducer, topic: &str, count: usize, partitions: i32) -> Vec<Sent> {
    let mut sent: Vec<Sent> = (0..count)
        .map(|i| {
            let (key, value, headers) = record_payload(i);
            let partition = (i as i32) % partitions;
            Sent { partition, offset: -1, key, value, headers, timestamp_ms: 1_700_000_000_000 + i as i64 }
        })
        .collect();
    let mut futures = Vec::with_capacity(count);
    for s in &sent {
        let mut owned = OwnedHeaders::new();
        for (k, v) in &s.headers {
            owned = owned.insert(Header { key: k, value: v.as_deref() });
        }
        let mut record =
            FutureRecord::<[u8], [u8]>::to(topic).partition(s.partition).timestamp(s.timestamp_ms).headers(owned);
        if let Some(key) = &s.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &s.value {
            record = record.payload(value.as_slice());
        }
        futures.push(producer.send(record, Timeout::After(Duration::from_secs(30))));
    }
    let mut offsets = Vec::with_capacity(count);
    for future in futures {
        let delivery = future.await.map_err(|(error, _)| error).expect("delivered");
        offsets.push((delivery.partition, delivery.offset));
    }
    for (s, (partition, offset)) in sent.iter_mut().zip(offsets) {
        assert_eq!(partition, s.partition);
        s.offset = offset;
    }
    sent
}

fn check_exact(sent: &[Sent], received: &[Received]) {
    assert_eq!(received.len(), sent.len(), "record count");
    let mut by_position: std::collections::HashMap<(i32, i64), &Received> =
        received.iter().map(|r| ((r.partition, r.offset), r)).collect();
    assert_eq!(by_position.len(), received.len(), "no record is delivered twice");
    for s in sent {
        let r = by_position.remove(&(s.partition, s.offset)).expect("every acknowledged record is read back");
        assert_eq!(r.key, s.key, "key at {}/{}", s.partition, s.offset);
        assert_eq!(r.value, s.value, "value at {}/{}", s.partition, s.offset);
        assert_eq!(r.headers, s.headers, "headers at {}/{}", s.partition, s.offset);
        assert_eq!(r.timestamp, Timestamp::CreateTime(s.timestamp_ms));
    }
    // Offsets are dense per partition and follow the send order.
    let mut partitions: std::collections::BTreeMap<i32, Vec<i64>> = Default::default();
    for s in sent {
        partitions.entry(s.partition).or_default().push(s.offset);
    }
    for offsets in partitions.values() {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, &expected, "offsets are dense and in send order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_byte_exact() {
    let broker = TestBroker::start(&[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("codec-{codec}"));
        let producer = broker.producer(&[("compression.codec", codec), ("batch.num.messages", "100")]);
        let sent = produce_all(&producer, &topic, 600, 1).await;
        let received = consume(&broker, &topic, &[0], sent.len());
        check_exact(&sent, &received);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once_in_order() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("idempotent");
    let producer = broker.producer(&[("enable.idempotence", "true"), ("acks", "all"), ("compression.codec", "lz4")]);
    let sent = produce_all(&producer, &topic, 2000, 1).await;
    let received = consume(&broker, &topic, &[0], sent.len());
    check_exact(&sent, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_keep_their_own_order() {
    let broker = TestBroker::start(&["--num-partitions", "16"]);
    let topic = unique_topic("many");
    let producer = broker.producer(&[("acks", "all")]);
    let sent = produce_all(&producer, &topic, 1600, 16).await;
    let partitions: Vec<i32> = (0..16).collect();
    let received = consume(&broker, &topic, &partitions, sent.len());
    check_exact(&sent, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_one_are_stored_too() {
    let broker = TestBroker::start(&[]);
    for acks in ["0", "1"] {
        let topic = unique_topic(&format!("acks{acks}"));
        let producer = broker.producer(&[("acks", acks)]);
        let sent = produce_all(&producer, &topic, 300, 1).await;
        let received = consume(&broker, &topic, &[0], sent.len());
        // With acks=0 the client learns no offsets: compare in order instead.
        for (s, r) in sent.iter().zip(&received) {
            assert_eq!((&r.key, &r.value, &r.headers), (&s.key, &s.value, &s.headers));
        }
        let offsets: Vec<i64> = received.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_use_record_timestamps() {
    use rdkafka::consumer::Consumer;
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("times");
    let producer = broker.producer(&[("linger.ms", "0")]);
    // One record per batch, 1000 ms apart, so each timestamp maps to one offset.
    for i in 0..20i64 {
        let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(b"v").timestamp(1_000_000 + i * 1000);
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    }
    let consumer = broker.consumer();
    for (timestamp, expected) in [(1_000_000, 0), (1_004_500, 5), (1_005_000, 5), (1_019_000, 19), (0, 0)] {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(timestamp)).expect("tpl");
        let found = consumer.offsets_for_times(list, Duration::from_secs(30)).expect("offsets for times");
        let offset = found.find_partition(&topic, 0).expect("partition").offset();
        assert_eq!(offset, rdkafka::Offset::Offset(expected), "offset for timestamp {timestamp}");
    }
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(2_000_000)).expect("tpl");
    let found = consumer.offsets_for_times(list, Duration::from_secs(30)).expect("offsets for times");
    // Past the last timestamp Kafka answers with the end of the log (librdkafka: offset END).
    let offset = found.find_partition(&topic, 0).expect("partition").offset();
    assert!(matches!(offset, rdkafka::Offset::End | rdkafka::Offset::Offset(-1)), "{offset:?}");
    let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
    assert_eq!((low, high), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_the_broker_time() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("append-time");
    let admin: AdminClient<_> = broker.client_config().create().expect("admin");
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("message.timestamp.type", "LogAppendTime");
    let results = admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    assert!(results[0].is_ok(), "{results:?}");
    let before = rdkafka::util::millis_to_epoch(std::time::SystemTime::now());
    let producer = broker.producer(&[]);
    let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(b"v").timestamp(42);
    producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    let received = consume(&broker, &topic, &[0], 1);
    match received[0].timestamp {
        Timestamp::LogAppendTime(ms) => assert!(ms >= before, "stamped {ms}, produced after {before}"),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }
}

/// KIP-937, as Kafka 4 applies it: a CreateTime more than `message.timestamp.after.max.ms` (an
/// hour by default) ahead of the broker's clock gets INVALID_TIMESTAMP and nothing is stored; a
/// topic that allows more takes it; `message.timestamp.before.max.ms` refuses records too old;
/// a LogAppendTime topic takes any timestamp, since the broker sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_times_out_of_range_get_invalid_timestamp() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let broker = TestBroker::start(&[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let hour = 3_600_000;
    let (strict, lenient, recent, appended) =
        (unique_topic("ts-default"), unique_topic("ts-lenient"), unique_topic("ts-recent"), unique_topic("ts-append"));
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.bootstrap).create().expect("admin");
    let topics = [
        NewTopic::new(&strict, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&lenient, 1, TopicReplication::Fixed(1)).set("message.timestamp.after.max.ms", "86400000"),
        NewTopic::new(&recent, 1, TopicReplication::Fixed(1)).set("message.timestamp.before.max.ms", "60000"),
        NewTopic::new(&appended, 1, TopicReplication::Fixed(1)).set("message.timestamp.type", "LogAppendTime"),
    ];
    let created = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let send = async |topic: &str, timestamp: i64| {
        let record = FutureRecord::<(), _>::to(topic).partition(0).payload("v").timestamp(timestamp);
        match producer.send(record, Duration::from_secs(15)).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((KafkaError::MessageProduction(code), _)) => Err(code),
            Err((other, _)) => panic!("unexpected error {other}"),
        }
    };
    let refused = Err(RDKafkaErrorCode::InvalidTimestamp);
    assert_eq!(send(&strict, now + 3 * hour).await, refused, "3 h ahead");
    assert_eq!(send(&strict, now + 60_000).await, Ok(0), "a minute ahead");
    assert_eq!(send(&strict, now - 30 * 24 * hour).await, Ok(1), "no limit behind by default");
    assert_eq!(send(&lenient, now + 3 * hour).await, Ok(0), "the topic allows a day ahead");
    assert_eq!(send(&recent, now - 2 * hour).await, refused, "older than before.max.ms");
    assert_eq!(send(&recent, now - 1_000).await, Ok(0));
    assert_eq!(send(&appended, now + 3 * hour).await, Ok(0), "LogAppendTime replaces it");
    use rdkafka::consumer::Consumer;
    let watermarks = broker.consumer().fetch_watermarks(&strict, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!(watermarks, (0, 2), "the refused record was not stored");
}
