//! Consumer groups with real librdkafka consumers: sharing partitions, members leaving and joining,
//! the cooperative-sticky assignor, static membership, and commits across `kill -9`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::common::{Member, TestBroker, WAIT_MAX, unique_topic};

/// Counts the rebalances a consumer goes through.
#[derive(Default, Clone)]
struct Counting(Arc<AtomicUsize>);

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn group_consumer(broker: &TestBroker, group: &str, extra: &[(&str, &str)]) -> (Member<Counting>, Counting) {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let context = Counting::default();
    let consumer = config.create_with_context(context.clone()).expect("consumer");
    (Member::new(consumer), context)
}

async fn produce(broker: &TestBroker, topic: &str, partitions: i32, count: usize) {
    let producer = broker.producer(&[]);
    for i in 0..count {
        let payload = format!("r{i}");
        let record =
            FutureRecord::<[u8], [u8]>::to(topic).partition((i as i32) % partitions).payload(payload.as_bytes());
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    }
}

async fn create_topic(broker: &TestBroker, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = broker.client_config().create().expect("admin");
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let created = admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    assert!(created[0].is_ok(), "{created:?}");
}

fn assigned(consumer: &BaseConsumer<Counting>) -> HashSet<i32> {
    consumer.assignment().map(|list| list.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

/// Polls every consumer until each owns part of the topic and together they own it all, disjointly.
fn poll_until_balanced(consumers: &[&BaseConsumer<Counting>], partitions: i32) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        for consumer in consumers {
            if let Some(Err(error)) = consumer.poll(Duration::from_millis(50)) {
                panic!("consumer error: {error}");
            }
        }
        let sets: Vec<HashSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
        let total: usize = sets.iter().map(HashSet::len).sum();
        let union: HashSet<i32> = sets.iter().flatten().copied().collect();
        if sets.iter().all(|s| !s.is_empty()) && total == partitions as usize && union.len() == partitions as usize {
            return;
        }
        assert!(Instant::now() < deadline, "the group never balanced: {sets:?}");
    }
}

fn consume_all(consumers: &[&BaseConsumer<Counting>], expected: usize) -> Vec<(usize, i32, i64)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while seen.len() < expected {
        assert!(Instant::now() < deadline, "consumed {} of {expected}", seen.len());
        for (index, consumer) in consumers.iter().enumerate() {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => seen.push((index, message.partition(), message.offset())),
                Some(Err(error)) => panic!("consumer error: {error}"),
                None => {}
            }
        }
    }
    seen
}

async fn shares_partitions(strategy: &str) {
    let broker = TestBroker::start(&["--num-partitions", "6", "--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("share");
    let group = unique_topic("group");
    create_topic(&broker, &topic, 6).await;
    let consumers: Vec<_> =
        (0..3).map(|_| group_consumer(&broker, &group, &[("partition.assignment.strategy", strategy)]).0).collect();
    for consumer in &consumers {
        consumer.subscribe(&[&topic]).expect("subscribe");
    }
    let refs: Vec<&BaseConsumer<Counting>> = consumers.iter().map(|c| &**c).collect();
    poll_until_balanced(&refs, 6);
    // Ownership is now fixed: every record must go to exactly the member that owns its partition.
    let owners: Vec<HashSet<i32>> = refs.iter().map(|c| assigned(c)).collect();
    produce(&broker, &topic, 6, 600).await;
    let seen = consume_all(&refs, 600);
    let mut positions = HashSet::new();
    for (consumer, partition, offset) in &seen {
        assert!(
            owners[*consumer].contains(partition),
            "consumer {consumer} read partition {partition} it does not own"
        );
        assert!(positions.insert((*partition, *offset)), "record {partition}/{offset} consumed twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_partitions_with_the_range_assignor() {
    shares_partitions("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_partitions_with_cooperative_sticky() {
    shares_partitions("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaves_another_joins_and_every_committed_record_is_consumed() {
    let broker = TestBroker::start(&["--num-partitions", "2", "--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("handover");
    let group = unique_topic("group");
    produce(&broker, &topic, 2, 200).await;
    let mut consumed: HashMap<(i32, i64), usize> = HashMap::new();
    {
        let (first, _) = group_consumer(&broker, &group, &[]);
        first.subscribe(&[&topic]).expect("subscribe");
        let deadline = Instant::now() + WAIT_MAX;
        while consumed.len() < 80 {
            assert!(Instant::now() < deadline, "first consumer stalled at {}", consumed.len());
            if let Some(result) = first.poll(Duration::from_millis(50)) {
                let message = result.expect("message");
                *consumed.entry((message.partition(), message.offset())).or_default() += 1;
                first.commit_message(&message, CommitMode::Sync).expect("commit");
            }
        }
        // Dropping the consumer closes it, which leaves the group.
    }
    let (second, _) = group_consumer(&broker, &group, &[]);
    second.subscribe(&[&topic]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while consumed.len() < 200 {
        assert!(Instant::now() < deadline, "second consumer stalled at {}", consumed.len());
        if let Some(result) = second.poll(Duration::from_millis(50)) {
            let message = result.expect("message");
            let count = consumed.entry((message.partition(), message.offset())).or_default();
            *count += 1;
            assert_eq!(*count, 1, "a committed record was consumed again");
            second.commit_message(&message, CommitMode::Sync).expect("commit");
        }
    }
    assert_eq!(consumed.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_comes_back_without_a_rebalance() {
    let broker = TestBroker::start(&["--num-partitions", "2", "--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("static");
    let group = unique_topic("group");
    produce(&broker, &topic, 2, 2).await;
    let (steady, steady_rebalances) = group_consumer(&broker, &group, &[("group.instance.id", "steady")]);
    steady.subscribe(&[&topic]).expect("subscribe");
    let (coming, _) = group_consumer(&broker, &group, &[("group.instance.id", "coming-back")]);
    coming.subscribe(&[&topic]).expect("subscribe");
    poll_until_balanced(&[&steady, &coming], 2);
    let before = steady_rebalances.0.load(Ordering::SeqCst);
    let owned = assigned(&coming);
    drop(coming); // a static member's close does not leave the group
    let (back, _) = group_consumer(&broker, &group, &[("group.instance.id", "coming-back")]);
    back.subscribe(&[&topic]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while assigned(&back).is_empty() {
        assert!(Instant::now() < deadline, "the static member got no assignment back");
        let _ = back.poll(Duration::from_millis(50));
        let _ = steady.poll(Duration::from_millis(10));
    }
    assert_eq!(assigned(&back), owned, "the same partitions come back");
    for _ in 0..20 {
        let _ = steady.poll(Duration::from_millis(50));
    }
    assert_eq!(steady_rebalances.0.load(Ordering::SeqCst), before, "the other member saw no rebalance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_kill_9_and_lag_is_right() {
    let mut broker = TestBroker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("commits");
    let group = unique_topic("group");
    produce(&broker, &topic, 1, 50).await;
    {
        let (consumer, _) = group_consumer(&broker, &group, &[]);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Offset(30)).expect("tpl");
        // A standalone commit (assign, no subscription), with metadata.
        consumer.assign(&list).expect("assign");
        consumer.commit(&list, CommitMode::Sync).expect("commit");
    }
    broker.kill_and_restart();
    let (consumer, _) = group_consumer(&broker, &group, &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&topic, 0);
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(30)).expect("committed");
    let offset = committed.find_partition(&topic, 0).expect("partition").offset();
    assert_eq!(offset, Offset::Offset(30));
    let (_, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
    assert_eq!(high - 30, 20, "lag is the log end minus the committed offset");
    let seen = Arc::new(Mutex::new(Vec::new()));
    consumer.subscribe(&[&topic]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while seen.lock().expect("lock").len() < 20 {
        assert!(Instant::now() < deadline, "did not resume from the commit");
        if let Some(result) = consumer.poll(Duration::from_millis(50)) {
            seen.lock().expect("lock").push(result.expect("message").offset());
        }
    }
    assert_eq!(seen.lock().expect("lock").first(), Some(&30), "consumption resumes at the committed offset");
}

/// The Python interpreter with confluent-kafka that scripts/test.sh installs.
fn python() -> String {
    std::env::var("ZOMBI_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/zombi/venv/bin/python")
    })
}

/// A confluent-kafka member running compat/group_member.py, reporting what it reads.
struct PythonMember {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PythonMember {
    fn start(broker: &TestBroker, topic: &str, group: &str) -> PythonMember {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/group_member.py");
        let mut child = std::process::Command::new(python())
            .args([script, &broker.bootstrap, topic, group])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python with confluent-kafka (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        PythonMember { child, lines }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + WAIT_MAX;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

/// Polls both members until `until` distinct records were read, committing each.
fn collect(
    consumed: &mut HashMap<(i32, i64), &'static str>,
    rust: &BaseConsumer<Counting>,
    python: &PythonMember,
    until: usize,
) {
    let deadline = Instant::now() + WAIT_MAX;
    while consumed.len() < until {
        assert!(Instant::now() < deadline, "consumed {} of {until}", consumed.len());
        if let Some(Ok(message)) = rust.poll(Duration::from_millis(20)) {
            rust.commit_message(&message, CommitMode::Sync).expect("commit");
            consumed.insert((message.partition(), message.offset()), "rust");
        }
        while let Ok(line) = python.lines.try_recv() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["record", partition, offset] = parts[..] {
                let key = (partition.parse().expect("partition"), offset.parse().expect("offset"));
                consumed.insert(key, "python");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_and_confluent_kafka_share_a_group_across_a_restart() {
    let mut broker = TestBroker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let topic = unique_topic("mixed");
    let group = unique_topic("group");
    create_topic(&broker, &topic, 4).await;
    let python = PythonMember::start(&broker, &topic, &group);
    let (rust, _) = group_consumer(&broker, &group, &[]);
    rust.subscribe(&[&topic]).expect("subscribe");
    // Wait until each side owns two partitions.
    let mut python_owned: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let _ = rust.poll(Duration::from_millis(50));
        while let Ok(line) = python.lines.try_recv() {
            if let Some(list) = line.strip_prefix("assigned ") {
                python_owned = list.split(',').filter_map(|p| p.parse().ok()).collect();
            }
        }
        let rust_owned = assigned(&rust);
        if rust_owned.len() == 2 && python_owned.len() == 2 && rust_owned.is_disjoint(&python_owned) {
            break;
        }
        assert!(Instant::now() < deadline, "no balanced assignment: rust {rust_owned:?}, python {python_owned:?}");
    }
    produce(&broker, &topic, 4, 200).await;
    let mut consumed: HashMap<(i32, i64), &'static str> = HashMap::new();
    collect(&mut consumed, &rust, &python, 200);
    let by_python = consumed.values().filter(|who| **who == "python").count();
    assert!(by_python > 0 && by_python < 200, "both members consumed ({by_python} by python)");
    for ((partition, _), who) in &consumed {
        let owner = if python_owned.contains(partition) { "python" } else { "rust" };
        assert_eq!(*who, owner, "partition {partition} was read by a member that does not own it");
    }
    // A broker crash: both clients reconnect, keep their group, and continue from their commits.
    broker.kill_and_restart();
    produce(&broker, &topic, 4, 200).await;
    collect(&mut consumed, &rust, &python, 400);
    for partition in 0..4 {
        let (_, high) = rust.fetch_watermarks(&topic, partition, Duration::from_secs(30)).expect("watermarks");
        assert_eq!(high, 100);
        assert!((0..100).all(|offset| consumed.contains_key(&(partition, offset))), "partition {partition} has a gap");
    }
    python.stop();
}
