//! The load tool: starts `zombi` (or uses `--bootstrap`), then measures with librdkafka (rdkafka):
//! produce throughput, consume throughput, and produce latency at a fixed rate, for 1 KiB records
//! with acks=all, on 1 and 16 partitions; plus the broker's resident memory.
//!
//! `cargo bench --bench load -- [--records N] [--rate R] [--seconds S] [--bootstrap HOST:PORT]
//!  [--durability fsync|periodic] [--security plaintext|ssl|sasl_ssl]`; `ZOMBI_BIN=PATH` starts
//!  that broker binary instead of the one cargo built (to compare two builds under the same
//!  tool). `--security ssl` serves one TLS listener, `sasl_ssl` one SASL_SSL listener with
//!  SCRAM-SHA-512 and `--authorizer standard` (support/security.rs).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use support::broker::Broker;
use support::producer::{RECORD_BYTES, create_topic, latency, producer, send, wait_for};

struct Args {
    records: u64,
    rate: u64,
    seconds: u64,
    bootstrap: Option<String>,
    durability: String,
    security: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 300_000,
        rate: 10_000,
        seconds: 10,
        bootstrap: None,
        durability: "fsync".into(),
        security: "plaintext".into(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value().parse().expect("--records N"),
            "--rate" => args.rate = value().parse().expect("--rate R"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--bootstrap" => args.bootstrap = Some(value()),
            "--durability" => args.durability = value(),
            "--security" => args.security = value(),
            "--bench" => {}
            _ => {}
        }
    }
    args
}

fn throughput(bootstrap: &str, topic: &str, partitions: i32, records: u64) {
    let (producer, delivered) = producer(bootstrap, "5");
    let payload = vec![b'z'; RECORD_BYTES];
    let start = Instant::now();
    for i in 0..records {
        send(&producer, topic, partitions, i, &payload, delivered.start);
    }
    wait_for(&delivered, records);
    let seconds = start.elapsed().as_secs_f64();
    let failed = delivered.failed.load(Ordering::Relaxed);
    report("produce", partitions, records, seconds, failed);

    let consumer: BaseConsumer = support::client(bootstrap)
        .set("group.id", "zombi-load")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&list).expect("assign");
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < records - failed {
        assert!(Instant::now() < deadline, "consume stalled at {count}");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            count += 1;
            bytes += message.payload_len() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(bytes, count * RECORD_BYTES as u64);
    report("consume", partitions, count, seconds, 0);
}

fn report(what: &str, partitions: i32, records: u64, seconds: f64, failed: u64) {
    let mb = records as f64 * RECORD_BYTES as f64 / 1e6;
    println!(
        "{what:8} partitions={partitions:<3} records={records} {:.0} records/s {:.1} MB/s ({seconds:.2} s, {failed} failed)",
        records as f64 / seconds,
        mb / seconds
    );
}

fn main() {
    let args = parse_args();
    let certificates = tempfile::tempdir().expect("temp dir");
    let mode = support::security::mode(&args.security, certificates.path());
    support::set_client_settings(mode.client);
    let mut flags = vec!["--durability", &args.durability];
    flags.extend(mode.flags.iter().map(String::as_str));
    let broker = Broker::start_with_env(args.bootstrap.as_deref(), &flags, &mode.env);
    println!(
        "zombi load tool: {} bytes/record, acks=all, durability={}, security={}",
        RECORD_BYTES, args.durability, args.security
    );
    // The fixed-rate runs come first, so the memory figure is that of this load on a fresh broker.
    for partitions in [1, 16] {
        let topic = format!("latency-{partitions}-{}", std::process::id());
        create_topic(&broker.bootstrap, &topic, partitions);
        latency(&broker.bootstrap, &topic, partitions, args.rate, args.seconds);
    }
    if let Some((rss, hwm)) = broker.rss_kib() {
        println!("memory   after the fixed-rate runs: broker RSS {} MiB, peak {} MiB", rss / 1024, hwm / 1024);
    }
    for partitions in [1, 16] {
        let topic = format!("throughput-{partitions}-{}", std::process::id());
        create_topic(&broker.bootstrap, &topic, partitions);
        throughput(&broker.bootstrap, &topic, partitions, args.records);
    }
    if let Some((rss, hwm)) = broker.rss_kib() {
        println!("memory   after the throughput runs: broker RSS {} MiB, peak {} MiB", rss / 1024, hwm / 1024);
    }
    groups(&broker.bootstrap, args.records);
}

/// One consumer of the group benchmark, polled on its own thread until told to stop.
struct Member {
    stop: Arc<std::sync::atomic::AtomicBool>,
    assigned: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

fn start_member(bootstrap: &str, topic: &str, group: &str, consumed: Arc<AtomicU64>) -> Member {
    let consumer: BaseConsumer = support::client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let assigned = Arc::new(AtomicU64::new(0));
    let (stop_flag, assigned_count) = (stop.clone(), assigned.clone());
    let thread = std::thread::spawn(move || {
        while !stop_flag.load(Ordering::Relaxed) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(10)) {
                consumed.fetch_add(1, Ordering::Relaxed);
            }
            let count = consumer.assignment().map(|list| list.count()).unwrap_or(0);
            assigned_count.store(count as u64, Ordering::Relaxed);
        }
        // Dropping the consumer closes it: it leaves the group.
    });
    Member { stop, assigned, thread }
}

/// Waits until the members together own every partition, each at least one.
fn wait_balanced(members: &[Member], partitions: u64) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    loop {
        let counts: Vec<u64> = members.iter().map(|m| m.assigned.load(Ordering::Relaxed)).collect();
        if counts.iter().sum::<u64>() == partitions && counts.iter().all(|c| *c > 0) {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "the group did not rebalance: {counts:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A group of consumers draining a topic, then the time a rebalance takes when one member leaves
/// and when one joins (measured until the remaining members own every partition again).
fn groups(bootstrap: &str, records: u64) {
    const PARTITIONS: u64 = 8;
    const MEMBERS: usize = 4;
    let topic = format!("groups-{}", std::process::id());
    create_topic(bootstrap, &topic, PARTITIONS as i32);
    let (producer, delivered) = producer(bootstrap, "5");
    let payload = vec![b'g'; RECORD_BYTES];
    for i in 0..records {
        send(&producer, &topic, PARTITIONS as i32, i, &payload, delivered.start);
    }
    wait_for(&delivered, records);
    let consumed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let group = format!("group-{}", std::process::id());
    let mut members: Vec<Member> =
        (0..MEMBERS).map(|_| start_member(bootstrap, &topic, &group, consumed.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while consumed.load(Ordering::Relaxed) < records {
        assert!(Instant::now() < deadline, "the group stalled at {}", consumed.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "group    {MEMBERS} consumers, {PARTITIONS} partitions: drained {records} records in {seconds:.2} s \
         (including the first rebalance): {:.0} records/s, {:.1} MB/s",
        records as f64 / seconds,
        records as f64 * RECORD_BYTES as f64 / 1e6 / seconds
    );
    wait_balanced(&members, PARTITIONS);
    let leaving = members.pop().expect("a member");
    leaving.stop.store(true, Ordering::Relaxed);
    leaving.thread.join().expect("member thread");
    let after_leave = wait_balanced(&members, PARTITIONS);
    members.push(start_member(bootstrap, &topic, &group, consumed.clone()));
    let after_join = wait_balanced(&members, PARTITIONS);
    println!(
        "rebalance one member leaves: {:.0} ms until the others own every partition; one joins: {:.0} ms",
        after_leave.as_secs_f64() * 1000.0,
        after_join.as_secs_f64() * 1000.0
    );
    for member in members {
        member.stop.store(true, Ordering::Relaxed);
        let _ = member.thread.join();
    }
}
