//! The group coordinator's series at scrape time: members, committed offsets and lag per group.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::GroupCoordinator;
use crate::log::Log;
use crate::metrics::{ScrapeCollector, encode_metric};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    consumergroup: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
    state: String,
}

/// Reads the coordinator (and the log ends, for lag) when `/metrics` is scraped.
pub struct GroupCollector {
    pub coordinator: GroupCoordinator,
    pub log: Log,
}

impl ScrapeCollector for GroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lag = Family::<GroupPartitionLabels, Gauge>::default();
        let committed = Family::<GroupPartitionLabels, Gauge>::default();
        let members = Family::<GroupLabels, Gauge>::default();
        for (group, _, state) in self.coordinator.list() {
            let count = self.coordinator.describe(&group).map_or(0, |d| d.members.len() as i64);
            members.get_or_create(&GroupLabels { consumergroup: group.clone(), state: state.to_string() }).set(count);
            for entry in self.coordinator.lag(&group, &self.log) {
                let labels = GroupPartitionLabels {
                    consumergroup: group.clone(),
                    topic: entry.topic,
                    partition: entry.partition,
                };
                lag.get_or_create(&labels).set(entry.lag);
                committed.get_or_create(&labels).set(entry.committed);
            }
        }
        encode_metric(
            &mut encoder,
            "kafka_consumergroup_lag",
            "Log end offset minus the group's committed offset, per partition",
            &lag,
        )?;
        encode_metric(
            &mut encoder,
            "kafka_consumergroup_current_offset",
            "The group's committed offset, per partition",
            &committed,
        )?;
        encode_metric(&mut encoder, "kafka_consumergroup_members", "Members of each consumer group", &members)
    }
}
