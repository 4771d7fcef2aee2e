//! Who should lead what: the controller's plan, a pure function of the live brokers and the
//! partitions' current leaders (tested without a database).
//!
//! - A partition whose leader is not a live broker (its lease expired, or it never had one) is
//!   moved at once to the least-loaded live broker that is not shutting down.
//! - A partition led by a broker that is shutting down, or by one leading more than its share,
//!   is handed over by its leader (a controlled move), a bounded number per round, to the
//!   least-loaded broker. A broker that joins so takes over its share.
//! - Ties go to the rack holding the fewest of the topic's partitions (`--broker-rack`), then to
//!   the lowest node id, so every controller plans the same.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

/// A broker the planner may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: i32,
    pub rack: Option<String>,
    /// Live but leaving: it should lead nothing.
    pub shutting_down: bool,
}

/// A partition as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Led {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub target_leader: Option<i32>,
}

/// One change the controller makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The leader is gone: move the partition now (epoch + 1).
    Reassign { topic_id: Uuid, partition: i32, epoch: i32, to: i32 },
    /// Ask the leader to hand the partition over to `to`.
    HandOver { topic_id: Uuid, partition: i32, to: i32 },
}

/// The changes that bring `partitions` towards an even spread over `live` brokers, topic by
/// topic (each topic's partitions spread evenly, then the whole load), handing over at most
/// `moves_max` partitions per call.
pub fn plan(live: &[Candidate], partitions: &[Led], moves_max: usize) -> Vec<Action> {
    let mut planner = Planner::new(live);
    if planner.total.is_empty() {
        return Vec::new();
    }
    let mut by_topic: BTreeMap<Uuid, Vec<&Led>> = BTreeMap::new();
    for p in partitions {
        by_topic.entry(p.topic_id).or_default().push(p);
        let owner = p.target_leader.filter(|t| planner.is_live(*t)).unwrap_or(p.leader);
        planner.add(p.topic_id, owner);
    }
    let mut actions = Vec::new();
    // Orphans first, everywhere: no live leader at all.
    for led in by_topic.values() {
        let orphans: Vec<&&Led> = led.iter().filter(|p| !planner.is_live(p.leader)).collect();
        for p in orphans {
            if let Some(to) = planner.pick(p.topic_id) {
                planner.add(p.topic_id, to);
                actions.push(Action::Reassign {
                    topic_id: p.topic_id,
                    partition: p.partition,
                    epoch: p.leader_epoch,
                    to,
                });
            }
        }
    }
    // Controlled moves: away from leaving brokers, then from brokers above a topic's share.
    let mut moves = 0;
    for led in by_topic.values() {
        let leaving: Vec<&&Led> =
            led.iter().filter(|p| planner.is_leaving(p.leader) && p.target_leader.is_none()).collect();
        for p in leaving {
            if moves == moves_max {
                return actions;
            }
            if let Some(to) = planner.pick(p.topic_id) {
                planner.add(p.topic_id, to);
                actions.push(Action::HandOver { topic_id: p.topic_id, partition: p.partition, to });
                moves += 1;
            }
        }
    }
    for (topic, led) in &by_topic {
        let count = planner.topic_load(*topic).values().sum::<usize>();
        let share = count.div_ceil(planner.total.len());
        let staying: Vec<&&Led> =
            led.iter().filter(|p| p.target_leader.is_none() && !planner.is_leaving(p.leader)).collect();
        for p in staying {
            if moves == moves_max {
                return actions;
            }
            let current = planner.topic_load(*topic).get(&p.leader).copied().unwrap_or(0);
            if current <= share || !planner.total.contains_key(&p.leader) {
                continue;
            }
            let Some(to) = planner.pick(*topic) else { continue };
            // Only when it evens the spread out: the receiver ends below the giver.
            if planner.topic_load(*topic).get(&to).copied().unwrap_or(0) + 1 >= current {
                continue;
            }
            planner.remove(*topic, p.leader);
            planner.add(*topic, to);
            actions.push(Action::HandOver { topic_id: p.topic_id, partition: p.partition, to });
            moves += 1;
        }
    }
    actions
}

/// Load per broker that may lead: in all, per topic, per (topic, rack).
struct Planner<'a> {
    live: &'a [Candidate],
    total: BTreeMap<i32, usize>,
    per_topic: HashMap<Uuid, BTreeMap<i32, usize>>,
    per_topic_rack: HashMap<(Uuid, Option<&'a str>), usize>,
}

impl<'a> Planner<'a> {
    fn new(live: &'a [Candidate]) -> Planner<'a> {
        let total = live.iter().filter(|b| !b.shutting_down).map(|b| (b.node_id, 0)).collect();
        Planner { live, total, per_topic: HashMap::new(), per_topic_rack: HashMap::new() }
    }

    fn is_live(&self, node: i32) -> bool {
        self.live.iter().any(|b| b.node_id == node)
    }

    fn is_leaving(&self, node: i32) -> bool {
        self.live.iter().any(|b| b.node_id == node && b.shutting_down)
    }

    fn rack(&self, node: i32) -> Option<&'a str> {
        self.live.iter().find(|b| b.node_id == node).and_then(|b| b.rack.as_deref())
    }

    fn topic_load(&self, topic: Uuid) -> BTreeMap<i32, usize> {
        let mut load: BTreeMap<i32, usize> = self.total.keys().map(|node| (*node, 0)).collect();
        if let Some(counts) = self.per_topic.get(&topic) {
            for (node, count) in counts {
                if let Some(slot) = load.get_mut(node) {
                    *slot = *count;
                }
            }
        }
        load
    }

    fn add(&mut self, topic: Uuid, node: i32) {
        if let Some(count) = self.total.get_mut(&node) {
            *count += 1;
            *self.per_topic.entry(topic).or_default().entry(node).or_default() += 1;
            *self.per_topic_rack.entry((topic, self.rack(node))).or_default() += 1;
        }
    }

    fn remove(&mut self, topic: Uuid, node: i32) {
        if let Some(count) = self.total.get_mut(&node) {
            *count = count.saturating_sub(1);
            if let Some(count) = self.per_topic.get_mut(&topic).and_then(|t| t.get_mut(&node)) {
                *count = count.saturating_sub(1);
            }
            let rack = self.rack(node);
            if let Some(count) = self.per_topic_rack.get_mut(&(topic, rack)) {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// The broker with the fewest of the topic's partitions, then the rack with the fewest of
    /// them, then the least loaded in all, then the lowest node id.
    fn pick(&self, topic: Uuid) -> Option<i32> {
        let per_topic = self.topic_load(topic);
        self.total
            .iter()
            .map(|(&node, &total)| {
                let on_rack = self.per_topic_rack.get(&(topic, self.rack(node))).copied().unwrap_or(0);
                (per_topic.get(&node).copied().unwrap_or(0), on_rack, total, node)
            })
            .min()
            .map(|(_, _, _, node)| node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node_id: i32, rack: Option<&str>) -> Candidate {
        Candidate { node_id, rack: rack.map(str::to_string), shutting_down: false }
    }

    fn led(partition: i32, leader: i32) -> Led {
        Led { topic_id: Uuid::from_u128(1), partition, leader, leader_epoch: 3, target_leader: None }
    }

    fn leaders_after(live: &[Candidate], partitions: &[Led]) -> BTreeMap<i32, usize> {
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        let actions = plan(live, partitions, usize::MAX);
        for p in partitions {
            let moved = actions.iter().find_map(|a| match *a {
                Action::Reassign { partition, to, .. } | Action::HandOver { partition, to, .. }
                    if partition == p.partition =>
                {
                    Some(to)
                }
                _ => None,
            });
            *leaders.entry(moved.unwrap_or(p.leader)).or_default() += 1;
        }
        leaders
    }

    /// A dead broker's partitions go to the live ones, evenly, each at its epoch.
    #[test]
    fn orphans_are_spread_over_the_live_brokers() {
        let live = [broker(1, None), broker(2, None)];
        let partitions: Vec<Led> = (0..6).map(|p| led(p, if p < 4 { 0 } else { 1 })).collect();
        let actions = plan(&live, &partitions, 0);
        assert_eq!(actions.len(), 4, "only the dead broker's partitions move: {actions:?}");
        assert!(actions.iter().all(|a| matches!(a, Action::Reassign { epoch: 3, .. })));
        assert_eq!(leaders_after(&live, &partitions), BTreeMap::from([(1, 3), (2, 3)]));
    }

    /// A broker that joins gets its share by controlled moves; a balanced cluster plans nothing.
    #[test]
    fn a_new_broker_takes_its_share_and_balance_is_stable() {
        let live = [broker(1, None), broker(2, None), broker(3, None)];
        let partitions: Vec<Led> = (0..9).map(|p| led(p, 1 + p % 2)).collect();
        assert_eq!(leaders_after(&live, &partitions), BTreeMap::from([(1, 3), (2, 3), (3, 3)]));
        let balanced: Vec<Led> = (0..9).map(|p| led(p, 1 + p % 3)).collect();
        assert_eq!(plan(&live, &balanced, usize::MAX), Vec::new());
        assert!(plan(&live, &partitions, 1).len() == 1, "moves are bounded per round");
    }

    /// Each topic is spread evenly on its own, whatever else the brokers lead (here the 50
    /// group slots, all on one broker at first).
    #[test]
    fn every_topic_spreads_evenly_beside_other_load() {
        let live = [broker(1, None), broker(2, None), broker(3, None)];
        let slots = Uuid::from_u128(0);
        let mut partitions: Vec<Led> = (0..50)
            .map(|p| Led { topic_id: slots, partition: p, leader: 1, leader_epoch: 0, target_leader: None })
            .collect();
        partitions.extend((0..6).map(|p| led(p, 9)));
        let actions = plan(&live, &partitions, usize::MAX);
        let mut topic_leaders: BTreeMap<i32, usize> = BTreeMap::new();
        let mut slot_leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for p in &partitions {
            let moved = actions.iter().find_map(|a| match *a {
                Action::Reassign { topic_id, partition, to, .. } | Action::HandOver { topic_id, partition, to }
                    if topic_id == p.topic_id && partition == p.partition =>
                {
                    Some(to)
                }
                _ => None,
            });
            let leaders = if p.topic_id == slots { &mut slot_leaders } else { &mut topic_leaders };
            *leaders.entry(moved.unwrap_or(p.leader)).or_default() += 1;
        }
        assert_eq!(topic_leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        assert!(slot_leaders.values().all(|count| (16..=17).contains(count)), "{slot_leaders:?}");
    }

    /// A broker shutting down hands everything over; with racks, a topic spreads over them.
    #[test]
    fn leaving_brokers_empty_and_racks_spread_a_topic() {
        let mut live = vec![broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b"))];
        live[0].shutting_down = true;
        let partitions: Vec<Led> = (0..4).map(|p| led(p, 1)).collect();
        let after = leaders_after(&live, &partitions);
        assert_eq!(after.get(&1), None, "{after:?}");
        assert_eq!(after.values().sum::<usize>(), 4);
        let racked = [broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b"))];
        let orphans: Vec<Led> = (0..2).map(|p| led(p, 9)).collect();
        let actions = plan(&racked, &orphans, 0);
        let chosen: Vec<i32> = actions
            .iter()
            .map(|a| match a {
                Action::Reassign { to, .. } | Action::HandOver { to, .. } => *to,
            })
            .collect();
        assert!(chosen.contains(&3), "one of the two goes to the other rack: {chosen:?}");
    }
}
