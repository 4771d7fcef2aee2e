//! HTTP consumer instances (REST Proxy v2's shape) are real members of the broker's groups: two
//! HTTP instances and a librdkafka consumer share a group over a 6-partition topic, each record is
//! consumed once per commit cycle, no partition is owned by two members at once, an instance that
//! stops polling loses its partitions to the others, and lag is right throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

use crate::common::{Member, TestBroker, WAIT_MAX, unique_topic};
use crate::http::create_topic;
use crate::http_client::{get, post_json, request};

const PARTITIONS: i32 = 6;

type Owned = BTreeSet<(String, i32)>;
/// (partition, offset) → value.
type Seen = BTreeMap<(i32, i64), String>;

/// A librdkafka consumer in the group, polled on its own thread; on request it commits what it
/// has consumed. Dropped: it closes and leaves the group.
struct KafkaMember {
    assignment: Arc<Mutex<Owned>>,
    seen: Arc<Mutex<Vec<(i32, i64, String)>>>,
    commit: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaMember {
    fn start(broker: &TestBroker, group: &str, topic: &str) -> KafkaMember {
        let consumer: Member = Member::new(
            broker
                .client_config()
                .set("group.id", group)
                .set("client.id", "kafka-member")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500")
                .set("partition.assignment.strategy", "range")
                .create()
                .expect("consumer"),
        );
        consumer.subscribe(&[topic]).expect("subscribe");
        let (assignment, seen) = (Arc::new(Mutex::new(Owned::new())), Arc::new(Mutex::new(Vec::new())));
        let (commit, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (assignment, seen, commit, stop) = (assignment.clone(), seen.clone(), commit.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                        let message = message.expect("consume");
                        let value = String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8");
                        seen.lock().unwrap().push((message.partition(), message.offset(), value));
                    }
                    let owned: Owned = consumer
                        .assignment()
                        .expect("assignment")
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition()))
                        .collect();
                    *assignment.lock().unwrap() = owned;
                    if commit.load(Ordering::SeqCst) {
                        consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
                        commit.store(false, Ordering::SeqCst);
                    }
                }
            })
        };
        KafkaMember { assignment, seen, commit, stop, thread: Some(thread) }
    }

    fn owned(&self) -> Owned {
        self.assignment.lock().unwrap().clone()
    }

    fn commit(&self) {
        self.commit.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + WAIT_MAX;
        while self.commit.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the Kafka member did not commit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the member has consumed `count` more records, and answers them.
    fn read(&self, count: usize) -> Vec<(i32, i64, String)> {
        let deadline = Instant::now() + WAIT_MAX;
        let mut records = Vec::new();
        while records.len() < count {
            assert!(Instant::now() < deadline, "the Kafka member read {} of {count}", records.len());
            records.extend(std::mem::take(&mut *self.seen.lock().unwrap()));
            std::thread::sleep(Duration::from_millis(50));
        }
        records
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn instance_path(group: &str, name: &str, rest: &str) -> String {
    format!("/consumers/{group}/instances/{name}/{rest}")
}

/// The partitions an HTTP instance owns, or None while it is rebalancing.
fn http_owned(broker: &TestBroker, group: &str, name: &str) -> Option<Owned> {
    let answer = get(&broker.http, &instance_path(group, name, "assignments"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    (answer["state"] == "stable").then(|| {
        answer["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| (p["topic"].as_str().expect("topic").to_string(), p["partition"].as_i64().expect("p") as i32))
            .collect()
    })
}

/// Waits until the members' assignments are settled, pairwise disjoint and cover every
/// partition; answers each member's share (HTTP instances first, the Kafka member last).
/// (Snapshots of several members are not taken at one instant, so only the settled state is
/// compared; the records read below prove that no partition was served by two owners.)
fn settled(broker: &TestBroker, group: &str, names: &[&str], kafka: &KafkaMember, topic: &str) -> Vec<Owned> {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let mut shares: Vec<Option<Owned>> = names.iter().map(|name| http_owned(broker, group, name)).collect();
        shares.push(Some(kafka.owned()));
        if let Some(shares) = shares.into_iter().collect::<Option<Vec<Owned>>>() {
            let total: usize = shares.iter().map(BTreeSet::len).sum();
            let union: Owned = shares.iter().flatten().cloned().collect();
            let all: Owned = (0..PARTITIONS).map(|p| (topic.to_string(), p)).collect();
            if union == all && total == all.len() && shares.iter().all(|s| !s.is_empty()) {
                return shares;
            }
        }
        assert!(Instant::now() < deadline, "the group did not settle");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads from an HTTP instance until it has `count` records (each checked against `owned`).
fn http_read(broker: &TestBroker, group: &str, name: &str, count: usize, owned: &Owned) -> Vec<(i32, i64, String)> {
    let mut records = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while records.len() < count {
        assert!(Instant::now() < deadline, "{name} read {} of {count} records", records.len());
        let answer = get(&broker.http, &instance_path(group, name, "records?timeout=500"));
        assert_eq!(answer.status, 200, "{}", answer.text());
        for record in answer.json().as_array().expect("records") {
            let partition = record["partition"].as_i64().expect("partition") as i32;
            let topic = record["topic"].as_str().expect("topic").to_string();
            assert!(owned.contains(&(topic, partition)), "{name} got a record of a partition it does not own");
            let value = record["value"].as_str().expect("value").to_string();
            records.push((partition, record["offset"].as_i64().expect("offset"), value));
        }
    }
    records
}

/// Every record seen once, and exactly the expected ones.
fn assert_exactly_once(seen: Vec<Vec<(i32, i64, String)>>, expected: &Seen) {
    let mut union = Seen::new();
    for (partition, offset, value) in seen.into_iter().flatten() {
        assert!(union.insert((partition, offset), value).is_none(), "({partition}, {offset}) consumed twice");
    }
    assert_eq!(&union, expected);
}

fn produce(broker: &TestBroker, topic: &str, per_partition: i64, round: &str) -> Seen {
    let records: Vec<Value> = (0..PARTITIONS)
        .flat_map(|p| (0..per_partition).map(move |i| json!({"partition": p, "value": format!("{round}-{p}-{i}")})))
        .collect();
    let answer = post_json(&broker.http, &format!("/events/{topic}"), &json!(records));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .zip(records)
        .map(|(offset, record)| {
            let key = (offset["partition"].as_i64().expect("p") as i32, offset["offset"].as_i64().expect("o"));
            (key, record["value"].as_str().expect("value").to_string())
        })
        .collect()
}

fn total_lag(broker: &TestBroker, group: &str) -> (i64, usize) {
    let lag = get(&broker.http, &format!("/consumers/lag?group_id={group}")).json();
    (lag["total_lag"].as_i64().expect("lag"), lag["partitions"].as_array().expect("partitions").len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_instances_and_a_kafka_consumer_share_a_group() {
    let broker = TestBroker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("http-group");
    let group = "mixed-group";
    create_topic(&broker, &topic, PARTITIONS, &[]).await;
    let first = produce(&broker, &topic, 10, "first");

    // REST Proxy v2's create, and the plan's join, each make a member.
    let body = json!({"name": "a", "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "topics": [topic]});
    let created = post_json(&broker.http, &format!("/consumers/{group}"), &body);
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.json()["instance_id"], "a");
    let base_uri = created.json()["base_uri"].as_str().expect("base_uri").to_string();
    assert!(base_uri.ends_with(&format!("/consumers/{group}/instances/a")), "{base_uri}");
    assert_eq!(post_json(&broker.http, &format!("/consumers/{group}"), &body).status, 409);
    let join = json!({"group_id": group, "client_id": "b", "topics": [topic],
        "session.timeout.ms": 6000, "auto.offset.reset": "earliest"});
    let joined = post_json(&broker.http, "/consumers/join", &join);
    assert_eq!(joined.status, 200, "{}", joined.text());
    assert!(joined.json()["assigned_partitions"].is_array());
    let kafka = KafkaMember::start(&broker, group, &topic);

    // Range over three members: two partitions each, disjoint, all six covered.
    let shares = settled(&broker, group, &["a", "b"], &kafka, &topic);
    assert!(shares.iter().all(|share| share.len() == 2), "{shares:?}");
    let again = post_json(&broker.http, "/consumers/join", &join).json();
    assert_eq!(again["state"], "stable");
    let assigned: Owned = again["assigned_partitions"]
        .as_array()
        .expect("assigned")
        .iter()
        .map(|p| (p["topic"].as_str().expect("t").to_string(), p["partition"].as_i64().expect("p") as i32))
        .collect();
    assert_eq!(assigned, shares[1], "a repeated join answers the member's current assignment");

    // Each record once, from its owner.
    let from_a = http_read(&broker, group, "a", 20, &shares[0]);
    let from_b = http_read(&broker, group, "b", 20, &shares[1]);
    let from_kafka = kafka.read(20);
    assert!(from_kafka.iter().all(|(p, _, _)| shares[2].contains(&(topic.clone(), *p))));
    assert_exactly_once(vec![from_a, from_b, from_kafka], &first);

    // Commit everyone's positions; the group's lag is zero on every partition.
    for name in ["a", "b"] {
        let committed = request(&broker.http, "POST", &instance_path(group, name, "offsets"), None, b"");
        assert_eq!(committed.status, 200, "{}", committed.text());
        assert_eq!(committed.json()["offsets"].as_array().expect("offsets").len(), 2);
    }
    kafka.commit();
    assert_eq!(total_lag(&broker, group), (0, PARTITIONS as usize));

    // `a` stops polling (any request on an instance keeps it alive, so nothing here touches it):
    // after its session timeout it is expired and its partitions move to b and the Kafka member.
    let shares = settled(&broker, group, &["b"], &kafka, &topic);
    assert!(shares.iter().all(|share| share.len() == 3), "{shares:?}");
    assert_eq!(get(&broker.http, &instance_path(group, "a", "records")).status, 404);

    // The next round resumes from the commits: each new record once, nothing old again.
    let second = produce(&broker, &topic, 5, "second");
    let from_b = http_read(&broker, group, "b", 15, &shares[0]);
    let from_kafka = kafka.read(15);
    assert_exactly_once(vec![from_b, from_kafka], &second);
    assert_eq!(total_lag(&broker, group).0, 30, "committed at 10 of 15 on each partition");

    // Explicit offsets are REST Proxy's: the last record consumed.
    let b_partitions: Vec<i32> = shares[0].iter().map(|(_, p)| *p).collect();
    let offsets: Vec<Value> =
        b_partitions.iter().map(|p| json!({"topic": topic, "partition": p, "offset": 14})).collect();
    let committed = post_json(&broker.http, &instance_path(group, "b", "offsets"), &json!({"offsets": offsets}));
    assert_eq!(committed.status, 200, "{}", committed.text());
    assert!(committed.json()["offsets"].as_array().expect("offsets").iter().all(|o| o["offset"] == 15));
    kafka.commit();
    assert_eq!(total_lag(&broker, group), (0, PARTITIONS as usize));

    // Leaving over HTTP gives b's partitions to the Kafka member.
    let left = request(&broker.http, "DELETE", &format!("/consumers/{group}/instances/b"), None, b"");
    assert_eq!(left.status, 204, "{}", left.text());
    assert_eq!(get(&broker.http, &instance_path(group, "b", "assignments")).status, 404);
    let deadline = Instant::now() + WAIT_MAX;
    while kafka.owned().len() != PARTITIONS as usize {
        assert!(Instant::now() < deadline, "b's partitions did not move to the Kafka member");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(kafka);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_consumer_requests_are_checked() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("http-group-bad");
    create_topic(&broker, &topic, 1, &[]).await;
    let create = |body: Value| post_json(&broker.http, "/consumers/g", &body);
    assert_eq!(create(json!({"topics": ["no-such-topic"]})).status, 404);
    assert_eq!(create(json!({"auto.offset.reset": "sideways"})).status, 400);
    assert_eq!(create(json!({"session.timeout.ms": 10})).status, 400);
    assert_eq!(create(json!({"format": "avro"})).status, 400);
    assert_eq!(create(json!({"unknown": 1})).status, 400);
    assert_eq!(create(json!({"name": "x/y"})).status, 400);
    // No body at all is REST Proxy's common case: a named instance comes back.
    let created = request(&broker.http, "POST", "/consumers/g", None, b"");
    assert_eq!(created.status, 200, "{}", created.text());
    let name = created.json()["instance_id"].as_str().expect("id").to_string();
    let subscribed = post_json(&broker.http, &instance_path("g", &name, "subscription"), &json!({"topics": [topic]}));
    assert_eq!(subscribed.status, 204, "{}", subscribed.text());
    let topics = get(&broker.http, &instance_path("g", &name, "subscription")).json();
    assert_eq!(topics["topics"], json!([topic]));
    assert_eq!(get(&broker.http, &instance_path("g", "nobody", "records")).status, 404);
    let bad = post_json(
        &broker.http,
        &instance_path("g", &name, "offsets"),
        &json!({"offsets": [{"topic": topic, "partition": 0, "offset": -3}]}),
    );
    assert_eq!(bad.status, 400);
    let left = post_json(&broker.http, "/consumers/leave", &json!({"group_id": "g", "client_id": name}));
    assert_eq!(left.status, 204, "{}", left.text());
    assert_eq!(get(&broker.http, &instance_path("g", &name, "subscription")).status, 404);
}
