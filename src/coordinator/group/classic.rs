//! The classic consumer group state machine (Kafka's `ClassicGroup` and the join/sync/heartbeat
//! logic of its `GroupCoordinator`). Pure state: time comes in as `now_ms`, and responses to parked
//! requests go out through the oneshot senders stored on members.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Limits and delays of the group protocol (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub initial_rebalance_delay_ms: u64,
    pub members_max: usize,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult { error: error.code(), generation: -1, member_id: member_id.to_string(), ..JoinResult::default() }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> SyncResult {
        SyncResult { error: error.code(), ..SyncResult::default() }
    }
}

/// What a JoinGroup carries about the member.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ requires a member id from the broker first (KIP-394).
    pub requires_known_member_id: bool,
    /// JoinGroup v9+ understands `skip_assignment` (KIP-814).
    pub supports_skip_assignment: bool,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: u64,
    awaiting_join: Option<(oneshot::Sender<JoinResult>, bool)>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    joined_at: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct ClassicGroup {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, u64>,
    /// When the join phase of the current rebalance ends at the latest.
    join_deadline_ms: Option<u64>,
    /// An empty group's first rebalance waits until then for more members.
    initial_delay_until: Option<u64>,
    join_sequence: u64,
}

/// Something a transition wants written before its answers go out.
#[derive(Debug, Default)]
pub struct Effects {
    pub persist: bool,
}

impl ClassicGroup {
    pub fn new(id: &str) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            join_deadline_ms: None,
            initial_delay_until: None,
            join_sequence: 0,
        }
    }

    /// A group rebuilt from its stored record: Stable (or Empty) with the stored members, whose
    /// session clocks start now, as Kafka does when it loads `__consumer_offsets`.
    pub fn restored(
        id: &str,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        leader: Option<String>,
        members: Vec<StoredMember>,
        now_ms: u64,
    ) -> ClassicGroup {
        let mut group = ClassicGroup::new(id);
        group.generation = generation;
        group.protocol_type = protocol_type;
        group.protocol = protocol;
        group.leader = leader;
        for (sequence, stored) in members.into_iter().enumerate() {
            let member = Member {
                id: stored.id.clone(),
                instance_id: stored.instance_id,
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(group.protocol.clone().unwrap_or_default(), stored.metadata)],
                assignment: stored.assignment,
                last_heartbeat_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
                joined_at: sequence as u64,
            };
            group.members.insert(stored.id, member);
        }
        group.join_sequence = group.members.len() as u64;
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn member_by_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// Whether every member's protocols include one the new member also supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols
            .iter()
            .any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(other, _)| other == name)))
    }

    /// JoinGroup. The answer comes through `reply`, at once or when the join phase completes.
    pub fn join(
        &mut self,
        request: JoinRequest,
        new_member_id: String,
        limits: &GroupLimits,
        now_ms: u64,
        reply: oneshot::Sender<JoinResult>,
    ) -> Effects {
        let member_id = request.member_id.clone();
        let refuse = |reply: oneshot::Sender<JoinResult>, error| {
            let _ = reply.send(JoinResult::error(error, &member_id));
            Effects::default()
        };
        if request.session_timeout_ms < limits.session_timeout_ms_min
            || request.session_timeout_ms > limits.session_timeout_ms_max
        {
            return refuse(reply, ResponseError::InvalidSessionTimeout);
        }
        if self.state == GroupState::Dead {
            return refuse(reply, ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports(&request.protocol_type, &request.protocols) {
            return refuse(reply, ResponseError::InconsistentGroupProtocol);
        }
        if member_id.is_empty() {
            return self.join_unknown(request, new_member_id, limits, now_ms, reply);
        }
        if let Some(instance_id) = &request.instance_id
            && let Some(existing) = self.member_by_instance(instance_id)
            && existing.id != member_id
        {
            return refuse(reply, ResponseError::FencedInstanceId);
        }
        if self.pending.remove(&member_id).is_some() {
            self.add_member(request, member_id, now_ms, reply);
            self.prepare_rebalance(limits, now_ms);
            return Effects::default();
        }
        if !self.members.contains_key(&member_id) {
            return refuse(reply, ResponseError::UnknownMemberId);
        }
        self.join_known(request, limits, now_ms, reply)
    }

    fn join_unknown(
        &mut self,
        request: JoinRequest,
        new_member_id: String,
        limits: &GroupLimits,
        now_ms: u64,
        reply: oneshot::Sender<JoinResult>,
    ) -> Effects {
        if self.members.len() + self.pending.len() >= limits.members_max {
            let _ = reply.send(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
            return Effects::default();
        }
        if let Some(instance_id) = request.instance_id.clone() {
            if let Some(old_id) = self.member_by_instance(&instance_id).map(|m| m.id.clone()) {
                return self.replace_static_member(request, old_id, new_member_id, limits, now_ms, reply);
            }
            // A new static member joins directly: its instance id identifies it (KIP-345).
            self.add_member(request, new_member_id, now_ms, reply);
            self.prepare_rebalance(limits, now_ms);
            return Effects::default();
        }
        if request.requires_known_member_id {
            self.pending.insert(new_member_id.clone(), now_ms + request.session_timeout_ms as u64);
            let _ = reply.send(JoinResult::error(ResponseError::MemberIdRequired, &new_member_id));
            return Effects::default();
        }
        self.add_member(request, new_member_id, now_ms, reply);
        self.prepare_rebalance(limits, now_ms);
        Effects::default()
    }

    /// A static member rejoining with a new member id: the old id is fenced, and a Stable group
    /// hands back the current assignment without a rebalance unless its protocols changed.
    fn replace_static_member(
        &mut self,
        request: JoinRequest,
        old_id: String,
        new_id: String,
        limits: &GroupLimits,
        now_ms: u64,
        reply: oneshot::Sender<JoinResult>,
    ) -> Effects {
        let Some(mut member) = self.members.remove(&old_id) else {
            let _ = reply.send(JoinResult::error(ResponseError::UnknownMemberId, ""));
            return Effects::default();
        };
        if let Some((old_reply, _)) = member.awaiting_join.take() {
            let _ = old_reply.send(JoinResult::error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(old_reply) = member.awaiting_sync.take() {
            let _ = old_reply.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let protocols_changed = member.protocols != request.protocols;
        member.id = new_id.clone();
        member.last_heartbeat_ms = now_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if !protocols_changed => {
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let mut result = self.join_result(&new_id, is_leader && request.supports_skip_assignment);
                result.skip_assignment = is_leader && request.supports_skip_assignment;
                self.members.insert(new_id, member);
                let _ = reply.send(result);
                Effects { persist: true }
            }
            _ => {
                member.protocols = request.protocols;
                member.awaiting_join = Some((reply, request.supports_skip_assignment));
                self.members.insert(new_id, member);
                self.prepare_rebalance(limits, now_ms);
                Effects::default()
            }
        }
    }

    fn join_known(
        &mut self,
        request: JoinRequest,
        limits: &GroupLimits,
        now_ms: u64,
        reply: oneshot::Sender<JoinResult>,
    ) -> Effects {
        let member_id = request.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let state = self.state;
        let Some(member) = self.members.get_mut(&member_id) else {
            let _ = reply.send(JoinResult::error(ResponseError::UnknownMemberId, &member_id));
            return Effects::default();
        };
        member.last_heartbeat_ms = now_ms;
        let unchanged = member.protocols == request.protocols;
        match state {
            GroupState::PreparingRebalance => {
                member.protocols = request.protocols;
                member.session_timeout_ms = request.session_timeout_ms;
                member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                member.awaiting_join = Some((reply, request.supports_skip_assignment));
                self.maybe_complete_join(now_ms);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(is_leader && state == GroupState::Stable) =>
            {
                // The member missed the join response: hand it the current generation again.
                let result = self.join_result(&member_id, false);
                let _ = reply.send(result);
            }
            _ => {
                member.protocols = request.protocols;
                member.awaiting_join = Some((reply, request.supports_skip_assignment));
                self.prepare_rebalance(limits, now_ms);
            }
        }
        Effects::default()
    }

    fn add_member(&mut self, request: JoinRequest, member_id: String, now_ms: u64, reply: oneshot::Sender<JoinResult>) {
        self.join_sequence += 1;
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: Some((reply, request.supports_skip_assignment)),
            awaiting_sync: None,
            joined_at: self.join_sequence,
        };
        self.members.insert(member_id, member);
    }

    /// Starts (or continues) a rebalance: everyone must rejoin within the rebalance timeout.
    fn prepare_rebalance(&mut self, limits: &GroupLimits, now_ms: u64) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for their assignment must rejoin instead.
            for member in self.members.values_mut() {
                if let Some(reply) = member.awaiting_sync.take() {
                    let _ = reply.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let rebalance_timeout =
                self.members.values().map(|m| m.rebalance_timeout_ms.max(0) as u64).max().unwrap_or(0);
            // An empty group waits a little for more members before the first rebalance.
            let delay = if self.state == GroupState::Empty {
                limits.initial_rebalance_delay_ms.min(rebalance_timeout)
            } else {
                0
            };
            self.state = GroupState::PreparingRebalance;
            self.join_deadline_ms = Some(now_ms + rebalance_timeout.max(delay));
            self.initial_delay_until = Some(now_ms + delay);
        }
        self.maybe_complete_join(now_ms);
    }

    /// Completes the join phase once every member has rejoined, or at the deadline.
    fn maybe_complete_join(&mut self, now_ms: u64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        let delayed = self.initial_delay_until.is_some_and(|until| now_ms < until);
        let timed_out = self.join_deadline_ms.is_some_and(|deadline| now_ms >= deadline);
        if (all_joined && !delayed) || timed_out {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: u64) {
        // Members that did not rejoin in time leave the group.
        self.members.retain(|_, m| m.awaiting_join.is_some());
        // As in Kafka, every member's session starts over when the join phase completes.
        for member in self.members.values_mut() {
            member.last_heartbeat_ms = now_ms;
        }
        self.pending.clear();
        self.join_deadline_ms = None;
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|leader| !self.members.contains_key(leader)) {
            self.leader = self.members.values().min_by_key(|m| m.joined_at).map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result(&id, is_leader);
            if let Some(member) = self.members.get_mut(&id)
                && let Some((reply, _)) = member.awaiting_join.take()
            {
                let _ = reply.send(result);
            }
        }
    }

    /// Each member votes for its most preferred protocol among those all members support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(other, _)| other == *name)))
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(name, _)| candidates.contains(&name)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let mut best: Option<(&String, usize)> = None;
        for name in candidates {
            let count = votes.get(name).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.clone())
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: if with_members {
                let mut members: Vec<&Member> = self.members.values().collect();
                members.sort_by_key(|m| m.joined_at);
                members.iter().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Checks that a request comes from the current member and generation.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance_id) = instance_id
            && let Some(member) = self.member_by_instance(instance_id)
            && member.id != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: u64,
        reply: oneshot::Sender<SyncResult>,
    ) -> Effects {
        if let Err(error) = self.check_member(member_id, instance_id, generation) {
            let _ = reply.send(SyncResult::error(error));
            return Effects::default();
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            let _ = reply.send(SyncResult::error(ResponseError::InconsistentGroupProtocol));
            return Effects::default();
        }
        let is_leader = self.leader.as_deref() == Some(member_id);
        match self.state {
            GroupState::PreparingRebalance => {
                let _ = reply.send(SyncResult::error(ResponseError::RebalanceInProgress));
                Effects::default()
            }
            GroupState::Stable => {
                let result = self.sync_result(member_id);
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_heartbeat_ms = now_ms;
                }
                let _ = reply.send(result);
                Effects::default()
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_heartbeat_ms = now_ms;
                    member.awaiting_sync = Some(reply);
                }
                if !is_leader {
                    return Effects::default();
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for member in self.members.values_mut() {
                    member.assignment = given.remove(&member.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                Effects { persist: true }
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = reply.send(SyncResult::error(ResponseError::UnknownMemberId));
                Effects::default()
            }
        }
    }

    /// After the Stable group's record is written: answer the parked SyncGroups.
    pub fn release_syncs(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.sync_result(&id);
            if let Some(member) = self.members.get_mut(&id)
                && let Some(reply) = member.awaiting_sync.take()
            {
                let _ = reply.send(result);
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now_ms: u64) -> i16 {
        if self.state == GroupState::Dead {
            return ResponseError::CoordinatorNotAvailable.code();
        }
        if let Err(error) = self.check_member(member_id, instance_id, generation) {
            return error.code();
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// LeaveGroup of one member, by member id or (static members) by instance id.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, limits: &GroupLimits, now_ms: u64) -> i16 {
        let id = match instance_id {
            Some(instance_id) => match self.member_by_instance(instance_id) {
                Some(member) if member_id.is_empty() || member.id == member_id => member.id.clone(),
                Some(_) => return ResponseError::FencedInstanceId.code(),
                None => return ResponseError::UnknownMemberId.code(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return 0;
        }
        if !self.remove_member(&id) {
            return ResponseError::UnknownMemberId.code();
        }
        self.after_removal(limits, now_ms);
        0
    }

    fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut member) = self.members.remove(id) else { return false };
        if let Some((reply, _)) = member.awaiting_join.take() {
            let _ = reply.send(JoinResult::error(ResponseError::UnknownMemberId, id));
        }
        if let Some(reply) = member.awaiting_sync.take() {
            let _ = reply.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        true
    }

    fn after_removal(&mut self, limits: &GroupLimits, now_ms: u64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(limits, now_ms),
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
        if self.members.is_empty() && self.state == GroupState::PreparingRebalance {
            self.complete_join(now_ms);
        }
    }

    /// Time passes: expire silent members and pending ids, finish a timed-out join phase.
    /// Returns whether the group's stored record should be rewritten.
    pub fn tick(&mut self, limits: &GroupLimits, now_ms: u64) -> bool {
        let was = (self.state, self.generation);
        self.pending.retain(|_, expires| *expires > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
                    && now_ms >= m.last_heartbeat_ms + m.session_timeout_ms.max(0) as u64
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(limits, now_ms);
        }
        self.maybe_complete_join(now_ms);
        was != (self.state, self.generation) && matches!(self.state, GroupState::Empty)
    }

    /// The earliest time at which `tick` would change this group: a member's session ending, a
    /// MEMBER_ID_REQUIRED id expiring, the join phase's deadline, or the end of the initial
    /// rebalance delay once every member has joined. Members waiting for a join or sync answer
    /// have no session deadline (their request is parked, as in Kafka).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.last_heartbeat_ms + m.session_timeout_ms.max(0) as u64);
        let pending = self.pending.values().copied();
        let mut join = [None, None];
        if self.state == GroupState::PreparingRebalance {
            join[0] = self.join_deadline_ms;
            let all_joined = self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
            if all_joined {
                join[1] = self.initial_delay_until;
            }
        }
        sessions.chain(pending).chain(join.into_iter().flatten()).min()
    }

    /// Every member's metadata for the chosen protocol (the consumer protocol's subscriptions).
    pub fn member_metadata(&self) -> Vec<Bytes> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members.values().map(|m| m.metadata_for(&protocol)).collect()
    }
}

/// A member as stored in the group's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

impl ClassicGroup {
    pub fn stored_members(&self) -> Vec<StoredMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_at);
        members
            .into_iter()
            .map(|m| StoredMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                metadata: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }
}
