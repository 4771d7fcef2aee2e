//! The broker service: the one layer both front doors call. The Kafka handlers and the HTTP API
//! produce, read and change topics through it, so the topic rules (Kafka's `LogValidator`),
//! the authorizer, auto-creation, isolation levels and the traffic metrics are applied in one
//! place whichever door a request came through.
//!
//! - [`session`]: who is asking (principal, listener, client host and id).
//! - [`authorizer`]: whether they may (today every session may do everything).

pub mod authorizer;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::MetadataCache;
use crate::cluster::forward::Forwarder;
use crate::log::batch::{self, ValidBatch};
use crate::log::topic_config::TimestampType;
use crate::log::{AppendInfo, AppendReceiver, Isolation, Log, LogError, Partition, ReadRequest, ReadResult, Topic};
use crate::metrics::{Metrics, TopicMetrics};
use crate::unified::UnifiedLog;
use authorizer::{Authorizer, Operation, Resource};
use session::Session;

/// Settings of the service (from the broker's config).
#[derive(Debug, Clone, Copy)]
pub struct ServiceSettings {
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    /// Largest size a batch may decompress to when the key check of a compacted topic reads it.
    pub record_batch_decompressed_bytes_max: usize,
}

/// One partition's records, checked against the topic's rules and ready to be queued.
pub struct Validated {
    partition: Arc<Partition>,
    timestamp_type: TimestampType,
    batches: Vec<ValidBatch>,
    counted: Counted,
}

impl Validated {
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// The producer id and epoch of the first transactional batch, if any.
    pub fn transactional_producer(&self) -> Option<(i64, i16)> {
        self.batches
            .iter()
            .find(|b| b.header.is_transactional())
            .map(|b| (b.header.producer_id, b.header.producer_epoch))
    }
}

/// An append on its way to the log; `wait` resolves once it is durable (or failed) and counts it.
pub struct PendingAppend {
    receiver: AppendReceiver,
    counted: Counted,
    metadata: Arc<dyn MetadataCache>,
}

impl PendingAppend {
    pub async fn wait(self) -> Result<AppendInfo, LogError> {
        let result = self.receiver.await.unwrap_or(Err(LogError::Unavailable));
        if result.is_ok() {
            self.counted.metrics.appended(self.counted.bytes, self.counted.records);
            // A broker that cannot prove its lease acknowledges nothing (the record is durable
            // all the same, and the next leader serves it).
            if !self.metadata.may_acknowledge() {
                return Err(LogError::NotLeaderOrFollower);
            }
        }
        result
    }
}

/// What an append adds to its topic's `BytesIn` and `MessagesIn` once it is durable.
struct Counted {
    metrics: TopicMetrics,
    bytes: usize,
    records: u64,
}

/// One partition to read.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub topic: Arc<Topic>,
    pub partition: Arc<Partition>,
    pub offset: i64,
    pub max_bytes: usize,
    /// The leader epoch the client believes current (-1: it sent none).
    pub current_leader_epoch: i32,
}

impl PartitionRead {
    pub fn new(topic: Arc<Topic>, partition: Arc<Partition>, offset: i64, max_bytes: usize) -> PartitionRead {
        PartitionRead { topic, partition, offset, max_bytes, current_leader_epoch: -1 }
    }
}

/// How long a read may wait for records (a Fetch's long poll): until `min_bytes` have arrived or
/// the deadline passes.
#[derive(Debug, Clone, Copy)]
pub struct ReadWait {
    pub min_bytes: usize,
    pub deadline: tokio::time::Instant,
}

/// The broker's operations, for both front doors; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct BrokerService {
    unified: UnifiedLog,
    metadata: Arc<dyn MetadataCache>,
    authorizer: Arc<dyn Authorizer>,
    metrics: Arc<Metrics>,
    settings: ServiceSettings,
    /// In a cluster: produce to and read from a partition's leader for the HTTP door.
    forwarder: Option<Arc<dyn Forwarder>>,
}

impl BrokerService {
    pub fn new(
        unified: UnifiedLog,
        metadata: Arc<dyn MetadataCache>,
        authorizer: Arc<dyn Authorizer>,
        metrics: Arc<Metrics>,
        settings: ServiceSettings,
    ) -> BrokerService {
        BrokerService { unified, metadata, authorizer, metrics, settings, forwarder: None }
    }

    /// The same service, forwarding what another broker leads through `forwarder`.
    pub fn with_forwarder(self, forwarder: Arc<dyn Forwarder>) -> BrokerService {
        BrokerService { forwarder: Some(forwarder), ..self }
    }

    /// Whether the partition is another broker's to append to and read from (then a door that
    /// cannot redirect its client forwards).
    pub fn led_elsewhere(&self, partition: &Partition) -> bool {
        self.forwarder.is_some() && self.metadata.check_leader(partition, -1).is_err()
    }

    /// Appends `records` to a partition another broker leads, through that leader, after the
    /// same authorization a local append gets; the leader applies the topic's rules.
    pub async fn forward_append(
        &self,
        session: &Session,
        topic: &Topic,
        index: i32,
        records: Bytes,
    ) -> Result<AppendInfo, LogError> {
        self.authorize(session, Operation::Write, Resource::Topic(&topic.name))?;
        let (forwarder, leader) = self.leader_of(topic, index)?;
        // The leader counts the records in its BytesIn, as for any produce.
        forwarder.produce(&leader, &topic.name, index, records).await
    }

    /// Reads a partition another broker leads, through that leader.
    pub async fn forward_read(
        &self,
        session: &Session,
        topic: &Topic,
        index: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        self.authorize(session, Operation::Read, Resource::Topic(&topic.name))?;
        let (forwarder, leader) = self.leader_of(topic, index)?;
        forwarder.read(&leader, &topic.name, index, offset, max_bytes).await
    }

    fn leader_of(
        &self,
        topic: &Topic,
        index: i32,
    ) -> Result<(&Arc<dyn Forwarder>, crate::cluster::BrokerInfo), LogError> {
        let forwarder = self.forwarder.as_ref().ok_or(LogError::NotLeaderOrFollower)?;
        let partition = topic.partition(index).ok_or(LogError::UnknownTopicOrPartition)?;
        let leader = self.metadata.leadership(partition).leader;
        let info =
            self.metadata.broker_on(leader, forwarder.listener()).filter(|b| b.node_id != self.metadata.this_broker());
        Ok((forwarder, info.ok_or(LogError::NotLeaderOrFollower)?))
    }

    pub fn log(&self) -> &Log {
        self.unified.log()
    }

    pub fn unified(&self) -> &UnifiedLog {
        &self.unified
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataCache> {
        &self.metadata
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The authorizer, for its metrics.
    pub fn authorizer(&self) -> Arc<dyn Authorizer> {
        self.authorizer.clone()
    }

    /// Whether the authorizer lets the session do `operation` on `resource`.
    pub fn allowed(&self, session: &Session, operation: Operation, resource: Resource<'_>) -> bool {
        self.authorizer.authorize(session, operation, resource)
    }

    /// Whether the session may do `operation` on at least one topic.
    pub fn allowed_on_any_topic(&self, session: &Session, operation: Operation) -> bool {
        self.authorizer.authorize_any_topic(session, operation)
    }

    /// Whether ACLs are on (`--authorizer standard`).
    pub fn acls_enabled(&self) -> bool {
        self.authorizer.enabled()
    }

    /// Kafka's authorized operations of a resource: one bit (`1 << code`) per operation of
    /// `operations` the session may do.
    pub fn authorized_operations(&self, session: &Session, resource: Resource<'_>, operations: &[Operation]) -> i32 {
        operations
            .iter()
            .filter(|op| self.authorizer.authorize(session, **op, resource))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Whether the session may create the topic: CREATE on the cluster or on the topic.
    pub fn may_create_topic(&self, session: &Session, name: &str) -> bool {
        self.allowed(session, Operation::Create, Resource::Cluster)
            || self.allowed(session, Operation::Create, Resource::Topic(name))
    }

    /// Refuses what the authorizer refuses, with the error code Kafka gives for the resource.
    pub fn authorize(&self, session: &Session, operation: Operation, resource: Resource<'_>) -> Result<(), LogError> {
        if self.authorizer.authorize(session, operation, resource) {
            return Ok(());
        }
        Err(match resource {
            Resource::Topic(name) => LogError::TopicAuthorizationFailed(name.to_string()),
            Resource::Group(id) => LogError::GroupAuthorizationFailed(id.to_string()),
            Resource::TransactionalId(id) => LogError::TransactionalIdAuthorizationFailed(id.to_string()),
            Resource::Cluster => LogError::ClusterAuthorizationFailed,
        })
    }

    /// A topic's traffic counters, resolved once per topic so that recording takes no lock.
    pub fn topic_metrics<'t>(&self, topic: &'t Topic) -> &'t TopicMetrics {
        topic.metrics.get_or_init(|| self.metrics.topic(&topic.name))
    }

    /// The topic a client may write to. With `create`, an unknown topic is created with the
    /// broker's defaults when `--auto-create-topics` is on, as a producer's first Metadata
    /// request would.
    pub async fn topic_for_write(&self, session: &Session, name: &str, create: bool) -> Result<Arc<Topic>, LogError> {
        self.authorize(session, Operation::Write, Resource::Topic(name))?;
        self.topic_or_create(session, name, create).await
    }

    /// The topic `id` (Produce v13+, Fetch v13+), if the session may use it for `operation`.
    pub fn topic_by_id(&self, session: &Session, id: uuid::Uuid, operation: Operation) -> Result<Arc<Topic>, LogError> {
        let topic = self.log().topic_by_id(id).ok_or(LogError::UnknownTopicId)?;
        self.authorize(session, operation, Resource::Topic(&topic.name))?;
        Ok(topic)
    }

    /// The topic `name`, if the session may use it for `operation`.
    pub fn topic(&self, session: &Session, name: &str, operation: Operation) -> Result<Arc<Topic>, LogError> {
        self.authorize(session, operation, Resource::Topic(name))?;
        self.log().topic(name).ok_or(LogError::UnknownTopicOrPartition)
    }

    /// Finds a topic, creating it when auto-creation is on and `create` is asked for.
    pub async fn topic_or_create(&self, session: &Session, name: &str, create: bool) -> Result<Arc<Topic>, LogError> {
        if let Some(topic) = self.log().topic(name) {
            return Ok(topic);
        }
        if !(create && self.settings.auto_create_topics) {
            return Err(LogError::UnknownTopicOrPartition);
        }
        if !self.may_create_topic(session, name) {
            return Err(LogError::TopicAuthorizationFailed(name.to_string()));
        }
        match self.create_topic(name, self.settings.num_partitions, BTreeMap::new(), false).await {
            Ok(topic) => Ok(topic),
            // Another connection created it first.
            Err(LogError::TopicAlreadyExists(_)) => self.log().topic(name).ok_or(LogError::UnknownTopicOrPartition),
            Err(error) => Err(error),
        }
    }

    /// CreateTopics: a new topic (with `validate_only`, only checked). Authorization is the
    /// caller's (CreateTopics answers per topic with its own codes).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, LogError> {
        let topic = self.log().create_topic(name, partitions, configs, validate_only).await?;
        if !validate_only {
            self.unified.topic_changed(name).await?;
        }
        Ok(topic)
    }

    /// CreatePartitions: raises a topic's partition count.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<usize>,
        validate_only: bool,
    ) -> Result<(), LogError> {
        self.log().create_partitions(name, count, assignments, validate_only).await?;
        if !validate_only {
            self.unified.topic_changed(name).await?;
        }
        Ok(())
    }

    /// AlterConfigs and IncrementalAlterConfigs on a topic: replaces its explicit configs.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), LogError> {
        self.log().set_topic_configs(name, configs, validate_only).await?;
        if !validate_only {
            self.unified.topic_changed(name).await?;
        }
        Ok(())
    }

    /// DeleteTopics.
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.log().delete_topic(name).await
    }

    /// Checks one partition's records against the topic's rules (Kafka's `LogValidator`): that
    /// this broker leads the partition, the acks a producer may ask for, `min.insync.replicas`, the batch format and
    /// `max.message.bytes`, and keys on compacted topics. CPU-bound for compacted topics (their
    /// batches are decompressed): callers on the runtime keep requests small or move it off.
    pub fn validate(&self, topic: &Topic, index: i32, records: &Bytes, acks: i16) -> Result<Validated, LogError> {
        let partition = topic.partition(index).ok_or(LogError::UnknownTopicOrPartition)?;
        self.metadata.check_leader(partition, -1)?;
        if !matches!(acks, -1..=1) {
            return Err(LogError::InvalidRequiredAcks(acks));
        }
        if acks == -1 && topic.config.min_insync_replicas > 1 {
            return Err(LogError::NotEnoughReplicas);
        }
        let batches = batch::validate(records, topic.config.max_message_bytes.max(0) as usize)?;
        if topic.config.compacted {
            check_keys(topic, index, &batches, self.settings.record_batch_decompressed_bytes_max)?;
        }
        if topic.config.timestamp_type == TimestampType::CreateTime {
            check_timestamps(topic, &batches, crate::log::now_ms(), self.settings.record_batch_decompressed_bytes_max)?;
        }
        let bytes = batches.iter().map(|b| b.bytes.len()).sum();
        let records = batches.iter().map(|b| u64::try_from(b.header.record_count).unwrap_or(0)).sum();
        let counted = Counted { metrics: self.topic_metrics(topic).clone(), bytes, records };
        Ok(Validated { partition: partition.clone(), timestamp_type: topic.config.timestamp_type, batches, counted })
    }

    /// Queues validated partitions as one writer command, so that they share a group commit
    /// and a request is written whole or not at all; one pending append per partition, in order.
    pub async fn append(&self, validated: Vec<Validated>) -> Result<Vec<PendingAppend>, LogError> {
        self.append_keyed(validated, None).await
    }

    /// As `append`, with the request's answer stored under an idempotency key in the same write
    /// (see `Log::idempotent_answer`).
    pub async fn append_keyed(
        &self,
        validated: Vec<Validated>,
        keyed: Option<crate::log::Keyed>,
    ) -> Result<Vec<PendingAppend>, LogError> {
        if validated.is_empty() {
            if let Some(keyed) = keyed {
                self.log().store_idempotent_answer(keyed).await?;
            }
            return Ok(Vec::new());
        }
        let mut appends = Vec::with_capacity(validated.len());
        let mut counted = Vec::with_capacity(validated.len());
        for item in validated {
            appends.push((item.timestamp_type, item.partition, item.batches));
            counted.push(item.counted);
        }
        let receivers = self.log().submit_appends_keyed(appends, keyed).await?;
        Ok(receivers
            .into_iter()
            .zip(counted)
            .map(|(receiver, counted)| PendingAppend { receiver, counted, metadata: self.metadata.clone() })
            .collect())
    }

    /// Reads several partitions up to the high watermark or, with `Isolation::Committed`, the
    /// last stable offset, each only on its leader and at the leader epoch its client holds.
    /// With `wait`, reads again after every group commit until `min_bytes` arrived, a partition
    /// failed, or the deadline passed. Counts what is returned in the topics' `BytesOut` and
    /// `MessagesOut`, once.
    pub async fn read(
        &self,
        session: &Session,
        reads: Vec<PartitionRead>,
        isolation: Isolation,
        total_bytes_max: usize,
        wait: Option<ReadWait>,
    ) -> Vec<Result<ReadResult, LogError>> {
        let mut allowed = Vec::with_capacity(reads.len());
        let mut requests = Vec::with_capacity(reads.len());
        for read in &reads {
            let permitted = self
                .authorize(session, Operation::Read, Resource::Topic(&read.topic.name))
                .and_then(|()| self.metadata.check_leader(&read.partition, read.current_leader_epoch));
            if permitted.is_ok() {
                requests.push(ReadRequest {
                    partition: read.partition.clone(),
                    offset: read.offset,
                    max_bytes: read.max_bytes,
                    at_least_one: false,
                    isolation,
                    // Clients check the batches' own CRC, as they do with Kafka's page-cache reads.
                    verify_checksums: false,
                });
            }
            allowed.push(permitted);
        }
        let refused = allowed.iter().any(Result::is_err);
        let mut appended = self.log().appended();
        let results = loop {
            appended.borrow_and_update();
            let results = self.unified.read(requests.clone(), total_bytes_max).await;
            let Some(wait) = wait else { break results };
            let bytes: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.records.len()).sum();
            let failed = refused || results.iter().any(Result::is_err);
            if bytes >= wait.min_bytes.max(1) || failed || tokio::time::Instant::now() >= wait.deadline {
                break results;
            }
            // Woken by a group commit or the deadline; either way read again (at the deadline, for
            // the last time) so the answer carries whatever has arrived.
            let _ = tokio::time::timeout_at(wait.deadline, appended.changed()).await;
        };
        let mut results = results.into_iter();
        reads
            .iter()
            .zip(allowed)
            .map(|(read, permitted)| {
                permitted?;
                let result = results.next().unwrap_or(Err(LogError::Unavailable));
                if let Ok(read_result) = &result {
                    let (bytes, records) = crate::log::batch::totals(&read_result.records);
                    self.topic_metrics(&read.topic).fetched(bytes, records);
                }
                result
            })
            .collect()
    }
}

/// Kafka refuses a batch with a CreateTime outside `message.timestamp.before.max.ms` and
/// `after.max.ms` of its clock (KIP-937: by default an hour ahead, no limit behind), naming each
/// record. The batch header's max timestamp settles the upper bound without decoding anything;
/// records are decoded only when it is over, or when a lower bound is set.
fn check_timestamps(
    topic: &Topic,
    batches: &[ValidBatch],
    now_ms: i64,
    decompressed_bytes_max: usize,
) -> Result<(), LogError> {
    let config = &topic.config;
    let upper = now_ms.saturating_add(config.timestamp_after_max_ms);
    let lower = now_ms.saturating_sub(config.timestamp_before_max_ms);
    let unbounded_below = config.timestamp_before_max_ms >= now_ms;
    let mut record_errors = Vec::new();
    for valid in batches {
        if valid.header.max_timestamp <= upper && unbounded_below {
            continue;
        }
        for (position, timestamp) in batch::record_timestamps(valid, decompressed_bytes_max)?.into_iter().enumerate() {
            if timestamp != -1 && !(lower..=upper).contains(&timestamp) {
                let message = format!(
                    "Timestamp {timestamp} of message with offset {position} is out of range. The timestamp should be within [{lower}, {upper}]"
                );
                record_errors.push((position as i32, message));
            }
        }
    }
    if record_errors.is_empty() {
        return Ok(());
    }
    let message = record_errors_message(&record_errors);
    Err(LogError::InvalidTimestamp { message, record_errors })
}

/// The batch's error message beside its per-record errors, in Kafka's words.
fn record_errors_message(record_errors: &[(i32, String)]) -> String {
    let shown: Vec<&str> = record_errors.iter().take(3).map(|(_, m)| m.as_str()).collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: {shown:?}",
        record_errors.len()
    )
}

/// Kafka refuses records without a key on compacted topics, naming each one.
fn check_keys(
    topic: &Topic,
    index: i32,
    batches: &[ValidBatch],
    decompressed_bytes_max: usize,
) -> Result<(), LogError> {
    let mut record_errors = Vec::new();
    for valid in batches {
        for position in batch::records_without_key(valid, decompressed_bytes_max)? {
            let message =
                format!("Compacted topic cannot accept message without key in topic partition {}-{index}.", topic.name);
            record_errors.push((position, message));
        }
    }
    if record_errors.is_empty() {
        return Ok(());
    }
    let message = record_errors_message(&record_errors);
    Err(LogError::InvalidRecords { message, record_errors })
}
