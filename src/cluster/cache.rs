//! The metadata cache of a broker in a cluster: what PostgreSQL said last (brokers, the
//! controller, each partition's leader and epoch), and this broker's lease as it can prove it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use super::groups::Slots;
use super::pg::{GROUPS_TOPIC_ID, Snapshot};
use super::{BrokerInfo, Leadership, ListenerAddress, MetadataCache};
use crate::log::Partition;

pub use crate::coordinator::group::GROUP_SLOTS;

#[derive(Debug, Default)]
struct State {
    /// Live brokers, by node id.
    brokers: Vec<BrokerInfo>,
    /// Each live broker's addresses on its listeners (empty: registered with one).
    listeners: HashMap<i32, Vec<ListenerAddress>>,
    controller: Option<i32>,
    /// (topic, partition) → (leader, leader epoch).
    leaders: HashMap<(Uuid, i32), (i32, i32)>,
}

/// The cache, refreshed from each snapshot; cheap to read on every request.
#[derive(Debug)]
pub struct ClusterCache {
    node_id: i32,
    /// The group slots this broker has loaded, with their epochs.
    pub slots: Arc<Slots>,
    state: RwLock<State>,
    /// Until when this broker's lease is provably valid: measured from when the renewal that
    /// secured it was sent, so it ends no later than PostgreSQL's view of it.
    lease_valid_until: Mutex<Option<Instant>>,
}

impl ClusterCache {
    pub fn new(node_id: i32) -> Arc<ClusterCache> {
        Arc::new(ClusterCache {
            node_id,
            slots: Arc::default(),
            state: RwLock::default(),
            lease_valid_until: Mutex::new(None),
        })
    }

    /// Takes in what PostgreSQL holds now.
    pub fn apply(&self, snapshot: &Snapshot) {
        let brokers = snapshot
            .brokers
            .iter()
            .filter(|b| b.live)
            .map(|b| BrokerInfo { node_id: b.node_id, host: b.host.clone(), port: b.port, rack: b.rack.clone() })
            .collect();
        let listeners = snapshot
            .brokers
            .iter()
            .filter(|b| b.live)
            .map(|b| (b.node_id, ListenerAddress::parse_all(&b.listeners)))
            .collect();
        let leaders =
            snapshot.partitions.iter().map(|p| ((p.topic_id, p.partition), (p.leader, p.leader_epoch))).collect();
        *self.state.write() = State { brokers, listeners, controller: snapshot.controller, leaders };
    }

    /// A renewal sent at `sent` secured the lease for `lease` (less a margin for clock rates).
    pub fn lease_renewed(&self, sent: Instant, lease: Duration) {
        let valid = sent + lease.mul_f64(0.9);
        let mut until = self.lease_valid_until.lock();
        if until.is_none_or(|current| current < valid) {
            *until = Some(valid);
        }
    }

    pub fn lease_valid(&self) -> bool {
        self.lease_valid_until.lock().is_some_and(|until| Instant::now() < until)
    }

    /// The leader and epoch PostgreSQL gave last, if the partition is known.
    pub fn leader_of(&self, topic_id: Uuid, partition: i32) -> Option<(i32, i32)> {
        self.state.read().leaders.get(&(topic_id, partition)).copied()
    }

    /// Live broker ids with how many partitions each leads now.
    pub fn load(&self) -> Vec<(i32, usize)> {
        let state = self.state.read();
        let mut load: HashMap<i32, usize> = state.brokers.iter().map(|b| (b.node_id, 0)).collect();
        for (leader, _) in state.leaders.values() {
            if let Some(count) = load.get_mut(leader) {
                *count += 1;
            }
        }
        let mut load: Vec<(i32, usize)> = load.into_iter().collect();
        load.sort_by_key(|&(node, count)| (count, node));
        load
    }
}

impl MetadataCache for ClusterCache {
    fn this_broker(&self) -> i32 {
        self.node_id
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        self.state.read().brokers.clone()
    }

    /// Each broker at its address on `listener`; a broker without that listener is left out, as
    /// Kafka leaves it out of the listener's Metadata (one registered with a single listener is
    /// at its one address).
    fn brokers_on(&self, listener: &str) -> Vec<BrokerInfo> {
        let state = self.state.read();
        state
            .brokers
            .iter()
            .filter_map(|broker| match state.listeners.get(&broker.node_id) {
                Some(addresses) if !addresses.is_empty() => {
                    let address = addresses.iter().find(|a| a.name == listener)?;
                    Some(BrokerInfo { host: address.host.clone(), port: address.port, ..broker.clone() })
                }
                _ => Some(broker.clone()),
            })
            .collect()
    }

    fn controller(&self) -> i32 {
        self.state.read().controller.unwrap_or(-1)
    }

    fn leadership(&self, partition: &Partition) -> Leadership {
        let (leader, leader_epoch) =
            self.leader_of(partition.topic_id, partition.index).unwrap_or((-1, partition.leader_epoch()));
        let replicas = if leader >= 0 { vec![leader] } else { Vec::new() };
        Leadership { leader, leader_epoch, in_sync: replicas.clone(), replicas }
    }

    /// The leader of the group's slot coordinates it.
    fn coordinator_for(&self, key: &str) -> i32 {
        self.slot_coordinator(crate::coordinator::group_slot(key, GROUP_SLOTS))
    }

    fn slot_coordinator(&self, slot: u32) -> i32 {
        self.leader_of(GROUPS_TOPIC_ID, slot as i32).map_or(-1, |(leader, _)| leader)
    }

    fn coordinator_ready(&self, key: &str) -> Result<(), crate::log::LogError> {
        let slot = crate::coordinator::group_slot(key, GROUP_SLOTS);
        match self.leader_of(GROUPS_TOPIC_ID, slot as i32) {
            Some((leader, epoch)) if leader == self.node_id => {
                if self.slots.epoch(slot) == Some(epoch) {
                    Ok(())
                } else {
                    Err(crate::log::LogError::CoordinatorLoadInProgress)
                }
            }
            _ => Err(crate::log::LogError::NotCoordinator),
        }
    }

    fn check_leader(&self, partition: &Partition, client_epoch: i32) -> Result<(), crate::log::LogError> {
        let leadership = self.leadership(partition);
        // Led here only once taken over (its epoch is the cluster's) and while the lease holds.
        if leadership.leader != self.node_id
            || !partition.is_leading()
            || partition.leader_epoch() != leadership.leader_epoch
        {
            return Err(crate::log::LogError::NotLeaderOrFollower);
        }
        partition.check_leader_epoch(client_epoch)
    }

    fn may_acknowledge(&self) -> bool {
        self.lease_valid()
    }
}
