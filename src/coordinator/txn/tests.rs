//! The transaction coordinator over a real log: a transaction left open on a partition that no
//! transaction in progress accounts for is aborted there, so the last stable offset moves on.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::{TransactionCoordinator, TxnSettings};
use crate::config::Durability;
use crate::coordinator::group::{GroupCoordinator, GroupLimits};
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::log::batch::{self, tests::batch as make_batch};
use crate::log::open_for_tests;

const LIMITS: GroupLimits = GroupLimits {
    session_timeout_ms_min: 6_000,
    session_timeout_ms_max: 300_000,
    initial_rebalance_delay_ms: 0,
    members_max: 100,
};

/// A transactional batch of `count` records from `producer_id` at epoch 0, sequence `sequence`.
fn transactional_batch(producer_id: i64, sequence: i32, count: i32) -> bytes::Bytes {
    let mut bytes = BytesMut::from(&make_batch(count, b"late", Some((producer_id, 0, sequence)))[..]);
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
    (&mut bytes[21..23]).put_i16(attributes);
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.freeze()
}

/// A write that reached a partition outside any transaction the coordinator knows (as a write
/// landing after its transaction's marker would) holds the last stable offset back; two timer
/// passes later it is aborted there: the last stable offset is the high watermark again and a
/// read_committed reader is told the records are aborted.
#[tokio::test]
async fn a_hanging_transaction_is_aborted_on_its_partition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let groups = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("groups");
    let producer_ids = Arc::new(ProducerIdManager::new(log.metadata_store()));
    let settings =
        TxnSettings { max_timeout_ms: 900_000, id_expiration_ms: 604_800_000, abort_check_interval_ms: 3_600_000 };
    let coordinator = TransactionCoordinator::open(log.clone(), producer_ids, groups, settings).await.expect("open");
    let topic = log.create_topic("hanging", 1, BTreeMap::new(), false).await.expect("topic");
    let partition = topic.partitions[0].clone();

    let valid = batch::validate(&transactional_batch(4242, 0, 3), 1 << 20).expect("valid");
    let appended = log.submit_append(&topic, &partition, valid).await.expect("queued");
    appended.await.expect("reply").expect("appended");
    assert_eq!((partition.high_watermark(), partition.last_stable_offset()), (3, 0), "the open transaction holds it");

    coordinator.tick().await;
    assert_eq!(partition.last_stable_offset(), 0, "one pass only suspects it");
    coordinator.tick().await;
    assert_eq!((partition.high_watermark(), partition.last_stable_offset()), (4, 4), "aborted by a marker at 3");
    let aborted = partition.aborted_between(0, 4);
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id, aborted[0].first_offset, aborted[0].last_offset), (4242, 0, 3));
    assert_eq!(coordinator.stats().hanging_aborted.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(partition.open_transactions().is_empty());
}

/// A leader that does not coordinate a producer's id lets a write continue a transaction open on
/// the partition at its epoch without asking the coordinator, but not once a marker ending that
/// transaction is on its way, nor after it is durable.
#[tokio::test]
async fn a_write_continues_a_transaction_only_until_its_marker_is_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let topic = log.create_topic("continues", 1, BTreeMap::new(), false).await.expect("topic");
    let partition = topic.partitions[0].clone();
    assert!(!partition.transaction_continues(77, 0), "no transaction open yet");
    let valid = batch::validate(&transactional_batch(77, 0, 2), 1 << 20).expect("valid");
    log.submit_append(&topic, &partition, valid).await.expect("queued").await.expect("reply").expect("appended");
    assert!(partition.transaction_continues(77, 0));
    assert!(!partition.transaction_continues(77, 1), "another epoch does not continue it");
    assert!(!partition.transaction_continues(78, 0), "nor another producer");
    // The first poll of the markers' future queues the marker; the writer thread reports it
    // durable later, and while the future is pending the marker is on its way. The writer thread
    // may also finish within that first poll: then the window is not seen, and the next
    // producer tries again.
    let mut seen_on_its_way = false;
    for producer_id in 77..177 {
        if producer_id > 77 {
            let valid = batch::validate(&transactional_batch(producer_id, 0, 2), 1 << 20).expect("valid");
            log.submit_append(&topic, &partition, valid)
                .await
                .expect("queued")
                .await
                .expect("reply")
                .expect("appended");
            assert!(partition.transaction_continues(producer_id, 0));
        }
        let markers = log.write_markers(vec![partition.clone()], producer_id, 0, true, 0);
        tokio::pin!(markers);
        let written = match futures::poll!(markers.as_mut()) {
            std::task::Poll::Ready(written) => written,
            std::task::Poll::Pending => {
                assert!(!partition.transaction_continues(producer_id, 0), "a marker on its way ends it");
                seen_on_its_way = true;
                markers.await
            }
        };
        assert!(written.expect("markers").into_iter().all(|r| r.is_ok()));
        assert!(!partition.transaction_continues(producer_id, 0), "ended by the durable marker");
        if seen_on_its_way {
            break;
        }
    }
    assert!(seen_on_its_way, "the writer thread made 100 markers durable within one poll each");
}
