//! Client quotas (issue 18): DescribeClientQuotas and AlterClientQuotas with Kafka's error codes
//! and filters, durable across kill -9; produce, fetch and request-time quotas throttle the
//! client over them (its responses carry `throttle_time_ms` and its connection is muted) while
//! other clients keep their throughput.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::acls::{authenticated, user};
use crate::bad_input::{batch, create_topic_raw, produce_request};
use crate::common::{Member, TestBroker, unique_topic};
use crate::raw::Raw;
use crate::security::{ADMIN, ADMIN_PASSWORD, secured};

const UNSUPPORTED_VERSION: i16 = 35;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const INVALID_REQUEST: i16 = 42;

/// Short quota windows, so that a client's first burst (one window's worth) is soon over.
const WINDOW_FLAGS: [&str; 4] = ["--quota-window-num", "2", "--quota-window-size-seconds", "1"];

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// An AlterClientQuotas entry: the entity's (type, name or default) and (key, value or removal).
fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| EntityData::default().with_entity_type(s(t)).with_entity_name(n.map(s)))
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(key, value)| {
                    OpData::default().with_key(s(key)).with_value(value.unwrap_or(0.0)).with_remove(value.is_none())
                })
                .collect(),
        )
}

fn alter(raw: &mut Raw, entries: Vec<EntryData>, validate_only: bool) -> Vec<i16> {
    let request = AlterClientQuotasRequest::default().with_entries(entries).with_validate_only(validate_only);
    raw.call(1, &request).entries.iter().map(|e| e.error_code).collect()
}

type Described = Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)>;

/// DescribeClientQuotas with (entity type, match type, match) components: its error code and
/// the entities found with their quotas, sorted.
fn describe(raw: &mut Raw, components: &[(&str, i8, Option<&str>)], strict: bool) -> (i16, Described) {
    let request = DescribeClientQuotasRequest::default()
        .with_components(
            components
                .iter()
                .map(|(t, m, n)| {
                    ComponentData::default().with_entity_type(s(t)).with_match_type(*m).with_match(n.map(s))
                })
                .collect(),
        )
        .with_strict(strict);
    let response = raw.call(1, &request);
    let mut found: Described = response
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let mut entity: Vec<_> = e
                .entity
                .iter()
                .map(|d| (d.entity_type.to_string(), d.entity_name.as_ref().map(|n| n.to_string())))
                .collect();
            entity.sort();
            let mut values: Vec<_> = e.values.iter().map(|v| (v.key.to_string(), v.value)).collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            (entity, values)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    (response.error_code, found)
}

fn named(parts: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    parts.iter().map(|(t, n)| (t.to_string(), n.map(str::to_string))).collect()
}

/// What Apache Kafka answers: valid quotas are stored and removable; a fractional byte rate, an
/// unknown key, a duplicate or empty entity get INVALID_REQUEST per entry; validate_only stores
/// nothing; filters select by exact name, default or any name, strictly or not, and an unknown
/// entity type gets UNSUPPORTED_VERSION. Quotas survive kill -9.
#[test]
fn client_quota_apis_answer_as_kafka_does() {
    let mut broker = TestBroker::start(&[]);
    let mut raw = Raw::connect(&broker.bootstrap);
    let codes = alter(
        &mut raw,
        vec![
            entry(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", Some(1024.0)), ("consumer_byte_rate", Some(4096.0))],
            ),
            entry(&[("user", None)], &[("consumer_byte_rate", Some(2048.0))]),
            entry(&[("client-id", Some("app"))], &[("request_percentage", Some(12.5))]),
            entry(&[("user", Some("alice")), ("client-id", Some("app"))], &[("producer_byte_rate", Some(10.5))]),
            entry(&[("user", Some("bob"))], &[("producer_bytes_rate", Some(1.0))]),
            entry(&[("user", Some("bob")), ("user", Some("carol"))], &[("producer_byte_rate", Some(1.0))]),
            entry(&[], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("user", Some(""))], &[("producer_byte_rate", Some(1.0))]),
        ],
        false,
    );
    assert_eq!(
        codes,
        vec![0, 0, 0, INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST]
    );
    let codes = alter(&mut raw, vec![entry(&[("user", Some("carol"))], &[("producer_byte_rate", Some(1.0))])], true);
    assert_eq!(codes, vec![0], "validate_only");

    let alice = (
        named(&[("user", Some("alice"))]),
        vec![("consumer_byte_rate".to_string(), 4096.0), ("producer_byte_rate".to_string(), 1024.0)],
    );
    let default_user = (named(&[("user", None)]), vec![("consumer_byte_rate".to_string(), 2048.0)]);
    let app = (named(&[("client-id", Some("app"))]), vec![("request_percentage".to_string(), 12.5)]);
    assert_eq!(
        describe(&mut raw, &[], false),
        (0, vec![app.clone(), default_user.clone(), alice.clone()]),
        "all, no carol"
    );
    assert_eq!(describe(&mut raw, &[], true), (0, vec![]), "strict without components");
    assert_eq!(describe(&mut raw, &[("user", 0, Some("alice"))], false), (0, vec![alice.clone()]));
    assert_eq!(describe(&mut raw, &[("user", 1, None)], false), (0, vec![default_user.clone()]));
    assert_eq!(describe(&mut raw, &[("user", 2, None)], true), (0, vec![default_user.clone(), alice.clone()]));
    assert_eq!(describe(&mut raw, &[("client-id", 2, None)], true), (0, vec![app.clone()]));
    assert_eq!(describe(&mut raw, &[("group", 2, None)], false).0, UNSUPPORTED_VERSION);
    assert_eq!(describe(&mut raw, &[("user", 2, None), ("user", 1, None)], false).0, INVALID_REQUEST);
    assert_eq!(describe(&mut raw, &[("user", 0, None)], false).0, INVALID_REQUEST, "exact without a name");

    let codes = alter(&mut raw, vec![entry(&[("user", Some("alice"))], &[("producer_byte_rate", None)])], false);
    assert_eq!(codes, vec![0]);
    let alice_left = (named(&[("user", Some("alice"))]), vec![("consumer_byte_rate".to_string(), 4096.0)]);
    assert_eq!(describe(&mut raw, &[("user", 0, Some("alice"))], false), (0, vec![alice_left.clone()]));

    broker.kill_and_restart();
    let mut raw = Raw::connect(&broker.bootstrap);
    assert_eq!(describe(&mut raw, &[], false), (0, vec![app, default_user, alice_left]), "after kill -9");
}

/// With an authorizer, describing quotas needs DESCRIBE_CONFIGS and altering them ALTER_CONFIGS
/// on the cluster: a user without gets CLUSTER_AUTHORIZATION_FAILED, a super user succeeds.
#[test]
fn client_quota_apis_need_the_cluster_rights() {
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--authorizer", "standard"]);
    let address = broker.listener("SASL_PLAINTEXT");
    user(&broker, "carol");
    let mut carol = authenticated(&address, "carol", "carol-pw");
    let set = || vec![entry(&[("user", Some("carol"))], &[("producer_byte_rate", Some(1e9))])];
    assert_eq!(alter(&mut carol, set(), false), vec![CLUSTER_AUTHORIZATION_FAILED]);
    assert_eq!(describe(&mut carol, &[], false).0, CLUSTER_AUTHORIZATION_FAILED);
    let mut admin = authenticated(&address, ADMIN, ADMIN_PASSWORD);
    assert_eq!(alter(&mut admin, set(), false), vec![0]);
    assert_eq!(describe(&mut admin, &[], false).1.len(), 1);
}

/// One raw connection producing `request_bytes` requests back to back for `run`: the request
/// bytes acknowledged from `warmup` on, per second, and the largest throttle time it was told.
fn produce_flat_out(
    address: &str,
    client_id: &'static str,
    topic: &str,
    warmup: Duration,
    run: Duration,
) -> (f64, i32) {
    let mut raw = Raw::connect(address).with_client_id(client_id);
    let request = produce_request(topic, 0, batch(&[&vec![b'x'; 32 * 1024]], None));
    let frame_bytes = raw.frame(9, &request).len() as f64;
    let started = Instant::now();
    let (mut bytes, mut throttle_max) = (0.0, 0);
    while started.elapsed() < run {
        let response = raw.call(9, &request);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        throttle_max = throttle_max.max(response.throttle_time_ms);
        if started.elapsed() >= warmup {
            bytes += frame_bytes;
        }
    }
    (bytes / (started.elapsed() - warmup).as_secs_f64(), throttle_max)
}

/// A raw client over its `producer_byte_rate` that ignores `throttle_time_ms` is held to the
/// rate by the broker (its connection muted) within 10%, while a client without a quota
/// producing at the same time is never throttled and keeps a rate far above it.
#[test]
fn a_producer_over_its_quota_is_held_to_it_and_another_keeps_its_rate() {
    let broker = TestBroker::start(&WINDOW_FLAGS);
    let topic = unique_topic("quota-produce");
    let mut raw = Raw::connect(&broker.bootstrap);
    let quota = 256.0 * 1024.0;
    assert_eq!(
        alter(&mut raw, vec![entry(&[("client-id", Some("noisy"))], &[("producer_byte_rate", Some(quota))])], false),
        vec![0]
    );
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);

    let (warmup, run) = (Duration::from_secs(2), Duration::from_secs(8));
    let address = broker.bootstrap.clone();
    let noisy_topic = topic.clone();
    let noisy = std::thread::spawn(move || produce_flat_out(&address, "noisy", &noisy_topic, warmup, run));
    let (quiet_rate, quiet_throttle) = produce_flat_out(&broker.bootstrap, "quiet", &topic, warmup, run);
    let (noisy_rate, noisy_throttle) = noisy.join().expect("noisy producer");
    assert!(noisy_throttle > 0, "the noisy client is told it is throttled");
    assert!((noisy_rate - quota).abs() <= quota * 0.1, "noisy client at {noisy_rate:.0} B/s, quota {quota} B/s");
    assert_eq!(quiet_throttle, 0, "the quiet client is never throttled");
    assert!(quiet_rate > quota * 4.0, "the quiet client keeps its rate: {quiet_rate:.0} B/s");
}

/// A real client: an rdkafka producer with a `producer_byte_rate` gets its records acknowledged
/// at that rate (within 10%), whatever it queues. librdkafka only reports throttle times, so
/// this is the broker's muting at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rdkafka_producer_is_held_to_its_byte_rate() {
    let broker = TestBroker::start(&WINDOW_FLAGS);
    let topic = unique_topic("quota-rdkafka");
    let quota = 256.0 * 1024.0;
    let mut raw = Raw::connect(&broker.bootstrap);
    let codes =
        alter(&mut raw, vec![entry(&[("client-id", Some("rd-noisy"))], &[("producer_byte_rate", Some(quota))])], false);
    assert_eq!(codes, vec![0]);
    // Requests of at most 32 KiB: the rate is measured in whole requests, and a client sending
    // 1 MB requests (librdkafka's default batch.size) moves in steps of four seconds' quota.
    let producer: FutureProducer =
        broker.producer(&[("client.id", "rd-noisy"), ("linger.ms", "5"), ("batch.size", "32768")]);
    let value = vec![b'v'; 8 * 1024];
    let (warmup, run) = (Duration::from_secs(2), Duration::from_secs(8));
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut bytes = 0usize;
    while started.elapsed() < run {
        while in_flight.len() < 64 {
            let record = FutureRecord::<(), _>::to(&topic).partition(0).payload(&value);
            let producer = &producer;
            in_flight.push(async move { producer.send(record, Duration::from_secs(60)).await.map(|_| ()) });
        }
        if let Some(sent) = in_flight.next().await {
            sent.map_err(|(e, _)| e).expect("delivered");
            if started.elapsed() >= warmup {
                bytes += value.len();
            }
        }
    }
    let rate = bytes as f64 / (started.elapsed() - warmup).as_secs_f64();
    // Record bytes, not request bytes: a request carries ~1% more than its values.
    assert!((rate - quota).abs() <= quota * 0.1, "rdkafka producer at {rate:.0} B/s, quota {quota} B/s");
}

/// An rdkafka consumer with a `consumer_byte_rate` reads a backlog at that rate (within 10%):
/// fetches that would take it over are answered empty with the throttle time.
#[test]
fn a_consumer_over_its_quota_reads_at_its_byte_rate() {
    let broker = TestBroker::start(&WINDOW_FLAGS);
    let topic = unique_topic("quota-fetch");
    let mut raw = Raw::connect(&broker.bootstrap);
    let quota = 256.0 * 1024.0;
    let codes = alter(
        &mut raw,
        vec![entry(&[("client-id", Some("slow-reader"))], &[("consumer_byte_rate", Some(quota))])],
        false,
    );
    assert_eq!(codes, vec![0]);
    assert_eq!(create_topic_raw(&mut raw, &topic, &[]), 0);
    // 4 MiB of backlog: more than the run can read at the quota.
    let value = vec![b'r'; 16 * 1024];
    for _ in 0..32 {
        let values: Vec<&[u8]> = (0..8).map(|_| value.as_slice()).collect();
        assert_eq!(crate::bad_input::produce(&mut raw, &topic, batch(&values, None)).0, 0);
    }
    let consumer: Member = Member::new(
        broker
            .client_config()
            .set("client.id", "slow-reader")
            .set("group.id", "slow-readers")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer"),
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let (warmup, run) = (Duration::from_secs(2), Duration::from_secs(8));
    let mut started = None;
    let mut bytes = 0usize;
    loop {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            if started.is_some_and(|s: Instant| s.elapsed() >= run) {
                break;
            }
            continue;
        };
        let message = message.expect("message");
        // The clock starts with the first record (the group join before it is not reading).
        let start = *started.get_or_insert_with(Instant::now);
        if start.elapsed() >= run {
            break;
        }
        if start.elapsed() >= warmup {
            bytes += message.payload().map_or(0, <[u8]>::len);
        }
    }
    let elapsed = started.expect("records read").elapsed() - warmup;
    let rate = bytes as f64 / elapsed.as_secs_f64();
    assert!((rate - quota).abs() <= quota * 0.1, "consumer at {rate:.0} B/s, quota {quota} B/s");
}

/// A client over a tiny `request_percentage` is told it is throttled, even on requests that
/// move no bytes; a client without the quota is not.
#[test]
fn request_time_over_its_quota_is_throttled() {
    let broker = TestBroker::start(&WINDOW_FLAGS);
    let mut raw = Raw::connect(&broker.bootstrap);
    let codes =
        alter(&mut raw, vec![entry(&[("client-id", Some("busy"))], &[("request_percentage", Some(0.001))])], false);
    assert_eq!(codes, vec![0]);
    let metadata = MetadataRequest::default().with_topics(None);
    let throttled = |client_id: &'static str| {
        let mut raw = Raw::connect(&broker.bootstrap).with_client_id(client_id);
        (0..50).map(|_| raw.call(12, &metadata).throttle_time_ms).max().unwrap_or(0)
    };
    assert!(throttled("busy") > 0, "over request_percentage");
    assert_eq!(throttled("idle"), 0, "no quota");
}
