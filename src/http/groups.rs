//! Consumer group offsets over HTTP: commit, fetch, and lag.
//!
//! Commits go through the coordinator as a standalone (simple) consumer's OffsetCommit would: they
//! are allowed while the group has no members and refused (409) while Kafka consumers own it.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use kafka_protocol::ResponseError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, HttpSession};
use crate::coordinator::group::{CommitRequest, OFFSET_METADATA_BYTES_MAX, PartitionLag};
use crate::handler::Broker;
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitBody {
    offsets: Vec<CommitEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitEntry {
    topic: String,
    partition: i32,
    offset: i64,
    metadata: Option<String>,
}

/// 403 unless the session may do `operation` on the group.
fn authorize_group(broker: &Broker, session: &Session, operation: Operation, group_id: &str) -> Result<(), ApiError> {
    match broker.service.allowed(session, operation, Resource::Group(group_id)) {
        true => Ok(()),
        false => Err(ApiError::Forbidden(format!("not authorized to access group {group_id}"))),
    }
}

fn may_describe_topic(broker: &Broker, session: &Session, topic: &str) -> bool {
    broker.service.allowed(session, Operation::Describe, Resource::Topic(topic))
}

pub(super) async fn commit_offsets(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    group_id: Result<Path<String>, PathRejection>,
    body: Result<Json<CommitBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(group_id) = group_id?;
    let Json(body) = body?;
    authorize_group(&broker, &session, Operation::Read, &group_id)?;
    if body.offsets.is_empty() {
        return Err(ApiError::BadRequest("offsets is empty".into()));
    }
    // Everything is checked before the commit, which then writes all of it at once.
    let mut requests = Vec::with_capacity(body.offsets.len());
    for entry in body.offsets {
        let topic = broker
            .service
            .topic(&session, &entry.topic, Operation::Read)
            .map_err(|e| ApiError::from_log(e, &entry.topic))?;
        topic
            .partition(entry.partition)
            .ok_or_else(|| ApiError::UnknownPartition { topic: entry.topic.clone(), partition: entry.partition })?;
        if entry.offset < 0 {
            return Err(ApiError::BadRequest(format!("offset {} is negative", entry.offset)));
        }
        if entry.metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
            return Err(ApiError::BadRequest(format!("metadata is over {OFFSET_METADATA_BYTES_MAX} bytes")));
        }
        requests.push(CommitRequest {
            topic: entry.topic,
            partition: entry.partition,
            offset: entry.offset,
            leader_epoch: -1,
            metadata: entry.metadata,
        });
    }
    let committed: Vec<Value> =
        requests.iter().map(|r| json!({ "topic": r.topic, "partition": r.partition, "offset": r.offset })).collect();
    match broker.coordinator.commit(&group_id, -1, "", None, requests).await {
        Ok(codes) if codes.iter().all(|&code| code == 0) => {
            Ok(Json(json!({ "group_id": group_id, "offsets": committed })))
        }
        Ok(_) => Err(ApiError::Internal("some offsets were not committed".into())),
        Err(code) if code == ResponseError::InvalidGroupId.code() => {
            Err(ApiError::BadRequest("the group id must not be empty".into()))
        }
        Err(code) if code == ResponseError::UnknownMemberId.code() => Err(ApiError::Conflict(format!(
            "group {group_id} has active members; they commit through the Kafka protocol"
        ))),
        Err(code) => Err(ApiError::Internal(format!("offset commit failed with Kafka error code {code}"))),
    }
}

pub(super) async fn fetch_offsets(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    group_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(group_id) = group_id?;
    authorize_group(&broker, &session, Operation::Describe, &group_id)?;
    group_state(&broker, &group_id)?;
    let offsets: Vec<Value> = broker
        .coordinator
        .committed(&group_id, None)
        .into_iter()
        .filter(|(topic, _, _)| may_describe_topic(&broker, &session, topic))
        .filter_map(|(topic, partition, committed)| {
            let committed = committed?;
            Some(json!({
                "topic": topic,
                "partition": partition,
                "offset": committed.offset,
                "metadata": committed.metadata,
                "commit_timestamp": committed.commit_timestamp_ms,
            }))
        })
        .collect();
    Ok(Json(json!({ "group_id": group_id, "offsets": offsets })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LagQuery {
    group_id: Option<String>,
}

pub(super) async fn lag(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    query: Result<Query<LagQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let group_id = query.group_id.ok_or_else(|| ApiError::BadRequest("group_id is required".into()))?;
    authorize_group(&broker, &session, Operation::Describe, &group_id)?;
    let state = group_state(&broker, &group_id)?;
    let mut partitions = broker.coordinator.lag(&group_id, &broker.log);
    partitions.retain(|p| may_describe_topic(&broker, &session, &p.topic));
    Ok(Json(json!({
        "group_id": group_id,
        "state": state,
        "total_lag": partitions.iter().map(|p| p.lag).sum::<i64>(),
        "partitions": partitions.iter().map(lag_json).collect::<Vec<_>>(),
    })))
}

pub(super) fn lag_json(lag: &PartitionLag) -> Value {
    json!({
        "topic": lag.topic,
        "partition": lag.partition,
        "committed_offset": lag.committed,
        "log_end_offset": lag.log_end,
        "lag": lag.lag,
    })
}

/// The group's state, or 404 when the coordinator knows nothing of it.
fn group_state(broker: &Broker, group_id: &str) -> Result<&'static str, ApiError> {
    broker
        .coordinator
        .list()
        .into_iter()
        .find(|(id, _, _)| id == group_id)
        .map(|(_, _, state)| state)
        .ok_or_else(|| ApiError::NotFound(format!("group {group_id} does not exist")))
}
