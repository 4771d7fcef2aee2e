//! Consumer groups over HTTP, in Confluent REST Proxy v2's shape: an HTTP consumer instance is a
//! real member of the broker's group coordinator, in the same groups as Kafka consumers.
//!
//! Each instance has a driver task that speaks the classic consumer protocol to the coordinator
//! on the instance's behalf, exactly as a Kafka consumer would: JoinGroup (protocol type
//! `consumer`, the `range` assignor, which Kafka clients also offer), SyncGroup (assigning for the
//! whole group when it is elected leader), and a heartbeat that learns of rebalances. While a
//! rebalance is under way the instance owns nothing, so no partition is owned by two members at
//! once. The HTTP client keeps the instance alive by using it (reading records, committing,
//! joining again); an instance unused for its session timeout leaves the group and is deleted.
//!
//! Instances live on the broker that created them, as in REST Proxy. In a cluster, that broker
//! must coordinate the group (421 names the one that does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes as BodyBytes};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_protocol_assignment::{self, ConsumerProtocolAssignment};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::events::{last_offset_after, record_json};
use super::records::{self, StoredRecord};
use super::{ApiError, HttpSession};
use crate::coordinator::group::CommitRequest;
use crate::coordinator::group::JoinRequest;
use crate::handler::Broker;
use crate::log::{AbortedTxn, Isolation, LogError, now_ms};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;
use crate::service::{PartitionRead, ReadWait};

/// The one assignor HTTP members offer; Kafka's clients (Java, librdkafka, franz-go) offer it too.
const ASSIGNOR: &str = "range";
/// Kafka's default `session.timeout.ms`.
const SESSION_TIMEOUT_MS_DEFAULT: i32 = 45_000;
/// How long a records request waits for data by default (REST Proxy's `consumer.request.timeout.ms`).
const RECORDS_WAIT_MS_DEFAULT: u64 = 1_000;
const RECORDS_WAIT_MS_MAX: u64 = 30_000;
/// How long a join waits for the group to settle before answering what it has.
const JOIN_WAIT_MS_DEFAULT: u64 = 10_000;
const INSTANCE_NAME_BYTES_MAX: usize = 255;

/// Every HTTP consumer instance of this broker, by group and name.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
}

impl Consumers {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<Instance>>> {
        // The map is only inserted into and removed from; a panic elsewhere cannot leave it torn.
        self.instances.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, group: &str, name: &str) -> Result<Arc<Instance>, ApiError> {
        let instance = self.lock().get(&(group.to_string(), name.to_string())).cloned();
        let instance = instance.filter(|i| !i.state().deleted).ok_or_else(|| {
            ApiError::NotFound(format!("consumer instance {name} of group {group} does not exist (or expired)"))
        })?;
        instance.touch();
        Ok(instance)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// UTF-8 keys and values as text, anything else as `…_base64` (the events API's shape).
    Text,
    /// Every key and value as `…_base64`.
    Base64,
    /// REST Proxy's binary format: `key` and `value` are base64 strings.
    Binary,
}

#[derive(Debug)]
struct Instance {
    group: String,
    name: String,
    client_host: String,
    /// Whether the listener serves HTTPS (`--http-tls`), for the instance's `base_uri`.
    https: bool,
    format: Format,
    reset: Reset,
    auto_commit: bool,
    session_timeout_ms: i32,
    last_used_ms: AtomicI64,
    state: Mutex<InstanceState>,
    /// Wakes the driver: the subscription changed or the instance was deleted.
    changed: Notify,
    /// Bumped whenever the instance's membership settles or is revoked.
    settled: watch::Sender<u64>,
}

/// The next offset to read, per (topic, partition).
type Positions = BTreeMap<(String, i32), i64>;

#[derive(Debug, Default)]
struct InstanceState {
    topics: BTreeSet<String>,
    member_id: String,
    generation: i32,
    /// Empty while a rebalance is under way: the instance owns nothing then.
    assigned: BTreeSet<(String, i32)>,
    /// Whether `assigned` is the group's current, settled assignment.
    stable: bool,
    /// The next offset to read, per assigned partition (absent: from the committed offset).
    positions: Positions,
    /// Why the last join failed, if it did.
    problem: Option<String>,
    /// The subscription changed since the driver last joined.
    rejoin: bool,
    deleted: bool,
}

impl Instance {
    fn state(&self) -> MutexGuard<'_, InstanceState> {
        // Every update below leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        now_ms() - self.last_used_ms.load(Ordering::Relaxed) > i64::from(self.session_timeout_ms)
    }

    fn base_uri(&self, headers: &HeaderMap) -> String {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}/consumers/{}/instances/{}", self.group, self.name)
    }

    /// Gives up every partition (a rebalance began or membership was lost).
    fn revoke(&self) {
        let mut state = self.state();
        state.assigned.clear();
        state.positions.clear();
        state.stable = false;
        drop(state);
        self.settled.send_modify(|n| *n += 1);
    }

    fn describe(&self, headers: &HeaderMap) -> Value {
        let state = self.state();
        json!({
            "group_id": self.group,
            "client_id": self.name,
            "instance_id": self.name,
            "base_uri": self.base_uri(headers),
            "member_id": state.member_id,
            "generation_id": state.generation,
            "state": if state.stable { "stable" } else { "rebalancing" },
            "topics": state.topics,
            "assigned_partitions": partitions_json(&state.assigned),
            "error": state.problem,
        })
    }
}

fn partitions_json(partitions: &BTreeSet<(String, i32)>) -> Vec<Value> {
    partitions.iter().map(|(topic, partition)| json!({ "topic": topic, "partition": partition })).collect()
}

/// The body of `POST /consumers/{group}` (REST Proxy v2's names, plus `topics` and
/// `session.timeout.ms`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: Option<String>,
    format: Option<String>,
    #[serde(rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    #[serde(rename = "auto.commit.enable")]
    auto_commit_enable: Option<Value>,
    #[serde(rename = "session.timeout.ms")]
    session_timeout_ms: Option<i32>,
    topics: Option<Vec<String>>,
}

/// `POST /consumers/{group}`: creates an instance (201 with its id and base URI).
pub(super) async fn create(
    State(broker): State<Arc<Broker>>,
    Extension(consumers): Extension<Arc<Consumers>>,
    HttpSession(session): HttpSession,
    headers: HeaderMap,
    group: Result<Path<String>, PathRejection>,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let Path(group) = group?;
    // REST Proxy clients often send no body at all.
    let body: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let name = body.name.clone().unwrap_or_else(|| format!("zombi-http-{}", uuid::Uuid::new_v4()));
    let instance = new_instance(&broker, &consumers, &session, &group, &name, body)?;
    let answer = json!({ "instance_id": instance.name, "base_uri": instance.base_uri(&headers) });
    Ok((StatusCode::OK, Json(answer)).into_response())
}

fn new_instance(
    broker: &Arc<Broker>,
    consumers: &Arc<Consumers>,
    session: &Session,
    group: &str,
    name: &str,
    body: CreateBody,
) -> Result<Arc<Instance>, ApiError> {
    check_group(broker, session, group)?;
    if name.is_empty() || name.len() > INSTANCE_NAME_BYTES_MAX || name.contains('/') {
        return Err(ApiError::BadRequest(format!(
            "an instance name is 1 to {INSTANCE_NAME_BYTES_MAX} bytes without '/'"
        )));
    }
    let format = match body.format.as_deref() {
        None | Some("text") | Some("json") => Format::Text,
        Some("base64") => Format::Base64,
        Some("binary") => Format::Binary,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("format must be text, base64 or binary, not {other:?}")));
        }
    };
    let reset = match body.auto_offset_reset.as_deref() {
        None | Some("latest") | Some("largest") => Reset::Latest,
        Some("earliest") | Some("smallest") => Reset::Earliest,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("auto.offset.reset must be earliest or latest, not {other:?}")));
        }
    };
    let auto_commit = match &body.auto_commit_enable {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            return Err(ApiError::BadRequest(format!("auto.commit.enable must be true or false, not {other}")));
        }
    };
    let session_timeout_ms = body.session_timeout_ms.unwrap_or(SESSION_TIMEOUT_MS_DEFAULT);
    let (min, max) = (broker.config.groups.min_session_timeout_ms, broker.config.groups.max_session_timeout_ms);
    if !(min..=max).contains(&session_timeout_ms) {
        return Err(ApiError::BadRequest(format!(
            "session.timeout.ms must be between {min} and {max} (group.min/max.session.timeout.ms)"
        )));
    }
    let topics = body.topics.unwrap_or_default();
    check_topics(broker, session, &topics)?;
    let instance = Arc::new(Instance {
        group: group.to_string(),
        name: name.to_string(),
        client_host: session.client_host.clone(),
        https: broker.config.http.tls,
        format,
        reset,
        auto_commit,
        session_timeout_ms,
        last_used_ms: AtomicI64::new(now_ms()),
        state: Mutex::new(InstanceState { topics: topics.into_iter().collect(), ..InstanceState::default() }),
        changed: Notify::new(),
        settled: watch::Sender::new(0),
    });
    {
        let mut instances = consumers.lock();
        let key = (group.to_string(), name.to_string());
        if instances.get(&key).is_some_and(|i| !i.state().deleted) {
            return Err(ApiError::Conflict(format!("consumer instance {name} of group {group} already exists")));
        }
        instances.insert(key, instance.clone());
    }
    tokio::spawn(drive(broker.clone(), consumers.clone(), instance.clone()));
    Ok(instance)
}

/// The group is valid, readable by the session, and coordinated here.
fn check_group(broker: &Broker, session: &Session, group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::BadRequest("the group id must not be empty".into()));
    }
    broker
        .service
        .authorize(session, Operation::Read, Resource::Group(group))
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    broker.cluster.coordinator_ready(group).map_err(|_| {
        ApiError::Misdirected(format!(
            "group {group} is coordinated by broker {}; create its HTTP consumers there",
            broker.cluster.coordinator_for(group)
        ))
    })
}

fn check_topics(broker: &Broker, session: &Session, topics: &[String]) -> Result<(), ApiError> {
    for topic in topics {
        broker.service.topic(session, topic, Operation::Read).map_err(|e| ApiError::from_log(e, topic))?;
    }
    Ok(())
}

/// `DELETE /consumers/{group}/instances/{name}`: leaves the group (204).
pub(super) async fn delete(
    Extension(consumers): Extension<Arc<Consumers>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((group, name)) = path?;
    leave(&consumers, &group, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leave(consumers: &Consumers, group: &str, name: &str) -> Result<(), ApiError> {
    let instance = consumers.get(group, name)?;
    instance.state().deleted = true;
    instance.changed.notify_one();
    // The driver leaves the group and removes the instance; wait for it, so the caller's next
    // read of the group sees the member gone.
    let mut settled = instance.settled.subscribe();
    let wait = async {
        while consumers.lock().get(&(group.to_string(), name.to_string())).is_some_and(|i| Arc::ptr_eq(i, &instance)) {
            if settled.changed().await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriptionBody {
    topics: Vec<String>,
}

/// `POST /consumers/{group}/instances/{name}/subscription` (204); the instance joins again.
pub(super) async fn subscribe(
    State(broker): State<Arc<Broker>>,
    Extension(consumers): Extension<Arc<Consumers>>,
    HttpSession(session): HttpSession,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<SubscriptionBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((group, name)) = path?;
    let Json(body) = body?;
    let instance = consumers.get(&group, &name)?;
    check_topics(&broker, &session, &body.topics)?;
    set_topics(&instance, body.topics.into_iter().collect());
    Ok(StatusCode::NO_CONTENT)
}

fn set_topics(instance: &Instance, topics: BTreeSet<String>) {
    let mut state = instance.state();
    if state.topics != topics {
        state.topics = topics;
        state.rejoin = true;
        drop(state);
        instance.changed.notify_one();
    }
}

/// `GET …/subscription`.
pub(super) async fn subscription(
    Extension(consumers): Extension<Arc<Consumers>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((group, name)) = path?;
    let instance = consumers.get(&group, &name)?;
    let topics: Vec<String> = instance.state().topics.iter().cloned().collect();
    Ok(Json(json!({ "topics": topics })))
}

/// `DELETE …/subscription` (204): the instance keeps its membership with no topics.
pub(super) async fn unsubscribe(
    Extension(consumers): Extension<Arc<Consumers>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((group, name)) = path?;
    let instance = consumers.get(&group, &name)?;
    set_topics(&instance, BTreeSet::new());
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/assignments`: the partitions the instance owns now (none while rebalancing).
pub(super) async fn assignments(
    Extension(consumers): Extension<Arc<Consumers>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((group, name)) = path?;
    let instance = consumers.get(&group, &name)?;
    let state = instance.state();
    Ok(Json(json!({
        "partitions": partitions_json(&state.assigned),
        "generation_id": state.generation,
        "state": if state.stable { "stable" } else { "rebalancing" },
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinBody {
    group_id: String,
    client_id: String,
    topics: Vec<String>,
    #[serde(rename = "session.timeout.ms")]
    session_timeout_ms: Option<i32>,
    #[serde(rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    format: Option<String>,
    /// How long to wait for the group to settle before answering (default 10 s).
    timeout_ms: Option<u64>,
}

/// `POST /consumers/join`: the instance named `client_id` joins (created if new, its
/// subscription updated if it changed); a repeated join is that member's heartbeat. Answers the
/// assignment once the group has settled, or what it has after `timeout_ms`.
pub(super) async fn join(
    State(broker): State<Arc<Broker>>,
    Extension(consumers): Extension<Arc<Consumers>>,
    HttpSession(session): HttpSession,
    headers: HeaderMap,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let instance = match consumers.get(&body.group_id, &body.client_id) {
        Ok(instance) => {
            check_topics(&broker, &session, &body.topics)?;
            set_topics(&instance, body.topics.iter().cloned().collect());
            instance
        }
        Err(_) => {
            let create = CreateBody {
                name: Some(body.client_id.clone()),
                format: body.format.clone(),
                auto_offset_reset: body.auto_offset_reset.clone(),
                auto_commit_enable: None,
                session_timeout_ms: body.session_timeout_ms,
                topics: Some(body.topics.clone()),
            };
            new_instance(&broker, &consumers, &session, &body.group_id, &body.client_id, create)?
        }
    };
    let wait = Duration::from_millis(body.timeout_ms.unwrap_or(JOIN_WAIT_MS_DEFAULT).min(RECORDS_WAIT_MS_MAX));
    let mut settled = instance.settled.subscribe();
    let _ = tokio::time::timeout(wait, async {
        loop {
            {
                let state = instance.state();
                if state.stable && !state.rejoin || state.deleted {
                    return;
                }
            }
            if settled.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    Ok(Json(instance.describe(&headers)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LeaveBody {
    group_id: String,
    client_id: String,
}

/// `POST /consumers/leave` (204).
pub(super) async fn leave_by_body(
    Extension(consumers): Extension<Arc<Consumers>>,
    body: Result<Json<LeaveBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    leave(&consumers, &body.group_id, &body.client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordsQuery {
    timeout: Option<u64>,
    max_bytes: Option<usize>,
}

/// `GET …/records`: records of the partitions assigned to the instance, from its positions
/// (first the group's committed offsets, else `auto.offset.reset`), waiting up to `timeout` ms.
pub(super) async fn records(
    State(broker): State<Arc<Broker>>,
    Extension(consumers): Extension<Arc<Consumers>>,
    HttpSession(session): HttpSession,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((group, name)) = path?;
    let Query(query) = query?;
    let instance = consumers.get(&group, &name)?;
    let bytes_max =
        query.max_bytes.unwrap_or(broker.config.http.read_bytes_max).clamp(1, broker.config.http.read_bytes_max);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(query.timeout.unwrap_or(RECORDS_WAIT_MS_DEFAULT).min(RECORDS_WAIT_MS_MAX));
    if instance.auto_commit {
        commit_positions(&broker, &instance, None).await?;
    }
    let (generation, positions) = positions(&broker, &instance);
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for ((topic, index), offset) in &positions {
        let Some(found) = broker.log.topic(topic) else { continue };
        let Some(partition) = found.partition(*index).cloned() else { continue };
        if broker.service.led_elsewhere(&partition) {
            remote.push((found, *index, *offset));
        } else {
            local.push(PartitionRead::new(found, partition, *offset, bytes_max));
        }
    }
    let mut fetched: Vec<(String, i32, i64, Bytes, Vec<AbortedTxn>)> = Vec::new();
    let mut failures: Vec<(String, i32, LogError)> = Vec::new();
    let keys: Vec<(String, i32, i64)> =
        local.iter().map(|r| (r.topic.name.clone(), r.partition.index, r.offset)).collect();
    // A partition led elsewhere cannot be waited on here: only wait when all are local.
    let wait = remote.is_empty().then_some(ReadWait { min_bytes: 1, deadline });
    // Consumer instances read committed records, as librdkafka's consumers do by default.
    let results = broker.service.read(&session, local, Isolation::Committed, bytes_max, wait).await;
    for ((topic, index, offset), result) in keys.into_iter().zip(results) {
        match result {
            Ok(read) => fetched.push((topic, index, offset, read.records, read.aborted)),
            Err(error) => failures.push((topic, index, error)),
        }
    }
    for (found, index, offset) in remote {
        match broker.service.forward_read(&session, &found, index, offset, bytes_max).await {
            Ok(read) => fetched.push((found.name.clone(), index, offset, read.records, read.aborted)),
            Err(error) => failures.push((found.name.clone(), index, error)),
        }
    }
    // A position that retention passed starts over by `auto.offset.reset`, as in Kafka.
    for (topic, index, error) in failures {
        if matches!(error, LogError::OffsetOutOfRange) {
            let mut state = instance.state();
            if state.generation == generation {
                state.positions.remove(&(topic, index));
            }
        } else {
            return Err(ApiError::from_log(error, &topic));
        }
    }
    let limit = broker.config.log.record_batch_decompressed_bytes_max;
    let decoded = tokio::task::spawn_blocking(move || {
        fetched
            .into_iter()
            .map(|(topic, index, from, bytes, aborted)| {
                let next = last_offset_after(&bytes).filter(|&after| after > from);
                records::decode_batches(&bytes, from, limit, &aborted).map(|records| (topic, index, records, next))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|_| ApiError::Unavailable)?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Only what the instance still owns in the same generation is answered and advanced.
    let mut answer = Vec::new();
    let mut state = instance.state();
    for (topic, index, found, next) in decoded {
        let key = (topic.clone(), index);
        if state.generation != generation || !state.assigned.contains(&key) {
            continue;
        }
        let Some(next) = found.last().map(|r: &StoredRecord| r.offset + 1).or(next) else { continue };
        state.positions.insert(key, next);
        answer.extend(found.iter().map(|r| consumer_record_json(&topic, index, r, instance.format)));
    }
    Ok(Json(Value::Array(answer)))
}

fn consumer_record_json(topic: &str, partition: i32, record: &StoredRecord, format: Format) -> Value {
    let mut value = record_json(record, format == Format::Base64);
    value["topic"] = json!(topic);
    value["partition"] = json!(partition);
    if format == Format::Binary {
        use base64::Engine;
        let encode = |b: &Option<Bytes>| b.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        if let Some(object) = value.as_object_mut() {
            object.remove("key_base64");
            object.remove("value_base64");
        }
        value["key"] = json!(encode(&record.record.key));
        value["value"] = json!(encode(&record.record.value));
    }
    value
}

/// The instance's generation and the position of each partition it owns, filling in missing
/// positions from the committed offsets or `auto.offset.reset`.
fn positions(broker: &Broker, instance: &Instance) -> (i32, Positions) {
    let (generation, assigned, mut positions) = {
        let state = instance.state();
        (state.generation, state.assigned.clone(), state.positions.clone())
    };
    let missing: Vec<&(String, i32)> = assigned.iter().filter(|p| !positions.contains_key(*p)).collect();
    if !missing.is_empty() {
        let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, index) in &missing {
            wanted.entry(topic.clone()).or_default().push(*index);
        }
        let wanted: Vec<(String, Vec<i32>)> = wanted.into_iter().collect();
        for (topic, index, committed) in broker.coordinator.committed(&instance.group, Some(&wanted)) {
            let Some(partition) = broker.log.topic(&topic).and_then(|t| t.partition(index).cloned()) else { continue };
            let offset = match (committed, instance.reset) {
                (Some(committed), _) if committed.offset >= 0 => committed.offset,
                (_, Reset::Earliest) => partition.log_start(),
                (_, Reset::Latest) => partition.high_watermark(),
            };
            positions.insert((topic, index), offset);
        }
        let mut state = instance.state();
        if state.generation == generation {
            for (key, offset) in &positions {
                if state.assigned.contains(key) {
                    state.positions.entry(key.clone()).or_insert(*offset);
                }
            }
        }
    }
    positions.retain(|key, _| assigned.contains(key));
    (generation, positions)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstanceCommitBody {
    #[serde(default)]
    offsets: Vec<InstanceCommitEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceCommitEntry {
    topic: String,
    partition: i32,
    /// The last record consumed, as in REST Proxy v2: the group resumes after it.
    offset: i64,
    metadata: Option<String>,
}

/// `POST …/offsets`: commits the given offsets (each the last record consumed), or with no
/// offsets every position the instance has read to. 200 with what was committed (the next
/// offset to read, per partition); 409 while the group rebalances.
pub(super) async fn commit(
    State(broker): State<Arc<Broker>>,
    Extension(consumers): Extension<Arc<Consumers>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: BodyBytes,
) -> Result<Json<Value>, ApiError> {
    let Path((group, name)) = path?;
    let body: InstanceCommitBody = if body.iter().all(u8::is_ascii_whitespace) {
        InstanceCommitBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let instance = consumers.get(&group, &name)?;
    let given = if body.offsets.is_empty() {
        None
    } else {
        let mut given = Vec::with_capacity(body.offsets.len());
        for entry in body.offsets {
            if entry.offset < 0 {
                return Err(ApiError::BadRequest(format!("offset {} is negative", entry.offset)));
            }
            given.push(CommitRequest {
                topic: entry.topic,
                partition: entry.partition,
                offset: entry.offset + 1,
                leader_epoch: -1,
                metadata: entry.metadata,
            });
        }
        Some(given)
    };
    let committed = commit_positions(&broker, &instance, given).await?;
    Ok(Json(json!({ "offsets": committed })))
}

/// Commits `given`, or the instance's positions, as its member of its generation.
async fn commit_positions(
    broker: &Broker,
    instance: &Instance,
    given: Option<Vec<CommitRequest>>,
) -> Result<Vec<Value>, ApiError> {
    let (member_id, generation, requests) = {
        let state = instance.state();
        let requests = given.unwrap_or_else(|| {
            state
                .positions
                .iter()
                .map(|((topic, partition), offset)| CommitRequest {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect()
        });
        (state.member_id.clone(), state.generation, requests)
    };
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    if member_id.is_empty() {
        return Err(ApiError::Conflict("the instance is not a member of its group yet".into()));
    }
    let committed: Vec<Value> =
        requests.iter().map(|r| json!({ "topic": r.topic, "partition": r.partition, "offset": r.offset })).collect();
    match broker.coordinator.commit(&instance.group, generation, &member_id, None, requests).await {
        Ok(codes) if codes.iter().all(|&code| code == 0) => Ok(committed),
        Ok(_) => Err(ApiError::Internal("some offsets were not committed".into())),
        Err(code)
            if code == ResponseError::RebalanceInProgress.code()
                || code == ResponseError::IllegalGeneration.code()
                || code == ResponseError::UnknownMemberId.code() =>
        {
            Err(ApiError::Conflict(format!(
                "the group is rebalancing (Kafka error {code}); read the instance's new assignment and commit again"
            )))
        }
        Err(code) => Err(ApiError::Internal(format!("offset commit failed with Kafka error code {code}"))),
    }
}

/// Runs the classic consumer protocol for `instance` until it is deleted or expires.
async fn drive(broker: Arc<Broker>, consumers: Arc<Consumers>, instance: Arc<Instance>) {
    let span = tracing::debug_span!("http_consumer", group = %instance.group, instance = %instance.name);
    let _ = tracing::Instrument::instrument(membership(&broker, &instance), span).await;
    let member_id = std::mem::take(&mut instance.state().member_id);
    if !member_id.is_empty() {
        let _ = broker.coordinator.leave(&instance.group, &[(member_id, None)]).await;
    }
    instance.revoke();
    consumers.lock().retain(|_, i| !Arc::ptr_eq(i, &instance));
    instance.settled.send_modify(|n| *n += 1);
}

/// How often the driver heartbeats: well inside the session timeout, and often enough that a
/// rebalance waits little for HTTP members (Kafka's default interval is 3 s).
fn heartbeat_interval(session_timeout_ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(session_timeout_ms / 4).unwrap_or(1_000).clamp(100, 1_000))
}

/// Joins, syncs and heartbeats until the instance is deleted or unused for its session timeout.
async fn membership(broker: &Broker, instance: &Instance) {
    let interval = heartbeat_interval(instance.session_timeout_ms);
    let gone = || instance.state().deleted || instance.expired();
    while !gone() {
        let (topics, member_id) = {
            let mut state = instance.state();
            state.rejoin = false;
            (state.topics.clone(), state.member_id.clone())
        };
        if topics.is_empty() {
            // No subscription: no membership. Leave, then wait for topics or the end.
            if !member_id.is_empty() {
                let _ = broker.coordinator.leave(&instance.group, &[(member_id, None)]).await;
                instance.state().member_id.clear();
            }
            instance.revoke();
            let _ = tokio::time::timeout(interval, instance.changed.notified()).await;
            continue;
        }
        if broker.cluster.coordinator_ready(&instance.group).is_err() {
            instance.revoke();
            instance.state().problem = Some("this broker no longer coordinates the group".into());
            tokio::time::sleep(interval).await;
            continue;
        }
        match join_and_sync(broker, instance, &topics, member_id).await {
            Ok(()) => {}
            Err(problem) => {
                instance.state().problem = Some(problem);
                instance.settled.send_modify(|n| *n += 1);
                tokio::time::sleep(interval).await;
                continue;
            }
        }
        // Member of a settled generation: heartbeat until it ends.
        loop {
            let _ = tokio::time::timeout(interval, instance.changed.notified()).await;
            let (rejoin, member_id, generation) = {
                let state = instance.state();
                (state.rejoin, state.member_id.clone(), state.generation)
            };
            if gone() || rejoin {
                break;
            }
            let code = broker.coordinator.heartbeat(&instance.group, &member_id, None, generation);
            if code == 0 {
                continue;
            }
            if code == ResponseError::UnknownMemberId.code() {
                instance.state().member_id.clear();
            }
            break;
        }
        instance.revoke();
    }
}

/// One JoinGroup and SyncGroup round; on success the instance owns its new assignment.
async fn join_and_sync(
    broker: &Broker,
    instance: &Instance,
    topics: &BTreeSet<String>,
    mut member_id: String,
) -> Result<(), String> {
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics.iter().map(|t| StrBytes::from_string(t.clone())).collect();
    let metadata = encode_versioned(&subscription, 0)?;
    loop {
        let request = JoinRequest {
            member_id: member_id.clone(),
            instance_id: None,
            client_id: instance.name.clone(),
            client_host: instance.client_host.clone(),
            session_timeout_ms: instance.session_timeout_ms,
            rebalance_timeout_ms: instance.session_timeout_ms,
            protocol_type: "consumer".into(),
            protocols: vec![(ASSIGNOR.into(), metadata.clone())],
            requires_known_member_id: true,
            supports_skip_assignment: false,
        };
        let joined = broker.coordinator.join(&instance.group, request).await;
        if joined.error == ResponseError::MemberIdRequired.code() {
            member_id = joined.member_id;
            instance.state().member_id = member_id.clone();
            continue;
        }
        if joined.error == ResponseError::UnknownMemberId.code() {
            member_id.clear();
            instance.state().member_id.clear();
            continue;
        }
        if joined.error != 0 {
            return Err(join_problem(joined.error));
        }
        member_id = joined.member_id;
        instance.state().member_id = member_id.clone();
        let assignments = if joined.leader == member_id { assign(broker, &joined.members)? } else { Vec::new() };
        let synced = broker
            .coordinator
            .sync(
                &instance.group,
                &member_id,
                None,
                joined.generation,
                Some("consumer"),
                joined.protocol_name.as_deref(),
                assignments,
            )
            .await;
        if synced.error == ResponseError::RebalanceInProgress.code() {
            continue;
        }
        if synced.error == ResponseError::UnknownMemberId.code() {
            member_id.clear();
            instance.state().member_id.clear();
            continue;
        }
        if synced.error != 0 {
            return Err(join_problem(synced.error));
        }
        let assigned = decode_assignment(&synced.assignment)?;
        let mut state = instance.state();
        state.generation = joined.generation;
        state.assigned = assigned;
        state.positions.clear();
        state.stable = true;
        state.problem = None;
        drop(state);
        instance.settled.send_modify(|n| *n += 1);
        return Ok(());
    }
}

fn join_problem(code: i16) -> String {
    let name = ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    format!("the group refused the member: {name} (Kafka error code {code})")
}

fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message.encode(&mut buf, version).map_err(|e| format!("cannot encode: {e}"))?;
    Ok(buf.freeze())
}

/// Decodes a consumer-protocol message that starts with its version; versions newer than the
/// crate knows are read as its newest (they only add tagged or trailing fields).
fn decode_versioned<M: Decodable + kafka_protocol::protocol::Message>(bytes: &[u8]) -> Result<M, String> {
    let mut buf = bytes;
    if buf.len() < 2 {
        return Err("consumer protocol message without a version".into());
    }
    let version = buf.get_i16().clamp(M::VERSIONS.min, M::VERSIONS.max);
    M::decode(&mut buf, version).map_err(|e| format!("malformed consumer protocol message: {e}"))
}

fn decode_assignment(bytes: &[u8]) -> Result<BTreeSet<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(BTreeSet::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes)?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .flat_map(|tp| {
            let topic = tp.topic.0.to_string();
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect())
}

/// Kafka's RangeAssignor over every member's subscription: per topic, the members subscribed
/// to it in member-id order each take a contiguous range, the first ones one partition more.
fn assign(broker: &Broker, members: &[(String, Option<String>, Bytes)]) -> Result<Vec<(String, Bytes)>, String> {
    let mut subscribers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut owned: BTreeMap<&str, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (member, _, metadata) in members {
        owned.entry(member.as_str()).or_default();
        // A member whose subscription cannot be read gets nothing, rather than failing the group.
        let Ok(subscription) = decode_versioned::<ConsumerProtocolSubscription>(metadata) else { continue };
        for topic in subscription.topics {
            subscribers.entry(topic.to_string()).or_default().push(member.as_str());
        }
    }
    for (topic, mut members) in subscribers {
        let Some(partitions) = broker.log.topic(&topic).map(|t| t.partitions.len()) else { continue };
        members.sort_unstable();
        members.dedup();
        let (each, extra) = (partitions / members.len(), partitions % members.len());
        for (i, member) in members.into_iter().enumerate() {
            let start = i * each + i.min(extra);
            let count = each + usize::from(i < extra);
            let range: Vec<i32> = (start..start + count).filter_map(|p| i32::try_from(p).ok()).collect();
            if !range.is_empty() {
                owned.entry(member).or_default().insert(topic.clone(), range);
            }
        }
    }
    owned
        .into_iter()
        .map(|(member, topics)| {
            let mut assignment = ConsumerProtocolAssignment::default();
            assignment.assigned_partitions = topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut tp = consumer_protocol_assignment::TopicPartition::default();
                    tp.topic = TopicName(StrBytes::from_string(topic));
                    tp.partitions = partitions;
                    tp
                })
                .collect();
            Ok((member.to_string(), encode_versioned(&assignment, 0)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip_through_the_consumer_protocol() {
        let mut assignment = ConsumerProtocolAssignment::default();
        let mut tp = consumer_protocol_assignment::TopicPartition::default();
        tp.topic = TopicName(StrBytes::from_static_str("orders"));
        tp.partitions = vec![0, 2];
        assignment.assigned_partitions = vec![tp];
        let bytes = encode_versioned(&assignment, 0).unwrap();
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(decoded, BTreeSet::from([("orders".to_string(), 0), ("orders".to_string(), 2)]));
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[]).unwrap().is_empty());
    }
}
