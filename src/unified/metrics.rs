//! Tiering's series at scrape time: each partition's local start, remote end, segments and
//! uploads, and the object store's request counts.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::UnifiedLog;
use crate::metrics::{PartitionLabels, ScrapeCollector, encode_metric};

/// Reads the tiering state when `/metrics` is scraped.
pub struct TierCollector {
    pub unified: UnifiedLog,
}

impl ScrapeCollector for TierCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_tiering(&mut encoder, &crate::tier::status(self.unified.log(), self.unified.tier()))?;
        match self.unified.wal() {
            Some(wal) => encode_wal(&mut encoder, wal),
            None => Ok(()),
        }
    }
}

/// The write-ahead log's objects and its store's requests (docs/wal.md).
fn encode_wal(encoder: &mut DescriptorEncoder, wal: &crate::wal::Wal) -> Result<(), std::fmt::Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &wal.writer().stats;
    let counters = [
        ("zombi_wal_objects", "Write-ahead log objects created (each one PUT)", stats.objects.load(Relaxed)),
        ("zombi_wal_bytes", "Batch bytes written to the write-ahead log", stats.bytes.load(Relaxed)),
        (
            "zombi_wal_create_retries",
            "Write-ahead log creates tried again after a store error",
            stats.retries.load(Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        encode_metric(encoder, name, help, &ConstCounter::new(value))?;
    }
    let counts = wal.requests();
    let requests = Family::<OperationLabels, Counter>::default();
    for (operation, count) in [
        ("put", counts.puts.load(Relaxed)),
        ("get", counts.gets.load(Relaxed)),
        ("list", counts.lists.load(Relaxed)),
        ("delete", counts.deletes.load(Relaxed)),
    ] {
        requests.get_or_create(&OperationLabels { operation: operation.into() }).inc_by(count);
    }
    encode_metric(
        encoder,
        "zombi_wal_store_requests",
        "Requests to the write-ahead log's store, per operation",
        &requests,
    )
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

/// Reads one figure of a partition's tiering state.
type TierField<T> = fn(&crate::tier::PartitionTierStatus) -> T;

/// The remote log manager's state per partition and the object store's request counts, named after Kafka's
/// tiered storage metrics where it has one (`RemoteCopyBytesPerSec`, `RemoteLogSizeBytes`, …).
fn encode_tiering(encoder: &mut DescriptorEncoder, status: &crate::tier::TierStatus) -> Result<(), std::fmt::Error> {
    let gauges: [(&str, &str, TierField<i64>); 4] = [
        ("zombi_tiering_local_start_offset", "First offset the hot tier (RocksDB) still holds", |p| {
            p.local_start_offset
        }),
        ("zombi_tiering_remote_end_offset", "Offset after the last one uploaded to the object store", |p| {
            p.remote_end_offset
        }),
        (
            "kafka_server_brokertopicmetrics_remote_log_size_bytes",
            "Bytes of the partition's segments in the object store",
            |p| i64::try_from(p.remote_bytes).unwrap_or(i64::MAX),
        ),
        (
            "kafka_server_brokertopicmetrics_remote_log_metadata_count",
            "Segments of the partition in the object store",
            |p| i64::try_from(p.remote_segments).unwrap_or(i64::MAX),
        ),
    ];
    let partitions: Vec<(PartitionLabels, &crate::tier::PartitionTierStatus)> = status
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| (PartitionLabels { topic: t.topic.clone(), partition: p.partition }, p))
        })
        .collect();
    for (name, help, value) in gauges {
        let family = Family::<PartitionLabels, Gauge>::default();
        for (labels, partition) in &partitions {
            family.get_or_create(labels).set(value(partition));
        }
        encode_metric(encoder, name, help, &family)?;
    }
    let counters: [(&str, &str, TierField<u64>); 3] = [
        ("kafka_server_brokertopicmetrics_remote_copy_bytes", "Bytes of segments uploaded", |p| p.uploaded_bytes),
        ("zombi_tiering_uploaded_segments", "Segments uploaded", |p| p.uploaded_segments),
        ("kafka_server_brokertopicmetrics_remote_copy_errors", "Segment uploads that failed (and are retried)", |p| {
            p.upload_errors
        }),
    ];
    for (name, help, value) in counters {
        let family = Family::<PartitionLabels, Counter>::default();
        for (labels, partition) in &partitions {
            family.get_or_create(labels).inc_by(value(partition));
        }
        encode_metric(encoder, name, help, &family)?;
    }
    let requests = Family::<OperationLabels, Counter>::default();
    for (operation, count) in
        [("put", status.puts), ("get", status.gets), ("list", status.lists), ("delete", status.deletes)]
    {
        requests.get_or_create(&OperationLabels { operation: operation.into() }).inc_by(count);
    }
    encode_metric(encoder, "zombi_object_store_requests", "Object store requests, per operation", &requests)?;
    encode_metric(
        encoder,
        "zombi_object_store_request_errors",
        "Object store requests that failed",
        &ConstCounter::new(status.request_errors),
    )
}
