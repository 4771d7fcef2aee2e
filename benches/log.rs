//! Micro benchmarks of the log's append and read paths, without the network:
//! batch validation (CRC32C), group-committed appends with both durability settings, and reads.
//!
//! `cargo bench --bench log`

use std::time::Instant;

mod support;

use bytes::Bytes;
use zombi::config::Durability;
use zombi::log::{Log, ReadRequest, batch, open_for_tests};

const RECORDS_PER_BATCH: usize = 16;
const RECORD_BYTES: usize = 1024;

fn make_batch() -> Bytes {
    support::make_batch(RECORDS_PER_BATCH, RECORD_BYTES, 1_700_000_000_000)
}

fn bench_validate(bytes: &Bytes) {
    let iterations = 20_000;
    let start = Instant::now();
    for _ in 0..iterations {
        let batches = batch::validate(bytes, 1 << 20).expect("valid");
        assert_eq!(batches.len(), 1);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "validate   {:.2} µs/batch, {:.0} MB/s",
        seconds * 1e6 / iterations as f64,
        (bytes.len() * iterations) as f64 / seconds / 1e6
    );
}

async fn bench_append(log: &Log, bytes: &Bytes, label: &str, in_flight: usize) -> String {
    let topic_name = format!("bench-{label}");
    let topic = log.create_topic(&topic_name, 1, Default::default(), false).await.expect("topic");
    let partition = topic.partitions[0].clone();
    let batches = 4000;
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..batches {
        let valid = batch::validate(bytes, 1 << 20).expect("valid");
        pending.push_back(log.submit_append(&topic, &partition, valid).await.expect("queued"));
        if pending.len() >= in_flight
            && let Some(receiver) = pending.pop_front()
        {
            receiver.await.expect("reply").expect("append");
        }
    }
    for receiver in pending {
        receiver.await.expect("reply").expect("append");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "append     {label:<24} {:.0} records/s, {:.0} MB/s ({in_flight} batches in flight)",
        (batches * RECORDS_PER_BATCH) as f64 / seconds,
        (batches * bytes.len()) as f64 / seconds / 1e6
    );
    topic_name
}

async fn bench_read(log: &Log, topic_name: &str) {
    let topic = log.topic(topic_name).expect("topic");
    let partition = topic.partitions[0].clone();
    let end = partition.high_watermark();
    let start = Instant::now();
    let mut offset = 0;
    let mut bytes = 0;
    while offset < end {
        let request = ReadRequest {
            partition: partition.clone(),
            offset,
            max_bytes: 1 << 20,
            at_least_one: true,
            isolation: Default::default(),
            // As a Kafka client's fetch reads.
            verify_checksums: false,
        };
        let result = log.read_local(vec![request], 50 << 20).await.remove(0).1.expect("read").expect("in the hot tier");
        bytes += result.records.len();
        let mut rest = &result.records[..];
        while rest.len() >= batch::HEADER_BYTES {
            let header = batch::BatchHeader::parse(rest).expect("header");
            offset = header.last_offset() + 1;
            rest = &rest[header.size_bytes()..];
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("read       sequential, 1 MiB reads       {:.0} MB/s", bytes as f64 / seconds / 1e6);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let bytes = make_batch();
    bench_validate(&bytes);
    runtime.block_on(async {
        for durability in [Durability::Fsync, Durability::Periodic] {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = open_for_tests(dir.path(), durability).await.expect("log");
            for in_flight in [1, 64] {
                let label = format!("{durability:?}-{in_flight}").to_lowercase();
                let topic = bench_append(&log, &bytes, &label, in_flight).await;
                if in_flight == 64 {
                    bench_read(&log, &topic).await;
                }
            }
            log.close().await;
        }
    });
}
