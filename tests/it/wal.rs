//! The shared write-ahead log on one broker (`--wal-store`): a produce is acknowledged only once
//! the object store holds its batch, so losing the whole data dir loses nothing acknowledged,
//! and a second process that claims the log fences the first one for good.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::common::{TestBroker, WAIT_MAX, consume, unique_topic};
use crate::durability::{AfterKill, kill_under_load};

fn flags(objects: &std::path::Path) -> Vec<String> {
    vec![
        "--object-store".into(),
        format!("file://{}", objects.join("bucket").display()),
        "--wal-store".into(),
        format!("file://{}", objects.join("wal").display()),
        "--wal-interval-ms".into(),
        "5".into(),
        "--num-partitions".into(),
        "2".into(),
        "--iceberg-enable".into(),
        "false".into(),
    ]
}

/// kill -9 under load, then the data dir is deleted: the restarted broker rebuilds its topics
/// from the bucket and its records from the write-ahead log, and every acknowledged record is
/// there at its offset, byte for byte, with the offsets dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_disk_loses_no_acknowledged_record() {
    let objects = tempfile::tempdir().expect("temp dir");
    let flags = flags(objects.path());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    kill_under_load(&args, AfterKill::WipeDataDir).await;
}

/// The same with the data dir kept: the local tail that the write-ahead log never acknowledged
/// is dropped, the rest is kept, offsets stay dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_the_write_ahead_log_keeps_every_acknowledged_record() {
    let objects = tempfile::tempdir().expect("temp dir");
    let flags = flags(objects.path());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    kill_under_load(&args, AfterKill::KeepDataDir).await;
}

async fn send(producer: &rdkafka::producer::FutureProducer, topic: &str, value: &str) -> Result<i64, String> {
    let record = FutureRecord::<[u8], [u8]>::to(topic).partition(0).payload(value.as_bytes());
    producer
        .send(record, Timeout::After(Duration::from_secs(10)))
        .await
        .map(|delivered| delivered.offset)
        .map_err(|(error, _)| error.to_string())
}

/// A broker paused (SIGSTOP) while another process of the same node claims the write-ahead log
/// never acknowledges again once resumed: its next object finds its slot sealed, and it stops.
/// The successor serves everything the first one acknowledged, and continues after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_is_fenced_by_its_successor() {
    let objects = tempfile::tempdir().expect("temp dir");
    let flags = flags(objects.path());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut first = TestBroker::start(&args);
    let topic = unique_topic("fenced");
    let producer = first.producer(&[("acks", "all"), ("message.timeout.ms", "10000")]);
    for i in 0..20 {
        assert_eq!(send(&producer, &topic, &format!("first-{i}")).await, Ok(i));
    }
    // The successor starts on its own data dir (its own disk) and the same object store.
    first.signal("-STOP");
    let second = TestBroker::start(&args);
    let successor = second.producer(&[("acks", "all")]);
    assert_eq!(send(&successor, &topic, "second-0").await, Ok(20));
    first.signal("-CONT");
    // Whatever the resumed broker does with a new produce, it is never an acknowledgement: its
    // write-ahead log is sealed, so it refuses, and then exits.
    let late = send(&producer, &topic, "late").await;
    assert!(late.is_err(), "a fenced broker acknowledged a produce: {late:?}");
    let status = first.wait_exit();
    assert_eq!(status.code(), Some(3), "a fenced broker stops");
    let records = consume(&second, &topic, &[0], 21);
    let values: Vec<String> =
        records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()).collect();
    let mut expected: Vec<String> = (0..20).map(|i| format!("first-{i}")).collect();
    expected.push("second-0".into());
    assert_eq!(values, expected);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..21).collect::<Vec<_>>());
    let _ = WAIT_MAX;
}

/// Data objects of streams the writer has moved on from, in the `wal/<node>/<epoch>/` layout
/// (every epoch but the newest), with their sizes.
fn retired_data_objects(wal: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    for node in std::fs::read_dir(wal).into_iter().flatten().flatten() {
        let mut epochs: Vec<std::path::PathBuf> =
            std::fs::read_dir(node.path()).into_iter().flatten().flatten().map(|e| e.path()).collect();
        epochs.sort();
        epochs.pop();
        for epoch in epochs {
            for object in std::fs::read_dir(&epoch).into_iter().flatten().flatten() {
                let size = object.metadata().map(|m| m.len()).unwrap_or(0);
                // 64 bytes: a seal, which stays.
                if size != 64 {
                    found.push((object.path(), size));
                }
            }
        }
    }
    found
}

/// Objects go once segments hold their records: with segments rolled every 200 ms and streams
/// every second, every data object of a retired stream is deleted, and every record is still
/// read back (from segments) byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_deleted_once_segments_hold_their_records() {
    let objects = tempfile::tempdir().expect("temp dir");
    let mut flags = flags(objects.path());
    flags.extend(
        ["--log-roll-ms", "200", "--wal-stream-roll-ms", "1000", "--log-local-retention-ms", "100"].map(String::from),
    );
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = TestBroker::start(&args);
    let topic = unique_topic("collected");
    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..200 {
        assert_eq!(send(&producer, &topic, &format!("v{i}")).await, Ok(i));
        if i % 40 == 39 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    }
    let wal = objects.path().join("wal/wal");
    let deadline = std::time::Instant::now() + WAIT_MAX;
    loop {
        let left = retired_data_objects(&wal);
        let streams = std::fs::read_dir(wal.join("0000000000")).map(|d| d.count()).unwrap_or(0);
        if left.is_empty() && streams >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retired objects never went: {left:?} ({streams} streams)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let records = consume(&broker, &topic, &[0], 200);
    let values: Vec<String> =
        records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()).collect();
    assert_eq!(values, (0..200).map(|i| format!("v{i}")).collect::<Vec<_>>());
    // The metrics count what happened: an object per acknowledged send at least (each one waited
    // for its own), their bytes, and the store's PUTs and DELETEs.
    let text = String::from_utf8(crate::http_client::get(&broker.http, "/metrics").body).expect("text");
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let objects = value("zombi_wal_objects_total");
    assert!(objects >= 200, "{objects} objects for 200 sends acknowledged one at a time");
    assert!(value("zombi_wal_bytes_total") >= 200 * 60);
    assert_eq!(value("zombi_wal_create_retries_total"), 0);
    assert!(value("zombi_wal_store_requests_total{operation=\"put\"}") >= objects);
    assert!(value("zombi_wal_store_requests_total{operation=\"delete\"}") >= 1);
}
