//! Transactions under load, with librdkafka (rdkafka): produce throughput of transactions of 100
//! and of 10,000 records against plain idempotent produce, the latency of `commit_transaction`,
//! and read_committed consume throughput over a log where every tenth transaction was aborted
//! (against read_uncommitted over the same log). 1 KiB records, acks=all, 4 partitions.
//!
//! `cargo bench --bench txn -- [--records N] [--rounds R] [--bootstrap HOST:PORT]
//!  [--durability fsync|periodic] [--cluster N [--wal-interval-ms MS]] [--security plaintext|sasl_ssl]`; `ZOMBI_BIN=PATH`
//! starts that broker binary instead. `--cluster N` starts N brokers in cluster mode (a private
//! PostgreSQL, a shared directory as object store and write-ahead log): the transaction
//! coordinator is one of them, markers go to the other leaders over the inter-broker listener,
//! and leaders verify transactional writes with the coordinator the same way. `--security
//! sasl_ssl` makes every listener SASL_SSL with SCRAM-SHA-512 and ACLs on (support/security.rs),
//! the inter-broker one included (the brokers authenticate as the bootstrap admin), and the
//! clients connect the same way. Each round uses fresh topics; the summary gives the median and
//! the range over the rounds.

mod support;

#[path = "../tests/it/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use support::broker::Broker;
use support::producer::{RECORD_BYTES, create_topic};

const PARTITIONS: i32 = 4;
const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    records: u64,
    rounds: usize,
    bootstrap: Option<String>,
    durability: String,
    cluster: usize,
    security: String,
    /// `--wal-interval-ms` of the cluster's brokers (their default when not given).
    wal_interval_ms: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 200_000,
        rounds: 3,
        bootstrap: None,
        durability: "fsync".into(),
        cluster: 0,
        security: "plaintext".into(),
        wal_interval_ms: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value().parse().expect("--records N"),
            "--rounds" => args.rounds = value().parse().expect("--rounds R"),
            "--bootstrap" => args.bootstrap = Some(value()),
            "--durability" => args.durability = value(),
            "--cluster" => args.cluster = value().parse().expect("--cluster N"),
            "--security" => args.security = value(),
            "--wal-interval-ms" => args.wal_interval_ms = Some(value()),
            _ => {}
        }
    }
    args
}

fn producer(bootstrap: &str, transactional_id: Option<&str>) -> BaseProducer {
    let mut config = support::client(bootstrap);
    config.set("linger.ms", "5").set("enable.idempotence", "true");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    // librdkafka's debug contexts (e.g. `eos,protocol`) for a look at what the client waits for.
    if let Ok(contexts) = std::env::var("ZOMBI_BENCH_RDKAFKA_DEBUG") {
        config.set("debug", contexts);
    }
    // A BaseProducer, polled here: rdkafka's ThreadedProducer serves delivery reports from a
    // thread that polls every 100 ms, which commit_transaction then waits for.
    let producer: BaseProducer = config.create().expect("producer");
    if transactional_id.is_some() {
        producer.init_transactions(TIMEOUT).expect("init_transactions");
    }
    producer
}

fn send(producer: &BaseProducer, topic: &str, i: u64, payload: &[u8]) {
    let partition = (i % PARTITIONS as u64) as i32;
    let mut record = BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            // The local queue is full: wait for deliveries to make room.
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

/// Produces `records` in transactions of `per_txn` (every `abort_every`th aborted, 0: none);
/// returns MB/s over the whole run and the commit latencies (µs).
fn transactional(bootstrap: &str, topic: &str, records: u64, per_txn: u64, abort_every: u64) -> (f64, Histogram<u64>) {
    let id = format!("bench-{topic}");
    let producer = producer(bootstrap, Some(&id));
    let payload = vec![b't'; RECORD_BYTES];
    let mut commits = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    let mut sent = 0;
    let mut txn = 0;
    while sent < records {
        producer.begin_transaction().expect("begin");
        for _ in 0..per_txn.min(records - sent) {
            send(&producer, topic, sent, &payload);
            sent += 1;
        }
        txn += 1;
        let began = Instant::now();
        if abort_every > 0 && txn % abort_every == 0 {
            producer.flush(TIMEOUT).expect("flush");
            producer.abort_transaction(TIMEOUT).expect("abort");
        } else {
            commit(&producer);
            let _ = commits.record(began.elapsed().as_micros() as u64);
        }
    }
    (mb_per_s(records, start.elapsed()), commits)
}

/// `commit_transaction` without the rdkafka crate's flush loop, which polls in steps of up to
/// 100 ms and put a floor of 100 ms under every commit here (confluent-kafka, on librdkafka's
/// own flush, commits in about 2 ms against the same broker): deliveries are awaited by polling
/// every millisecond, then librdkafka's commit runs, with nothing left to flush.
fn commit(producer: &BaseProducer) {
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "deliveries did not complete");
        producer.poll(Duration::from_millis(1));
    }
    // SAFETY: the handle is the producer's own, alive for the call; a non-null result is an
    // error object that this function owns and destroys.
    unsafe {
        let native = producer.client().native_ptr();
        let error = rdkafka::bindings::rd_kafka_commit_transaction(native, TIMEOUT.as_millis() as i32);
        if !error.is_null() {
            let message = std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_error_string(error));
            let message = message.to_string_lossy().into_owned();
            rdkafka::bindings::rd_kafka_error_destroy(error);
            panic!("commit_transaction: {message}");
        }
    }
}

fn idempotent(bootstrap: &str, topic: &str, records: u64) -> f64 {
    let producer = producer(bootstrap, None);
    let payload = vec![b'i'; RECORD_BYTES];
    let start = Instant::now();
    for i in 0..records {
        send(&producer, topic, i, &payload);
    }
    producer.flush(TIMEOUT).expect("flush");
    mb_per_s(records, start.elapsed())
}

/// Reads every partition to its end with the given isolation level: MB/s of records delivered.
fn consume(bootstrap: &str, topic: &str, isolation: &str) -> (f64, u64) {
    let consumer: BaseConsumer = support::client(bootstrap)
        .set("group.id", "zombi-txn-bench")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        ends.insert(partition, consumer.fetch_watermarks(topic, partition, TIMEOUT).expect("watermarks").1);
        list.add_partition_offset(topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&list).expect("assign");
    let start = Instant::now();
    let mut count = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.expect("consume");
            count += 1;
            continue;
        }
        let positions = consumer.position().expect("position");
        let done = ends.iter().all(|(&partition, &end)| {
            positions.find_partition(topic, partition).is_some_and(|p| p.offset() == Offset::Offset(end))
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "consume stalled at {count}");
    }
    // The last empty poll is not part of the read.
    (mb_per_s(count, start.elapsed().saturating_sub(Duration::from_millis(100))), count)
}

fn mb_per_s(records: u64, elapsed: Duration) -> f64 {
    records as f64 * RECORD_BYTES as f64 / 1e6 / elapsed.as_secs_f64()
}

fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!("{:.1} ({:.1}–{:.1})", values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    let args = parse_args();
    let certificates = tempfile::tempdir().expect("temp dir");
    let mode = support::security::mode(&args.security, certificates.path());
    support::set_client_settings(mode.client.clone());
    let mut flags: Vec<String> = ["--durability", args.durability.as_str()].map(str::to_string).to_vec();
    flags.extend(mode.flags.iter().cloned());
    let mut env = mode.env.clone();
    if args.security == "sasl_ssl" && args.cluster > 0 {
        // Brokers verify each other's certificates with the CA, and authenticate as the admin.
        let ca = certificates.path().join("ca.crt").display().to_string();
        flags.extend(["--ssl-ca-file".to_string(), ca]);
        flags.extend(["--inter-broker-sasl-username".to_string(), support::security::USER.to_string()]);
        env.push(("ZOMBI_INTER_BROKER_SASL_PASSWORD".to_string(), support::security::PASSWORD.to_string()));
    }
    let mut cluster_flags = flags.clone();
    if let Some(interval) = &args.wal_interval_ms {
        cluster_flags.extend(["--wal-interval-ms".to_string(), interval.clone()]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster_flags: Vec<&str> = cluster_flags.iter().map(String::as_str).collect();
    let cluster = (args.cluster > 0).then(|| Cluster::start(args.cluster, &cluster_flags, &env));
    let broker = match &cluster {
        Some(cluster) => Broker::start(Some(&cluster.bootstrap()), &[]),
        None => Broker::start_with_env(args.bootstrap.as_deref(), &flags, &env),
    };
    println!(
        "zombi transactions bench: {} records of {RECORD_BYTES} bytes, {PARTITIONS} partitions, acks=all, durability={}, security={}, {} rounds, {}",
        args.records,
        args.durability,
        args.security,
        args.rounds,
        match args.cluster {
            0 => "one broker".to_string(),
            n => format!(
                "a cluster of {n} brokers, wal-interval-ms {}",
                args.wal_interval_ms.as_deref().unwrap_or("250 (default)")
            ),
        }
    );
    let mut figures: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..args.rounds {
        let topic = |what: &str| {
            let name = format!("txn-bench-{what}-{round}-{}", std::process::id());
            create_topic(&broker.bootstrap, &name, PARTITIONS);
            name
        };
        let mb = idempotent(&broker.bootstrap, &topic("idempotent"), args.records);
        figures.entry("produce idempotent MB/s").or_default().push(mb);
        for per_txn in [100, 10_000] {
            let (mb, commits) =
                transactional(&broker.bootstrap, &topic(&format!("t{per_txn}")), args.records, per_txn, 0);
            let label: &'static str = if per_txn == 100 { "produce 100/txn MB/s" } else { "produce 10000/txn MB/s" };
            figures.entry(label).or_default().push(mb);
            let (p50, p99) =
                (commits.value_at_quantile(0.5) as f64 / 1000.0, commits.value_at_quantile(0.99) as f64 / 1000.0);
            let (l50, l99): (&'static str, &'static str) = if per_txn == 100 {
                ("commit p50 ms (100/txn)", "commit p99 ms (100/txn)")
            } else {
                ("commit p50 ms (10000/txn)", "commit p99 ms (10000/txn)")
            };
            figures.entry(l50).or_default().push(p50);
            figures.entry(l99).or_default().push(p99);
            println!("round {round}: {per_txn} records/txn {mb:.1} MB/s, commit p50 {p50:.2} ms p99 {p99:.2} ms");
        }
        let aborted = topic("aborted");
        transactional(&broker.bootstrap, &aborted, args.records, 100, 10);
        let (committed_mb, committed_count) = consume(&broker.bootstrap, &aborted, "read_committed");
        let (all_mb, all_count) = consume(&broker.bootstrap, &aborted, "read_uncommitted");
        assert_eq!(all_count, args.records, "read_uncommitted gets every record");
        assert_eq!(
            committed_count,
            args.records - args.records / 1000 * 100,
            "read_committed skips every tenth transaction of 100"
        );
        figures.entry("consume read_committed MB/s (10% aborted)").or_default().push(committed_mb);
        figures.entry("consume read_uncommitted MB/s (same log)").or_default().push(all_mb);
        println!(
            "round {round}: idempotent {mb:.1} MB/s, read_committed {committed_mb:.1} MB/s, read_uncommitted {all_mb:.1} MB/s"
        );
    }
    println!("\n| figure | median (min–max) over {} rounds |\n|---|---:|", args.rounds);
    for (label, values) in &mut figures {
        println!("| {label} | {} |", summary(values));
    }
}

/// Brokers in cluster mode on a private PostgreSQL and a shared directory.
struct Cluster {
    brokers: Vec<Broker>,
    _pg: postgres::Postgres,
    _shared: tempfile::TempDir,
}

impl Cluster {
    fn start(count: usize, extra: &[&str], env: &[(String, String)]) -> Cluster {
        let pg = postgres::Postgres::start();
        let shared = tempfile::tempdir().expect("temp dir");
        let (bucket, wal) = (shared.path().join("bucket"), shared.path().join("wal"));
        let brokers = (1..=count)
            .map(|node| {
                let node = node.to_string();
                let url = pg.url();
                let (bucket, wal) = (format!("file://{}", bucket.display()), format!("file://{}", wal.display()));
                let mut flags = vec!["--node-id", &node, "--coordinator", &url, "--object-store", &bucket];
                flags.extend(["--wal-store", &wal]);
                flags.extend(extra);
                Broker::start_with_env(None, &flags, env)
            })
            .collect();
        Cluster { brokers, _pg: pg, _shared: shared }
    }

    fn bootstrap(&self) -> String {
        self.brokers.iter().map(|b| b.bootstrap.clone()).collect::<Vec<_>>().join(",")
    }
}
