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
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        for (at, broker) in cluster.brokers.iter().enumerate() {
            if dead == Some(at as i32 + 1) {
                continue;
            }
            let mut raw = Raw::connect(&broker.bootstrap);
            let request =
                FindCoordinatorRequest::default().with_key(StrBytes::from_string(id.to_string())).with_key_type(1);
            let answer = raw.call(3, &request);
            let node = answer.node_id.0;
            if answer.error_code == 0 && node >= 1 && node <= cluster.brokers.len() as i32 && Some(node) != dead {
                return node;
            }
        }
        assert!(Instant::now() < deadline, "no live broker coordinates {id}");
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
