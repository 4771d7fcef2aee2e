//! Tiering benchmarks, without the network in front of the log:
//! 1. remote log manager throughput: a backlog appended to one partition, uploaded as segments (MB/s);
//! 2. catch-up read: a consumer-like reader of that backlog from offset 0 once the hot tier has
//!    dropped it, 1 MiB per read, so every byte comes from the object store (MB/s);
//! 3. PUTs per hour at 1, 16 and 100 partitions under a steady 10 MB/s, with the default
//!    `segment.bytes` / `segment.ms` scaled down by `SCALE` so that a short run stands for a long
//!    one: the count measured over D seconds is what D × SCALE seconds of real time would see.
//!
//! `cargo bench --bench tier`. Environment: `ZOMBI_BENCH_TIER_MB` (backlog, default 1024),
//! `ZOMBI_BENCH_PUT_SECS` (default 120, 0 skips part 3), and `ZOMBI_BENCH_S3_ENDPOINT` with
//! `ZOMBI_BENCH_S3_BUCKET` (an existing bucket) to run against S3 instead of a directory.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zombi::config::Config;
use zombi::log::{ReadRequest, batch};
use zombi::unified::UnifiedLog;
use zombi::unified::remote_log_manager::RemoteLogManager;

const RECORD_BYTES: usize = 1024;
const SCALE: i64 = 10;

fn make_batch(records: usize, timestamp: i64) -> Bytes {
    support::make_batch(records, RECORD_BYTES, timestamp)
}

async fn open(dir: &std::path::Path) -> UnifiedLog {
    let mut args = vec!["zombi".to_string(), "--data-dir".into(), dir.display().to_string()];
    if let (Ok(endpoint), Ok(bucket)) =
        (std::env::var("ZOMBI_BENCH_S3_ENDPOINT"), std::env::var("ZOMBI_BENCH_S3_BUCKET"))
    {
        let object_store = format!("s3://{bucket}/bench-{}-{}", std::process::id(), zombi::log::now_ms());
        args.extend(["--object-store".into(), object_store, "--s3-endpoint".into(), endpoint]);
    }
    let config = Config::try_parse_from(args).expect("config");
    let log = UnifiedLog::open(&config).await.expect("open");
    println!("object store: {}", log.tier().store().describe());
    log
}

fn configs(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

async fn append(log: &UnifiedLog, topic: &str, partition: usize, bytes: &Bytes) {
    let topic = log.log().topic(topic).expect("topic");
    let batches = batch::validate(bytes, 2 << 20).expect("valid");
    let receiver = log.log().submit_append(&topic, &topic.partitions[partition], batches).await.expect("queued");
    receiver.await.expect("reply").expect("appended");
}

async fn uploads_and_catch_up(megabytes: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path()).await;
    let topic_configs =
        configs(&[("segment.ms", "1".into()), ("local.retention.ms", "0".into()), ("retention.ms", "-1".into())]);
    let topic = log.log().create_topic("backlog", 1, topic_configs, false).await.expect("topic");
    let partition = topic.partitions[0].clone();
    let bytes = make_batch(1024, zombi::log::now_ms());
    for _ in 0..megabytes {
        append(&log, "backlog", 0, &bytes).await;
    }
    let total = megabytes as f64 * bytes.len() as f64;
    let mut manager = RemoteLogManager::new(log.clone());
    let start = Instant::now();
    while partition.remote_end() < partition.high_watermark() {
        manager.pass().await;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "rlm        {megabytes} MiB in {} segments: {seconds:.1} s, {:.0} MB/s to the object store",
        partition.remote_segments().len(),
        total / seconds / 1e6
    );
    while partition.local_start() < partition.high_watermark() {
        manager.pass().await;
    }
    let start = Instant::now();
    let mut offset = 0;
    let mut read = 0usize;
    while offset < partition.high_watermark() {
        let request = ReadRequest {
            partition: partition.clone(),
            offset,
            max_bytes: 1 << 20,
            at_least_one: true,
            isolation: Default::default(),
            verify_checksums: false,
        };
        let result = log.read(vec![request], 1 << 20).await.pop().expect("result").expect("read");
        let last = zombi::tier::segment::Segment::scan(result.records.clone()).expect("batches").info().expect("one");
        read += result.records.len();
        offset = last.next_offset;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "catch-up   {:.0} MiB from offset 0, all from the object store: {seconds:.1} s, {:.0} MB/s (GETs: {})",
        read as f64 / (1 << 20) as f64,
        read as f64 / seconds / 1e6,
        log.tier().request_counts().gets.load(Ordering::Relaxed)
    );
    log.log().close().await;
}

async fn puts_per_hour(partitions: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path()).await;
    let topic_configs = configs(&[
        ("segment.bytes", (64 * 1024 * 1024 / SCALE).to_string()),
        ("segment.ms", (600_000 / SCALE).to_string()),
    ]);
    let topic = log.log().create_topic("steady", partitions as i32, topic_configs, false).await.expect("topic");
    let manager_log = log.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let manager = tokio::spawn(zombi::unified::remote_log_manager::run(manager_log, stopped));
    // 10 MB/s in ticks of 100 ms: 1 MB per tick spread over the partitions.
    let records_per_tick = 1_000_000 / RECORD_BYTES;
    let per_partition = (records_per_tick / partitions).max(1);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        let bytes = make_batch(per_partition, zombi::log::now_ms());
        for partition in 0..partitions {
            append(&log, "steady", partition, &bytes).await;
        }
    }
    let _ = stop.send(true);
    let _ = manager.await;
    let uploads: u64 = topic.partitions.iter().map(|p| p.tier_stats.uploaded_segments.load(Ordering::Relaxed)).sum();
    let stood_for = seconds as f64 * SCALE as f64;
    println!(
        "PUTs       {partitions:>3} partitions, 10 MB/s: {uploads} segments in {seconds} s at 1/{SCALE} scale \
         = {:.0} PUTs per hour at the defaults (64 MiB, 10 min)",
        uploads as f64 * 3600.0 / stood_for
    );
    log.log().close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        uploads_and_catch_up(support::env_number("ZOMBI_BENCH_TIER_MB", 1024)).await;
        let seconds = support::env_number("ZOMBI_BENCH_PUT_SECS", 120);
        if seconds > 0 {
            for partitions in [1, 16, 100] {
                puts_per_hour(partitions, seconds).await;
            }
        }
    });
}
