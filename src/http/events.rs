//! `POST /events/{topic}`, `GET /events/{topic}` and Confluent REST Proxy v3's produce route.
//!
//! A request is checked in full (content type, body, topic, partitions, batch validation) before
//! anything is queued, and all its partitions are queued as one writer command, so they share one
//! group commit: a request is written entirely or not at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::records::{self, HttpRecord, StoredRecord};
use super::{ApiError, HttpSession, media_type};
use crate::handler::Broker;
use crate::log::{AppendInfo, Isolation, LogError, Topic, batch, now_ms};
use crate::service::authorizer::Operation;
use crate::service::session::Session;
use crate::service::{BrokerService, PartitionRead, Validated};

/// Unkeyed records without a partition go round-robin; a request's records stay together.
static NEXT_PARTITION: AtomicUsize = AtomicUsize::new(0);

/// One record of a JSON produce body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    partition: Option<i32>,
    key: Option<Value>,
    key_base64: Option<String>,
    value: Option<Value>,
    value_base64: Option<String>,
    #[serde(default)]
    headers: Vec<JsonHeader>,
    /// Milliseconds since the Unix epoch (default: now).
    timestamp: Option<i64>,
    /// As the `Idempotency-Key` header (the same key for every record of a request).
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonHeader {
    key: String,
    value: Option<Value>,
    value_base64: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProduceQuery {
    partition: Option<i32>,
    key: Option<String>,
    key_base64: Option<String>,
}

/// A record with the partition it goes to.
struct Routed {
    partition: i32,
    record: HttpRecord,
}

/// `POST /events/{topic}`: a JSON body is one record object or an array of them; any other body
/// (protobuf, Avro, text, bytes, no content type at all) is one record whose value is the body,
/// byte for byte. An unknown topic is created with the broker's defaults when
/// `--auto-create-topics` is on, as a Kafka producer's first Metadata request would. With an
/// `Idempotency-Key` header (or an `idempotency_key` field), a retry within
/// [`IDEMPOTENCY_WINDOW_MS`] gets the first answer instead of writing again.
pub(super) async fn produce(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    topic: Result<Path<String>, PathRejection>,
    query: Result<Query<ProduceQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(topic) = topic?;
    let Query(query) = query?;
    let media = media_type(&headers);
    let json_body = media == "application/json" || media.ends_with("+json");
    let body = body?;
    let now = now_ms();
    // Parsing, base64, encoding and the CRC scale with the body (up to --http-request-max-bytes),
    // and a malformed body is refused before the topic is looked up (or created).
    let (records, single, field_key) = off_runtime(move || {
        if json_body {
            return parse_json_records(&body, query.partition, now);
        }
        let key = payload(query.key.map(Value::String), query.key_base64, "key")?;
        let record = HttpRecord { key, value: Some(body), headers: Vec::new(), timestamp_ms: now };
        Ok((vec![(query.partition, record)], true, None))
    })
    .await?;
    let key = idempotency_key(&headers, field_key)?;
    let found = writable_topic(&broker, &session, &topic).await?;
    let answer = match &key {
        Some(key) => {
            let _claim = IdempotencyClaim::take(found.id, key)?;
            match broker.log.idempotent_answer(found.id, key).await.map_err(|e| ApiError::from_log(e, &topic))? {
                Some(stored) => stored_answer(&stored)?,
                None => write(&broker, &session, &found, records, Some(key.clone())).await?,
            }
        }
        None => write(&broker, &session, &found, records, None).await?,
    };
    let mut entries = answer.iter().map(
        |(partition, offset, timestamp)| json!({ "partition": partition, "offset": offset, "timestamp": timestamp }),
    );
    if single && let Some(Value::Object(mut one)) = entries.next() {
        one.insert("topic".into(), json!(topic));
        return Ok(Json(Value::Object(one)));
    }
    Ok(Json(json!({ "topic": topic, "offsets": entries.collect::<Vec<_>>() })))
}

/// How long an idempotency key's answer is kept (and a retry answered from it): one day.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// The longest idempotency key accepted.
const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;

/// The request's idempotency key: the `Idempotency-Key` header or the record's `idempotency_key`.
fn idempotency_key(headers: &HeaderMap, field: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
                .to_string(),
        ),
        None => None,
    };
    let key = match (header, field) {
        (Some(header), Some(field)) if header != field => {
            return Err(ApiError::BadRequest("the Idempotency-Key header and idempotency_key differ".into()));
        }
        (header, field) => header.or(field),
    };
    match key {
        Some(key) if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX => {
            Err(ApiError::BadRequest(format!("an idempotency key has 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes")))
        }
        key => Ok(key),
    }
}

/// Keys with a request in progress: a second request under the same key waits for no one, it is
/// refused (409), so that two concurrent tries cannot both write.
static IN_PROGRESS: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashSet<(uuid::Uuid, String)>>> =
    std::sync::LazyLock::new(Default::default);

struct IdempotencyClaim((uuid::Uuid, String));

impl IdempotencyClaim {
    fn take(topic_id: uuid::Uuid, key: &str) -> Result<IdempotencyClaim, ApiError> {
        let claim = (topic_id, key.to_string());
        if !IN_PROGRESS.lock().insert(claim.clone()) {
            return Err(ApiError::Conflict(format!("a request with idempotency key {key:?} is in progress")));
        }
        Ok(IdempotencyClaim(claim))
    }
}

impl Drop for IdempotencyClaim {
    fn drop(&mut self) {
        IN_PROGRESS.lock().remove(&self.0);
    }
}

/// Routes, checks and writes `records`; each record's partition, offset and timestamp.
async fn write(
    broker: &Arc<Broker>,
    session: &Session,
    found: &Arc<Topic>,
    records: Vec<(Option<i32>, HttpRecord)>,
    key: Option<String>,
) -> Result<Vec<(i32, i64, i64)>, ApiError> {
    let (working, service) = (found.clone(), broker.service.clone());
    let prepared = off_runtime(move || prepare(&service, &working, route(&working, records)?)).await?;
    append(&broker.service, session, found, prepared, key).await
}

/// The first answer of a request written under an idempotency key.
fn stored_answer(stored: &Value) -> Result<Vec<(i32, i64, i64)>, ApiError> {
    let corrupt = || ApiError::Internal("a stored idempotency answer is unreadable".into());
    let records: Vec<(i32, i64)> =
        serde_json::from_value(stored["request"]["records"].clone()).map_err(|_| corrupt())?;
    let bases: Vec<(i32, i64, i64)> = serde_json::from_value(stored["bases"].clone()).map_err(|_| corrupt())?;
    let infos = bases
        .into_iter()
        .map(|(partition, base_offset, log_append_time_ms)| {
            (partition, AppendInfo { base_offset, log_append_time_ms, log_start: -1 })
        })
        .collect();
    answer(records, &infos)
}

/// The topic a produce goes to, through the broker service: authorization, and creation with
/// the broker's defaults when `--auto-create-topics` is on.
async fn writable_topic(
    broker: &Broker,
    session: &crate::service::session::Session,
    topic: &str,
) -> Result<Arc<Topic>, ApiError> {
    broker.service.topic_for_write(session, topic, true).await.map_err(|e| ApiError::from_log(e, topic))
}

/// Runs CPU-bound request work on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| ApiError::Unavailable)?
}

/// A JSON body is one record object, or an array of them (returns whether it was a single one).
#[allow(clippy::type_complexity)]
fn parse_json_records(
    body: &[u8],
    default_partition: Option<i32>,
    now: i64,
) -> Result<(Vec<(Option<i32>, HttpRecord)>, bool, Option<String>), ApiError> {
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let (items, single) = match parsed {
        Value::Array(items) => (items, false),
        one @ Value::Object(_) => (vec![one], true),
        _ => return Err(ApiError::BadRequest("the body must be a record object or an array of them".into())),
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest("the array holds no records".into()));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut idempotency_key: Option<String> = None;
    for (index, item) in items.into_iter().enumerate() {
        let record: JsonRecord =
            serde_json::from_value(item).map_err(|e| ApiError::BadRequest(format!("record {index}: {e}")))?;
        let at = |e: ApiError| ApiError::BadRequest(format!("record {index}: {e}"));
        match (&idempotency_key, record.idempotency_key) {
            (Some(known), Some(other)) if *known != other => {
                return Err(at(ApiError::BadRequest("a request has one idempotency_key".into())));
            }
            (None, Some(key)) => idempotency_key = Some(key),
            _ => {}
        }
        let key = payload(record.key, record.key_base64, "key").map_err(at)?;
        let value = payload(record.value, record.value_base64, "value").map_err(at)?;
        let mut headers = Vec::with_capacity(record.headers.len());
        for header in record.headers {
            headers.push((header.key, payload(header.value, header.value_base64, "header value").map_err(at)?));
        }
        let timestamp_ms = record.timestamp.unwrap_or(now);
        if timestamp_ms < 0 {
            return Err(at(ApiError::BadRequest("timestamp must not be negative".into())));
        }
        out.push((record.partition.or(default_partition), HttpRecord { key, value, headers, timestamp_ms }));
    }
    Ok((out, single, idempotency_key))
}

/// A field given as JSON (`name`) or base64 (`name_base64`): a JSON string is its UTF-8 bytes,
/// other JSON values their compact JSON text, null or absent a null field.
fn payload(json: Option<Value>, base64: Option<String>, name: &str) -> Result<Option<Bytes>, ApiError> {
    match (json, base64) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!("give {name} or {name}_base64, not both"))),
        (None, Some(encoded)) => BASE64
            .decode(encoded.as_bytes())
            .map(|bytes| Some(Bytes::from(bytes)))
            .map_err(|e| ApiError::BadRequest(format!("{name}_base64 is not base64: {e}"))),
        (None | Some(Value::Null), None) => Ok(None),
        (Some(Value::String(text)), None) => Ok(Some(Bytes::from(text))),
        (Some(other), None) => Ok(Some(Bytes::from(other.to_string()))),
    }
}

/// Picks each record's partition: the one given, else Kafka's murmur2 of the key, else one
/// round-robin partition for all of the request's unkeyed records.
fn route(topic: &Topic, records: Vec<(Option<i32>, HttpRecord)>) -> Result<Vec<Routed>, ApiError> {
    let count = topic.partitions.len();
    let round_robin = (NEXT_PARTITION.fetch_add(1, Ordering::Relaxed) % count.max(1)) as i32;
    records
        .into_iter()
        .map(|(partition, record)| {
            let partition = match (partition, &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => records::partition_for_key(key, count),
                (None, None) => round_robin,
            };
            if topic.partition(partition).is_none() {
                return Err(ApiError::UnknownPartition { topic: topic.name.clone(), partition });
            }
            Ok(Routed { partition, record })
        })
        .collect()
}

/// A request's records, routed, encoded and validated: everything done before the log sees them.
struct Prepared {
    /// Each record's partition and timestamp, in the order given.
    records: Vec<(i32, i64)>,
    /// Per partition this broker leads, ascending: its index and its validated batch.
    partitions: Vec<(i32, Validated)>,
    /// Per partition another broker leads (in a cluster): its index and its batch, which that
    /// leader checks and appends.
    forwarded: Vec<(i32, Bytes)>,
}

/// Builds one batch per partition and has the broker service check it against the topic's rules,
/// as a Kafka produce with acks=all would be (or, for a partition led elsewhere, its leader).
fn prepare(service: &BrokerService, topic: &Topic, routed: Vec<Routed>) -> Result<Prepared, ApiError> {
    let records = routed.iter().map(|r| (r.partition, r.record.timestamp_ms)).collect();
    let mut by_partition: BTreeMap<i32, Vec<HttpRecord>> = BTreeMap::new();
    for r in routed {
        by_partition.entry(r.partition).or_default().push(r.record);
    }
    let mut partitions = Vec::with_capacity(by_partition.len());
    let mut forwarded = Vec::new();
    for (index, partition_records) in by_partition {
        let encoded = records::encode_batch(&partition_records);
        if topic.partition(index).is_some_and(|p| service.led_elsewhere(p)) {
            forwarded.push((index, encoded));
            continue;
        }
        let validated = service.validate(topic, index, &encoded, -1).map_err(|e| ApiError::from_log(e, &topic.name))?;
        partitions.push((index, validated));
    }
    Ok(Prepared { records, partitions, forwarded })
}

/// Queues every local partition's batch as one writer command (one group commit), forwards the
/// others to their leaders, and returns each record's partition, offset and timestamp, in the
/// order given.
async fn append(
    service: &BrokerService,
    session: &Session,
    topic: &Topic,
    prepared: Prepared,
    key: Option<String>,
) -> Result<Vec<(i32, i64, i64)>, ApiError> {
    let Prepared { records, partitions, forwarded } = prepared;
    let mut infos: BTreeMap<i32, AppendInfo> = BTreeMap::new();
    // Partitions led elsewhere first, so that a key's answer can name them too.
    for (index, batch) in forwarded {
        let info = service
            .forward_append(session, topic, index, batch)
            .await
            .map_err(|e| ApiError::from_log(e, &topic.name))?;
        infos.insert(index, info);
    }
    let keyed = key.map(|key| crate::log::Keyed {
        topic_id: topic.id,
        key,
        request: json!({ "records": records }),
        forwarded: infos.iter().map(|(p, i)| (*p, i.base_offset, i.log_append_time_ms)).collect(),
    });
    let (indexes, validated): (Vec<i32>, Vec<Validated>) = partitions.into_iter().unzip();
    let pending = service.append_keyed(validated, keyed).await.map_err(|e| ApiError::from_log(e, &topic.name))?;
    for (index, append) in indexes.into_iter().zip(pending) {
        let info = append.wait().await.map_err(|e| ApiError::from_log(e, &topic.name))?;
        infos.insert(index, info);
    }
    answer(records, &infos)
}

/// Each record's partition, offset and timestamp, in the order given, from its partition's
/// append (records of a partition are consecutive from its base offset).
fn answer(records: Vec<(i32, i64)>, infos: &BTreeMap<i32, AppendInfo>) -> Result<Vec<(i32, i64, i64)>, ApiError> {
    let mut next_in_partition: BTreeMap<i32, i64> = BTreeMap::new();
    records
        .into_iter()
        .map(|(partition, timestamp_ms)| {
            let info = infos.get(&partition).ok_or(ApiError::Unavailable)?;
            let position = next_in_partition.entry(partition).or_insert(0);
            let offset = info.base_offset + *position;
            *position += 1;
            let timestamp = if info.log_append_time_ms >= 0 { info.log_append_time_ms } else { timestamp_ms };
            Ok((partition, offset, timestamp))
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    partition: Option<i32>,
    offset: Option<i64>,
    limit: Option<usize>,
    /// `base64`: every key, value and header value as base64, even when it is UTF-8 text.
    format: Option<String>,
    /// `read_committed` (the default: records of aborted transactions are left out, and reading
    /// stops at the last stable offset) or `read_uncommitted`, as Kafka's `isolation.level`.
    isolation: Option<String>,
}

pub(super) async fn read(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    topic: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(topic) = topic?;
    let Query(query) = query?;
    let found = broker.service.topic(&session, &topic, Operation::Read).map_err(|e| ApiError::from_log(e, &topic))?;
    let index = query.partition.unwrap_or(0);
    let partition =
        found.partition(index).ok_or_else(|| ApiError::UnknownPartition { topic: topic.clone(), partition: index })?;
    let records_max = broker.config.http.read_records_max;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > records_max {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {records_max}")));
    }
    let force_base64 = match query.format.as_deref() {
        None | Some("text") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("format must be text or base64, not {other:?}"))),
    };
    let isolation = match query.isolation.as_deref() {
        None | Some("read_committed") => Isolation::Committed,
        Some("read_uncommitted") => Isolation::HighWatermark,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "isolation must be read_committed or read_uncommitted, not {other:?}"
            )));
        }
    };
    let offset = query.offset.unwrap_or_else(|| partition.log_start());
    let out_of_range = |offset: i64| ApiError::OffsetOutOfRange {
        offset,
        log_start: partition.log_start(),
        high_watermark: partition.high_watermark(),
    };
    // A partition led by another broker (in a cluster) is read through its leader, whose
    // offsets this broker's copy may lag: the leader checks the range.
    let remote = broker.service.led_elsewhere(partition);
    if !remote && (offset < partition.log_start() || offset > partition.high_watermark()) {
        return Err(out_of_range(offset));
    }
    let mut records: Vec<StoredRecord> = Vec::new();
    let mut next = offset;
    let mut bytes_left = broker.config.http.read_bytes_max;
    let mut high_watermark = if remote { i64::MAX } else { partition.high_watermark() };
    while records.len() < limit && next < high_watermark && bytes_left > 0 {
        let read = if remote {
            Some(broker.service.forward_read(&session, &found, index, next, bytes_left).await)
        } else {
            let request = PartitionRead::new(found.clone(), partition.clone(), next, bytes_left);
            broker.service.read(&session, vec![request], isolation, bytes_left, None).await.pop()
        };
        let read = match read {
            Some(Ok(read)) => read,
            Some(Err(LogError::OffsetOutOfRange)) => return Err(out_of_range(next)),
            Some(Err(error)) => return Err(ApiError::from_log(error, &topic)),
            None => return Err(ApiError::Unavailable),
        };
        high_watermark = read.high_watermark;
        if read.records.is_empty() {
            break;
        }
        bytes_left = bytes_left.saturating_sub(read.records.len());
        let from = next;
        let batch_bytes = read.records.clone();
        let limit = broker.config.log.record_batch_decompressed_bytes_max;
        let aborted = read.aborted.clone();
        let decoded = tokio::task::spawn_blocking(move || records::decode_batches(&batch_bytes, from, limit, &aborted))
            .await
            .map_err(|_| ApiError::Unavailable)?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        records.extend(decoded);
        // Past the last batch read, whether or not it held records at or after `next`.
        match last_offset_after(&read.records) {
            Some(after) if after > next => next = after,
            _ => break,
        }
    }
    records.truncate(limit);
    let next_offset = records.last().map_or(next, |r| r.offset + 1);
    Ok(Json(json!({
        "topic": topic,
        "partition": index,
        "log_start": partition.log_start(),
        "high_watermark": high_watermark,
        "next_offset": next_offset,
        "records": records.iter().map(|r| record_json(r, force_base64)).collect::<Vec<_>>(),
    })))
}

/// The offset after the last batch in `bytes`.
pub(super) fn last_offset_after(mut bytes: &[u8]) -> Option<i64> {
    let mut last = None;
    while let Ok(header) = batch::BatchHeader::parse(bytes) {
        last = Some(header.last_offset() + 1);
        bytes = bytes.get(header.size_bytes()..)?;
    }
    last
}

pub(super) fn record_json(stored: &StoredRecord, force_base64: bool) -> Value {
    let mut object = Map::new();
    object.insert("offset".into(), json!(stored.offset));
    object.insert("timestamp".into(), json!(stored.timestamp_ms));
    let timestamp_type = if stored.log_append_time { "LogAppendTime" } else { "CreateTime" };
    object.insert("timestamp_type".into(), json!(timestamp_type));
    put_payload(&mut object, "key", stored.record.key.as_ref(), force_base64);
    put_payload(&mut object, "value", stored.record.value.as_ref(), force_base64);
    let headers: Vec<Value> = stored
        .record
        .headers
        .iter()
        .map(|(key, value)| {
            let mut header = Map::new();
            header.insert("key".into(), json!(key));
            put_payload(&mut header, "value", value.as_ref(), force_base64);
            Value::Object(header)
        })
        .collect();
    object.insert("headers".into(), Value::Array(headers));
    Value::Object(object)
}

/// `name` as a string when the bytes are UTF-8 (and base64 is not forced), else `name_base64`.
fn put_payload(object: &mut Map<String, Value>, name: &str, bytes: Option<&Bytes>, force_base64: bool) {
    match bytes {
        None => {
            object.insert(name.into(), Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !force_base64 => {
                object.insert(name.into(), json!(text));
            }
            _ => {
                object.insert(format!("{name}_base64"), json!(BASE64.encode(bytes)));
            }
        },
    }
}

/// A Confluent REST Proxy v3 produce body.
#[derive(Debug, Deserialize)]
struct V3Record {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<V3Header>,
    key: Option<V3Data>,
    value: Option<V3Data>,
    timestamp: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct V3Header {
    name: String,
    /// Base64, as in REST Proxy.
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct V3Data {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Value>,
}

/// `POST /v3/clusters/{cluster_id}/topics/{topic}/records`: one record object, or several
/// concatenated (REST Proxy's streaming mode), answered with one result object per record.
pub(super) async fn produce_v3(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Path((cluster_id, topic)) = path?;
    if media_type(&headers) != "application/json" {
        return Err(ApiError::UnsupportedMediaType("Content-Type must be application/json".into()));
    }
    let body = body?;
    if cluster_id != broker.log.cluster_id() {
        return Err(ApiError::NotFound(format!("cluster {cluster_id} does not exist")));
    }
    let found = writable_topic(&broker, &session, &topic).await?;
    let now = now_ms();
    let working = found.clone();
    let service = broker.service.clone();
    let (prepared, sizes) = off_runtime(move || {
        let (records, sizes) = parse_v3_records(&body, now)?;
        Ok((prepare(&service, &working, route(&working, records)?)?, sizes))
    })
    .await?;
    let written = append(&broker.service, &session, &found, prepared, None).await?;
    let mut text = String::new();
    for ((partition, offset, timestamp), (key, value)) in written.iter().zip(sizes) {
        let data = |d: Option<(&str, usize)>| d.map(|(kind, size)| json!({ "type": kind, "size": size }));
        let result = json!({
            "error_code": 200,
            "cluster_id": cluster_id,
            "topic_name": topic,
            "partition_id": partition,
            "offset": offset,
            "timestamp": rfc3339_ms(*timestamp),
            "key": data(key),
            "value": data(value),
        });
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&result.to_string());
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response())
}

use axum::response::IntoResponse as _;

/// Each record's type and size of key and value, for REST Proxy's answer.
type V3Sizes = Vec<(Option<(&'static str, usize)>, Option<(&'static str, usize)>)>;

/// One or more concatenated REST Proxy records.
#[allow(clippy::type_complexity)]
fn parse_v3_records(body: &[u8], now: i64) -> Result<(Vec<(Option<i32>, HttpRecord)>, V3Sizes), ApiError> {
    let mut records = Vec::new();
    let mut sizes = Vec::new();
    for (index, item) in serde_json::Deserializer::from_slice(body).into_iter::<V3Record>().enumerate() {
        let item = item.map_err(|e| ApiError::BadRequest(format!("record {index}: {e}")))?;
        let at = |e: ApiError| ApiError::BadRequest(format!("record {index}: {e}"));
        if item.timestamp.is_some() {
            return Err(at(ApiError::BadRequest("timestamp is not supported; the broker stamps the time".into())));
        }
        let key = v3_data(item.key).map_err(at)?;
        let value = v3_data(item.value).map_err(at)?;
        let mut headers = Vec::with_capacity(item.headers.len());
        for header in item.headers {
            headers.push((header.name, payload(None, header.value, "header value").map_err(at)?));
        }
        sizes.push((key.as_ref().map(|(kind, b)| (*kind, b.len())), value.as_ref().map(|(kind, b)| (*kind, b.len()))));
        let record = HttpRecord { key: key.map(|(_, b)| b), value: value.map(|(_, b)| b), headers, timestamp_ms: now };
        records.push((item.partition_id, record));
    }
    if records.is_empty() {
        return Err(ApiError::BadRequest("the body holds no record".into()));
    }
    Ok((records, sizes))
}

/// REST Proxy's `{"type": "BINARY"|"JSON"|"STRING", "data": ...}`; a missing type means JSON.
fn v3_data(data: Option<V3Data>) -> Result<Option<(&'static str, Bytes)>, ApiError> {
    let Some(V3Data { kind, data }) = data else { return Ok(None) };
    let kind = kind.unwrap_or_else(|| "JSON".into()).to_ascii_uppercase();
    match (kind.as_str(), data) {
        (_, None | Some(Value::Null)) => Ok(None),
        ("BINARY", Some(Value::String(encoded))) => {
            Ok(payload(None, Some(encoded), "data")?.map(|bytes| ("BINARY", bytes)))
        }
        ("STRING", Some(Value::String(text))) => Ok(Some(("STRING", Bytes::from(text)))),
        ("JSON", Some(value)) => Ok(Some(("JSON", Bytes::from(value.to_string())))),
        (kind, _) => Err(ApiError::BadRequest(format!(
            "data of type {kind} must be {}",
            if kind == "JSON" { "JSON" } else { "a string (BINARY: base64)" }
        ))),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05.678Z`).
fn rfc3339_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn payload_fields_are_text_json_or_base64() {
        assert_eq!(payload(Some(json!("hé")), None, "v").unwrap(), Some(Bytes::from("hé")));
        assert_eq!(payload(Some(json!({"a": 1})), None, "v").unwrap(), Some(Bytes::from("{\"a\":1}")));
        assert_eq!(payload(None, Some("AP8=".into()), "v").unwrap(), Some(Bytes::from_static(b"\x00\xff")));
        assert_eq!(payload(Some(Value::Null), None, "v").unwrap(), None);
        assert!(payload(Some(json!("x")), Some("eA==".into()), "v").is_err());
        assert!(payload(None, Some("not base64!".into()), "v").is_err());
    }
}
