//! Consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete. This broker coordinates
//! every group itself.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestKind, SyncGroupRequest, SyncGroupResponse, delete_groups_response::DeletableGroupResult,
};

use super::{Broker, Handled, str_bytes, topic_name};
use crate::coordinator::group::{CommitRequest, CommittedOffset, JoinRequest, JoinResult, SyncResult};
use crate::protocol::apis::Family;
use crate::protocol::{CountErrors, ErrorCounts};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// JoinGroup records each member's client id and host, so they come along.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let handled = match request {
        RequestKind::FindCoordinator(body) => Handled::counted(find_coordinator(broker, body, version, session)),
        RequestKind::JoinGroup(body) => Handled::counted(join(broker, body, version, session).await),
        RequestKind::SyncGroup(body) => Handled::counted(sync(broker, body, session).await),
        RequestKind::Heartbeat(body) => Handled::counted(heartbeat(broker, body, session)),
        RequestKind::LeaveGroup(body) => Handled::counted(leave(broker, body, version, session).await),
        RequestKind::OffsetCommit(body) => Handled::counted(offset_commit(broker, body, session).await),
        RequestKind::OffsetFetch(body) => Handled::counted(offset_fetch(broker, body, version, session)),
        RequestKind::DescribeGroups(body) => Handled::counted(describe_groups(broker, body, version, session)),
        RequestKind::ListGroups(body) => Handled::counted(list_groups(broker, body, session)),
        RequestKind::DeleteGroups(body) => Handled::counted(delete_groups(broker, body, session).await),
        RequestKind::OffsetDelete(body) => Handled::uncounted(offset_delete(broker, body, session).await),
        _ => return super::misrouted(Family::Groups),
    };
    Some(handled)
}

/// Why this broker cannot answer for the group (another broker coordinates it, or it is still
/// being loaded here), as the Kafka error a client expects; `None` when it can.
pub(super) fn not_coordinating(broker: &Broker, group_id: &str) -> Option<ResponseError> {
    match broker.cluster.coordinator_ready(group_id) {
        // Given the slot, but its groups and offsets are still being read from the store.
        Ok(()) if !broker.coordinator.is_loaded(group_id) => Some(ResponseError::CoordinatorLoadInProgress),
        Ok(()) => None,
        Err(crate::log::LogError::CoordinatorLoadInProgress) => Some(ResponseError::CoordinatorLoadInProgress),
        Err(_) => Some(ResponseError::NotCoordinator),
    }
}

/// Why the group request is not answered: the session may not do `operation` on the group
/// (GROUP_AUTHORIZATION_FAILED, checked first, as Kafka does), or this broker does not
/// coordinate it; `None` when it is answered.
fn refused(broker: &Broker, session: &Session, operation: Operation, group_id: &str) -> Option<ResponseError> {
    if !broker.service.allowed(session, operation, Resource::Group(group_id)) {
        return Some(ResponseError::GroupAuthorizationFailed);
    }
    not_coordinating(broker, group_id)
}

fn text(value: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    value.as_ref().map(|s| s.as_str().to_string())
}

pub(super) fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    session: &Session,
) -> FindCoordinatorResponse {
    let cluster = &broker.cluster;
    let listener = &session.listener;
    let entry = |key: &str| {
        let mut entry = CoordinatorEntry::default();
        entry.key = str_bytes(key);
        let denied = match request.key_type {
            KEY_TYPE_GROUP if !broker.service.allowed(session, Operation::Describe, Resource::Group(key)) => {
                Some(ResponseError::GroupAuthorizationFailed)
            }
            KEY_TYPE_TRANSACTION
                if !broker.service.allowed(session, Operation::Describe, Resource::TransactionalId(key)) =>
            {
                Some(ResponseError::TransactionalIdAuthorizationFailed)
            }
            _ => None,
        };
        if request.key_type != KEY_TYPE_GROUP && request.key_type != KEY_TYPE_TRANSACTION {
            entry.node_id = (-1).into();
            entry.error_code = ResponseError::InvalidRequest.code();
            entry.error_message = Some(str_bytes(format!("unknown coordinator key type {}", request.key_type)));
        } else if let Some(error) = denied {
            entry.node_id = (-1).into();
            entry.error_code = error.code();
        } else if request.key_type == KEY_TYPE_GROUP || broker.transactions.is_some() {
            // A single broker coordinates every group and every transactional id; in a cluster,
            // groups and transactional ids are placed by the same slots.
            match cluster.broker_on(cluster.coordinator_for(key), listener) {
                Some(node) => {
                    entry.node_id = node.node_id.into();
                    entry.host = str_bytes(node.host);
                    entry.port = node.port;
                }
                None => {
                    entry.node_id = (-1).into();
                    entry.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        } else {
            // No transaction coordinator runs here. A retriable error (COORDINATOR_NOT_AVAILABLE)
            // would have the Java producer's initTransactions() wait out max.block.ms; this one
            // fails it at once, as InitProducerId does.
            entry.node_id = (-1).into();
            entry.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            entry.error_message = Some(str_bytes("this broker runs no transaction coordinator"));
        }
        entry
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request.coordinator_keys.iter().map(|k| entry(k.as_str())).collect();
    } else {
        let single = entry(request.key.as_str());
        response.error_code = single.error_code;
        response.error_message = single.error_message.filter(|_| version >= 1);
        response.node_id = single.node_id;
        response.host = single.host;
        response.port = single.port;
    }
    response
}

impl CountErrors for FindCoordinatorResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
        counts.add_all(self.coordinators.iter().map(|c| c.error_code));
    }
}

pub(super) async fn join(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    session: &Session,
) -> JoinGroupResponse {
    let join = JoinRequest {
        member_id: request.member_id.as_str().to_string(),
        instance_id: text(&request.group_instance_id),
        client_id: session.client_id.clone(),
        client_host: session.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 { request.session_timeout_ms } else { request.rebalance_timeout_ms },
        protocol_type: request.protocol_type.as_str().to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.as_str().to_string(), p.metadata.clone())).collect(),
        requires_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let result = match refused(broker, session, Operation::Read, request.group_id.as_str()) {
        Some(error) => JoinResult::error(error, request.member_id.as_str()),
        None => broker.coordinator.join(request.group_id.as_str(), join).await,
    };
    let mut response = JoinGroupResponse::default();
    response.error_code = result.error;
    response.generation_id = result.generation;
    response.protocol_type = result.protocol_type.map(str_bytes);
    // Before v7 the protocol name is not nullable.
    response.protocol_name = result.protocol_name.map(str_bytes).or_else(|| (version < 7).then(|| str_bytes("")));
    response.leader = str_bytes(result.leader);
    response.skip_assignment = result.skip_assignment;
    response.member_id = str_bytes(result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|(id, instance_id, metadata)| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(id);
            member.group_instance_id = instance_id.map(str_bytes);
            member.metadata = metadata;
            member
        })
        .collect();
    response
}

impl CountErrors for JoinGroupResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

pub(super) async fn sync(broker: &Arc<Broker>, request: SyncGroupRequest, session: &Session) -> SyncGroupResponse {
    let assignments =
        request.assignments.iter().map(|a| (a.member_id.as_str().to_string(), a.assignment.clone())).collect();
    let result = match refused(broker, session, Operation::Read, request.group_id.as_str()) {
        Some(error) => SyncResult::error(error),
        None => {
            broker
                .coordinator
                .sync(
                    request.group_id.as_str(),
                    request.member_id.as_str(),
                    request.group_instance_id.as_ref().map(|s| s.as_str()),
                    request.generation_id,
                    request.protocol_type.as_ref().map(|s| s.as_str()),
                    request.protocol_name.as_ref().map(|s| s.as_str()),
                    assignments,
                )
                .await
        }
    };
    let mut response = SyncGroupResponse::default();
    response.error_code = result.error;
    response.protocol_type = result.protocol_type.map(str_bytes);
    response.protocol_name = result.protocol_name.map(str_bytes);
    response.assignment = result.assignment;
    response
}

impl CountErrors for SyncGroupResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

pub(super) fn heartbeat(broker: &Broker, request: HeartbeatRequest, session: &Session) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    if let Some(error) = refused(broker, session, Operation::Read, request.group_id.as_str()) {
        response.error_code = error.code();
        return response;
    }
    response.error_code = broker.coordinator.heartbeat(
        request.group_id.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        request.generation_id,
    );
    response
}

impl CountErrors for HeartbeatResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

pub(super) async fn leave(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
    session: &Session,
) -> LeaveGroupResponse {
    // v0–2 name one member; v3+ a batch of members, static ones by instance id.
    let members: Vec<(String, Option<String>)> = if version < 3 {
        vec![(request.member_id.as_str().to_string(), None)]
    } else {
        request.members.iter().map(|m| (m.member_id.as_str().to_string(), text(&m.group_instance_id))).collect()
    };
    let mut response = LeaveGroupResponse::default();
    let left = match refused(broker, session, Operation::Read, request.group_id.as_str()) {
        Some(error) => Err(error.code()),
        // An unknown group knows none of the members: Kafka answers each UNKNOWN_MEMBER_ID
        // (v3+; v0–2 at the top level).
        None => broker.coordinator.leave(request.group_id.as_str(), &members).await.or_else(|code| {
            if code == ResponseError::UnknownMemberId.code() { Ok(vec![code; members.len()]) } else { Err(code) }
        }),
    };
    match left {
        Ok(codes) if version < 3 => response.error_code = codes.first().copied().unwrap_or(0),
        Ok(codes) => {
            response.members = members
                .into_iter()
                .zip(codes)
                .map(|((id, instance_id), code)| {
                    let mut member = MemberResponse::default();
                    member.member_id = str_bytes(id);
                    member.group_instance_id = instance_id.map(str_bytes);
                    member.error_code = code;
                    member
                })
                .collect();
        }
        Err(code) => response.error_code = code,
    }
    response
}

impl CountErrors for LeaveGroupResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
        counts.add_all(self.members.iter().map(|m| m.error_code));
    }
}

pub(super) async fn offset_commit(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    session: &Session,
) -> OffsetCommitResponse {
    let mut requests = Vec::new();
    let mut layout = Vec::new();
    for topic in &request.topics {
        // Committing needs READ on each topic; the others are answered without the coordinator.
        let found = broker.service.topic(session, topic.name.as_str(), Operation::Read);
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            let refused = match &found {
                Err(error) => Some(super::same_error(error).code()),
                Ok(t) if t.partition(partition.partition_index).is_none() => {
                    Some(ResponseError::UnknownTopicOrPartition.code())
                }
                Ok(_) => None,
            };
            if refused.is_none() {
                requests.push(CommitRequest {
                    topic: topic.name.as_str().to_string(),
                    partition: partition.partition_index,
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: text(&partition.committed_metadata),
                });
            }
            partitions.push((partition.partition_index, refused));
        }
        layout.push((topic.name.clone(), partitions));
    }
    let outcome = match refused(broker, session, Operation::Read, request.group_id.as_str()) {
        Some(error) => Err(error.code()),
        None => {
            broker
                .coordinator
                .commit(
                    request.group_id.as_str(),
                    request.generation_id_or_member_epoch,
                    request.member_id.as_str(),
                    request.group_instance_id.as_ref().map(|s| s.as_str()),
                    requests,
                )
                .await
        }
    };
    let mut codes = match &outcome {
        Ok(codes) => codes.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let mut response = OffsetCommitResponse::default();
    for (name, partitions) in layout {
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = name;
        for (index, refused) in partitions {
            let mut partition = OffsetCommitResponsePartition::default();
            partition.partition_index = index;
            partition.error_code = match (&outcome, refused) {
                (Err(code), _) => *code,
                (Ok(_), Some(code)) => code,
                (Ok(_), None) => codes.next().unwrap_or(0),
            };
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}

impl CountErrors for OffsetCommitResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
    }
}

fn fetch_partition(index: i32, committed: Option<CommittedOffset>) -> (i32, i64, i32, String) {
    match committed {
        Some(c) => (index, c.offset, c.leader_epoch, c.metadata),
        None => (index, -1, -1, String::new()),
    }
}

/// How OffsetFetch answers a committed offset of a topic the session may not describe: asked for
/// by name, TOPIC_AUTHORIZATION_FAILED without the offset; asked for as "every topic", left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Shown,
    Refused,
    Hidden,
}

fn visibility(broker: &Broker, session: &Session, topic: &str, named: bool) -> Visibility {
    match (broker.service.allowed(session, Operation::Describe, Resource::Topic(topic)), named) {
        (true, _) => Visibility::Shown,
        (false, true) => Visibility::Refused,
        (false, false) => Visibility::Hidden,
    }
}

pub(super) fn offset_fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
    session: &Session,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in &request.groups {
            let wanted: Option<Vec<(String, Vec<i32>)>> = group.topics.as_ref().map(|topics| {
                topics.iter().map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone())).collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = group.group_id.clone();
            if let Some(error) = refused(broker, session, Operation::Describe, group.group_id.as_str()) {
                out.error_code = error.code();
                response.groups.push(out);
                continue;
            }
            let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
            let unstable = unstable_offsets(broker, group.group_id.as_str(), request.require_stable);
            for (topic, partition, committed) in
                broker.coordinator.committed(group.group_id.as_str(), wanted.as_deref())
            {
                let visibility = visibility(broker, session, &topic, wanted.is_some());
                if visibility == Visibility::Hidden {
                    continue;
                }
                if topics.last().is_none_or(|t| t.name.as_str() != topic) {
                    let mut entry = OffsetFetchResponseTopics::default();
                    entry.name = topic_name(&topic);
                    topics.push(entry);
                }
                let (index, offset, epoch, metadata) = fetch_partition(partition, committed);
                let mut p = OffsetFetchResponsePartitions::default();
                p.partition_index = index;
                p.committed_offset = offset;
                p.committed_leader_epoch = epoch;
                p.metadata = Some(str_bytes(metadata));
                if unstable.contains(&(topic.clone(), partition)) {
                    p.error_code = ResponseError::UnstableOffsetCommit.code();
                    p.committed_offset = -1;
                }
                if visibility == Visibility::Refused {
                    p.error_code = ResponseError::TopicAuthorizationFailed.code();
                    (p.committed_offset, p.committed_leader_epoch, p.metadata) = (-1, -1, Some(str_bytes("")));
                }
                if let Some(last) = topics.last_mut() {
                    last.partitions.push(p);
                }
            }
            out.topics = topics;
            response.groups.push(out);
        }
        return response;
    }
    // The top-level error is a v2+ field.
    if let Some(error) = refused(broker, session, Operation::Describe, request.group_id.as_str())
        && version >= 2
    {
        response.error_code = error.code();
        return response;
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = request
        .topics
        .as_ref()
        .map(|topics| topics.iter().map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone())).collect());
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    let unstable = unstable_offsets(broker, request.group_id.as_str(), version >= 7 && request.require_stable);
    for (topic, partition, committed) in broker.coordinator.committed(request.group_id.as_str(), wanted.as_deref()) {
        let visibility = visibility(broker, session, &topic, wanted.is_some());
        if visibility == Visibility::Hidden {
            continue;
        }
        if topics.last().is_none_or(|t| t.name.as_str() != topic) {
            let mut entry = OffsetFetchResponseTopic::default();
            entry.name = topic_name(&topic);
            topics.push(entry);
        }
        let (index, offset, epoch, metadata) = fetch_partition(partition, committed);
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = index;
        p.committed_offset = offset;
        if version >= 5 {
            p.committed_leader_epoch = epoch;
        }
        p.metadata = Some(str_bytes(metadata));
        if unstable.contains(&(topic.clone(), partition)) {
            p.error_code = ResponseError::UnstableOffsetCommit.code();
            p.committed_offset = -1;
        }
        if visibility == Visibility::Refused {
            p.error_code = ResponseError::TopicAuthorizationFailed.code();
            (p.committed_offset, p.committed_leader_epoch, p.metadata) = (-1, -1, Some(str_bytes("")));
        }
        if let Some(last) = topics.last_mut() {
            last.partitions.push(p);
        }
    }
    response.topics = topics;
    response
}

/// With `require_stable` (KIP-447), the partitions whose offsets a transaction in progress
/// commits: they answer UNSTABLE_OFFSET_COMMIT until it ends, and the consumer retries.
fn unstable_offsets(broker: &Broker, group: &str, require_stable: bool) -> std::collections::BTreeSet<(String, i32)> {
    match require_stable {
        true => broker.coordinator.unstable_offsets(group),
        false => Default::default(),
    }
}

/// v0–7 answer one group at the top level, v8+ a list of groups.
impl CountErrors for OffsetFetchResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
        counts.add_all(self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
        for group in &self.groups {
            counts.add(group.error_code);
            counts.add_all(group.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code));
        }
    }
}

pub(super) fn describe_groups(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
    session: &Session,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for id in request.groups {
        let mut group = DescribedGroup::default();
        if let Some(error) = refused(broker, session, Operation::Describe, id.as_str()) {
            group.error_code = error.code();
            group.group_state = str_bytes("Dead");
            group.group_id = id;
            response.groups.push(group);
            continue;
        }
        match broker.coordinator.describe(id.as_str()) {
            Some(description) => {
                group.group_state = str_bytes(description.state);
                group.protocol_type = str_bytes(description.protocol_type);
                group.protocol_data = str_bytes(description.protocol);
                group.members = description
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            member.group_instance_id = m.instance_id.map(str_bytes);
                        }
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.member_metadata = m.metadata;
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            None => {
                group.group_state = str_bytes("Dead");
                if version >= 6 {
                    group.error_code = ResponseError::GroupIdNotFound.code();
                    group.error_message = Some(str_bytes(format!("Group {} not found.", id.as_str())));
                }
            }
        }
        if version >= 3 && request.include_authorized_operations {
            let resource = Resource::Group(id.as_str());
            group.authorized_operations = broker.service.authorized_operations(session, resource, &Operation::GROUP);
        }
        group.group_id = id;
        response.groups.push(group);
    }
    response
}

impl CountErrors for DescribeGroupsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.groups.iter().map(|g| g.error_code));
    }
}

pub(super) fn list_groups(broker: &Broker, request: ListGroupsRequest, session: &Session) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    // DESCRIBE on the cluster lists every group; otherwise those the session may describe.
    let every = broker.service.allowed(session, Operation::Describe, Resource::Cluster);
    let states: Vec<String> = request.states_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
    for (id, protocol_type, state) in broker.coordinator.list() {
        if !every && !broker.service.allowed(session, Operation::Describe, Resource::Group(&id)) {
            continue;
        }
        if !states.is_empty() && !states.contains(&state.to_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == "classic") {
            continue;
        }
        let mut group = ListedGroup::default();
        group.group_id = GroupId(str_bytes(id));
        group.protocol_type = str_bytes(protocol_type);
        group.group_state = str_bytes(state);
        group.group_type = str_bytes("classic");
        response.groups.push(group);
    }
    response
}

impl CountErrors for ListGroupsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add(self.error_code);
    }
}

pub(super) async fn delete_groups(
    broker: &Arc<Broker>,
    request: DeleteGroupsRequest,
    session: &Session,
) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    let mut names = request.groups_names;
    // A group named twice is answered once, as Kafka does.
    let mut seen = std::collections::HashSet::new();
    names.retain(|id| seen.insert(id.as_str().to_string()));
    for id in names {
        let mut result = DeletableGroupResult::default();
        result.error_code = match refused(broker, session, Operation::Delete, id.as_str()) {
            Some(error) => error.code(),
            None => broker.coordinator.delete_group(id.as_str()).await,
        };
        result.group_id = id;
        response.results.push(result);
    }
    response
}

impl CountErrors for DeleteGroupsResponse {
    fn count_errors(&self, counts: &mut ErrorCounts) {
        counts.add_all(self.results.iter().map(|g| g.error_code));
    }
}

pub(super) async fn offset_delete(
    broker: &Arc<Broker>,
    request: OffsetDeleteRequest,
    session: &Session,
) -> OffsetDeleteResponse {
    // Deleting a topic's offsets needs READ on it; those refused are left alone.
    let topics: Vec<_> = request
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.service.topic(session, topic.name.as_str(), Operation::Read);
            let refused = |index: i32| match &found {
                Err(error) => Some(super::same_error(error).code()),
                Ok(t) if t.partition(index).is_none() => Some(ResponseError::UnknownTopicOrPartition.code()),
                Ok(_) => None,
            };
            let partitions: Vec<(i32, Option<i16>)> =
                topic.partitions.iter().map(|p| (p.partition_index, refused(p.partition_index))).collect();
            (topic.name, partitions)
        })
        .collect();
    let deletable: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|(name, partitions)| {
            partitions.iter().filter(|(_, refused)| refused.is_none()).map(|(index, _)| (name.to_string(), *index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    let deleted = match refused(broker, session, Operation::Delete, request.group_id.as_str()) {
        Some(error) => Err(error.code()),
        None => broker.coordinator.delete_offsets(request.group_id.as_str(), &deletable).await,
    };
    match deleted {
        Ok(codes) => {
            let mut codes = codes.into_iter();
            for (name, partitions) in topics {
                let mut out = OffsetDeleteResponseTopic::default();
                for (index, refused) in partitions {
                    let mut p = OffsetDeleteResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = match refused {
                        Some(code) => code,
                        None => codes.next().unwrap_or(0),
                    };
                    out.partitions.push(p);
                }
                out.name = name;
                response.topics.push(out);
            }
        }
        Err(code) => response.error_code = code,
    }
    response
}
