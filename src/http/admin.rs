//! Admin views as JSON: topics with their partitions' offsets, groups with members and lag, and
//! tiering state.
//! The web console draws these. Each lists only what the session may describe (with ACLs on);
//! tiering and the Iceberg sink need DESCRIBE on the cluster.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::groups::lag_json;
use super::{ApiError, HttpSession};
use crate::handler::Broker;
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

fn may(broker: &Broker, session: &Session, operation: Operation, resource: Resource<'_>) -> bool {
    broker.service.allowed(session, operation, resource)
}

pub(super) fn cluster_describe(broker: &Broker, session: &Session) -> Result<(), ApiError> {
    match may(broker, session, Operation::Describe, Resource::Cluster) {
        true => Ok(()),
        false => Err(ApiError::Forbidden("not authorized to describe the cluster".into())),
    }
}

pub(super) async fn topics(State(broker): State<Arc<Broker>>, HttpSession(session): HttpSession) -> Json<Value> {
    let topics: Vec<Value> = broker
        .log
        .topics()
        .iter()
        .filter(|topic| may(&broker, &session, Operation::Describe, Resource::Topic(&topic.name)))
        .map(|topic| {
            let partitions: Vec<Value> = topic
                .partitions
                .iter()
                .map(|p| {
                    let (log_start, log_end) = (p.log_start(), p.high_watermark());
                    json!({
                        "partition": p.index,
                        "log_start_offset": log_start,
                        "log_end_offset": log_end,
                        "records": log_end - log_start,
                    })
                })
                .collect();
            json!({
                "name": topic.name,
                "id": topic.id.to_string(),
                "configs": topic.config.overrides,
                "partitions": partitions,
            })
        })
        .collect();
    Json(json!({ "cluster_id": broker.log.cluster_id(), "topics": topics }))
}

pub(super) async fn groups(State(broker): State<Arc<Broker>>, HttpSession(session): HttpSession) -> Json<Value> {
    let groups: Vec<Value> = broker
        .coordinator
        .list()
        .into_iter()
        .filter(|(group_id, _, _)| may(&broker, &session, Operation::Describe, Resource::Group(group_id)))
        .map(|(group_id, protocol_type, state)| {
            let description = broker.coordinator.describe(&group_id);
            let members: Vec<Value> = description
                .as_ref()
                .map(|d| {
                    d.members
                        .iter()
                        .map(|m| {
                            json!({
                                "member_id": m.member_id,
                                "group_instance_id": m.instance_id,
                                "client_id": m.client_id,
                                "client_host": m.client_host,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut lag = broker.coordinator.lag(&group_id, &broker.log);
            lag.retain(|p| may(&broker, &session, Operation::Describe, Resource::Topic(&p.topic)));
            json!({
                "group_id": group_id,
                "state": state,
                "protocol_type": protocol_type,
                "protocol": description.map(|d| d.protocol).unwrap_or_default(),
                "members": members,
                "total_lag": lag.iter().map(|p| p.lag).sum::<i64>(),
                "partitions": lag.iter().map(lag_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

/// Every transactional id: state, producer id and epoch, timeout, the partitions of the
/// transaction in progress and how long it has run; a cluster has no transaction coordinator.
pub(super) async fn transactions(State(broker): State<Arc<Broker>>, HttpSession(session): HttpSession) -> Json<Value> {
    let Some(coordinator) = &broker.transactions else {
        return Json(json!({ "transactions": [], "coordinator": false }));
    };
    let now = crate::log::now_ms();
    let transactions: Vec<Value> = coordinator
        .list()
        .into_iter()
        .filter(|(id, _)| may(&broker, &session, Operation::Describe, Resource::TransactionalId(id)))
        .map(|(id, txn)| {
            let ongoing = txn.state == crate::coordinator::txn::TxnState::Ongoing;
            json!({
                "transactional_id": id,
                "state": txn.state.name(),
                "producer_id": txn.producer_id,
                "producer_epoch": txn.producer_epoch,
                "timeout_ms": txn.timeout_ms,
                "partitions": txn.partitions.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
                "running_ms": if ongoing { json!(now - txn.start_ms) } else { Value::Null },
            })
        })
        .collect();
    Json(json!({ "transactions": transactions, "coordinator": true }))
}

/// Every partition's tiering state: log start, hot-tier start, remote end, uploads; object store
/// request counts.
pub(super) async fn tiering(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
) -> Result<Json<crate::tier::TierStatus>, ApiError> {
    cluster_describe(&broker, &session)?;
    Ok(Json(crate::tier::status(&broker.log, broker.unified.tier())))
}

/// Every topic's table: committed offsets, records behind, commits, files, errors.
pub(super) async fn iceberg(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
) -> Result<Json<crate::iceberg::IcebergStatus>, ApiError> {
    cluster_describe(&broker, &session)?;
    Ok(Json(crate::iceberg::status(&broker.iceberg, &broker.log)))
}
