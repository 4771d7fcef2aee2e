//! Cluster mode: three real brokers on one object store and one write-ahead log store (a shared
//! directory, whose creates are atomic), coordinated through a private PostgreSQL, driven by the
//! rdkafka crate. Leadership spreads over the brokers; kill -9 of the broker leading the most
//! partitions, under load, loses no acknowledged record and leaves offsets dense.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{Member, Received, TestBroker, WAIT_MAX, unique_topic};
use crate::postgres::Postgres;
use crate::tiering::S3Server;

/// Where the brokers' segments and write-ahead log go.
pub enum Shared {
    /// A directory on this machine (creates are atomic hard links).
    Directory(tempfile::TempDir),
    /// moto's S3 server (conditional creates with `If-None-Match: *`).
    S3(S3Server),
}

pub struct Cluster {
    pub pg: Postgres,
    shared: Shared,
    pub brokers: Vec<TestBroker>,
    /// Flags every broker gets beside the cluster's own.
    extra: Vec<String>,
    /// Environment variables every broker gets beside the S3 credentials.
    env: Vec<(String, String)>,
}

/// Credentials for moto, which accepts any.
const AWS_TEST_ENV: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];

impl Cluster {
    /// Starts PostgreSQL and `count` brokers (node ids 1..=count) on a shared directory.
    pub fn start(count: i32) -> Cluster {
        Self::start_on(count, Shared::Directory(tempfile::tempdir().expect("temp dir")))
    }

    /// The same on moto's S3 server.
    pub fn start_s3(count: i32) -> Cluster {
        Self::start_on(count, Shared::S3(S3Server::start()))
    }

    /// On a shared directory, with `extra` flags for every broker.
    pub fn start_with(count: i32, extra: &[&str]) -> Cluster {
        Self::start_on_with(count, Shared::Directory(tempfile::tempdir().expect("temp dir")), extra)
    }

    fn start_on(count: i32, shared: Shared) -> Cluster {
        Self::start_on_with(count, shared, &[])
    }

    fn start_on_with(count: i32, shared: Shared, extra: &[&str]) -> Cluster {
        Self::start_on_with_env(count, shared, extra, &[])
    }

    /// On a shared directory, with `extra` flags and `env` for every broker.
    pub fn start_with_env(count: i32, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        Self::start_on_with_env(count, Shared::Directory(tempfile::tempdir().expect("temp dir")), extra, env)
    }

    fn start_on_with_env(count: i32, shared: Shared, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let pg = Postgres::start();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut cluster = Cluster { pg, shared, brokers: Vec::new(), extra, env };
        for node in 1..=count {
            let broker = cluster.start_broker(node);
            cluster.brokers.push(broker);
        }
        cluster
    }

    pub fn start_broker(&self, node: i32) -> TestBroker {
        let args = self.args(node);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env: Vec<(&str, &str)> = AWS_TEST_ENV.to_vec();
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        TestBroker::start_with_env(&args, &env)
    }

    fn store_args(&self) -> Vec<String> {
        match &self.shared {
            Shared::Directory(dir) => vec![
                "--object-store".into(),
                format!("file://{}", dir.path().join("bucket").display()),
                "--wal-store".into(),
                format!("file://{}", dir.path().join("wal").display()),
            ],
            Shared::S3(server) => vec![
                "--object-store".into(),
                "s3://zombi-tiering/cluster".into(),
                "--wal-store".into(),
                "s3://zombi-tiering/cluster-wal".into(),
                "--s3-endpoint".into(),
                server.endpoint.clone(),
                "--s3-region".into(),
                "us-east-1".into(),
            ],
        }
    }

    pub fn args(&self, node: i32) -> Vec<String> {
        let mut args = self.store_args();
        args.extend(
            [
                "--node-id",
                &node.to_string(),
                "--coordinator",
                &self.pg.url(),
                "--wal-interval-ms",
                "5",
                "--broker-session-timeout-ms",
                "3000",
                "--broker-heartbeat-interval-ms",
                "300",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(self.extra.iter().cloned());
        args
    }

    pub fn bootstrap(&self) -> String {
        self.brokers.iter().map(|b| b.bootstrap.clone()).collect::<Vec<_>>().join(",")
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().expect("admin");
        let created = admin
            .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .expect("create topics");
        assert!(created.iter().all(Result::is_ok), "{created:?}");
    }

    /// Each partition's leader as Metadata answers it, once every partition has a live leader.
    pub fn leaders(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i32> {
        let consumer: BaseConsumer = self.client_config().create().expect("client");
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                let live: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
                if let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) {
                    let leaders: BTreeMap<i32, i32> = found.partitions().iter().map(|p| (p.id(), p.leader())).collect();
                    if leaders.len() == partitions as usize && leaders.values().all(|l| live.contains(l)) {
                        return leaders;
                    }
                }
            }
            assert!(Instant::now() < deadline, "partitions of {topic} never all had a live leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until Metadata shows no partition of `topic` led by `node`.
    pub fn wait_until_none_led_by(&self, topic: &str, partitions: i32, node: i32) {
        let deadline = Instant::now() + WAIT_MAX;
        while self.leaders(topic, partitions).values().any(|l| *l == node) {
            assert!(Instant::now() < deadline, "partitions of {topic} stay led by broker {node}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn broker_index(&self, node: i32) -> usize {
        (node - 1) as usize
    }
}

/// Reads every record of `partitions` from offset 0 up to each one's high watermark.
pub fn read_all(cluster: &Cluster, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Received>> {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", "cluster-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut highs = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        // Right after a broker stops, the client may still be finding out who leads what.
        let deadline = Instant::now() + WAIT_MAX;
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(watermarks) => break watermarks,
                Err(error) => assert!(Instant::now() < deadline, "watermarks of {partition}: {error}"),
            }
        };
        assert_eq!(low, 0, "partition {partition} starts at 0");
        highs.insert(partition, high);
        list.add_partition_offset(topic, partition, Offset::Beginning).expect("offset");
    }
    consumer.assign(&list).expect("assign");
    let mut read: BTreeMap<i32, Vec<Received>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + WAIT_MAX * 2;
    while read.iter().any(|(p, records)| (records.len() as i64) < highs[p]) {
        assert!(Instant::now() < deadline, "could not read every record back: {highs:?}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let record = Received::from_message(&message);
                read.get_mut(&record.partition).expect("partition").push(record);
            }
            // A broker that is down (bootstrapped, then stopped) is the client's to route around.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(error)) => panic!("consume: {error}"),
            None => {}
        }
    }
    read
}

/// Leadership spreads over the three brokers, and every partition takes and serves records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_leadership_and_serve_every_partition() {
    let cluster = Cluster::start(3);
    let topic = unique_topic("spread");
    cluster.create_topic(&topic, 6).await;
    let leaders = cluster.leaders(&topic, 6);
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(per_broker, BTreeMap::from([(1, 2), (2, 2), (3, 2)]), "{leaders:?}");
    let producer: FutureProducer =
        cluster.client_config().set("enable.idempotence", "true").set("linger.ms", "5").create().expect("producer");
    let mut expected: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    for i in 0..120 {
        let partition = i % 6;
        let payload = format!("record-{i}").into_bytes();
        let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(partition).payload(&payload);
        let delivered = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("delivered");
        expected.insert((delivered.partition, delivered.offset), payload);
    }
    let read = read_all(&cluster, &topic, 6);
    for (partition, records) in read {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..20).collect::<Vec<_>>(), "partition {partition}");
        for record in records {
            assert_eq!(record.value, expected.remove(&(partition, record.offset)), "partition {partition}");
        }
    }
    assert!(expected.is_empty());
}

/// (partition, offset, payload) of an acknowledged record.
type Acked = (i32, i64, Vec<u8>);

/// A steady idempotent, acks=all producer over every partition, recording each acknowledgement.
pub struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    acked_count: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    partitions: i32,
}

impl Load {
    pub fn start(cluster: &Cluster, topic: &str, partitions: i32) -> Load {
        let producer: FutureProducer = cluster
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "60000")
            .set("retry.backoff.ms", "50")
            // A paused broker answers nothing: give up on a request after this, not 60 s.
            .set("socket.timeout.ms", "5000")
            .create()
            .expect("producer");
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let acked_count = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (acked, acked_count, failed, stop, topic) =
                (acked.clone(), acked_count.clone(), failed.clone(), stop.clone(), topic.to_string());
            tokio::spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let payload = format!("record-{i:010}").into_bytes();
                    let partition = (i % partitions as u64) as i32;
                    let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(partition).payload(&payload);
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            let (acked, acked_count, failed) = (acked.clone(), acked_count.clone(), failed.clone());
                            tasks.spawn(async move {
                                match delivery.await {
                                    Ok(Ok(done)) => {
                                        acked.lock().expect("lock").push((done.partition, done.offset, payload));
                                        acked_count.fetch_add(1, Ordering::Release);
                                    }
                                    _ => {
                                        failed.fetch_add(1, Ordering::Release);
                                    }
                                }
                            });
                            i += 1;
                            // A steady load, not a flood: the point is failover, not throughput.
                            if i.is_multiple_of(50) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                while tasks.join_next().await.is_some() {}
            })
        };
        Load { acked, acked_count, failed, stop, task, partitions }
    }

    /// Waits until `count` more records were acknowledged.
    pub async fn more(&self, count: usize) {
        let target = self.acked_count.load(Ordering::Acquire) + count;
        let deadline = Instant::now() + WAIT_MAX;
        while self.acked_count.load(Ordering::Acquire) < target {
            assert!(Instant::now() < deadline, "the producer made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every partition got `count` more acknowledgements.
    pub async fn more_on_every_partition(&self, count: usize) {
        let per_partition = |acked: &Arc<Mutex<Vec<Acked>>>| {
            let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
            for (partition, _, _) in acked.lock().expect("lock").iter() {
                *counts.entry(*partition).or_default() += 1;
            }
            counts
        };
        let before = per_partition(&self.acked);
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let now = per_partition(&self.acked);
            if (0..self.partitions)
                .all(|p| now.get(&p).copied().unwrap_or(0) >= before.get(&p).copied().unwrap_or(0) + count)
            {
                return;
            }
            assert!(Instant::now() < deadline, "some partition made no progress: {before:?} → {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops producing, waits for every delivery report, and returns the acknowledged records
    /// and how many deliveries failed.
    pub async fn finish(self) -> (Vec<Acked>, usize) {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("load");
        let acked = self.acked.lock().expect("lock").clone();
        (acked, self.failed.load(Ordering::Acquire))
    }
}

/// Every acknowledged record is read back once, at its offset, byte for byte; every partition's
/// offsets are dense from 0; no payload is stored twice.
pub fn verify(cluster: &Cluster, topic: &str, partitions: i32, acked: Vec<Acked>) {
    let mut expected: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    for (partition, offset, payload) in acked {
        assert!(expected.insert((partition, offset), payload).is_none(), "one offset acknowledged twice");
    }
    let read = read_all(cluster, topic, partitions);
    let mut seen: HashMap<Vec<u8>, (i32, i64)> = HashMap::new();
    for (partition, records) in read {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>(), "partition {partition} is dense");
        for record in records {
            let value = record.value.clone().unwrap_or_default();
            if let Some(other) = seen.insert(value.clone(), (partition, record.offset)) {
                let shown = String::from_utf8_lossy(&value);
                panic!("{shown} stored twice: {other:?} and ({partition}, {})", record.offset);
            }
            if let Some(payload) = expected.remove(&(partition, record.offset)) {
                assert_eq!(record.value.as_deref(), Some(payload.as_slice()), "acknowledged record changed");
            }
        }
    }
    assert!(expected.is_empty(), "{} acknowledged records are missing", expected.len());
}

/// The broker leading the most partitions of `topic` (the lowest id among equals).
fn busiest(cluster: &Cluster, topic: &str, partitions: i32) -> i32 {
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in cluster.leaders(topic, partitions).values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    per_broker.iter().max_by_key(|(node, count)| (**count, -**node)).map(|(node, _)| *node).expect("a leader")
}

/// Under steady idempotent, acks=all load, the broker leading the most partitions is killed
/// with SIGKILL and restarted, three times; every partition, the killed broker's too, makes
/// progress while it is down. Every acknowledged record is then read back once, at the offset
/// its delivery report gave, byte for byte, with every partition's offsets dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_leader_under_load_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("failover");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let load = Load::start(&cluster, &topic, partitions);
    load.more(500).await;
    for _ in 0..3 {
        let victim = busiest(&cluster, &topic, partitions);
        let index = cluster.broker_index(victim);
        cluster.brokers[index].kill9();
        load.more_on_every_partition(50).await;
        // Each broker's metadata follows PostgreSQL's by a round: one that has not had its
        // round since the move may still name the dead leader, as Kafka's brokers' caches may.
        cluster.wait_until_none_led_by(&topic, partitions, victim);
        cluster.brokers[index].kill_and_restart();
        load.more(300).await;
    }
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed");
    verify(&cluster, &topic, partitions, acked);
}

/// The same on moto's S3 server, for the write-ahead log's conditional creates and seals over
/// `If-None-Match: *`: two rounds of kill -9 of the busiest leader under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_s3_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start_s3(3);
    let topic = unique_topic("failover-s3");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let load = Load::start(&cluster, &topic, partitions);
    load.more(300).await;
    for _ in 0..2 {
        let victim = busiest(&cluster, &topic, partitions);
        let index = cluster.broker_index(victim);
        cluster.brokers[index].kill9();
        load.more_on_every_partition(30).await;
        // Each broker's metadata follows PostgreSQL's by a round: one that has not had its
        // round since the move may still name the dead leader, as Kafka's brokers' caches may.
        cluster.wait_until_none_led_by(&topic, partitions, victim);
        cluster.brokers[index].kill_and_restart();
        load.more(200).await;
    }
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed");
    verify(&cluster, &topic, partitions, acked);
}

/// A broker paused (SIGSTOP) past its session timeout loses its partitions to the others, whose
/// takeover seals its write-ahead log; resumed (SIGCONT), it acknowledges nothing more (a write it
/// had under way finds its slot sealed, and it stops), and no acknowledged record is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_never_acknowledges_after_it_resumes() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("paused");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let load = Load::start(&cluster, &topic, partitions);
    load.more(300).await;
    let victim = busiest(&cluster, &topic, partitions);
    let index = cluster.broker_index(victim);
    cluster.brokers[index].signal("-STOP");
    load.more_on_every_partition(50).await;
    let moved = cluster.leaders(&topic, partitions);
    assert!(moved.values().all(|l| *l != victim), "the paused broker's partitions moved: {moved:?}");
    cluster.brokers[index].signal("-CONT");
    // Its lease lapsed: it stops rather than serve as if nothing happened.
    assert_eq!(cluster.brokers[index].wait_exit().code(), Some(3), "a broker whose lease lapsed stops");
    load.more(300).await;
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed");
    verify(&cluster, &topic, partitions, acked);
}

/// A rolling restart with SIGTERM under load: each broker hands its partitions over before it
/// exits (cleanly), so no delivery fails and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_fails_no_delivery() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("rolling");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let load = Load::start(&cluster, &topic, partitions);
    load.more(300).await;
    for index in 0..cluster.brokers.len() {
        let address = cluster.brokers[index].bootstrap.clone();
        assert!(cluster.brokers[index].terminate(), "broker {} exits cleanly on SIGTERM", index + 1);
        let node = index as i32 + 1;
        load.more_on_every_partition(30).await;
        assert!(cluster.leaders(&topic, partitions).values().all(|l| *l != node));
        cluster.brokers[index].kill_and_restart();
        assert_eq!(cluster.brokers[index].bootstrap, address);
        load.more(200).await;
    }
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed during the rolling restart");
    verify(&cluster, &topic, partitions, acked);
}

/// A fourth broker with an empty disk joins: it takes over its share of the partitions by
/// controlled hand-over, and serves every offset of them byte-exact (from segments and the
/// write-ahead log, which it never wrote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_broker_takes_its_share_and_serves_it_exact() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("join");
    let partitions = 8;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let load = Load::start(&cluster, &topic, partitions);
    load.more(400).await;
    let joining = cluster.start_broker(4);
    cluster.brokers.push(joining);
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let led = cluster.leaders(&topic, partitions).values().filter(|l| **l == 4).count();
        if led == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the new broker leads {led} partitions, not its share of 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.more_on_every_partition(30).await;
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed while partitions moved");
    verify(&cluster, &topic, partitions, acked);
    // Joining is not a crash: loading its share must not starve its own lease.
    assert!(cluster.brokers[3].is_running(), "the joining broker stopped");
    let led = cluster.leaders(&topic, partitions).values().filter(|l| **l == 4).count();
    assert_eq!(led, 2, "the joining broker kept its share");
}

/// A TCP proxy to PostgreSQL that the test can cut: open connections are dropped and new ones
/// closed at once while it is cut.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, cut_watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let mut cut_watch = cut_watch.clone();
                if *cut_watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }
}

/// One broker is cut off from PostgreSQL (through a proxy the test controls) under load: it
/// stops acknowledging within its lease, its partitions move to the others, which serve them on,
/// and once it can reach PostgreSQL again it stops (exit code 3) rather than lead on. No
/// acknowledged record is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_from_postgres_loses_its_partitions_and_nothing_acknowledged() {
    let pg = Postgres::start();
    let proxy = Proxy::start(pg.port).await;
    let shared = Shared::Directory(tempfile::tempdir().expect("temp dir"));
    let mut cluster = Cluster { pg, shared, brokers: Vec::new(), extra: Vec::new(), env: Vec::new() };
    for node in 1..=3 {
        let mut args = cluster.args(node);
        if node == 1 {
            let at = args.iter().position(|a| a == "--coordinator").expect("flag") + 1;
            args[at] = args[at].replace(&format!(":{}/", cluster.pg.port), &format!(":{}/", proxy.port));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.brokers.push(TestBroker::start(&args));
    }
    let topic = unique_topic("cut");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    assert!(cluster.leaders(&topic, partitions).values().any(|l| *l == 1), "broker 1 leads some partitions");
    let load = Load::start(&cluster, &topic, partitions);
    load.more(300).await;
    proxy.cut.send_replace(true);
    cluster.wait_until_none_led_by(&topic, partitions, 1);
    load.more_on_every_partition(50).await;
    proxy.cut.send_replace(false);
    assert_eq!(cluster.brokers[0].wait_exit().code(), Some(3), "the cut broker stops once it sees its lease lapsed");
    load.more(300).await;
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "deliveries failed");
    verify(&cluster, &topic, partitions, acked);
}

/// The committed offsets of `group` for `partitions`, as a new member of the group sees them.
fn committed_offsets(cluster: &Cluster, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        cluster.client_config().set("group.id", group).set("enable.auto.commit", "false").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(found) => {
                return found
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { o } else { -1 }))
                    .collect();
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "committed offsets unavailable: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A member of `group` consumes `expected` records of `topic` and commits, synchronously.
fn consume_and_commit(mut config: ClientConfig, group: &str, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    let consumer: Member = Member::new(
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer"),
    );
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while values.len() < expected {
        assert!(Instant::now() < deadline, "consumed {} of {expected}", values.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => values.push(Received::from_message(&message).value.unwrap_or_default()),
            Some(Err(KafkaError::MessageConsumption(_))) | None => {}
            Some(Err(error)) => panic!("consume: {error}"),
        }
    }
    consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).expect("commit");
    consumer.unsubscribe();
    values
}

/// A consumer group commits its offsets; then each broker in turn is killed (so the group's
/// coordinator is, once): every time, the group's committed offsets are there, unchanged, on
/// whichever broker coordinates it now, and a member resumes from them exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_their_coordinators_death() {
    let mut cluster = Cluster::start(3);
    let topic = unique_topic("groups");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let producer: FutureProducer = cluster.client_config().set("acks", "all").create().expect("producer");
    let send_round = |round: usize| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            for i in 0..60 {
                let payload = format!("round-{round}-{i}");
                let record =
                    FutureRecord::<[u8], [u8]>::to(&topic).partition(i % partitions).payload(payload.as_bytes());
                producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("delivered");
            }
        }
    };
    let group = unique_topic("group");
    send_round(0).await;
    let first = consume_and_commit(cluster.client_config(), &group, &topic, 60);
    assert_eq!(first.len(), 60);
    let mut committed = committed_offsets(&cluster, &group, &topic, partitions);
    assert_eq!(committed, (0..partitions).map(|p| (p, 10)).collect::<BTreeMap<_, _>>());
    for (round, index) in (0..cluster.brokers.len()).enumerate() {
        cluster.brokers[index].kill9();
        let node = index as i32 + 1;
        cluster.wait_until_none_led_by(&topic, partitions, node);
        assert_eq!(committed_offsets(&cluster, &group, &topic, partitions), committed, "after broker {node} died");
        cluster.brokers[index].kill_and_restart();
        cluster.leaders(&topic, partitions);
        send_round(round + 1).await;
        let next = consume_and_commit(cluster.client_config(), &group, &topic, 60);
        let mut expected: Vec<String> = (0..60).map(|i| format!("round-{}-{i}", round + 1)).collect();
        let mut got: Vec<String> = next.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "round {round}: the group resumed exactly where it committed");
        committed = committed_offsets(&cluster, &group, &topic, partitions);
        let per_partition = 10 * (round as i64 + 2);
        assert_eq!(committed, (0..partitions).map(|p| (p, per_partition)).collect::<BTreeMap<_, _>>());
    }
}

/// The Iceberg sink in a cluster: each partition's records reach the topic's table from the broker
/// that leads it, through the shared catalog (the coordinator's PostgreSQL) and warehouse (the
/// shared object store); pyiceberg then reads every record exactly once, as produced, and the
/// snapshot records every partition's next offset. After the busiest leader is killed, the
/// partitions' new leaders carry on from the table's offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_shared_iceberg_table_from_its_leader() {
    use crate::iceberg::{Reader, assert_exact, next_offsets, produce, wait_for_rows_from};
    let mut cluster = Cluster::start_with(
        3,
        &["--iceberg-commit-interval-ms", "200", "--log-retention-ms=-1", "--num-partitions", "6"],
    );
    let topic = unique_topic("ice.cluster");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    cluster.leaders(&topic, partitions);
    let reader = Reader { catalog: cluster.pg.sqlalchemy_url(), s3_endpoint: None };
    let mut expected = produce(&cluster.brokers[0], &topic, partitions as usize, 0..180, "zstd").await;
    wait_for_rows_from(&reader, &topic, expected.len());
    let victim = busiest(&cluster, &topic, partitions);
    let index = cluster.broker_index(victim);
    cluster.brokers[index].kill9();
    cluster.wait_until_none_led_by(&topic, partitions, victim);
    let survivor = if index == 0 { 1 } else { 0 };
    expected.extend(produce(&cluster.brokers[survivor], &topic, partitions as usize, 180..300, "lz4").await);
    let seen = wait_for_rows_from(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), (0..partitions as i64).map(|p| (p, 50)).collect());
}

/// The HTTP API works on every broker: records posted to one broker for every partition land on
/// each partition's leader (forwarded over the Kafka protocol where it is another broker), and
/// every broker reads every partition back, offsets and values exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_answers_for_every_partition_on_every_broker() {
    let cluster = Cluster::start(3);
    let topic = unique_topic("http");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    let leaders = cluster.leaders(&topic, partitions);
    assert!(leaders.values().any(|l| *l != 1), "some partitions are led elsewhere than broker 1");
    for round in 0..2 {
        for partition in 0..partitions {
            let body = serde_json::json!([
                { "value": format!("r{round}-p{partition}-a"), "partition": partition },
                { "value": format!("r{round}-p{partition}-b"), "partition": partition },
            ]);
            let answer = crate::http_client::post_json(&cluster.brokers[0].http, &format!("/events/{topic}"), &body);
            assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
            let answer: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
            let offsets: Vec<i64> = answer["offsets"]
                .as_array()
                .expect("offsets")
                .iter()
                .map(|o| o["offset"].as_i64().expect("offset"))
                .collect();
            assert_eq!(offsets, vec![round * 2, round * 2 + 1], "partition {partition}");
        }
    }
    for broker in &cluster.brokers {
        for partition in 0..partitions {
            let path = format!("/events/{topic}?partition={partition}&offset=0&limit=10");
            let answer = crate::http_client::get(&broker.http, &path);
            assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
            let answer: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
            let values: Vec<(i64, String)> = answer["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| (r["offset"].as_i64().expect("offset"), r["value"].as_str().expect("value").to_string()))
                .collect();
            let expected: Vec<(i64, String)> = (0..2)
                .flat_map(|round| {
                    ["a", "b"]
                        .into_iter()
                        .enumerate()
                        .map(move |(i, s)| (round * 2 + i as i64, format!("r{round}-p{partition}-{s}")))
                })
                .collect();
            assert_eq!(values, expected, "partition {partition} read on broker {}", broker.bootstrap);
        }
    }
    let read = read_all(&cluster, &topic, partitions);
    assert!(read.values().all(|records| records.len() == 4));
}

/// An idempotent producer's batch, acknowledged, uploaded in a segment, and then retried at the
/// next leader after its leader's kill -9 (the retry of a batch whose answer was lost): the new
/// leader recognises it as the same batch, answers its original offset, and writes nothing. The
/// producers' state moves with the segment's index entry, not only with the write-ahead log's
/// tail, which starts after the segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_an_uploaded_batch_after_a_failover_is_not_written_twice() {
    use crate::bad_input::{batch, produce};
    use crate::raw::Raw;
    use kafka_protocol::messages::InitProducerIdRequest;
    let mut cluster = Cluster::start_with(2, &["--log-roll-ms", "100", "--remote-log-manager-task-interval-ms", "50"]);
    let topic = unique_topic("retry-after-failover");
    cluster.create_topic(&topic, 1).await;
    let leader = cluster.leaders(&topic, 1)[&0];
    let index = cluster.broker_index(leader);
    let mut raw = Raw::connect(&cluster.brokers[index].bootstrap);
    let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
    let init = raw.call(4, &request);
    assert_eq!(init.error_code, 0);
    let producer = Some((init.producer_id.0, init.producer_epoch, 0));
    let values: [&[u8]; 3] = [b"a", b"b", b"c"];
    assert_eq!(produce(&mut raw, &topic, batch(&values, producer)), (0, 0));
    // The batch is in a segment in the object store (the write-ahead log's tail now starts
    // after it).
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let (status, body) = crate::tiering::http(&cluster.brokers[index].http, "GET", "/admin/tiering");
        assert_eq!(status, 200, "{body}");
        if body.contains("\"remote_end_offset\":3") {
            break;
        }
        assert!(Instant::now() < deadline, "never uploaded: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.brokers[index].kill9();
    cluster.wait_until_none_led_by(&topic, 1, leader);
    let next = cluster.leaders(&topic, 1)[&0];
    let mut raw = Raw::connect(&cluster.brokers[cluster.broker_index(next)].bootstrap);
    assert_eq!(produce(&mut raw, &topic, batch(&values, producer)), (0, 0), "the retry gets the original offset");
    let producer = Some((init.producer_id.0, init.producer_epoch, 3));
    assert_eq!(produce(&mut raw, &topic, batch(&[b"d"], producer)), (0, 3), "the producer's next batch follows");
    let read = read_all(&cluster, &topic, 1);
    let values: Vec<&[u8]> = read[&0].iter().map(|r| r.value.as_deref().unwrap_or_default()).collect();
    assert_eq!(values, vec![&b"a"[..], b"b", b"c", b"d"]);
}

/// KIP-951: a Produce (v10+) or Fetch (v16+) sent to a broker that does not lead the partition
/// gets NOT_LEADER_OR_FOLLOWER with the current leader's id and epoch, and that broker's address
/// among the response's node endpoints, so a client goes straight there; the leader serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_broker_that_does_not_lead_names_the_leader() {
    use crate::bad_input::{batch, produce_request};
    use crate::raw::Raw;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{FetchRequest, MetadataRequest};
    let cluster = Cluster::start(2);
    let topic = unique_topic("kip-951");
    cluster.create_topic(&topic, 1).await;
    let leader = cluster.leaders(&topic, 1)[&0];
    let other = if leader == 1 { 2 } else { 1 };
    let leader_port: i32 = cluster.brokers[cluster.broker_index(leader)]
        .bootstrap
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let expected_endpoints = vec![(leader, "127.0.0.1".to_string(), leader_port)];
    let mut raw = Raw::connect(&cluster.brokers[cluster.broker_index(other)].bootstrap);
    let metadata = raw.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(kafka_protocol::messages::TopicName(topic.clone().into()))),
        ])),
    );
    let (topic_id, epoch) = (metadata.topics[0].topic_id, metadata.topics[0].partitions[0].leader_epoch);

    let response = raw.call(11, &produce_request(&topic, 0, batch(&[b"to the wrong broker"], None)));
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!((partition.current_leader.leader_id.0, partition.current_leader.leader_epoch), (leader, epoch));
    let endpoints = response.node_endpoints.iter().map(|n| (n.node_id.0, n.host.to_string(), n.port));
    assert_eq!(endpoints.collect::<Vec<_>>(), expected_endpoints);

    let fetch = FetchRequest::default().with_replica_id((-1).into()).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic_id(topic_id).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
        ]),
    ]);
    let response = raw.call(16, &fetch);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!((partition.current_leader.leader_id.0, partition.current_leader.leader_epoch), (leader, epoch));
    let endpoints = response.node_endpoints.iter().map(|n| (n.node_id.0, n.host.to_string(), n.port));
    assert_eq!(endpoints.collect::<Vec<_>>(), expected_endpoints);

    // Where the hint points, the produce is served.
    let mut raw = Raw::connect(&format!("127.0.0.1:{leader_port}"));
    let response = raw.call(11, &produce_request(&topic, 0, batch(&[b"to the leader"], None)));
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

/// A takeover that finishes after its epoch is over (the partition handed over or moved
/// meanwhile, or a round acting on a snapshot read before this broker's own hand-over) is
/// refused by PostgreSQL: a broker never leads again at an epoch that ended, where it would
/// acknowledge records at offsets its successor also gives out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_that_is_over_is_never_started_again() {
    use zombi::cluster::pg::ClusterStore;
    let pg = Postgres::start();
    let store = ClusterStore::connect(&pg.url(), Duration::from_secs(10)).await.expect("connect");
    store.cluster_id("epochs").await.expect("cluster id");
    let id = uuid::Uuid::new_v4();
    store.create_topic(id, "epochs", 1, &BTreeMap::new(), &[1]).await.expect("create").expect("created");
    assert!(store.start_epoch(id, 0, 0, 1, 1).await.expect("start"), "the current epoch starts");
    assert!(store.move_partition(id, 0, 0, 2, Some(10)).await.expect("move"), "handed over to broker 2");
    assert!(!store.start_epoch(id, 0, 0, 1, 1).await.expect("start"), "the ended epoch does not start again");
    assert!(!store.start_epoch(id, 0, 1, 1, 1).await.expect("start"), "nor another broker's epoch");
    assert!(store.start_epoch(id, 0, 1, 2, 1).await.expect("start"), "the new leader's epoch starts");
}

/// DeleteRecords survives its partition's leader: the new log start is in PostgreSQL before
/// the answer, so the broker that takes the partition over after a kill -9 starts there, even
/// inside a batch (the one batch of ten records here, cut after its sixth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_records_stay_deleted_after_a_failover() {
    use crate::bad_input::{batch, produce};
    use crate::raw::Raw;
    let mut cluster = Cluster::start(2);
    let topic = unique_topic("delete-records");
    cluster.create_topic(&topic, 1).await;
    let leader = cluster.leaders(&topic, 1)[&0];
    let index = cluster.broker_index(leader);
    let mut raw = Raw::connect(&cluster.brokers[index].bootstrap);
    let values: Vec<Vec<u8>> = (0..10).map(|i| format!("v{i}").into_bytes()).collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    assert_eq!(produce(&mut raw, &topic, batch(&values, None)), (0, 0), "one batch at offset 0");
    let admin: AdminClient<DefaultClientContext> = cluster.client_config().create().expect("admin");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&topic, 0, Offset::Offset(6)).expect("offset");
    let deleted = admin.delete_records(&offsets, &AdminOptions::new()).await.expect("delete records");
    let low = deleted.find_partition(&topic, 0).map(|p| p.offset());
    assert_eq!(low, Some(Offset::Offset(6)), "the new low watermark");
    cluster.brokers[index].kill9();
    cluster.wait_until_none_led_by(&topic, 1, leader);
    let survivor = &cluster.brokers[1 - index];
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &survivor.bootstrap).create().expect("consumer");
    let deadline = Instant::now() + WAIT_MAX;
    let watermarks = loop {
        match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
            Ok(watermarks) => break watermarks,
            Err(error) => assert!(Instant::now() < deadline, "no watermarks from the new leader: {error}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(watermarks, (6, 10), "the new leader starts where DeleteRecords left the partition");
}
