//! Transactions through librdkafka's transactional producer (the rdkafka crate): what
//! read_committed and read_uncommitted consumers get, fencing of a second instance, the abort of
//! a transaction left open, offsets committed with a transaction, and a commit decided just
//! before a crash.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, config::ClientConfig};

use crate::common::{Member, TestBroker, WAIT_MAX, unique_topic};

const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn transactional_producer(
    broker: &TestBroker,
    id: &str,
    extra: &[(&str, &str)],
) -> ThreadedProducer<DefaultProducerContext> {
    let mut config = broker.client_config();
    config.set("transactional.id", id).set("linger.ms", "5");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

pub(crate) fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, partition: i32, value: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(partition).payload(value))
        .map_err(|(error, _)| error)
        .expect("queue a record");
}

pub(crate) fn consumer(broker: &TestBroker, isolation: &str) -> BaseConsumer {
    let mut config: ClientConfig = broker.client_config();
    config
        .set("group.id", unique_topic("txn-readers"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Reads every partition from the beginning until the consumer's position reaches `ends` (the
/// offsets it must reach: markers are skipped, so positions pass them): (partition, offset, value).
pub(crate) fn read_to(consumer: &BaseConsumer, topic: &str, ends: &BTreeMap<i32, i64>) -> Vec<(i32, i64, String)> {
    let mut list = TopicPartitionList::new();
    for &partition in ends.keys() {
        list.add_partition_offset(topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let positions = consumer.position().expect("position");
        let done = ends.iter().all(|(&partition, &end)| {
            positions.find_partition(topic, partition).is_some_and(|p| p.offset() == Offset::Offset(end))
        });
        if done {
            return out;
        }
        assert!(Instant::now() < deadline, "positions {positions:?} did not reach {ends:?}; read {out:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            let message = message.expect("consume");
            let value = String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8");
            out.push((message.partition(), message.offset(), value));
        }
    }
}

/// The high watermark as a consumer of the given isolation level sees it (librdkafka's
/// ListOffsets carries its isolation level: read_committed is answered the last stable offset).
fn visible_end(broker: &TestBroker, isolation: &str, topic: &str, partition: i32) -> i64 {
    consumer(broker, isolation).fetch_watermarks(topic, partition, TIMEOUT).expect("watermarks").1
}

fn is_fenced(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::Transaction(error) => error.code(),
        other => other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown),
    };
    matches!(code, RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced)
}

/// Six transactions over three partitions, committed and aborted in turn: a read_committed
/// consumer gets exactly the committed records, in order, and a read_uncommitted one every
/// record; each transaction's marker takes one offset in each partition, so offsets stay dense.
#[test]
fn read_committed_consumers_get_exactly_the_committed_records() {
    let broker = TestBroker::start(&["--num-partitions", "3"]);
    let topic = unique_topic("txn");
    let producer = transactional_producer(&broker, "txn-alternating", &[]);
    let per_partition = 10;
    let mut committed = Vec::new();
    let mut everything = Vec::new();
    for round in 0..6 {
        producer.begin_transaction().expect("begin");
        for partition in 0..3 {
            for i in 0..per_partition {
                let value = format!("r{round}-p{partition}-{i}");
                send(&producer, &topic, partition, &value);
                everything.push((partition, value.clone()));
                if round % 2 == 0 {
                    committed.push((partition, value));
                }
            }
        }
        if round % 2 == 0 {
            producer.commit_transaction(TIMEOUT).expect("commit");
        } else {
            // The records reach the log before the abort, so that there is something to skip.
            producer.flush(TIMEOUT).expect("flush");
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
    }
    // Per partition: 6 transactions of 10 records and one marker each.
    let end = 6 * (per_partition + 1);
    let ends: BTreeMap<i32, i64> = (0..3).map(|p| (p, end)).collect();
    for partition in 0..3 {
        assert_eq!(visible_end(&broker, "read_uncommitted", &topic, partition), end);
        assert_eq!(visible_end(&broker, "read_committed", &topic, partition), end, "no transaction is open");
    }
    let read = read_to(&consumer(&broker, "read_committed"), &topic, &ends);
    let got: Vec<(i32, String)> = {
        let mut got: Vec<_> = read.iter().map(|(p, _, v)| (*p, v.clone())).collect();
        got.sort_by_key(|(p, _)| *p);
        got
    };
    let mut want = committed.clone();
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(got, want, "read_committed: the committed records, in order per partition");
    // Transaction t's records sit at offsets 11t..11t+9 of each partition, its marker at 11t+10.
    for (partition, offset, value) in &read {
        let round = offset / (per_partition + 1);
        assert!(round % 2 == 0 && offset % (per_partition + 1) < per_partition, "{partition}/{offset} {value}");
        assert!(value.starts_with(&format!("r{round}-p{partition}-")), "{partition}/{offset} {value}");
    }
    let all = read_to(&consumer(&broker, "read_uncommitted"), &topic, &ends);
    assert_eq!(all.len(), everything.len(), "read_uncommitted: every record, aborted ones too");
    for (partition, offset, value) in &all {
        let (round, i) = (offset / (per_partition + 1), offset % (per_partition + 1));
        assert_eq!(value, &format!("r{round}-p{partition}-{i}"));
    }
}

/// A second producer with the same transactional id fences the first: its next transaction
/// fails with the fencing error, and only the second one's records are committed after it.
#[test]
fn a_second_instance_fences_the_first() {
    let broker = TestBroker::start(&["--num-partitions", "1"]);
    let topic = unique_topic("txn-fence");
    let first = transactional_producer(&broker, "txn-fenced", &[]);
    first.begin_transaction().expect("begin");
    send(&first, &topic, 0, "first-committed");
    first.commit_transaction(TIMEOUT).expect("commit");

    let second = transactional_producer(&broker, "txn-fenced", &[]);
    first.begin_transaction().expect("begin locally");
    send(&first, &topic, 0, "zombie");
    let error = first.commit_transaction(TIMEOUT).expect_err("the fenced instance cannot commit");
    assert!(is_fenced(&error), "fencing error expected, got {error:?}");

    second.begin_transaction().expect("begin");
    send(&second, &topic, 0, "second-committed");
    second.commit_transaction(TIMEOUT).expect("commit");
    let end = visible_end(&broker, "read_committed", &topic, 0);
    let read = read_to(&consumer(&broker, "read_committed"), &topic, &BTreeMap::from([(0, end)]));
    let values: Vec<&str> = read.iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(values, vec!["first-committed", "second-committed"]);
}

/// A producer that stops in the middle of a transaction: the partition's last stable offset
/// stays at the transaction's first offset, holding read_committed consumers back, until the
/// coordinator aborts it at its timeout; then they read on past it, without its records, and
/// the producer, whose epoch was bumped, cannot commit.
#[test]
fn a_transaction_left_open_is_aborted_at_its_timeout() {
    let broker = TestBroker::start(&[
        "--num-partitions",
        "1",
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "200",
    ]);
    let topic = unique_topic("txn-timeout");
    let plain: ThreadedProducer<DefaultProducerContext> = broker.client_config().create().expect("producer");
    send_plain(&plain, &topic, "before");
    let stalled = transactional_producer(&broker, "txn-stalled", &[("transaction.timeout.ms", "3000")]);
    stalled.begin_transaction().expect("begin");
    for i in 0..3 {
        send(&stalled, &topic, 0, &format!("open-{i}"));
    }
    stalled.flush(TIMEOUT).expect("flush");
    send_plain(&plain, &topic, "after");
    assert_eq!(visible_end(&broker, "read_uncommitted", &topic, 0), 5);
    let lag_series = format!("zombi_partition_last_stable_offset_lag{{topic=\"{topic}\",partition=\"0\"}}");
    let held = visible_end(&broker, "read_committed", &topic, 0);
    let scraped = (metric(&broker, "zombi_transactions_open"), metric(&broker, &lag_series));
    let held_after = visible_end(&broker, "read_committed", &topic, 0);
    // Either still held at the transaction's first offset, or (on a slow machine) already past
    // the abort marker: never anywhere between. The metrics agree while it is held.
    assert!(held == 1 || held == 6, "last stable offset {held}");
    if held_after == 1 {
        assert_eq!(scraped, (Some(1.0), Some(4.0)), "open transactions and the partition's LSO lag");
    }
    let deadline = Instant::now() + WAIT_MAX;
    while visible_end(&broker, "read_committed", &topic, 0) != 6 {
        assert!(Instant::now() < deadline, "the open transaction was never aborted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(visible_end(&broker, "read_uncommitted", &topic, 0), 6, "one abort marker");
    let read = read_to(&consumer(&broker, "read_committed"), &topic, &BTreeMap::from([(0, 6)]));
    let values: Vec<&str> = read.iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(values, vec!["before", "after"]);
    let error = stalled.commit_transaction(TIMEOUT).expect_err("an aborted transaction cannot commit");
    assert!(is_fenced(&error), "fencing error expected, got {error:?}");
    assert_eq!(metric(&broker, "zombi_transactions_timed_out_total"), Some(1.0));
    assert_eq!(metric(&broker, "zombi_transactions_aborted_total"), Some(1.0));
    assert_eq!(metric(&broker, "zombi_transactions_open"), Some(0.0));
    assert_eq!(metric(&broker, &lag_series), None, "no lag once nothing is open");
}

/// The value of the series `name{labels}` in a scrape of `/metrics`.
fn metric(broker: &TestBroker, name_and_labels: &str) -> Option<f64> {
    let scrape = crate::http_client::get(&broker.http, "/metrics");
    let text = String::from_utf8(scrape.body).expect("utf-8");
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

fn send_plain(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    send(producer, topic, 0, value);
    producer.flush(TIMEOUT).expect("flush");
}

/// Offsets sent with a transaction (TxnOffsetCommit) become the group's committed offsets when
/// it commits, and not when it aborts.
#[test]
fn offsets_sent_with_a_transaction_commit_with_it() {
    let broker = TestBroker::start(&["--num-partitions", "1"]);
    let topic = unique_topic("txn-offsets");
    let group = unique_topic("txn-group");
    let producer = transactional_producer(&broker, "txn-offsets", &[]);
    let input: Member = Member::new(
        broker.client_config().set("group.id", &group).set("enable.auto.commit", "false").create().expect("consumer"),
    );
    // The topic exists before the consumer subscribes (consumers do not create topics).
    let plain: ThreadedProducer<DefaultProducerContext> = broker.client_config().create().expect("producer");
    send_plain(&plain, &topic, "input");
    input.subscribe(&[&topic]).expect("subscribe");
    // A member of the group's current generation: TxnOffsetCommit then names its member id and
    // generation, which the coordinator checks (KIP-447).
    let deadline = Instant::now() + WAIT_MAX;
    while input.assignment().expect("assignment").count() == 0 {
        assert!(Instant::now() < deadline, "the consumer never joined its group");
        let _ = input.poll(Duration::from_millis(100));
    }
    let committed_offset = |consumer: &BaseConsumer| {
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, 0);
        let committed = consumer.committed_offsets(list, TIMEOUT).expect("committed");
        committed.find_partition(&topic, 0).expect("partition").offset()
    };
    for (offset, commit) in [(7, true), (42, false)] {
        producer.begin_transaction().expect("begin");
        send(&producer, &topic, 0, "out");
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&topic, 0, Offset::Offset(offset)).expect("offset");
        let metadata = input.group_metadata().expect("group metadata");
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("send offsets");
        if commit {
            producer.commit_transaction(TIMEOUT).expect("commit");
        } else {
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
        assert_eq!(committed_offset(&input), Offset::Offset(7), "after the transaction that sent {offset}");
    }
}

/// The broker crashes right after storing a commit decision, before writing any marker: when
/// it comes back, the coordinator finishes the commit, and read_committed consumers get the
/// transaction's records.
#[test]
fn a_commit_decided_before_a_crash_is_finished_after_it() {
    let mut broker =
        TestBroker::start_with_env(&["--num-partitions", "2"], &[("ZOMBI_FAILPOINT", "txn-after-prepare")]);
    let topic = unique_topic("txn-crash");
    let producer = transactional_producer(&broker, "txn-crash", &[("transaction.timeout.ms", "600000")]);
    producer.begin_transaction().expect("begin");
    for partition in 0..2 {
        for i in 0..5 {
            send(&producer, &topic, partition, &format!("p{partition}-{i}"));
        }
    }
    producer.flush(TIMEOUT).expect("flush");
    // The broker aborts at the failpoint, so the commit gets no answer from it.
    let _ = producer.commit_transaction(Duration::from_secs(2));
    let status = broker.wait_exit();
    assert!(!status.success(), "the broker stopped at the failpoint");
    drop(producer);
    broker.restart_with(&["--num-partitions", "2"], &[]);
    let ends: BTreeMap<i32, i64> = (0..2).map(|p| (p, 6)).collect();
    let read = read_to(&consumer(&broker, "read_committed"), &topic, &ends);
    let mut values: Vec<String> = read.into_iter().map(|(_, _, v)| v).collect();
    values.sort();
    let mut want: Vec<String> = (0..2).flat_map(|p| (0..5).map(move |i| format!("p{p}-{i}"))).collect();
    want.sort();
    assert_eq!(values, want);
}

/// The Iceberg table of a topic written transactionally holds exactly the committed records,
/// as pyiceberg and DuckDB read it: no aborted record and no marker is a row, and the snapshot's
/// next offsets pass the markers.
#[test]
fn the_iceberg_table_holds_exactly_the_committed_records() {
    use crate::iceberg::{Expected, Reader, assert_exact, broker_args, hex, next_offsets, wait_for_rows_from};
    let broker = TestBroker::start(&broker_args("2"));
    let topic = unique_topic("txn-ice");
    let producer = transactional_producer(&broker, "txn-iceberg", &[]);
    let per_partition = 5;
    let mut expected = Vec::new();
    for round in 0..4i64 {
        producer.begin_transaction().expect("begin");
        for partition in 0..2 {
            for i in 0..per_partition {
                let value = format!("r{round}-p{partition}-{i}");
                let timestamp_ms = 1_700_000_000_000 + round * 100 + i;
                producer
                    .send(
                        BaseRecord::<(), str>::to(&topic).partition(partition).payload(&value).timestamp(timestamp_ms),
                    )
                    .map_err(|(error, _)| error)
                    .expect("queue a record");
                if round % 2 == 0 {
                    expected.push(Expected {
                        partition: i64::from(partition),
                        offset: round * (per_partition + 1) + i,
                        timestamp_us: timestamp_ms * 1000,
                        key: None,
                        value: Some(hex(value.as_bytes())),
                        headers: Vec::new(),
                    });
                }
            }
        }
        if round % 2 == 0 {
            producer.commit_transaction(TIMEOUT).expect("commit");
        } else {
            producer.flush(TIMEOUT).expect("flush");
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
    }
    let reader = Reader::sqlite(&broker);
    let mut seen = wait_for_rows_from(&reader, &topic, expected.len());
    // The rows may be there before the last (aborted) transaction's marker is passed.
    let deadline = Instant::now() + WAIT_MAX;
    while next_offsets(&seen) != BTreeMap::from([(0, 24), (1, 24)]) {
        assert!(Instant::now() < deadline, "next offsets {:?}", next_offsets(&seen));
        std::thread::sleep(Duration::from_millis(200));
        seen = wait_for_rows_from(&reader, &topic, expected.len());
    }
    assert_exact(&seen, &expected);
}

/// confluent-kafka's and kafka-python's transactional producers, each through its own API
/// (compat/transactional_clients.py), commit one transaction and abort one: read_committed
/// consumers of both libraries get exactly the committed records, and each transaction's marker
/// takes an offset.
#[test]
fn confluent_kafka_and_kafka_python_transactions() {
    let broker = TestBroker::start(&["--num-partitions", "1"]);
    let topic = unique_topic("txn-python");
    let python = std::env::var("ZOMBI_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/zombi/venv/bin/python", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/transactional_clients.py");
    let output = std::process::Command::new(python)
        .args([script, &broker.bootstrap, &topic])
        .output()
        .expect("python with confluent-kafka and kafka-python (compat/setup.sh installs them)");
    assert!(output.status.success(), "transactional_clients.py: {}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    // Four transactions of five records, each with its marker.
    assert_eq!(seen["high_watermark"], 24, "{seen}");
    let want: Vec<String> = ["confluent", "kafka-python"]
        .iter()
        .flat_map(|client| (0..5).map(move |i| format!("{client}-commit-{i}")))
        .collect();
    for reader in ["confluent", "kafka_python"] {
        let got: Vec<String> = serde_json::from_value(seen[reader].clone()).expect("values");
        assert_eq!(got, want, "{reader}");
    }
}

/// Consume-transform-produce with `send_offsets_to_transaction`, as an exactly-once application
/// runs it, through crashes of both sides: the application is abandoned in the middle of a
/// transaction (a new instance with the same transactional id takes over and resumes from the
/// group's committed offset) and, separately, the broker is killed with -9 in the middle of one.
/// In the end a read_committed reader finds each input record's output exactly once, in input
/// order, and the group's committed offset is the input's end.
#[test]
fn consume_transform_produce_is_exactly_once_across_crashes() {
    let mut broker = TestBroker::start(&["--num-partitions", "1", "--group-initial-rebalance-delay-ms", "0"]);
    let (input, output, group) = (unique_topic("etl-in"), unique_topic("etl-out"), unique_topic("etl-group"));
    let inputs = 300;
    let plain: ThreadedProducer<DefaultProducerContext> = broker.client_config().create().expect("producer");
    for i in 0..inputs {
        send(&plain, &input, 0, &format!("in-{i}"));
    }
    plain.flush(TIMEOUT).expect("flush");
    drop(plain);
    // The application's instances, each abandoned (or cut off by the broker's crash) at some
    // point; the last one runs to the end.
    let mut instance = 0;
    loop {
        instance += 1;
        assert!(instance < 20, "the application never finished");
        let crash_after = match instance {
            1 => Some((3, Crash::Application)),
            2 => Some((2, Crash::Broker)),
            3 => Some((4, Crash::Application)),
            _ => None,
        };
        match run_application(&mut broker, &input, &output, &group, inputs, crash_after) {
            Ok(true) => break,
            Ok(false) | Err(_) => continue,
        }
    }
    let end = visible_end(&broker, "read_uncommitted", &output, 0);
    let read = read_to(&consumer(&broker, "read_committed"), &output, &BTreeMap::from([(0, end)]));
    let values: Vec<String> = read.into_iter().map(|(_, _, value)| value).collect();
    let want: Vec<String> = (0..inputs).map(|i| format!("out-{i}")).collect();
    assert_eq!(values, want, "each input's output exactly once, in order");
    let checker: BaseConsumer =
        broker.client_config().set("group.id", &group).set("enable.auto.commit", "false").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(&input, 0);
    let committed = checker.committed_offsets(list, TIMEOUT).expect("committed");
    assert_eq!(committed.find_partition(&input, 0).expect("partition").offset(), Offset::Offset(inputs as i64));
}

#[derive(Clone, Copy)]
enum Crash {
    /// The application stops in the middle of a transaction, never to end it.
    Application,
    /// The broker is killed with -9 in the middle of a transaction and started again.
    Broker,
}

/// One instance of the application: reads `input` from the group's committed offset, writes
/// `out-i` for each `in-i` in transactions of up to 25 records with the offsets, until it has
/// consumed `inputs` records (Ok(true)) or crashes after `crash_after.0` transactions (Ok(false));
/// an error from a client (the broker was killed under it) is Err.
fn run_application(
    broker: &mut TestBroker,
    input: &str,
    output: &str,
    group: &str,
    inputs: usize,
    crash_after: Option<(usize, Crash)>,
) -> Result<bool, KafkaError> {
    use rdkafka::Message;
    let producer = transactional_producer(broker, "etl-app", &[]);
    let consumer: Member = Member::new(
        broker
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer"),
    );
    consumer.subscribe(&[input])?;
    let deadline = Instant::now() + WAIT_MAX;
    let mut transactions = 0;
    loop {
        assert!(Instant::now() < deadline, "the application made no progress");
        let mut batch = Vec::new();
        while batch.len() < 25 {
            match consumer.poll(Duration::from_millis(200)) {
                Some(message) => {
                    let message = message?;
                    let value = String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8");
                    batch.push((message.offset(), value));
                }
                None => break,
            }
        }
        if batch.is_empty() {
            let position = consumer.position()?;
            if position.find_partition(input, 0).is_some_and(|p| p.offset() == Offset::Offset(inputs as i64)) {
                return Ok(true);
            }
            continue;
        }
        producer.begin_transaction()?;
        for (_, value) in &batch {
            let n = value.strip_prefix("in-").expect("an input record");
            send(&producer, output, 0, &format!("out-{n}"));
        }
        if let Some((after, crash)) = crash_after
            && transactions == after
        {
            producer.flush(TIMEOUT)?;
            if let Crash::Broker = crash {
                broker.kill_and_restart();
            }
            // The instance is gone mid-transaction: its successor fences and aborts it.
            return Ok(false);
        }
        let next = batch.last().expect("a record").0 + 1;
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(input, 0, Offset::Offset(next))?;
        let metadata = consumer.group_metadata().expect("group metadata");
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        transactions += 1;
    }
}

/// DescribeProducers of every partition of `topic` in `partitions`: (partition, error code,
/// producers as (id, epoch, last sequence, last timestamp, coordinator epoch, txn start)).
type Described = Vec<(i32, i16, Vec<(i64, i32, i32, i64, i32, i64)>)>;

fn describe_producers(broker: &TestBroker, topic: &str, partitions: &[i32]) -> Described {
    use kafka_protocol::messages::DescribeProducersRequest;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let request = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(kafka_protocol::messages::TopicName(topic.to_string().into()))
            .with_partition_indexes(partitions.to_vec()),
    ]);
    let response = crate::raw::Raw::connect(&broker.bootstrap).call(0, &request);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let producers = p
                .active_producers
                .iter()
                .map(|s| {
                    let state = (s.producer_id.0, s.producer_epoch, s.last_sequence, s.last_timestamp);
                    (state.0, state.1, state.2, state.3, s.coordinator_epoch, s.current_txn_start_offset)
                })
                .collect();
            (p.partition_index, p.error_code, producers)
        })
        .collect()
}

/// WriteTxnMarkers with one marker for `partitions` of `topic`: each partition's error code.
fn write_marker(
    broker: &TestBroker,
    topic: &str,
    partitions: &[i32],
    (producer_id, epoch): (i64, i16),
    commit: bool,
    coordinator_epoch: i32,
) -> Vec<(i32, i16)> {
    use kafka_protocol::messages::WriteTxnMarkersRequest;
    use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
    let marker = WritableTxnMarker::default()
        .with_producer_id(producer_id.into())
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![
            WritableTxnMarkerTopic::default()
                .with_name(kafka_protocol::messages::TopicName(topic.to_string().into()))
                .with_partition_indexes(partitions.to_vec()),
        ]);
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response = crate::raw::Raw::connect(&broker.bootstrap).call(1, &request);
    response.markers[0].topics[0].partitions.iter().map(|p| (p.partition_index, p.error_code)).collect()
}

/// KIP-664's tooling, as `kafka-transactions.sh` uses it: DescribeProducers shows the producer
/// of a transaction left open on a partition (its epoch, last sequence and timestamp, and the
/// offset that holds the last stable offset back), and WriteTxnMarkers, as
/// `Admin.abortTransaction` sends it, aborts it there: the last stable offset moves to the high
/// watermark and a read_committed consumer gets none of its records. A marker from an epoch the
/// producer has left behind is INVALID_PRODUCER_EPOCH.
#[test]
fn describe_producers_shows_an_open_transaction_and_write_txn_markers_aborts_it() {
    let broker = TestBroker::start(&["--num-partitions", "2"]);
    let topic = unique_topic("txn-tooling");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let producer = transactional_producer(&broker, "txn-tooling", &[]);
    producer.begin_transaction().expect("begin");
    for i in 0..3 {
        send(&producer, &topic, 0, &format!("left open {i}"));
    }
    producer.flush(TIMEOUT).expect("flush");
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    assert_eq!(
        (visible_end(&broker, "read_committed", &topic, 0), visible_end(&broker, "read_uncommitted", &topic, 0)),
        (0, 3)
    );

    let described = describe_producers(&broker, &topic, &[0, 1, 7]);
    assert_eq!(described.len(), 3);
    let (index, code, producers) = &described[0];
    assert_eq!((*index, *code, producers.len()), (0, 0, 1), "{described:?}");
    let (producer_id, epoch, last_sequence, last_timestamp, coordinator_epoch, txn_start) = producers[0];
    assert_eq!((epoch, last_sequence, coordinator_epoch, txn_start), (0, 2, -1, 0), "{described:?}");
    assert!((before..=after).contains(&last_timestamp), "{last_timestamp} not in {before}..={after}");
    assert_eq!(described[1], (1, 0, vec![]), "no producer wrote partition 1");
    assert_eq!(described[2], (7, 3, vec![]), "partition 7 does not exist: UNKNOWN_TOPIC_OR_PARTITION");

    // The operator aborts it (what `kafka-transactions.sh abort` sends); partition 9 does not exist.
    let codes = write_marker(&broker, &topic, &[0, 9], (producer_id, 0), false, 5);
    assert_eq!(codes, vec![(0, 0), (9, 3)]);
    assert_eq!(
        (visible_end(&broker, "read_committed", &topic, 0), visible_end(&broker, "read_uncommitted", &topic, 0)),
        (4, 4)
    );
    assert!(read_to(&consumer(&broker, "read_committed"), &topic, &BTreeMap::from([(0, 4)])).is_empty());
    let described = describe_producers(&broker, &topic, &[0]);
    let state = described[0].2[0];
    assert_eq!((state.0, state.1, state.2, state.4, state.5), (producer_id, 0, 2, 5, -1), "{described:?}");

    // A new instance fences the first (epoch 1); a marker at epoch 0 is refused.
    drop(producer);
    let _second = transactional_producer(&broker, "txn-tooling", &[]);
    assert_eq!(write_marker(&broker, &topic, &[0], (producer_id, 0), false, 5), vec![(0, 47)]);
    let epochs: Vec<i32> = describe_producers(&broker, &topic, &[0])[0].2.iter().map(|p| p.1).collect();
    assert_eq!(epochs, vec![1], "the coordinator's abort at the new epoch reached the partition");
}

/// `--producer-id-expiration-ms` (Kafka's `producer.id.expiration.ms`): a partition forgets an
/// idempotent producer whose last write is older than that, as DescribeProducers shows, but
/// not one holding a transaction open there until the transaction ends.
#[test]
fn idle_producers_expire_unless_they_hold_a_transaction_open() {
    use crate::bad_input::{batch, produce_request};
    use crate::raw::Raw;
    let broker = TestBroker::start(&[
        "--num-partitions",
        "2",
        "--producer-id-expiration-ms",
        "1",
        "--retention-check-interval-ms",
        "100",
    ]);
    let topic = unique_topic("producer-expiry");
    let producer = transactional_producer(&broker, "producer-expiry", &[]);
    producer.begin_transaction().expect("begin");
    send(&producer, &topic, 0, "in a transaction");
    producer.flush(TIMEOUT).expect("flush");
    // An idempotent producer on partition 1.
    let mut raw = Raw::connect(&broker.bootstrap);
    let init = raw.call(
        4,
        &kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    let written = raw.call(9, &produce_request(&topic, 1, batch(&[b"idempotent"], Some((init.producer_id.0, 0, 0)))));
    assert_eq!(written.responses[0].partition_responses[0].error_code, 0);

    let count = |partition: i32| describe_producers(&broker, &topic, &[partition])[0].2.len();
    let deadline = Instant::now() + WAIT_MAX;
    while count(1) > 0 {
        assert!(Instant::now() < deadline, "the idle producer never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(0), 1, "the producer with a transaction open stays");
    producer.commit_transaction(TIMEOUT).expect("commit");
    while count(0) > 0 {
        assert!(Instant::now() < deadline, "the producer never expired after its commit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The log keeps every record; only the state went.
    assert_eq!(visible_end(&broker, "read_committed", &topic, 0), 2);
    assert_eq!(visible_end(&broker, "read_committed", &topic, 1), 1);
}
