//! Topic administration through rdkafka's AdminClient, as tools use it.

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::common::{TestBroker, WAIT_MAX, consume, unique_topic};

fn admin(broker: &TestBroker) -> AdminClient<DefaultClientContext> {
    broker.client_config().create().expect("admin client")
}

async fn produce(broker: &TestBroker, topic: &str, count: usize, timestamp_ms: Option<i64>) {
    let producer = broker.producer(&[]);
    for i in 0..count {
        let payload = format!("p{i}");
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).partition(0).payload(payload.as_bytes());
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_altered_grown_and_deleted() {
    let broker = TestBroker::start(&[]);
    let admin = admin(&broker);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = unique_topic("admin");
    let new_topic = NewTopic::new(&topic, 2, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let created = admin.create_topics([&new_topic], &options).await.expect("create");
    assert_eq!(created, vec![Ok(topic.clone())]);

    let metadata = admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(30)).expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 2);
    assert_eq!(metadata.brokers()[0].id(), 0);

    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
    let resource = described[0].as_ref().expect("topic configs");
    let retention = resource.get("retention.ms").expect("retention.ms listed");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(!retention.is_default);
    let max_bytes = resource.get("max.message.bytes").expect("max.message.bytes listed");
    assert!(max_bytes.is_default);

    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "7200000");
    let altered = admin.alter_configs([&alter], &options).await.expect("alter");
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
    let value = described[0].as_ref().expect("configs").get("retention.ms").and_then(|e| e.value.clone());
    assert_eq!(value.as_deref(), Some("7200000"));

    let bad = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "never");
    // The rdkafka crate drops AlterConfigs' per-resource errors (compat/ checks the code with
    // confluent-kafka); what must hold here is that nothing changed.
    admin.alter_configs([&bad], &options).await.expect("alter");
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
    let value = described[0].as_ref().expect("configs").get("retention.ms").and_then(|e| e.value.clone());
    assert_eq!(value.as_deref(), Some("7200000"), "an invalid value is refused and changes nothing");

    let grown = admin.create_partitions([&NewPartitions::new(&topic, 5)], &options).await.expect("grow");
    assert!(grown[0].is_ok(), "{grown:?}");
    let shrunk = admin.create_partitions([&NewPartitions::new(&topic, 3)], &options).await.expect("shrink");
    assert!(shrunk[0].is_err(), "partition counts never shrink");
    let metadata = admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(30)).expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 5);

    let deleted = admin.delete_topics(&[&topic], &options).await.expect("delete");
    assert_eq!(deleted, vec![Ok(topic.clone())]);
    let again = admin.delete_topics(&[&topic], &options).await.expect("delete");
    assert!(again[0].is_err(), "a deleted topic is unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("delete-records");
    produce(&broker, &topic, 10, None).await;
    let admin = admin(&broker);
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(4)).expect("tpl");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = admin.delete_records(&offsets, &options).await.expect("delete records");
    let element = result.find_partition(&topic, 0).expect("partition");
    assert_eq!(element.offset(), rdkafka::Offset::Offset(4));
    let consumer = broker.consumer();
    let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
    assert_eq!((low, high), (4, 10));
    let records = consume(&broker, &topic, &[0], 6);
    assert_eq!(records.first().map(|r| r.offset), Some(4), "reading from the beginning starts at the log start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_ms_removes_old_batches() {
    let broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let topic = unique_topic("retention");
    let admin = admin(&broker);
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("retention.ms", "600000");
    admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    let now = rdkafka::util::millis_to_epoch(std::time::SystemTime::now());
    // Five records an hour old, then five fresh ones: only the old ones expire.
    produce(&broker, &topic, 5, Some(now - 3_600_000)).await;
    produce(&broker, &topic, 5, Some(now)).await;
    let consumer = broker.consumer();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
        assert_eq!(high, 10);
        if low == 5 {
            break;
        }
        assert!(low < 5, "retention must not remove fresh records (log start {low})");
        assert!(Instant::now() < deadline, "retention did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bytes_keeps_the_newest_batches() {
    let broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let topic = unique_topic("retention-bytes");
    let admin = admin(&broker);
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("retention.bytes", "1");
    admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    produce(&broker, &topic, 3, None).await;
    let consumer = broker.consumer();
    let deadline = Instant::now() + WAIT_MAX;
    // Whole batches only: with a 1-byte limit everything goes and the log start reaches the end.
    loop {
        let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
        if low == high {
            assert_eq!(high, 3);
            break;
        }
        assert!(Instant::now() < deadline, "retention.bytes did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_bytes_refuses_large_batches() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("too-large");
    let admin = admin(&broker);
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1000");
    admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    let producer = broker.producer(&[("linger.ms", "0")]);
    let big = vec![1u8; 5000];
    let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(&big);
    let error = producer.send(record, Timeout::After(Duration::from_secs(30))).await.expect_err("too large");
    assert_eq!(error.0.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge), "{error:?}");
    let small = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(b"small");
    let delivered =
        producer.send(small, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    assert_eq!(delivered.offset, 0, "the refused batch took no offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_broker_configs_change_topic_defaults_and_survive_restarts() {
    let mut broker = TestBroker::start(&[]);
    let topic = unique_topic("broker-defaults");
    produce(&broker, &topic, 1, None).await;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let retention_of = |described: &Vec<Result<rdkafka::admin::ConfigResource, rdkafka::error::RDKafkaErrorCode>>| {
        described[0].as_ref().expect("configs").get("retention.ms").and_then(|e| e.value.clone())
    };
    {
        let admin = admin(&broker);
        let alter = AlterConfig::new(ResourceSpecifier::Broker(0)).set("log.retention.ms", "123456789");
        admin.alter_configs([&alter], &options).await.expect("alter broker");
        let described = admin.describe_configs([&ResourceSpecifier::Broker(0)], &options).await.expect("describe");
        let entry = described[0].as_ref().expect("broker configs").get("log.retention.ms").expect("listed");
        assert_eq!(entry.value.as_deref(), Some("123456789"));
        assert!(!entry.is_read_only, "dynamic broker configs are not read-only");
        assert_eq!(entry.source, rdkafka::admin::ConfigSource::DynamicBroker);
        let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
        assert_eq!(retention_of(&described).as_deref(), Some("123456789"), "topics inherit the new default");
    }
    broker.kill_and_restart();
    let admin = admin(&broker);
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
    assert_eq!(retention_of(&described).as_deref(), Some("123456789"), "dynamic configs are durable");
}

/// A broker config as DescribeConfigs lists it: value, read-only, source.
fn broker_entry<'a>(
    resource: &'a rdkafka::admin::ConfigResource,
    name: &str,
) -> (Option<&'a str>, bool, &'a rdkafka::admin::ConfigSource) {
    let entry = resource.get(name).unwrap_or_else(|| panic!("{name} is listed"));
    (entry.value.as_deref(), entry.is_read_only, &entry.source)
}

async fn describe_broker(admin: &AdminClient<DefaultClientContext>) -> rdkafka::admin::ConfigResource {
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let described = admin.describe_configs([&ResourceSpecifier::Broker(0)], &options).await.expect("describe");
    described.into_iter().next().expect("one resource").expect("broker configs")
}

/// DescribeConfigs on the broker lists the settings it runs with, not Apache Kafka's defaults:
/// `log.segment.bytes` and `log.roll.ms` (when the flusher uploads a partition's tail),
/// `log.local.retention.*` and `log.flush.*` (from `--durability`), first with the broker's own
/// defaults, then with flags. These are dynamic, as in Kafka: not read-only, and values set by
/// AlterConfigs are described as dynamic and become the defaults of topics that set nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_configs_describe_the_settings_the_broker_runs_with() {
    use rdkafka::admin::ConfigSource::{DynamicBroker, StaticBroker};
    let defaults = TestBroker::start(&[]);
    let described = describe_broker(&admin(&defaults)).await;
    let expected = [
        ("log.segment.bytes", "67108864"),
        ("log.roll.ms", "600000"),
        ("log.local.retention.ms", "600000"),
        ("log.local.retention.bytes", "-2"),
        ("log.flush.interval.messages", "1"),
    ];
    for (name, value) in expected {
        assert_eq!(broker_entry(&described, name), (Some(value), false, &StaticBroker), "{name}");
    }
    // Read by librdkafka (0142) to learn whether the brokers ask for re-authentication.
    assert_eq!(broker_entry(&described, "connections.max.reauth.ms"), (Some("0"), true, &StaticBroker));
    drop(defaults);

    let flags = [
        ["--log-segment-bytes", "1048576"],
        ["--log-roll-ms", "5000"],
        ["--log-local-retention-ms", "2000"],
        ["--durability", "periodic"],
        ["--fsync-interval-ms", "20"],
        ["--connections-max-reauth-ms", "60000"],
    ];
    let broker = TestBroker::start(&flags.concat());
    let admin = admin(&broker);
    let described = describe_broker(&admin).await;
    let expected = [
        ("log.segment.bytes", "1048576"),
        ("log.roll.ms", "5000"),
        ("log.local.retention.ms", "2000"),
        ("log.flush.interval.messages", "9223372036854775807"),
        ("log.flush.interval.ms", "20"),
    ];
    for (name, value) in expected {
        assert_eq!(broker_entry(&described, name), (Some(value), false, &StaticBroker), "{name}");
    }
    assert_eq!(broker_entry(&described, "connections.max.reauth.ms"), (Some("60000"), true, &StaticBroker));

    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let alter = AlterConfig::new(ResourceSpecifier::Broker(0))
        .set("log.segment.bytes", "2097152")
        .set("log.roll.ms", "7000")
        .set("log.local.retention.ms", "3000");
    admin.alter_configs([&alter], &options).await.expect("alter broker");
    let described = describe_broker(&admin).await;
    let expected = [("log.segment.bytes", "2097152"), ("log.roll.ms", "7000"), ("log.local.retention.ms", "3000")];
    for (name, value) in expected {
        assert_eq!(broker_entry(&described, name), (Some(value), false, &DynamicBroker), "{name}");
    }
    let topic = unique_topic("broker-tiering-defaults");
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    admin.create_topics([&new_topic], &options).await.expect("create");
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options).await.expect("describe");
    let resource = described[0].as_ref().expect("topic configs");
    for (name, value) in [("segment.bytes", "2097152"), ("segment.ms", "7000"), ("local.retention.ms", "3000")] {
        let entry = resource.get(name).unwrap_or_else(|| panic!("{name} is listed"));
        assert_eq!((entry.value.as_deref(), entry.is_default), (Some(value), true), "{name}");
    }
}
