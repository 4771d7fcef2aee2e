//! The log's series at scrape time: each partition's log start and end, the partition count, and
//! RocksDB's own figures.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use super::Log;
use crate::metrics::{PartitionLabels, ScrapeCollector, encode_metric};

/// Reads the log when `/metrics` is scraped.
pub struct LogCollector {
    pub log: Log,
}

impl ScrapeCollector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let log_start = Family::<PartitionLabels, Gauge>::default();
        let log_end = Family::<PartitionLabels, Gauge>::default();
        let mut partitions = 0i64;
        for topic in self.log.topics() {
            for partition in &topic.partitions {
                let labels = PartitionLabels { topic: topic.name.clone(), partition: partition.index };
                log_start.get_or_create(&labels).set(partition.log_start());
                log_end.get_or_create(&labels).set(partition.high_watermark());
                partitions += 1;
            }
        }
        encode_metric(&mut encoder, "kafka_log_log_log_start_offset", "First offset of each partition", &log_start)?;
        encode_metric(
            &mut encoder,
            "kafka_log_log_log_end_offset",
            "Offset after the last record of each partition (the high watermark)",
            &log_end,
        )?;
        encode_metric(
            &mut encoder,
            "kafka_server_replicamanager_partition_count",
            "Partitions hosted by this broker",
            &ConstGauge::new(partitions),
        )?;
        encode_rocksdb(&mut encoder, &self.log.store_properties())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    column_family: String,
}

/// The hot tier's RocksDB figures (see `Store::properties`) as `zombi_rocksdb_*` gauges.
fn encode_rocksdb(
    encoder: &mut DescriptorEncoder,
    properties: &[(&'static str, &'static str, u64)],
) -> Result<(), std::fmt::Error> {
    const PER_FAMILY: [(&str, &str, &str); 4] = [
        (
            "rocksdb.cur-size-all-mem-tables",
            "zombi_rocksdb_memtable_bytes",
            "Bytes in memtables (active and unflushed)",
        ),
        ("rocksdb.live-sst-files-size", "zombi_rocksdb_live_sst_bytes", "Bytes of SST files of the current version"),
        ("rocksdb.total-sst-files-size", "zombi_rocksdb_total_sst_bytes", "Bytes of all SST files, obsolete included"),
        (
            "rocksdb.estimate-pending-compaction-bytes",
            "zombi_rocksdb_pending_compaction_bytes",
            "Bytes compaction estimates it must rewrite; writes slow down and stop as this grows",
        ),
    ];
    for (property, name, help) in PER_FAMILY {
        let family = Family::<FamilyLabels, Gauge>::default();
        for (column_family, _, value) in properties.iter().filter(|(f, p, _)| *p == property && !f.is_empty()) {
            family.get_or_create(&FamilyLabels { column_family: column_family.to_string() }).set(*value as i64);
        }
        encode_metric(encoder, name, help, &family)?;
    }
    const DATABASE: [(&str, &str, &str); 3] = [
        ("rocksdb.block-cache-usage", "zombi_rocksdb_block_cache_usage_bytes", "Bytes held by the block cache"),
        ("rocksdb.is-write-stopped", "zombi_rocksdb_write_stopped", "1 while RocksDB stops writes (a write stall)"),
        (
            "rocksdb.actual-delayed-write-rate",
            "zombi_rocksdb_delayed_write_rate_bytes_per_second",
            "Write rate RocksDB throttles to while it delays writes; 0 when not delaying",
        ),
    ];
    for (property, name, help) in DATABASE {
        if let Some((_, _, value)) = properties.iter().find(|(f, p, _)| *p == property && f.is_empty()) {
            encode_metric(encoder, name, help, &ConstGauge::new(*value as i64))?;
        }
    }
    Ok(())
}
