//! A librdkafka producer that records each delivery's latency, shared by the load tools.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

pub const RECORD_BYTES: usize = 1024;

/// Counts deliveries and records their latency (enqueue to acknowledgement).
pub struct Delivered {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub latencies: std::sync::Mutex<Histogram<u64>>,
    pub start: Instant,
}

pub struct Context(Arc<Delivered>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_micros: Box<u64>) {
        match result {
            Ok(_) => {
                let now = self.0.start.elapsed().as_micros() as u64;
                if let Ok(mut histogram) = self.0.latencies.lock() {
                    let _ = histogram.record(now.saturating_sub(*sent_at_micros).max(1));
                }
                self.0.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub fn producer(bootstrap: &str, linger_ms: &str) -> (ThreadedProducer<Context>, Arc<Delivered>) {
    let delivered = Arc::new(Delivered {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Histogram::new(3).expect("histogram")),
        start: Instant::now(),
    });
    let producer = super::client(bootstrap)
        .set("acks", "all")
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Context(delivered.clone()))
        .expect("producer");
    (producer, delivered)
}

pub fn send(
    producer: &ThreadedProducer<Context>,
    topic: &str,
    partitions: i32,
    i: u64,
    payload: &[u8],
    start: Instant,
) {
    let mut opaque = Box::new(start.elapsed().as_micros() as u64);
    loop {
        let record =
            BaseRecord::with_opaque_to(topic, opaque).partition((i % partitions as u64) as i32).payload(payload);
        match producer.send::<[u8], [u8]>(record) {
            Ok(()) => return,
            Err((_, record)) => {
                opaque = record.delivery_opaque;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

pub fn wait_for(delivered: &Delivered, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered.ok.load(Ordering::Relaxed) + delivered.failed.load(Ordering::Relaxed) < count {
        assert!(Instant::now() < deadline, "deliveries stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Produces `rate` records per second for `seconds` on an open-loop schedule and prints the
/// delivery latency percentiles.
pub fn latency(bootstrap: &str, topic: &str, partitions: i32, rate: u64, seconds: u64) {
    // A latency-minded producer: linger 1 ms (the throughput runs use librdkafka's default 5 ms).
    let (producer, delivered) = producer(bootstrap, "1");
    let payload = vec![b'l'; RECORD_BYTES];
    let total = rate * seconds;
    let start = Instant::now();
    for i in 0..total {
        // Open-loop schedule: record i is due at i / rate seconds.
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send(&producer, topic, partitions, i, &payload, delivered.start);
    }
    wait_for(&delivered, total);
    let histogram = delivered.latencies.lock().expect("histogram");
    println!(
        "latency  partitions={partitions:<3} rate={rate}/s for {seconds} s: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms ({} failed)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        delivered.failed.load(Ordering::Relaxed)
    );
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = super::client(bootstrap).create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime.block_on(admin.create_topics([&new_topic], &AdminOptions::new())).expect("create topic");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
