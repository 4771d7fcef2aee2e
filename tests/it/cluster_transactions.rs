//! Transactions in a cluster: the coordinator of a transactional id is the broker holding its
//! group slot, its state is in PostgreSQL, and its markers go to partitions led by every broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::cluster::Cluster;
use crate::common::{WAIT_MAX, unique_topic};
use crate::raw::Raw;
use crate::transactions::{read_to, send};

const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(cluster: &Cluster, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        cluster.client_config().set("transactional.id", id).set("linger.ms", "5").create().expect("producer");
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

fn consumer(cluster: &Cluster, isolation: &str) -> BaseConsumer {
    cluster
        .client_config()
        .set("group.id", unique_topic("cluster-txn-readers"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// The broker FindCoordinator names for the transactional id, asking every broker but `dead`,
/// once one names a broker other than `dead`.
fn coordinator_of(cluster: &Cluster, id: &str, dead: Option<i32>) -> i32 {
    find_coordinator(cluster, id, 1, dead)
}

/// The broker FindCoordinator names for `key` of `key_type` (0: group, 1: transactional id).
fn find_coordinator(cluster: &Cluster, key: &str, key_type: i8, dead: Option<i32>) -> i32 {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        for (at, broker) in cluster.brokers.iter().enumerate() {
            if dead == Some(at as i32 + 1) {
                continue;
            }
            let mut raw = Raw::connect(&broker.bootstrap);
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_key_type(key_type);
            let answer = raw.call(3, &request);
            let node = answer.node_id.0;
            if answer.error_code == 0 && node >= 1 && node <= cluster.brokers.len() as i32 && Some(node) != dead {
                return node;
            }
        }
        assert!(Instant::now() < deadline, "no live broker coordinates {key}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `per_partition` records to each partition in a transaction, committed or aborted;
/// returns the records as (partition, value).
fn transaction(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
    commit: bool,
) -> Result<Vec<(i32, String)>, KafkaError> {
    producer.begin_transaction()?;
    let mut sent = Vec::new();
    for partition in 0..partitions {
        for i in 0..per_partition {
            let value = format!("{tag}-p{partition}-{i}");
            send(producer, topic, partition, &value);
            sent.push((partition, value));
        }
    }
    if commit {
        producer.commit_transaction(TIMEOUT)?;
    } else {
        producer.flush(TIMEOUT)?;
        producer.abort_transaction(TIMEOUT)?;
    }
    Ok(sent)
}

fn sorted(mut records: Vec<(i32, String)>) -> Vec<(i32, String)> {
    records.sort_by_key(|(p, _)| *p);
    records
}

/// Committed and aborted transactions in turn over six partitions led by three brokers: the
/// coordinator writes every marker, to its own partitions and through the others' leaders, so a
/// read_committed consumer gets exactly the committed records and a read_uncommitted one every
/// record, with one offset per marker and nothing left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_reach_partitions_led_by_every_broker() {
    let cluster = Cluster::start(3);
    let topic = unique_topic("cluster-txn");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    let leaders = cluster.leaders(&topic, partitions);
    assert_eq!(
        leaders.values().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "every broker leads some partition: {leaders:?}"
    );
    let producer = producer(&cluster, "cluster-txn-alternating");
    let per_partition = 5;
    let mut committed = Vec::new();
    let mut everything = Vec::new();
    for round in 0..6 {
        let commit = round % 2 == 0;
        let sent = transaction(&producer, &topic, partitions, per_partition, &format!("r{round}"), commit)
            .expect("transaction");
        if commit {
            committed.extend(sent.iter().cloned());
        }
        everything.extend(sent);
    }
    let end = 6 * (per_partition as i64 + 1);
    let ends: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, end)).collect();
    let read = read_to(&consumer(&cluster, "read_committed"), &topic, &ends);
    let got = sorted(read.iter().map(|(p, _, v)| (*p, v.clone())).collect());
    assert_eq!(got, sorted(committed), "read_committed: the committed records, in order per partition");
    for (partition, offset, value) in &read {
        let round = offset / (per_partition as i64 + 1);
        assert!(value.starts_with(&format!("r{round}-p{partition}-")), "{partition}/{offset} {value}");
    }
    let all = read_to(&consumer(&cluster, "read_uncommitted"), &topic, &ends);
    assert_eq!(all.len(), everything.len(), "read_uncommitted: every record, aborted ones too");
    let watermarks = consumer(&cluster, "read_committed");
    for partition in 0..partitions {
        let (_, visible) = watermarks.fetch_watermarks(&topic, partition, TIMEOUT).expect("watermarks");
        assert_eq!(visible, end, "partition {partition}: no transaction is left open");
    }
}

/// The coordinator is killed with SIGKILL after a commit: another broker takes its slot with the
/// id's state from PostgreSQL, a new instance of the producer fences the old one there (whose
/// next commit fails with the fencing error), and its transactions commit as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_is_replaced_and_still_fences() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("cluster-txn-failover");
    let partitions = 3;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let id = "cluster-txn-failover";
    let first = producer(&cluster, id);
    let mut committed = transaction(&first, &topic, partitions, 4, "before", true).expect("first commit");
    let coordinator = coordinator_of(&cluster, id, None);
    let index = cluster.broker_index(coordinator);
    cluster.brokers[index].kill9();
    let successor = coordinator_of(&cluster, id, Some(coordinator));
    assert_ne!(successor, coordinator);
    cluster.wait_until_none_led_by(&topic, partitions, coordinator);
    let second = producer(&cluster, id);
    committed.extend(transaction(&second, &topic, partitions, 4, "after", true).expect("second instance commits"));
    // The old instance: its next transaction fails with the fencing error (at AddPartitionsToTxn
    // or at the partitions' leaders, whichever it reaches first).
    let fenced = first.begin_transaction().and_then(|()| {
        for partition in 0..partitions {
            let record = BaseRecord::<(), str>::to(&topic).partition(partition).payload("zombie");
            let _ = first.send(record);
        }
        first.commit_transaction(TIMEOUT)
    });
    let code = match fenced {
        Ok(()) => panic!("the fenced instance committed"),
        Err(KafkaError::Transaction(error)) => error.code(),
        Err(other) => other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown),
    };
    assert!(
        matches!(
            code,
            RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced
        ),
        "the old instance is fenced: {code:?}"
    );
    drop(first);
    // Bootstrapped from the live brokers only: librdkafka reports each failed connection to the
    // dead one as a consume error.
    let live: Vec<String> =
        cluster.brokers.iter().enumerate().filter(|(at, _)| *at != index).map(|(_, b)| b.bootstrap.clone()).collect();
    let read_committed: BaseConsumer = cluster
        .client_config()
        .set("bootstrap.servers", live.join(","))
        .set("group.id", unique_topic("cluster-txn-readers"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (_, end) = read_committed.fetch_watermarks(&topic, partition, TIMEOUT).expect("watermarks");
        ends.insert(partition, end);
    }
    let read = read_to(&read_committed, &topic, &ends);
    let got = sorted(read.iter().map(|(p, _, v)| (*p, v.clone())).collect());
    assert_eq!(got, sorted(committed), "exactly the two instances' committed records");
}

/// The group's committed offset of partition 0 of `topic`, as OffsetFetch answers it through
/// the brokers in `bootstrap` (None: none committed).
fn committed_offset(cluster: &Cluster, bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    use rdkafka::{Offset, TopicPartitionList};
    let checker: BaseConsumer = cluster
        .client_config()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = checker.committed_offsets(list, TIMEOUT).ok()?;
    match committed.find_partition(topic, 0)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// OffsetFetch v7 with `require_stable` of partition 0 of `topic`, asked of broker `node`: its
/// error code (UNSTABLE_OFFSET_COMMIT while a transaction's offsets for it are pending).
fn stable_offset_code(cluster: &Cluster, node: i32, group: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::OffsetFetchRequest;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let request = OffsetFetchRequest::default()
        .with_group_id(StrBytes::from_string(group.to_string()).into())
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(StrBytes::from_string(topic.to_string()).into())
                .with_partition_indexes(vec![0]),
        ]))
        .with_require_stable(true);
    let answer = Raw::connect(&cluster.brokers[cluster.broker_index(node)].bootstrap).call(7, &request);
    assert_eq!(answer.error_code, 0, "OffsetFetch of {group}");
    answer.topics[0].partitions[0].error_code
}

/// The state of `id` as its coordinator `node` describes it (DescribeTransactions v0).
fn describe_transaction(
    cluster: &Cluster,
    node: i32,
    id: &str,
) -> kafka_protocol::messages::describe_transactions_response::TransactionState {
    use kafka_protocol::messages::DescribeTransactionsRequest;
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![StrBytes::from_string(id.to_string()).into()]);
    let mut answer = Raw::connect(&cluster.brokers[cluster.broker_index(node)].bootstrap).call(0, &request);
    let state = answer.transaction_states.remove(0);
    assert_eq!(state.error_code, 0, "DescribeTransactions of {id}");
    state
}

/// The producer id and epoch of `id`, as its coordinator `node` describes it.
fn producer_of(cluster: &Cluster, node: i32, id: &str) -> (i64, i16) {
    let state = describe_transaction(cluster, node, id);
    (state.producer_id.0, state.producer_epoch)
}

/// TxnOffsetCommit v3 of offset 99 for partition 0 of `topic`, sent to broker `node` by the
/// producer outside any group generation: its error code.
fn late_offsets_code(
    cluster: &Cluster,
    node: i32,
    id: &str,
    group: &str,
    topic: &str,
    producer_id: i64,
    producer_epoch: i16,
) -> i16 {
    use kafka_protocol::messages::TxnOffsetCommitRequest;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(StrBytes::from_string(id.to_string()).into())
        .with_group_id(StrBytes::from_string(group.to_string()).into())
        .with_producer_id(producer_id.into())
        .with_producer_epoch(producer_epoch)
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(StrBytes::from_string(topic.to_string()).into())
                .with_partitions(vec![
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(99)
                        .with_committed_leader_epoch(-1),
                ]),
        ]);
    let answer = Raw::connect(&cluster.brokers[cluster.broker_index(node)].bootstrap).call(3, &request);
    answer.topics[0].partitions[0].error_code
}

/// Consume-transform-produce in a cluster whose group is coordinated by another broker than the
/// transactional id: the offsets the producer sends with a transaction (TxnOffsetCommit, to the
/// group's coordinator) are pending there, so OffsetFetch with require_stable answers
/// UNSTABLE_OFFSET_COMMIT, until the transaction's marker reaches it; then they are the group's
/// committed offsets, or dropped on abort. Pending offsets are durable: with the group's
/// coordinator killed with -9 while holding them, the commit still lands, at its successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_with_a_transaction_reach_the_groups_coordinator() {
    use rdkafka::{Offset, TopicPartitionList};
    let mut cluster = Cluster::start(3);
    let (input, output) = (unique_topic("cluster-etl-in"), unique_topic("cluster-etl-out"));
    cluster.create_topic(&input, 1).await;
    cluster.create_topic(&output, 1).await;
    cluster.leaders(&input, 1);
    cluster.leaders(&output, 1);
    let id = "cluster-txn-offsets";
    let producer = producer(&cluster, id);
    let txn_coordinator = coordinator_of(&cluster, id, None);
    let group = loop {
        let group = unique_topic("cluster-etl-group");
        if find_coordinator(&cluster, &group, 0, None) != txn_coordinator {
            break group;
        }
    };
    let group_coordinator = find_coordinator(&cluster, &group, 0, None);
    let member = crate::common::Member::new(
        cluster
            .client_config()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .expect("consumer"),
    );
    member.subscribe(&[&input]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while member.assignment().expect("assignment").count() == 0 {
        assert!(Instant::now() < deadline, "the consumer never joined its group");
        let _ = member.poll(Duration::from_millis(100));
    }
    let all = cluster.bootstrap();
    let mut committed = Vec::new();
    let mut last_committed = None;
    // A member of the group's current generation sends the offsets: its coordinator checks it.
    for (round, (offset, commit)) in [(10, true), (20, false), (30, true)].into_iter().enumerate() {
        producer.begin_transaction().expect("begin");
        let value = format!("round-{round}");
        send(&producer, &output, 0, &value);
        // Delivered: the producer has added the output's partition to the transaction.
        producer.flush(TIMEOUT).expect("flush");
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&input, 0, Offset::Offset(offset)).expect("offset");
        let metadata = member.group_metadata().expect("group metadata");
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("send offsets");
        assert_eq!(
            stable_offset_code(&cluster, group_coordinator, &group, &input),
            88,
            "round {round}: UNSTABLE_OFFSET_COMMIT while the transaction is open"
        );
        // The transaction holds the output's partition and the group's slot, as Kafka lists it.
        let held: Vec<(String, i32)> = describe_transaction(&cluster, txn_coordinator, id)
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.as_str().to_string(), *p)))
            .collect();
        assert!(held.contains(&(output.clone(), 0)), "round {round}: {held:?}");
        assert_eq!(held.iter().filter(|(t, _)| t == "__consumer_offsets").count(), 1, "round {round}: {held:?}");
        if commit {
            producer.commit_transaction(TIMEOUT).expect("commit");
            committed.push(value);
            last_committed = Some(offset);
        } else {
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
        // Stable again once the marker reached the group's coordinator (EndTxn may be answered
        // before, when a marker has to be retried); a require_stable consumer waits the same way.
        let deadline = Instant::now() + WAIT_MAX;
        while stable_offset_code(&cluster, group_coordinator, &group, &input) != 0 {
            assert!(Instant::now() < deadline, "round {round}: the offsets never became stable");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(committed_offset(&cluster, &all, &group, &input), last_committed, "round {round}");
    }
    drop(member);
    // A late TxnOffsetCommit of the producer, its transaction over: the group's coordinator asks
    // the transaction's, and refuses it; nothing is left pending.
    let (producer_id, producer_epoch) = producer_of(&cluster, txn_coordinator, id);
    assert_eq!(
        late_offsets_code(&cluster, group_coordinator, id, &group, &input, producer_id, producer_epoch),
        48,
        "INVALID_TXN_STATE for offsets outside a transaction"
    );
    assert_eq!(stable_offset_code(&cluster, group_coordinator, &group, &input), 0, "nothing pending");
    // The group's coordinator dies holding offsets of an open transaction; the transaction
    // commits (its coordinator is another broker) and its marker reaches the successor, which
    // loaded the pending offsets from PostgreSQL. A producer outside the group sends them
    // (generation -1), as one with a standalone consumer does.
    let outsider: BaseConsumer =
        cluster.client_config().set("group.id", &group).set("enable.auto.commit", "false").create().expect("consumer");
    producer.begin_transaction().expect("begin");
    send(&producer, &output, 0, "round-3");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&input, 0, Offset::Offset(40)).expect("offset");
    let metadata = outsider.group_metadata().expect("group metadata");
    producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("send offsets");
    let index = cluster.broker_index(group_coordinator);
    cluster.brokers[index].kill9();
    producer.commit_transaction(TIMEOUT).expect("commit with the group's coordinator dead");
    committed.push("round-3".to_string());
    let live: Vec<String> =
        cluster.brokers.iter().enumerate().filter(|(at, _)| *at != index).map(|(_, b)| b.bootstrap.clone()).collect();
    let live = live.join(",");
    let deadline = Instant::now() + WAIT_MAX;
    while committed_offset(&cluster, &live, &group, &input) != Some(40) {
        assert!(Instant::now() < deadline, "the committed transaction's offset never reached the group");
        std::thread::sleep(Duration::from_millis(200));
    }
    let successor = find_coordinator(&cluster, &group, 0, Some(group_coordinator));
    assert_ne!(successor, group_coordinator);
    assert_eq!(stable_offset_code(&cluster, successor, &group, &input), 0, "nothing pending at the successor");
    // The output holds exactly the committed rounds for a read_committed reader.
    let reader: BaseConsumer = cluster
        .client_config()
        .set("bootstrap.servers", &live)
        .set("group.id", unique_topic("cluster-etl-readers"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    cluster.wait_until_none_led_by(&output, 1, group_coordinator);
    let (_, end) = reader.fetch_watermarks(&output, 0, TIMEOUT).expect("watermarks");
    let read = read_to(&reader, &output, &BTreeMap::from([(0, end)]));
    let values: Vec<String> = read.into_iter().map(|(_, _, value)| value).collect();
    assert_eq!(values, committed, "the committed rounds' records, in order");
}

/// KIP-890 across brokers: a transactional write that would begin a transaction on a partition
/// led by a broker that does not coordinate the id is checked with the id's coordinator
/// (AddPartitionsToTxn v4, verify only). A late write of the producer after its transaction
/// committed (a zombie's, or a retry) is refused with INVALID_TXN_STATE, so it cannot hold the
/// partition's last stable offset back for ever; the producer's own transactions write there as
/// before, each checked the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_transactional_write_to_another_brokers_partition_is_refused() {
    use kafka_protocol::messages::DescribeProducersRequest;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let cluster = Cluster::start(3);
    let topic = unique_topic("cluster-txn-verify");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    let leaders = cluster.leaders(&topic, partitions);
    let id = "cluster-txn-verify";
    let producer = producer(&cluster, id);
    let coordinator = coordinator_of(&cluster, id, None);
    let (partition, leader) =
        leaders.iter().map(|(p, l)| (*p, *l)).find(|(_, l)| *l != coordinator).expect("a partition led elsewhere");
    let one = |tag: &str| -> Vec<(i32, String)> {
        producer.begin_transaction().expect("begin");
        let value = format!("{tag}-p{partition}");
        send(&producer, &topic, partition, &value);
        producer.commit_transaction(TIMEOUT).expect("commit");
        vec![(partition, value)]
    };
    let mut committed = one("first");
    // The producer's state at the partition's leader: id, epoch and last sequence.
    let request = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(topic.clone())))
            .with_partition_indexes(vec![partition]),
    ]);
    let mut raw = Raw::connect(&cluster.brokers[cluster.broker_index(leader)].bootstrap);
    let described = raw.call(0, &request);
    let state = &described.topics[0].partitions[0];
    assert_eq!(state.error_code, 0, "DescribeProducers at the leader");
    let active = state.active_producers.first().expect("the producer's state");
    // The late write: the next sequence of the producer at its epoch, as a retry would carry.
    let batch = crate::bad_input::transactional_batch(
        &[b"late"],
        (active.producer_id.0, active.producer_epoch as i16, active.last_sequence + 1),
    );
    let mut late = crate::bad_input::produce_request(&topic, partition, batch);
    late.transactional_id = Some(StrBytes::from_string(id.to_string()).into());
    let answer = raw.call(9, &late);
    let code = answer.responses[0].partition_responses[0].error_code;
    assert_eq!(code, 48, "INVALID_TXN_STATE for a transactional write outside its transaction");
    // Nothing is left open: the last stable offset is the high watermark.
    let reader = consumer(&cluster, "read_committed");
    let (_, stable) = reader.fetch_watermarks(&topic, partition, TIMEOUT).expect("watermarks");
    let (_, end) = consumer(&cluster, "read_uncommitted").fetch_watermarks(&topic, partition, TIMEOUT).expect("end");
    assert_eq!((stable, end), (2, 2), "one record and its marker, no open transaction");
    // The producer's next transactions there pass the same check.
    committed.extend(one("second"));
    committed.extend(one("third"));
    let read = read_to(&reader, &topic, &BTreeMap::from([(partition, 6)]));
    let got: Vec<(i32, String)> = read.into_iter().map(|(p, _, v)| (p, v)).collect();
    assert_eq!(got, committed, "exactly the committed records");
}
