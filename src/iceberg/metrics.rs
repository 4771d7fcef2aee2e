//! The Iceberg sink's series at scrape time, from [`super::status`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use super::IcebergSink;
use crate::log::Log;
use crate::metrics::{PartitionLabels, ScrapeCollector, encode_metric};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// Reads the sink's state when `/metrics` is scraped.
pub struct IcebergCollector {
    pub sink: Arc<IcebergSink>,
    pub log: Log,
}

impl ScrapeCollector for IcebergCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_iceberg(&mut encoder, &super::status(&self.sink, &self.log))
    }
}

/// Reads one counter of a topic's Iceberg sink state.
type IcebergField = fn(&super::TopicIcebergStatus) -> u64;

/// The Iceberg sink's state per table (topics with `zombi.iceberg.enable`), as `zombi_iceberg_*`:
/// the sink is not Kafka's, so none of its names could be mistaken for a Kafka metric, and its
/// file compaction is never called plain "compaction" (in Kafka that is key-based cleanup).
fn encode_iceberg(encoder: &mut DescriptorEncoder, status: &super::IcebergStatus) -> Result<(), std::fmt::Error> {
    let topics: Vec<&super::TopicIcebergStatus> = status.topics.iter().filter(|t| t.enabled).collect();
    let committed = Family::<PartitionLabels, Gauge>::default();
    let records_lag = Family::<PartitionLabels, Gauge>::default();
    for topic in &topics {
        for partition in &topic.partitions {
            let labels = PartitionLabels { topic: topic.topic.clone(), partition: partition.partition };
            committed.get_or_create(&labels).set(partition.committed_offset);
            records_lag.get_or_create(&labels).set((partition.high_watermark - partition.committed_offset).max(0));
        }
    }
    encode_metric(encoder, "zombi_iceberg_committed_offset", "Offset after the last record in the table", &committed)?;
    encode_metric(encoder, "zombi_iceberg_records_lag", "Records in the log and not yet in the table", &records_lag)?;
    let lag_seconds = Family::<TopicLabels, Gauge<f64, AtomicU64>>::default();
    let last_commit = Family::<TopicLabels, Gauge<f64, AtomicU64>>::default();
    for topic in &topics {
        let labels = TopicLabels { topic: topic.topic.clone() };
        lag_seconds.get_or_create(&labels).set(topic.lag_seconds);
        if let Some(ms) = topic.last_commit_ms {
            last_commit.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
    }
    encode_metric(
        encoder,
        "zombi_iceberg_lag_seconds",
        "0 while the table holds every record of the log, else seconds since the sink last saw it do so",
        &lag_seconds,
    )?;
    encode_metric(
        encoder,
        "zombi_iceberg_last_commit_timestamp_seconds",
        "When this broker last committed to the table, seconds since the Unix epoch",
        &last_commit,
    )?;
    let counters: [(&str, &str, IcebergField); 18] = [
        ("zombi_iceberg_commits", "Snapshots the sink committed to the table", |t| t.commits),
        ("zombi_iceberg_records_written", "Records written to the table as rows", |t| t.records_written),
        ("zombi_iceberg_data_files_written", "Parquet data files the sink added to the table", |t| t.data_files),
        ("zombi_iceberg_data_files_written_bytes", "Bytes of the Parquet data files the sink added", |t| {
            t.data_file_bytes
        }),
        ("zombi_iceberg_errors", "Rounds of the table that failed (retried with backoff)", |t| t.errors),
        (
            "zombi_iceberg_skipped_below_log_start",
            "Records retention or DeleteRecords removed before the sink read them",
            |t| t.skipped_below_log_start,
        ),
        ("zombi_iceberg_control_records", "Records of control batches, never rows", |t| t.control_records),
        ("zombi_iceberg_aborted_records", "Records of aborted transactions, never rows", |t| t.aborted_records),
        ("zombi_iceberg_header_keys_replaced", "Header keys that were not UTF-8, stored with U+FFFD", |t| {
            t.header_keys_replaced
        }),
        ("zombi_iceberg_timestamps_out_of_range", "Timestamps too large for microseconds, stored as null", |t| {
            t.timestamps_out_of_range
        }),
        ("zombi_iceberg_compactions", "Iceberg file compaction commits (small files rewritten)", |t| t.compactions),
        ("zombi_iceberg_compaction_files_rewritten", "Data files Iceberg file compaction removed", |t| {
            t.compaction_files_rewritten
        }),
        ("zombi_iceberg_compaction_files_written", "Data files Iceberg file compaction added", |t| {
            t.compaction_files_written
        }),
        ("zombi_iceberg_compaction_bytes_rewritten", "Bytes of data files Iceberg file compaction rewrote", |t| {
            t.compaction_bytes_rewritten
        }),
        ("zombi_iceberg_snapshots_expired", "Snapshots expired from the table's metadata", |t| t.snapshots_expired),
        ("zombi_iceberg_unreferenced_files_deleted", "Files a maintenance pass left unreferenced, deleted", |t| {
            t.unreferenced_files_deleted
        }),
        ("zombi_iceberg_orphan_files_deleted", "Files no snapshot ever referenced, deleted once old enough", |t| {
            t.orphan_files_deleted
        }),
        ("zombi_iceberg_maintenance_errors", "Maintenance passes of the table that failed", |t| t.maintenance_errors),
    ];
    for (name, help, value) in counters {
        let family = Family::<TopicLabels, Counter>::default();
        for topic in &topics {
            family.get_or_create(&TopicLabels { topic: topic.topic.clone() }).inc_by(value(topic));
        }
        encode_metric(encoder, name, help, &family)?;
    }
    let live = Family::<TopicLabels, Gauge>::default();
    for topic in &topics {
        if let Some(files) = topic.live_data_files {
            live.get_or_create(&TopicLabels { topic: topic.topic.clone() })
                .set(i64::try_from(files).unwrap_or(i64::MAX));
        }
    }
    encode_metric(
        encoder,
        "zombi_iceberg_live_data_files",
        "Data files in the table's current snapshot, as of the last maintenance pass",
        &live,
    )?;
    encode_metric(
        encoder,
        "zombi_iceberg_catalog_unavailable",
        "1 while the Iceberg catalog cannot be opened (see GET /admin/iceberg), else 0",
        &ConstGauge::new(i64::from(status.catalog_error.is_some())),
    )
}
