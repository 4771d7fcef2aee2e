//! The remote log manager, remote reads and recovery against the local-directory object store, pass by pass.
//! (tests/it/tiering.rs runs the same behaviour through Kafka clients against a real S3 server.)

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::UnifiedLog;
use super::remote_log_manager::RemoteLogManager;
use crate::config::Config;
use crate::log::batch::{self, tests::batch as make_batch};
use crate::log::{LogError, ReadRequest};
use crate::tier::segment::{self, Segment, SegmentInfo};

async fn open(data_dir: &Path, objects: &Path) -> UnifiedLog {
    let object_store = format!("file://{}", objects.display());
    let args = ["zombi", "--data-dir", data_dir.to_str().unwrap(), "--object-store", &object_store];
    let config = Config::try_parse_from(args).expect("config");
    UnifiedLog::open(&config).await.expect("open")
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Appends `batches` batches of 5 records each with distinct values.
async fn append(log: &UnifiedLog, topic: &str, batches: usize) {
    let topic = log.log().topic(topic).expect("topic");
    for i in 0..batches {
        let bytes = make_batch(5, &[i as u8; 40], None);
        let valid = batch::validate(&bytes, 1 << 20).expect("valid");
        let receiver = log.log().submit_append(&topic, &topic.partitions[0], valid).await.expect("queued");
        receiver.await.expect("reply").expect("appended");
    }
}

/// Reads partition 0 from `from` to the high watermark, batch by batch.
async fn read_all(log: &UnifiedLog, topic: &str, from: i64) -> Result<Bytes, LogError> {
    let partition = log.log().topic(topic).expect("topic").partitions[0].clone();
    let mut out = BytesMut::new();
    let mut offset = from;
    while offset < partition.high_watermark() {
        let request = ReadRequest {
            partition: partition.clone(),
            offset,
            max_bytes: 1500,
            at_least_one: true,
            isolation: Default::default(),
            verify_checksums: true,
        };
        let read = log.read(vec![request], 1 << 20).await.pop().expect("one result")?;
        let info = Segment::scan(read.records.clone()).expect("whole batches").info().expect("not empty");
        assert!(info.base_offset <= offset && info.next_offset > offset, "the read starts at the offset");
        out.extend_from_slice(&read.records);
        offset = info.next_offset;
    }
    Ok(out.freeze())
}

/// Runs remote log manager passes until one changes nothing (bounded).
async fn settle(manager: &mut RemoteLogManager, log: &UnifiedLog, topic: &str) {
    let partition = log.log().topic(topic).expect("topic").partitions[0].clone();
    let mut last = None;
    for _ in 0..200 {
        manager.pass().await;
        let now = (partition.remote_end(), partition.local_start(), partition.log_start());
        if last == Some(now) {
            return;
        }
        last = Some(now);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the remote log manager never settled");
}

async fn data_objects(log: &UnifiedLog) -> Vec<String> {
    log.tier().store().list("data/").await.expect("list").into_iter().map(|o| o.key).collect()
}

#[tokio::test]
async fn uploads_by_size_trims_the_hot_tier_and_reads_back_byte_exact() {
    let (dir, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(dir.path(), objects.path()).await;
    // Batches are about 290 bytes: three make a segment; the records are from 2023, so a local
    // retention of ten minutes drops every uploaded segment from the hot tier at once.
    let topic_configs = configs(&[("segment.bytes", "1000"), ("segment.ms", "3600000")]);
    log.log().create_topic("t", 1, topic_configs, false).await.expect("topic");
    append(&log, "t", 50).await;
    let before = read_all(&log, "t", 0).await.expect("read");
    let partition = log.log().topic("t").unwrap().partitions[0].clone();

    let mut manager = RemoteLogManager::new(log.clone());
    settle(&mut manager, &log, "t").await;

    let segments = partition.remote_segments();
    assert!(segments.len() >= 10, "uploaded {} segments", segments.len());
    assert_eq!(segments[0].base_offset, 0);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].next_offset, pair[1].base_offset, "segments are contiguous");
        assert!(pair[0].size_bytes <= 1000);
    }
    // Only full segments go by size: the tail below segment.bytes waits for segment.ms.
    assert!(partition.remote_end() < partition.high_watermark());
    assert_eq!(partition.local_start(), partition.remote_end(), "uploaded data left the hot tier");
    let first_local = log.log().first_local_offset(&partition).await.unwrap().expect("tail is local");
    assert_eq!(first_local, partition.local_start());
    assert_eq!(data_objects(&log).await.len(), segments.len());

    let after = read_all(&log, "t", 0).await.expect("read back");
    assert_eq!(after, before, "records read from the object store are the bytes that were appended");
    // A read in the middle of a segment starts with the batch holding the offset.
    let middle = read_all(&log, "t", 7).await.expect("read from 7");
    assert!(before.ends_with(&middle));
    // Time lookups find records that are only in the object store.
    let found = log.offset_for_timestamp(&partition, 1_700_000_000_000).await.expect("lookup");
    assert_eq!(found, Some((0, 1_700_000_000_000)));
    assert_eq!(log.max_timestamp(&partition).await.expect("max"), Some((0, 1_700_000_000_000)));
    log.log().close().await;
}

#[tokio::test]
async fn a_segment_uploaded_before_a_crash_is_adopted_and_orphans_are_deleted() {
    let (dir, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(dir.path(), objects.path()).await;
    log.log().create_topic("t", 1, configs(&[("segment.ms", "3600000")]), false).await.expect("topic");
    append(&log, "t", 10).await;
    let partition = log.log().topic("t").unwrap().partitions[0].clone();
    let bytes = read_all(&log, "t", 0).await.expect("read");
    let info = Segment::scan(bytes.clone()).unwrap().info().unwrap();
    let key = |info: &SegmentInfo| segment::segment_key(partition.topic_id, 0, info);
    // A crash after the PUT and before the index write leaves this object behind...
    let store = log.tier().store();
    store.put_if_absent(&key(&info), bytes.clone()).await.unwrap();
    // ...and these are not ours to keep: a corrupt object after it, a copy under a wrong name.
    let junk = SegmentInfo { base_offset: info.next_offset, next_offset: info.next_offset + 5, ..info };
    store.put_if_absent(&key(&junk), Bytes::from_static(b"junk")).await.unwrap();
    let renamed = SegmentInfo { max_timestamp: info.max_timestamp + 1, ..info };
    store.put_if_absent(&key(&renamed), bytes).await.unwrap();

    let mut manager = RemoteLogManager::new(log.clone());
    manager.pass().await;
    assert_eq!(partition.remote_segments(), vec![info], "the complete upload was adopted");
    assert_eq!(data_objects(&log).await, vec![key(&info)], "orphans are gone and nothing was uploaded twice");
    assert_eq!(partition.tier_stats.uploaded_segments.load(std::sync::atomic::Ordering::Relaxed), 0);
    log.log().close().await;
}

#[tokio::test]
async fn retention_deletes_segments_and_moves_the_log_start() {
    let (dir, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(dir.path(), objects.path()).await;
    log.log()
        .create_topic("t", 1, configs(&[("segment.bytes", "1000"), ("segment.ms", "1")]), false)
        .await
        .expect("topic");
    append(&log, "t", 20).await;
    let mut manager = RemoteLogManager::new(log.clone());
    settle(&mut manager, &log, "t").await;
    let partition = log.log().topic("t").unwrap().partitions[0].clone();
    assert_eq!(partition.remote_end(), partition.high_watermark(), "segment.ms uploads the tail too");
    assert!(!data_objects(&log).await.is_empty());

    // The records are from 2023: a week's retention expires all of them, remote part included.
    log.log().enforce_retention().await.expect("retention");
    assert_eq!(partition.log_start(), partition.high_watermark());
    settle(&mut manager, &log, "t").await;
    assert!(partition.remote_segments().is_empty());
    assert!(data_objects(&log).await.is_empty(), "expired segments are deleted from the object store");
    let request = ReadRequest {
        partition: partition.clone(),
        offset: 0,
        max_bytes: 100,
        at_least_one: true,
        isolation: Default::default(),
        verify_checksums: true,
    };
    assert!(matches!(log.read(vec![request], 100).await.pop(), Some(Err(LogError::OffsetOutOfRange))));
    log.log().close().await;
}

#[tokio::test]
async fn a_fresh_data_dir_recovers_topics_from_the_object_store() {
    let objects = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(first_dir.path(), objects.path()).await;
    let topic_configs = configs(&[("segment.bytes", "1000"), ("segment.ms", "1"), ("retention.ms", "-1")]);
    let created = log.log().create_topic("orders.eu-1", 1, topic_configs.clone(), false).await.expect("topic");
    append(&log, "orders.eu-1", 30).await;
    let mut manager = RemoteLogManager::new(log.clone());
    settle(&mut manager, &log, "orders.eu-1").await;
    let high_watermark = created.partitions[0].high_watermark();
    assert_eq!(created.partitions[0].remote_end(), high_watermark);
    let bytes = read_all(&log, "orders.eu-1", 0).await.expect("read");
    log.log().close().await;
    drop(log);

    let recovered = open(second_dir.path(), objects.path()).await;
    let topic = recovered.log().topic("orders.eu-1").expect("the topic is back");
    assert_eq!(topic.id, created.id);
    assert_eq!(topic.config.overrides, topic_configs);
    let partition = topic.partitions[0].clone();
    assert_eq!((partition.log_start(), partition.high_watermark()), (0, high_watermark));
    assert_eq!(read_all(&recovered, "orders.eu-1", 0).await.expect("read"), bytes);
    // New records continue the offsets.
    append(&recovered, "orders.eu-1", 1).await;
    assert_eq!(partition.high_watermark(), high_watermark + 5);
    recovered.log().close().await;
}

#[tokio::test]
async fn deleting_a_topic_deletes_its_objects() {
    let (dir, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(dir.path(), objects.path()).await;
    let topic = log.log().create_topic("t", 1, configs(&[("segment.ms", "1")]), false).await.expect("topic");
    append(&log, "t", 3).await;
    let mut manager = RemoteLogManager::new(log.clone());
    settle(&mut manager, &log, "t").await;
    assert!(!data_objects(&log).await.is_empty());
    log.log().delete_topic("t").await.expect("deleted");
    manager.pass().await;
    assert!(data_objects(&log).await.is_empty());
    let described = log.tier().store().list(&format!("{}{}/", segment::TOPIC_META_PREFIX, topic.id)).await.unwrap();
    assert!(described.is_empty(), "a fresh broker must not bring the topic back");
    log.log().close().await;
}

/// A tail shorter than a segment is measured, not uploaded, on the first pass after a start; the
/// batches appended after it count towards the segment, so it goes once they complete it.
#[tokio::test]
async fn a_short_tail_waits_for_its_segment_to_fill() {
    let (dir, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = open(dir.path(), objects.path()).await;
    // Batches are about 290 bytes: two are short of a segment, four fill it.
    let topic_configs = configs(&[("segment.bytes", "1000"), ("segment.ms", "3600000")]);
    log.log().create_topic("t", 1, topic_configs, false).await.expect("topic");
    append(&log, "t", 2).await;
    let partition = log.log().topic("t").unwrap().partitions[0].clone();
    let mut manager = RemoteLogManager::new(log.clone());
    settle(&mut manager, &log, "t").await;
    assert_eq!(partition.remote_end(), 0, "a tail of two batches is not a segment");
    assert!(data_objects(&log).await.is_empty());

    append(&log, "t", 2).await;
    settle(&mut manager, &log, "t").await;
    let segments = partition.remote_segments();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(segments[0].base_offset, 0);
    assert!(segments[0].size_bytes <= 1000 && segments[0].next_offset >= 15, "{:?}", segments[0]);
    assert_eq!(data_objects(&log).await.len(), 1);
}
