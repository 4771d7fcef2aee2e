//! Failover time in cluster mode (docs/cluster.md): three brokers with their default session
//! timeout and heartbeat, a private PostgreSQL, a shared directory as object store and
//! write-ahead log. A producer (idempotent, acks=all) sends one record every 10 ms to each of 6
//! partitions; the broker leading partition 0 is killed with SIGKILL; for each partition it led,
//! the time from the kill to the first acknowledgement of a record sent after it. Then the broker
//! is restarted, and again, `--rounds` times.
//!
//! `cargo bench --bench failover -- [--rounds N] [--session-timeout-ms T] [--heartbeat-interval-ms H]`
//! (defaults: 3, zombi's 9000 and 2000). `ZOMBI_BIN=PATH` runs another build of the broker.

#[path = "../tests/it/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 6;

/// Per partition: when each acknowledged record was sent, and when it was acknowledged.
type Acked = Arc<Mutex<BTreeMap<i32, Vec<(Instant, Instant)>>>>;

struct Broker {
    child: Option<Child>,
    args: Vec<String>,
    kafka: String,
}

impl Broker {
    fn start(args: Vec<String>, listen: &str) -> Broker {
        let binary = std::env::var_os("ZOMBI_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_zombi").into());
        let mut child = Command::new(binary)
            .args(&args)
            .args(["--kafka-listen", listen, "--http-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zombi");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("listening line");
        let kafka = line.split_whitespace().find_map(|p| p.strip_prefix("kafka=")).expect("address").to_string();
        Broker { child: Some(child), args, kafka }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        let listen = self.kafka.clone();
        *self = Broker::start(self.args.clone(), &listen);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn leaders(bootstrap: &str, topic: &str) -> BTreeMap<i32, i32> {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("client");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(metadata) = client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            let live: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
            if let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) {
                let leaders: BTreeMap<i32, i32> = found.partitions().iter().map(|p| (p.id(), p.leader())).collect();
                if leaders.len() == PARTITIONS as usize && leaders.values().all(|l| live.contains(l)) {
                    return leaders;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader for every partition");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let mut rounds = 3;
    let mut extra: Vec<String> = Vec::new();
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--rounds" => rounds = iter.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--session-timeout-ms" => extra.extend(["--broker-session-timeout-ms".into(), iter.next().expect("value")]),
            "--heartbeat-interval-ms" => {
                extra.extend(["--broker-heartbeat-interval-ms".into(), iter.next().expect("value")])
            }
            _ => {}
        }
    }
    let pg = postgres::Postgres::start();
    let shared = tempfile::tempdir().expect("temp dir");
    let mut brokers: Vec<Broker> = Vec::new();
    let mut data_dirs = Vec::new();
    for node in 1..=3 {
        let data = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            node.to_string(),
            "--data-dir".into(),
            data.path().display().to_string(),
            "--coordinator".into(),
            pg.url(),
            "--object-store".into(),
            format!("file://{}", shared.path().join("bucket").display()),
            "--wal-store".into(),
            format!("file://{}", shared.path().join("wal").display()),
        ];
        args.extend(extra.iter().cloned());
        brokers.push(Broker::start(args, "127.0.0.1:0"));
        data_dirs.push(data);
    }
    let bootstrap = brokers.iter().map(|b| b.kafka.clone()).collect::<Vec<_>>().join(",");
    println!("zombi failover bench: 3 brokers, {PARTITIONS} partitions, flags {extra:?} (defaults otherwise)");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = format!("failover-{}", std::process::id());
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin");
        let topics = [NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1))];
        let created = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create");
        assert!(created.iter().all(Result::is_ok), "{created:?}");
    });
    leaders(&bootstrap, &topic);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "120000")
        .set("socket.timeout.ms", "5000")
        .create()
        .expect("producer");
    // Per partition: when each acknowledged record was sent.
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (acked, stop, topic) = (acked.clone(), stop.clone(), topic.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut tasks = tokio::task::JoinSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                for partition in 0..PARTITIONS {
                    let sent = Instant::now();
                    let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(partition).payload(b"failover");
                    if let Ok(delivery) = producer.send_result(record) {
                        let acked = acked.clone();
                        tasks.spawn(async move {
                            if let Ok(Ok(_)) = delivery.await {
                                acked.lock().expect("lock").entry(partition).or_default().push((sent, Instant::now()));
                            }
                        });
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    for round in 0..rounds {
        let led = leaders(&bootstrap, &topic);
        let victim = led[&0];
        let moved: Vec<i32> = led.iter().filter(|(_, l)| **l == victim).map(|(p, _)| *p).collect();
        let killed = Instant::now();
        brokers[(victim - 1) as usize].kill();
        // The first acknowledgement, per moved partition, of a record sent after the kill.
        let deadline = killed + Duration::from_secs(120);
        let times = loop {
            let acked = acked.lock().expect("lock");
            let times: Vec<Option<Duration>> = moved
                .iter()
                .map(|p| acked.get(p)?.iter().filter(|(sent, _)| *sent > killed).map(|(_, at)| *at - killed).min())
                .collect();
            if times.iter().all(Option::is_some) {
                break times.into_iter().flatten().collect::<Vec<_>>();
            }
            drop(acked);
            assert!(Instant::now() < deadline, "partitions never moved");
            std::thread::sleep(Duration::from_millis(20));
        };
        let (first, last) =
            (times.iter().min().copied().unwrap_or_default(), times.iter().max().copied().unwrap_or_default());
        println!(
            "round {round}: killed broker {victim} leading {moved:?}; first acknowledgement on a moved partition after {:.2} s, on all of them after {:.2} s",
            first.as_secs_f64(),
            last.as_secs_f64()
        );
        brokers[(victim - 1) as usize].restart();
        std::thread::sleep(Duration::from_secs(15));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = runtime.block_on(load);
}
