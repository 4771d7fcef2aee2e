//! Noisy neighbour: a quiet producer at a fixed rate (1 KiB records, acks=all, one partition)
//! measured alone, then next to a noisy producer flooding 16 partitions as fast as it can, then
//! next to the same noisy producer held to a `producer_byte_rate` quota (set with
//! AlterClientQuotas on its client id). Prints the quiet producer's delivery latency and the
//! noisy one's throughput for each run.
//!
//! `cargo bench --bench quotas -- [--rate R] [--seconds S] [--quota BYTES_PER_S]
//!  [--durability fsync|periodic]` (defaults: 2000 records/s, 10 s, 5 MB/s, fsync);
//! `ZOMBI_BIN=PATH` starts that broker binary instead of the one cargo built.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use support::broker::Broker;
use support::producer::{RECORD_BYTES, create_topic, latency};

const NOISY_CLIENT_ID: &str = "noisy";
const NOISY_PARTITIONS: i32 = 16;

struct Args {
    rate: u64,
    seconds: u64,
    quota: u64,
    durability: String,
}

fn parse_args() -> Args {
    let mut args = Args { rate: 2000, seconds: 10, quota: 5_000_000, durability: "fsync".into() };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rate" => args.rate = value().parse().expect("--rate R"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--quota" => args.quota = value().parse().expect("--quota BYTES_PER_S"),
            "--durability" => args.durability = value(),
            _ => {}
        }
    }
    args
}

/// Counts the noisy producer's acknowledged records.
struct Counter(Arc<AtomicU64>);

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A producer sending 1 KiB records to `topic` as fast as librdkafka takes them until `stop`,
/// counting its acknowledged records in `acked`.
fn flood(bootstrap: &str, topic: &str, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    let producer: ThreadedProducer<Counter> = support::client(bootstrap)
        .set("client.id", NOISY_CLIENT_ID)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        // A short queue, so that what is left when it stops drains quickly even under a quota.
        .set("queue.buffering.max.kbytes", "4096")
        .create_with_context(Counter(acked))
        .expect("noisy producer");
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let payload = vec![b'n'; RECORD_BYTES];
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let partition = (i % NOISY_PARTITIONS as u64) as i32;
            match producer.send(BaseRecord::<[u8], [u8]>::to(&topic).partition(partition).payload(&payload)) {
                Ok(()) => i += 1,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        // What is still queued is purged, not waited for.
        producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    })
}

/// Sets the noisy client id's `producer_byte_rate` with AlterClientQuotas over a plain socket
/// (the rdkafka crate has no client quota API).
fn set_quota(bootstrap: &str, bytes_per_second: u64) {
    let entry = EntryData::default()
        .with_entity(vec![
            EntityData::default()
                .with_entity_type(StrBytes::from_static_str("client-id"))
                .with_entity_name(Some(StrBytes::from_static_str(NOISY_CLIENT_ID))),
        ])
        .with_ops(vec![
            OpData::default()
                .with_key(StrBytes::from_static_str("producer_byte_rate"))
                .with_value(bytes_per_second as f64),
        ]);
    let request = AlterClientQuotasRequest::default().with_entries(vec![entry]);
    let version = 1;
    let mut header = RequestHeader::default();
    header.request_api_key = AlterClientQuotasRequest::KEY;
    header.request_api_version = version;
    header.correlation_id = 1;
    let mut payload = BytesMut::new();
    header.encode(&mut payload, AlterClientQuotasRequest::header_version(version)).expect("header");
    request.encode(&mut payload, version).expect("body");
    let mut stream = TcpStream::connect(bootstrap).expect("connect");
    stream.write_all(&(payload.len() as i32).to_be_bytes()).expect("write");
    stream.write_all(&payload).expect("write");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).expect("response");
    let mut frame = bytes::Bytes::from(frame);
    let header_version = ApiKey::AlterClientQuotas.response_header_version(version);
    ResponseHeader::decode(&mut frame, header_version).expect("header");
    let response = AlterClientQuotasResponse::decode(&mut frame, version).expect("response");
    assert!(response.entries.iter().all(|e| e.error_code == 0), "{response:?}");
}

/// One run: the quiet producer's latency, next to the noisy one when `noisy` is set.
fn run(bootstrap: &str, label: &str, noisy: bool, args: &Args, round: u32) {
    println!("-- {label}");
    let quiet_topic = format!("quiet-{round}-{}", std::process::id());
    create_topic(bootstrap, &quiet_topic, 1);
    let noisy_topic = format!("noisy-{round}-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let flooding = noisy.then(|| {
        create_topic(bootstrap, &noisy_topic, NOISY_PARTITIONS);
        let flooding = flood(bootstrap, &noisy_topic, stop.clone(), acked.clone());
        // The noisy producer is at full speed (and past the burst its quota allows a fresh
        // client) before the quiet one starts.
        std::thread::sleep(Duration::from_secs(3));
        flooding
    });
    let (start, acked_before) = (Instant::now(), acked.load(Ordering::Relaxed));
    latency(bootstrap, &quiet_topic, 1, args.rate, args.seconds);
    if let Some(flooding) = flooding {
        let (records, seconds) = (acked.load(Ordering::Relaxed) - acked_before, start.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        flooding.join().expect("noisy producer");
        println!(
            "noisy    {NOISY_PARTITIONS} partitions, as fast as it can: {:.1} MB/s acknowledged during the quiet run",
            records as f64 * RECORD_BYTES as f64 / 1e6 / seconds
        );
    }
}

fn main() {
    let args = parse_args();
    let flags = ["--durability", args.durability.as_str()];
    let broker = Broker::start(None, &flags);
    println!(
        "zombi noisy-neighbour bench: quiet producer {} records/s of {} bytes for {} s, acks=all, durability={}, \
         noisy quota {} B/s",
        args.rate, RECORD_BYTES, args.seconds, args.durability, args.quota
    );
    run(&broker.bootstrap, "quiet producer alone", false, &args, 1);
    run(&broker.bootstrap, "quiet producer next to a noisy one without a quota", true, &args, 2);
    set_quota(&broker.bootstrap, args.quota);
    run(&broker.bootstrap, "quiet producer next to the noisy one held to its quota", true, &args, 3);
}
