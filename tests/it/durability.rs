//! Acknowledged writes survive `kill -9`: a producer runs at full speed, the broker is killed in the
//! middle, restarted on the same data dir, and every record that was acknowledged must be read back
//! at its acknowledged offset, byte for byte, with no hole in the offsets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::common::{TestBroker, WAIT_MAX, consume, unique_topic};

/// (partition, offset, payload) of an acknowledged record.
type Acked = (i32, i64, Vec<u8>);

/// What happens to the data dir between the kill and the restart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AfterKill {
    KeepDataDir,
    /// The disk is lost: only what the object store holds (segments, write-ahead log) is left.
    WipeDataDir,
}

async fn kill_under_load_keeps_acknowledged_records(args: &[&str]) {
    kill_under_load(args, AfterKill::KeepDataDir).await;
}

pub async fn kill_under_load(args: &[&str], after_kill: AfterKill) {
    let mut broker = TestBroker::start(args);
    let topic = unique_topic("kill9");
    let producer = broker.producer(&[("acks", "all"), ("message.timeout.ms", "8000"), ("linger.ms", "2")]);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let load = {
        let (acked, acked_count, stop, topic) = (acked.clone(), acked_count.clone(), stop.clone(), topic.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let mut payload = format!("record-{i:010}-").into_bytes();
                payload.resize(1024, b'a' + (i % 26) as u8);
                let partition = (i % 2) as i32;
                let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(partition).payload(&payload);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        let (acked, acked_count) = (acked.clone(), acked_count.clone());
                        tasks.spawn(async move {
                            if let Ok(Ok(done)) = delivery.await {
                                acked.lock().expect("lock").push((done.partition, done.offset, payload));
                                acked_count.fetch_add(1, Ordering::Release);
                            }
                        });
                        i += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let deadline = Instant::now() + WAIT_MAX;
    while acked_count.load(Ordering::Acquire) < 3000 {
        assert!(Instant::now() < deadline, "the producer made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Kill with requests in flight, then let the producer see the broken connection.
    broker.kill9();
    let acked_before_kill = acked_count.load(Ordering::Acquire);
    stop.store(true, Ordering::Release);
    let address = broker.bootstrap.clone();
    if after_kill == AfterKill::WipeDataDir {
        broker.wipe_data_dir();
    }
    broker.kill_and_restart();
    assert_eq!(broker.bootstrap, address);
    load.await.expect("load task");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= acked_before_kill);

    let consumer = broker.consumer();
    let mut expected: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    for (partition, offset, payload) in acked {
        assert!(expected.insert((partition, offset), payload).is_none(), "one offset acknowledged twice");
    }
    for partition in 0..2 {
        let (low, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(30)).expect("watermarks");
        assert_eq!(low, 0);
        let records = consume(&broker, &topic, &[partition], high as usize);
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..high).collect::<Vec<_>>(), "offsets are dense after the crash");
        for record in records {
            if let Some(payload) = expected.remove(&(partition, record.offset)) {
                assert_eq!(record.value.as_deref(), Some(payload.as_slice()), "acknowledged record changed");
            }
        }
    }
    assert!(expected.is_empty(), "{} acknowledged records are missing after kill -9", expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_record_with_fsync() {
    kill_under_load_keeps_acknowledged_records(&["--durability", "fsync", "--num-partitions", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_record_with_periodic_fsync() {
    kill_under_load_keeps_acknowledged_records(&["--durability", "periodic", "--num-partitions", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_topics_offsets_and_producer_ids() {
    let mut broker = TestBroker::start(&[]);
    let topic = unique_topic("restart");
    let producer = broker.producer(&[("enable.idempotence", "true")]);
    for i in 0..10 {
        let payload = format!("v{i}");
        let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(payload.as_bytes());
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    }
    drop(producer);
    assert!(broker.terminate(), "SIGTERM ends zombi cleanly");
    let address = broker.bootstrap.clone();
    broker.kill_and_restart();
    assert_eq!(broker.bootstrap, address);
    // A new idempotent producer gets a new producer id and appends after the old records.
    let producer = broker.producer(&[("enable.idempotence", "true")]);
    let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).payload(b"after");
    let delivered =
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).expect("sent");
    assert_eq!(delivered.offset, 10);
    let records = consume(&broker, &topic, &[0], 11);
    let values: Vec<_> =
        records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()).collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.push("after".into());
    assert_eq!(values, expected);
}
