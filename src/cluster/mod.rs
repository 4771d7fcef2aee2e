//! Who is who in the cluster: brokers, each partition's leader and leader epoch, and which broker
//! coordinates a group (Kafka's `MetadataCache`). Handlers answer Metadata, FindCoordinator,
//! DescribeCluster and the leader checks of Fetch and ListOffsets from it, never from the config.
//!
//! One broker leads every partition and coordinates every group ([`SingleNode`]) unless
//! `--coordinator` is given: then [`cache::ClusterCache`] answers from PostgreSQL (see
//! [`node`]: registration and leases, the controller, takeovers and hand-overs).
//!
//! - [`pg`]: the cluster's tables and queries;
//! - [`assignment`]: the controller's plan (pure);
//! - [`cache`]: the metadata cache of a broker in a cluster;
//! - [`groups`]: consumer groups placed by slot on their coordinators, stored in PostgreSQL;
//! - [`forward`]: produce and read through a partition's leader, for the HTTP door;
//! - [`metadata`]: the log's metadata store backed by PostgreSQL;
//! - [`takeover`]: a partition's log rebuilt from segments and the write-ahead log;
//! - [`node`]: the broker's membership loop.

pub mod assignment;
pub mod cache;
pub mod forward;
pub mod groups;
pub mod metadata;
pub mod node;
pub mod pg;
pub mod takeover;
pub mod txn;

use std::sync::Arc;

use crate::config::Config;
use crate::log::{LogError, Partition};

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A broker's advertised address on one of its listeners, as registered in PostgreSQL
/// (`NAME://HOST:PORT`, comma-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAddress {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl ListenerAddress {
    /// `NAME://HOST:PORT,…`; entries that do not parse are left out.
    pub fn parse_all(text: &str) -> Vec<ListenerAddress> {
        text.split(',')
            .filter_map(|entry| {
                let (name, address) = entry.trim().split_once("://")?;
                let (host, port) = address.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some(ListenerAddress { name: name.to_string(), host: host.to_string(), port: port.parse().ok()? })
            })
            .collect()
    }

    /// The registered form of `addresses`.
    pub fn format_all(addresses: &[ListenerAddress]) -> String {
        let entry = |a: &ListenerAddress| match a.host.contains(':') {
            true => format!("{}://[{}]:{}", a.name, a.host, a.port),
            false => format!("{}://{}:{}", a.name, a.host, a.port),
        };
        addresses.iter().map(entry).collect::<Vec<_>>().join(",")
    }
}

/// A partition's leadership, as Metadata answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub in_sync: Vec<i32>,
}

/// What a broker knows of the cluster's membership and leadership.
pub trait MetadataCache: Send + Sync + std::fmt::Debug {
    /// This broker's id.
    fn this_broker(&self) -> i32;
    /// Every live broker, this one included.
    fn brokers(&self) -> Vec<BrokerInfo>;
    /// The live broker `node_id`, if there is one.
    fn broker(&self, node_id: i32) -> Option<BrokerInfo> {
        self.brokers().into_iter().find(|b| b.node_id == node_id)
    }
    /// Every live broker at its address on `listener` (the listener a client came through):
    /// a client is always told addresses of the listener it uses. A cluster has one listener.
    fn brokers_on(&self, _listener: &str) -> Vec<BrokerInfo> {
        self.brokers()
    }
    /// The live broker `node_id` at its address on `listener`.
    fn broker_on(&self, node_id: i32, listener: &str) -> Option<BrokerInfo> {
        self.brokers_on(listener).into_iter().find(|b| b.node_id == node_id)
    }
    /// The broker that acts as the controller.
    fn controller(&self) -> i32;
    /// Who leads `partition`, at which epoch, with which replicas.
    fn leadership(&self, partition: &Partition) -> Leadership;
    /// The broker that coordinates the group `key`.
    fn coordinator_for(&self, key: &str) -> i32;
    /// The broker that coordinates the groups of `slot` (-1: none now).
    fn slot_coordinator(&self, _slot: u32) -> i32 {
        self.this_broker()
    }

    /// Whether this broker coordinates the group `key` now: NOT_COORDINATOR when another broker
    /// does, COORDINATOR_LOAD_IN_PROGRESS while this one is still loading it.
    fn coordinator_ready(&self, _key: &str) -> Result<(), LogError> {
        Ok(())
    }

    /// Whether this broker may acknowledge a produce now (in a cluster: while its lease is
    /// provably valid).
    fn may_acknowledge(&self) -> bool {
        true
    }

    /// Refuses a read or an append of a partition this broker does not lead, or one whose client
    /// holds another leader epoch (-1: the client sent none), as Kafka's partition leaders do.
    fn check_leader(&self, partition: &Partition, client_epoch: i32) -> Result<(), LogError> {
        if self.leadership(partition).leader != self.this_broker() {
            return Err(LogError::NotLeaderOrFollower);
        }
        partition.check_leader_epoch(client_epoch)
    }
}

/// One broker that leads every partition and coordinates every group.
#[derive(Debug)]
pub struct SingleNode {
    broker: BrokerInfo,
    /// This broker on each listener, by listener name.
    listeners: Vec<(String, BrokerInfo)>,
}

impl SingleNode {
    pub fn new(config: &Config) -> Arc<SingleNode> {
        let on =
            |host: &str, port: i32| BrokerInfo { node_id: config.node_id, host: host.to_string(), port, rack: None };
        Arc::new(SingleNode {
            broker: on(&config.kafka_advertised_host, config.kafka_advertised_port),
            listeners: config
                .security
                .listeners
                .iter()
                .map(|l| (l.name.clone(), on(&l.advertised_host, l.advertised_port)))
                .collect(),
        })
    }
}

impl MetadataCache for SingleNode {
    fn this_broker(&self) -> i32 {
        self.broker.node_id
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        vec![self.broker.clone()]
    }

    fn brokers_on(&self, listener: &str) -> Vec<BrokerInfo> {
        let on = self.listeners.iter().find(|(name, _)| name == listener).map(|(_, info)| info);
        vec![on.unwrap_or(&self.broker).clone()]
    }

    fn controller(&self) -> i32 {
        self.broker.node_id
    }

    fn leadership(&self, partition: &Partition) -> Leadership {
        let node = self.broker.node_id;
        Leadership { leader: node, leader_epoch: partition.leader_epoch(), replicas: vec![node], in_sync: vec![node] }
    }

    fn coordinator_for(&self, _key: &str) -> i32 {
        self.broker.node_id
    }
}

#[cfg(test)]
mod tests {
    use super::ListenerAddress;

    #[test]
    fn listener_addresses_read_back_as_registered() {
        let addresses = vec![
            ListenerAddress { name: "PLAINTEXT".into(), host: "10.0.0.1".into(), port: 9092 },
            ListenerAddress { name: "SASL_SSL".into(), host: "broker-1.example.com".into(), port: 9094 },
            ListenerAddress { name: "SSL".into(), host: "::1".into(), port: 9093 },
        ];
        let text = ListenerAddress::format_all(&addresses);
        assert_eq!(text, "PLAINTEXT://10.0.0.1:9092,SASL_SSL://broker-1.example.com:9094,SSL://[::1]:9093");
        assert_eq!(ListenerAddress::parse_all(&text), addresses);
        assert_eq!(ListenerAddress::parse_all(""), Vec::new());
        assert_eq!(ListenerAddress::parse_all("SSL://host:x,PLAINTEXT://h:1").len(), 1);
    }
}
