//! The transaction coordinator's series at scrape time: transactions open, commits, aborts and
//! timeouts, and how far each partition's last stable offset trails its high watermark.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::TransactionCoordinator;
use crate::log::Log;
use crate::metrics::{ScrapeCollector, encode_metric};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

/// Reads the coordinator's counters and the partitions' offsets when `/metrics` is scraped.
pub struct TxnCollector {
    pub transactions: TransactionCoordinator,
    pub log: Log,
}

impl ScrapeCollector for TxnCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let open = Gauge::<i64>::default();
        open.set(self.transactions.open_count() as i64);
        encode_metric(&mut encoder, "zombi_transactions_open", "Transactions in progress", &open)?;
        let stats = self.transactions.stats();
        for (name, help, value) in [
            ("zombi_transactions_committed", "Transactions committed (EndTxn)", &stats.commits),
            ("zombi_transactions_aborted", "Transactions aborted, by their producer or the coordinator", &stats.aborts),
            (
                "zombi_transactions_timed_out",
                "Transactions the coordinator aborted past their timeout",
                &stats.timeouts,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value.load(Ordering::Relaxed));
            encode_metric(&mut encoder, name, help, &counter)?;
        }
        // Only partitions whose last stable offset trails: the rest are 0 and would be noise.
        let lag = Family::<PartitionLabels, Gauge>::default();
        for topic in self.log.topics() {
            for partition in &topic.partitions {
                let behind = partition.high_watermark() - partition.last_stable_offset();
                if behind > 0 {
                    lag.get_or_create(&PartitionLabels { topic: topic.name.clone(), partition: partition.index })
                        .set(behind);
                }
            }
        }
        encode_metric(
            &mut encoder,
            "zombi_partition_last_stable_offset_lag",
            "High watermark minus last stable offset, for partitions with an open transaction",
            &lag,
        )
    }
}
