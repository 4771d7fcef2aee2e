//! Iceberg sink benchmarks, without the network in front of the log:
//! 1. throughput: a backlog (lz4 batches of ~500-byte text records with a key and two headers,
//!    over 4 partitions) turned into Parquet and committed; records/s and MB/s of record bytes per
//!    CPU second of the process (only the sink runs meanwhile), and the files it made;
//! 2. freshness at 10 MB/s: appends every 10 ms for `ZOMBI_BENCH_ICEBERG_SECS`; for each append,
//!    the time until a commit holds it (the sink's committed offset passes it); data files made.
//!
//! 3. compaction at low traffic: `ZOMBI_BENCH_ICEBERG_COMMITS` commits of ~440 KB of records each
//!    (a minute of a quiet topic at the default interval, replayed back to back) with maintenance
//!    after every commit at the default settings; the data files the commits wrote (files per
//!    hour without compaction) against the live files at the end (with it), and how many times
//!    compaction rewrote each byte.
//!
//! `cargo bench --bench iceberg`. Environment: `ZOMBI_BENCH_ICEBERG_MB` (backlog of record bytes,
//! default 512), `ZOMBI_BENCH_ICEBERG_SECS` (default 30, 0 skips part 2),
//! `ZOMBI_BENCH_ICEBERG_INTERVAL_MS` (commit interval of part 2, default 60000 as shipped),
//! `ZOMBI_BENCH_ICEBERG_COMMITS` (default 240, four hours' worth; 0 skips part 3).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use tokio::sync::watch;
use zombi::config::Config;
use zombi::iceberg::{IcebergSink, status};
use zombi::log::batch;
use zombi::unified::UnifiedLog;

const PARTITIONS: usize = 4;
const RECORDS_PER_BATCH: usize = 200;
const WORDS: &[&str] =
    &["order", "created", "shipped", "paid", "refunded", "customer", "eu", "us", "sku", "qty", "price", "note"];

/// A batch of text records: keys, two headers, values that compress about as JSON events do.
fn make_batch(seed: u64, timestamp: i64) -> (Bytes, usize) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut record_bytes = 0;
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            let mut value = Vec::with_capacity(520);
            while value.len() < 500 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize].as_bytes());
                value.extend_from_slice(format!("={} ", state % 100_000).as_bytes());
            }
            let key = format!("customer-{}", state % 10_000);
            let mut headers = IndexMap::new();
            headers.insert(StrBytes::from_static_str("trace"), Some(Bytes::from(format!("{state:x}"))));
            headers.insert(StrBytes::from_static_str("source"), Some(Bytes::from_static(b"bench")));
            record_bytes += key.len() + value.len() + 5 + 16 + 6 + 5;
            support::record(i as i64, timestamp, Some(Bytes::from(key)), Some(Bytes::from(value)), headers)
        })
        .collect();
    (support::encode(&records, Compression::Lz4), record_bytes)
}

/// User plus system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

async fn open(dir: &std::path::Path, interval_ms: u64) -> (UnifiedLog, Arc<IcebergSink>) {
    open_with(dir, interval_ms, 0).await
}

async fn open_with(dir: &std::path::Path, interval_ms: u64, maintenance_ms: u64) -> (UnifiedLog, Arc<IcebergSink>) {
    let args = [
        "zombi".to_string(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--iceberg-commit-interval-ms".into(),
        interval_ms.to_string(),
        "--iceberg-compaction-interval-ms".into(),
        maintenance_ms.to_string(),
        "--log-retention-ms=-1".into(),
    ];
    let config = Config::try_parse_from(args).expect("config");
    let log = UnifiedLog::open(&config).await.expect("open");
    (log, IcebergSink::new(config.iceberg.clone()))
}

async fn append(log: &UnifiedLog, topic: &str, partition: usize, bytes: &Bytes) {
    let topic = log.log().topic(topic).expect("topic");
    let batches = batch::validate(bytes, 2 << 20).expect("valid");
    let receiver = log.log().submit_append(&topic, &topic.partitions[partition], batches).await.expect("queued");
    receiver.await.expect("reply").expect("appended");
}

fn table(sink: &IcebergSink, log: &UnifiedLog, topic: &str) -> zombi::iceberg::TopicIcebergStatus {
    status(sink, log.log()).topics.into_iter().find(|t| t.topic == topic).expect("topic status")
}

async fn throughput(megabytes: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, sink) = open(dir.path(), 200).await;
    log.log().create_topic("backlog", PARTITIONS as i32, Default::default(), false).await.expect("topic");
    let (mut record_bytes, mut batch_bytes, mut n) = (0usize, 0usize, 0u64);
    while record_bytes < (megabytes as usize) << 20 {
        let (bytes, records) = make_batch(n, zombi::log::now_ms());
        append(&log, "backlog", n as usize % PARTITIONS, &bytes).await;
        record_bytes += records;
        batch_bytes += bytes.len();
        n += 1;
    }
    let records = n as f64 * RECORDS_PER_BATCH as f64;
    let (stop, stopped) = watch::channel(false);
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let task = tokio::spawn(zombi::iceberg::run(sink.clone(), log.clone(), stopped));
    while table(&sink, &log, "backlog").records_behind > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu, seconds) = (cpu_seconds() - cpu, start.elapsed().as_secs_f64());
    let state = table(&sink, &log, "backlog");
    println!(
        "throughput {records:.0} records, {:.0} MB of records ({:.0} MB of lz4 batches) in {seconds:.1} s, \
         {cpu:.1} CPU s: {:.0} records/s and {:.0} MB/s of records per core; {} commits, {} files, {:.0} MB of Parquet",
        record_bytes as f64 / 1e6,
        batch_bytes as f64 / 1e6,
        records / cpu,
        record_bytes as f64 / cpu / 1e6,
        state.commits,
        state.data_files,
        state.data_file_bytes as f64 / 1e6
    );
    let _ = stop.send(true);
    let _ = task.await;
    log.log().close().await;
}

/// 10 MB/s of record bytes in batches every 10 ms; lag from append to a commit that holds it.
async fn freshness(seconds: u64, interval_ms: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, sink) = open(dir.path(), interval_ms).await;
    log.log().create_topic("fresh", PARTITIONS as i32, Default::default(), false).await.expect("topic");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(zombi::iceberg::run(sink.clone(), log.clone(), stopped));
    // ~10 MB/s: each batch carries ~110 KB of records, one every 10 ms.
    let mut pending: Vec<(usize, i64, Instant)> = Vec::new();
    let mut lags_ms: Vec<f64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0u64;
    while Instant::now() < deadline || !pending.is_empty() {
        ticks.tick().await;
        if Instant::now() < deadline {
            let (bytes, _) = make_batch(n, zombi::log::now_ms());
            let partition = n as usize % PARTITIONS;
            append(&log, "fresh", partition, &bytes).await;
            let end = log.log().topic("fresh").expect("topic").partitions[partition].high_watermark();
            pending.push((partition, end, Instant::now()));
            n += 1;
        }
        let committed: Vec<i64> = table(&sink, &log, "fresh").partitions.iter().map(|p| p.committed_offset).collect();
        pending.retain(|(partition, end, at)| {
            let done = committed[*partition] >= *end;
            if done {
                lags_ms.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            !done
        });
        if Instant::now() > deadline + Duration::from_millis(interval_ms * 3 + 30_000) {
            break;
        }
    }
    lags_ms.sort_by(f64::total_cmp);
    let at = |q: f64| lags_ms.get(((lags_ms.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
    let state = table(&sink, &log, "fresh");
    println!(
        "freshness  10 MB/s for {seconds} s, commit interval {interval_ms} ms: lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         {} commits, {} files ({:.0} files/hour at this rate)",
        at(0.5),
        at(0.99),
        at(1.0),
        state.commits,
        state.data_files,
        state.data_files as f64 * 3600.0 / seconds as f64
    );
    let _ = stop.send(true);
    let _ = task.await;
    log.log().close().await;
}

/// `commits` small commits with maintenance after each: files per hour with and without it.
async fn compaction(commits: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, sink) = open_with(dir.path(), 20, 20).await;
    log.log().create_topic("quiet", PARTITIONS as i32, Default::default(), false).await.expect("topic");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(zombi::iceberg::run(sink.clone(), log.clone(), stopped));
    let started = Instant::now();
    for n in 0..commits {
        for partition in 0..PARTITIONS {
            let (bytes, _) = make_batch(n * PARTITIONS as u64 + partition as u64, zombi::log::now_ms());
            append(&log, "quiet", partition, &bytes).await;
        }
        while table(&sink, &log, "quiet").commits <= n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // One more maintenance pass after the last commit.
    let compactions = table(&sink, &log, "quiet").compactions;
    let deadline = Instant::now() + Duration::from_secs(5);
    while table(&sink, &log, "quiet").compactions == compactions && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = table(&sink, &log, "quiet");
    let hours = commits as f64 / 60.0;
    println!(
        "compaction {commits} commits ({hours:.1} h at one a minute) in {:.0} s: {} files written by commits \
         ({:.0}/h, {:.0} KB each), {} live at the end ({:.1}/h); {} compactions rewrote {} files into {}, \
         {:.2} bytes rewritten per byte committed; {} snapshots expired, {} files deleted",
        started.elapsed().as_secs_f64(),
        state.data_files,
        state.data_files as f64 / hours,
        state.data_file_bytes as f64 / state.data_files.max(1) as f64 / 1e3,
        state.live_data_files.unwrap_or(0),
        state.live_data_files.unwrap_or(0) as f64 / hours,
        state.compactions,
        state.compaction_files_rewritten,
        state.compaction_files_written,
        state.compaction_bytes_rewritten as f64 / state.data_file_bytes.max(1) as f64,
        state.snapshots_expired,
        state.unreferenced_files_deleted,
    );
    let _ = stop.send(true);
    let _ = task.await;
    log.log().close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        throughput(support::env_number("ZOMBI_BENCH_ICEBERG_MB", 512)).await;
        let seconds = support::env_number("ZOMBI_BENCH_ICEBERG_SECS", 30);
        if seconds > 0 {
            freshness(seconds, support::env_number("ZOMBI_BENCH_ICEBERG_INTERVAL_MS", 60_000)).await;
        }
        let commits = support::env_number("ZOMBI_BENCH_ICEBERG_COMMITS", 240);
        if commits > 0 {
            compaction(commits).await;
        }
    });
}
