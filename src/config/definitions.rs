//! The one table of config definitions: every setting of this broker (a flag, a `ZOMBI_*`
//! environment variable and a TOML key), every broker config Kafka's tools may describe or alter,
//! every topic config and every group config, each with its type, validation, default, whether
//! AlterConfigs may change it, and a line of documentation.
//!
//! What is derived from it: the flags' help and defaults (`annotate`), the TOML file's keys
//! (`flag_of_file_key`), the validation of flag values, of dynamic broker configs, of topic and of
//! group configs (`validate`), and DescribeConfigs on the broker: which names, their values, whether
//! read-only, and every config's type (`described_type`). The flags themselves are the fields of the
//! section structs (`--log-retention-ms` is `LogConfig::retention_ms`); a test checks that each
//! field has its row and each row its field.

use std::collections::BTreeMap;

use super::Config;
use super::log::{Durability, PARTITIONS_PER_TOPIC_MAX};

/// Where a config applies (Kafka's `ConfigResource` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This broker: a zombi setting, a Kafka broker config, or both.
    Broker,
    Topic,
    Group,
}

/// The type DescribeConfigs reports (Kafka's `ConfigType` ids: SHORT, CLASS and PASSWORD are
/// not used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum Type {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Where a described value comes from (Kafka's `ConfigSource` ids), most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum Source {
    /// Set on the topic (AlterConfigs, CreateTopics).
    Topic = 1,
    /// Set on this broker by AlterConfigs.
    DynamicBroker = 2,
    /// Set on the cluster-wide broker default (resource name "") by AlterConfigs.
    DynamicDefaultBroker = 3,
    /// A flag, its environment variable or the file: every setting zombi runs with is reported
    /// as static, its defaults included, since they are zombi's and not Kafka's.
    StaticBroker = 4,
    /// The default (Kafka's, for configs zombi has no setting for).
    Default = 5,
    /// Set on the group.
    Group = 8,
}

/// One place a config's value may come from, as DescribeConfigs lists it among the config's
/// synonyms (Kafka's `DescribeConfigsSynonym`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: Source,
}

/// What a value must be. The messages are the ones clients see with INVALID_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Valid {
    Any,
    /// An integer in `min..=max`.
    Range {
        min: i64,
        max: i64,
    },
    /// A ratio in `0..=1`.
    Ratio,
    /// `true` or `false`, in any case.
    Bool,
    OneOf(&'static [&'static str]),
}

impl Valid {
    /// Why `value` is not valid: the end of Kafka's "Invalid value V for configuration N: …".
    pub fn check(&self, value: &str) -> Result<(), String> {
        match self {
            Valid::Any => Ok(()),
            Valid::Range { min, max } => match value.trim().parse::<i64>() {
                Ok(number) if number >= *min && number <= *max => Ok(()),
                _ => Err(format!("must be an integer from {min} to {max}")),
            },
            Valid::Ratio => match value.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
                _ => Err("must be between 0 and 1".to_string()),
            },
            Valid::Bool if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") => Ok(()),
            Valid::Bool => Err("must be true or false".to_string()),
            Valid::OneOf(allowed) if allowed.contains(&value) => Ok(()),
            Valid::OneOf(allowed) => Err(format!("must be one of {allowed:?}")),
        }
    }
}

/// Which keys of the TOML file set a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKey {
    /// Not in the file (Kafka configs without a flag, topic and group configs).
    None,
    /// The flag's name (`data-dir = "/var/lib/zombi"`).
    Flag,
    /// Kafka's name only (`"log.retention.ms" = 1000`).
    Kafka,
    /// Kafka's name or the flag's.
    KafkaOrFlag,
}

/// Whether and how DescribeConfigs on the broker lists a broker config.
#[derive(Debug, Clone, Copy)]
pub enum Describe {
    No,
    /// The row's default (settings zombi does not have, listed because tools read them).
    Default,
    /// The value this broker runs with.
    Value(fn(&Config) -> String),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// The flag without `--`; its environment variable is `ZOMBI_` and the flag in upper case with
    /// `_` for `-`. `None` for configs that only Kafka's APIs reach.
    pub flag: Option<&'static str>,
    /// Kafka's name, where Kafka has one: what DescribeConfigs and AlterConfigs call it.
    pub kafka: Option<&'static str>,
    pub file: FileKey,
    pub scope: Scope,
    pub ty: Type,
    pub valid: Valid,
    /// The default, as a flag would give it; `None` where the default is derived (see `doc`).
    pub default: Option<&'static str>,
    /// AlterConfigs may set it (for the broker: dynamic, else read-only).
    pub dynamic: bool,
    pub describe: Describe,
    /// A topic config's broker config (Kafka's `ServerTopicConfigSynonyms`): where its value
    /// comes from when the topic sets none, listed among its synonyms.
    pub synonym: Option<&'static str>,
    /// Removed in Kafka 4: accepted and stored (without effect) so that clients written for
    /// Kafka 3 may still set it, but never described, as Kafka 4 does not list it.
    pub removed: bool,
    pub doc: &'static str,
}

impl Definition {
    const fn new(scope: Scope, flag: Option<&'static str>, kafka: Option<&'static str>, file: FileKey) -> Self {
        Definition {
            flag,
            kafka,
            file,
            scope,
            ty: Type::String,
            valid: Valid::Any,
            default: None,
            dynamic: false,
            describe: Describe::No,
            synonym: None,
            removed: false,
            doc: "",
        }
    }

    /// Kafka's name for a setting; the TOML key stays the flag's unless `kafka_in_file`.
    const fn kafka(self, name: &'static str) -> Self {
        Definition { kafka: Some(name), ..self }
    }

    /// The TOML file takes Kafka's name for it (and not the flag's).
    const fn kafka_in_file(self) -> Self {
        Definition { file: FileKey::Kafka, ..self }
    }

    /// The TOML file takes Kafka's name or the flag's.
    const fn kafka_or_flag_in_file(self) -> Self {
        Definition { file: FileKey::KafkaOrFlag, ..self }
    }

    const fn of(self, ty: Type) -> Self {
        Definition { ty, ..self }
    }

    const fn int(self, min: i64) -> Self {
        Definition { ty: Type::Int, valid: Valid::Range { min, max: i32::MAX as i64 }, ..self }
    }

    const fn int_to(self, min: i64, max: i64) -> Self {
        Definition { ty: Type::Int, valid: Valid::Range { min, max }, ..self }
    }

    const fn long(self, min: i64) -> Self {
        Definition { ty: Type::Long, valid: Valid::Range { min, max: i64::MAX }, ..self }
    }

    const fn boolean(self) -> Self {
        Definition { ty: Type::Boolean, valid: Valid::Bool, ..self }
    }

    const fn ratio(self) -> Self {
        Definition { ty: Type::Double, valid: Valid::Ratio, ..self }
    }

    const fn one_of(self, allowed: &'static [&'static str]) -> Self {
        Definition { ty: Type::String, valid: Valid::OneOf(allowed), ..self }
    }

    const fn list(self) -> Self {
        Definition { ty: Type::List, ..self }
    }

    /// A topic config's broker config (its synonym).
    const fn synonym(self, broker: &'static str) -> Self {
        Definition { synonym: Some(broker), ..self }
    }

    /// Accepted, not described: Kafka 4 removed it.
    const fn removed_in_kafka_4(self) -> Self {
        Definition { removed: true, ..self }
    }

    const fn default(self, value: &'static str) -> Self {
        Definition { default: Some(value), ..self }
    }

    const fn dynamic(self) -> Self {
        Definition { dynamic: true, ..self }
    }

    /// DescribeConfigs on the broker lists it with its default.
    const fn described(self) -> Self {
        Definition { describe: Describe::Default, ..self }
    }

    /// DescribeConfigs on the broker lists it with the value `value` reads from the config.
    const fn value(self, value: fn(&Config) -> String) -> Self {
        Definition { describe: Describe::Value(value), ..self }
    }

    const fn doc(self, doc: &'static str) -> Self {
        Definition { doc, ..self }
    }

    /// The name it goes by: its flag, else its Kafka name.
    pub fn name(&self) -> &'static str {
        self.flag.or(self.kafka).unwrap_or("")
    }

    /// Whether the TOML key `key` sets it.
    fn takes_file_key(&self, key: &str) -> bool {
        match self.file {
            FileKey::None => false,
            FileKey::Flag => self.flag == Some(key),
            FileKey::Kafka => self.kafka == Some(key),
            FileKey::KafkaOrFlag => self.kafka == Some(key) || self.flag == Some(key),
        }
    }

    /// The TOML keys that set it.
    pub fn file_keys(&self) -> Vec<&'static str> {
        match self.file {
            FileKey::None => vec![],
            FileKey::Flag => self.flag.into_iter().collect(),
            FileKey::Kafka => self.kafka.into_iter().collect(),
            FileKey::KafkaOrFlag => self.kafka.into_iter().chain(self.flag).collect(),
        }
    }

    /// Its environment variable (`--log-roll-ms` ↔ `ZOMBI_LOG_ROLL_MS`).
    pub fn env(&self) -> Option<String> {
        self.flag.map(|flag| format!("ZOMBI_{}", flag.to_uppercase().replace('-', "_")))
    }

    /// Kafka's message for an invalid value.
    fn check(&self, name: &str, value: &str) -> Result<(), String> {
        self.valid.check(value).map_err(|why| format!("Invalid value {value} for configuration {name}: {why}"))
    }
}

/// A zombi setting: a flag, its environment variable and (by default) a TOML key of the flag's name.
const fn setting(flag: &'static str) -> Definition {
    Definition::new(Scope::Broker, Some(flag), None, FileKey::Flag)
}

/// A broker config Kafka has and zombi has no flag for.
const fn broker(kafka: &'static str) -> Definition {
    Definition::new(Scope::Broker, None, Some(kafka), FileKey::None)
}

const fn topic(kafka: &'static str) -> Definition {
    Definition::new(Scope::Topic, None, Some(kafka), FileKey::None)
}

const fn group(kafka: &'static str) -> Definition {
    Definition::new(Scope::Group, None, Some(kafka), FileKey::None)
}

const CLEANUP_POLICIES: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];
const COMPRESSION_TYPES: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

/// The topic config that turns a topic's Iceberg table on or off.
pub const ICEBERG_ENABLE: &str = "zombi.iceberg.enable";

/// `--durability fsync` syncs every group commit before acknowledging it: Kafka's flush after
/// each message; `periodic` flushes on a timer.
fn flush_messages(config: &Config) -> String {
    match config.log.durability {
        Durability::Fsync => "1".to_string(),
        Durability::Periodic => i64::MAX.to_string(),
    }
}

fn flush_ms(config: &Config) -> String {
    match config.log.durability {
        Durability::Fsync => "null".to_string(),
        Durability::Periodic => config.log.fsync_interval_ms.to_string(),
    }
}

/// Every config the broker knows. The rows of broker configs that DescribeConfigs lists come
/// first, in the order it lists them; then the other broker configs AlterConfigs may set, zombi's
/// own settings by section, the topic configs (in the order DescribeConfigs lists them) and the
/// group configs.
pub const DEFINITIONS: &[Definition] = &[
    // Broker configs DescribeConfigs lists, with the values the broker runs with.
    setting("advertised-listeners")
        .kafka("advertised.listeners")
        .kafka_or_flag_in_file()
        .list()
        .value(|c| {
            let shown: Vec<String> = c
                .security
                .listeners
                .iter()
                .map(|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port))
                .collect();
            shown.join(",")
        })
        .doc("The Kafka listeners as clients are told to reach them, `NAME://HOST:PORT,…` (Kafka's `advertised.listeners`); each name one of `--listeners`'. Without it, each listener's own address (`--kafka-advertised` for the one-listener shorthand)"),
    setting("inter-broker-listener-name")
        .kafka("inter.broker.listener.name")
        .kafka_or_flag_in_file()
        .value(|c| c.security.inter_broker_listener.clone())
        .doc("The listener the brokers of a cluster reach each other on (Kafka's `inter.broker.listener.name`); by default PLAINTEXT if there is one, else SSL. A SASL listener needs `--inter-broker-sasl-username`, or `--oauthbearer-token-endpoint-url` for OAUTHBEARER"),
    setting("sasl-mechanism-inter-broker-protocol")
        .kafka("sasl.mechanism.inter.broker.protocol")
        .kafka_or_flag_in_file()
        .one_of(super::security::INTER_BROKER_SASL_MECHANISMS)
        .default("SCRAM-SHA-512")
        .value(|c| c.security.inter_broker_sasl_mechanism.clone())
        .doc("The SASL mechanism brokers authenticate to each other with on a SASL inter-broker listener (Kafka's `sasl.mechanism.inter.broker.protocol`): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (as `--inter-broker-sasl-username`), or OAUTHBEARER (with the token of `--oauthbearer-token-endpoint-url`); one of `--sasl-enabled-mechanisms`"),
    setting("inter-broker-sasl-username").doc(
        "On a SASL inter-broker listener, the SCRAM user the brokers authenticate to each other as (the bootstrap admin will do), with its password in ZOMBI_INTER_BROKER_SASL_PASSWORD; with `--authorizer standard` it must be one of `--super-users`",
    ),
    setting("auto-create-topics")
        .kafka("auto.create.topics.enable")
        .boolean()
        .default("true")
        .value(|c| c.log.auto_create_topics.to_string())
        .doc("Create unknown topics on Metadata and Produce requests"),
    broker("broker.id").int(0).value(|c| c.node_id.to_string()).doc("This broker's id (`--node-id`)"),
    setting("log-retention-bytes")
        .kafka("log.retention.bytes")
        .kafka_in_file()
        .long(-1)
        .default("-1")
        .dynamic()
        .value(|c| c.log.retention_bytes.to_string())
        .doc("Default `retention.bytes` of each partition (-1: unlimited)"),
    setting("log-retention-ms")
        .kafka("log.retention.ms")
        .kafka_in_file()
        .long(-1)
        .default("604800000")
        .dynamic()
        .value(|c| c.log.retention_ms.to_string())
        .doc("Default `retention.ms` of topics (-1: forever)"),
    setting("log-segment-bytes")
        .kafka("log.segment.bytes")
        .kafka_in_file()
        .int(14)
        .default("67108864")
        .dynamic()
        .value(|c| c.log.segment_bytes.to_string())
        .doc("Default `segment.bytes`: upload a partition's tail once it holds this many bytes"),
    setting("log-roll-ms")
        .kafka("log.roll.ms")
        .kafka_in_file()
        .long(1)
        .default("600000")
        .dynamic()
        .value(|c| c.log.roll_ms.to_string())
        .doc("Default `segment.ms`: upload a partition's tail once its oldest record waited this long"),
    setting("log-local-retention-bytes")
        .kafka("log.local.retention.bytes")
        .kafka_in_file()
        .long(-2)
        .default("-2")
        .dynamic()
        .value(|c| c.log.local_retention_bytes.to_string())
        .doc("Default `local.retention.bytes` per partition (-2: as `retention.bytes`)"),
    setting("log-local-retention-ms")
        .kafka("log.local.retention.ms")
        .kafka_in_file()
        .long(-2)
        .default("600000")
        .dynamic()
        .value(|c| c.log.local_retention_ms.to_string())
        .doc("Default `local.retention.ms`: how long uploaded records stay in the hot tier too (-2: as `retention.ms`)"),
    broker("log.flush.interval.messages")
        .long(1)
        .dynamic()
        .value(flush_messages)
        .doc("1 with `--durability fsync` (every group commit is synced), else never by count"),
    broker("log.flush.interval.ms")
        .long(0)
        .dynamic()
        .value(flush_ms)
        .doc("`--fsync-interval-ms` with `--durability periodic`, else null"),
    setting("message-max-bytes")
        .kafka("message.max.bytes")
        .kafka_in_file()
        .int(0)
        .default("1048588")
        .dynamic()
        .value(|c| c.log.message_max_bytes.to_string())
        .doc("Default `max.message.bytes` of topics (largest record batch)"),
    broker("node.id").int(0).value(|c| c.node_id.to_string()).doc("This broker's id (`--node-id`)"),
    setting("num-partitions")
        .kafka("num.partitions")
        .int_to(1, PARTITIONS_PER_TOPIC_MAX as i64)
        .default("1")
        .value(|c| c.log.num_partitions.to_string())
        .doc("Partition count of auto-created topics and of CreateTopics with -1"),
    setting("socket-request-max-bytes")
        .kafka("socket.request.max.bytes")
        .kafka_in_file()
        .int(1024)
        .default("104857600")
        .value(|c| c.network.socket_request_max_bytes.to_string())
        .doc("Largest request frame accepted (Kafka's `socket.request.max.bytes`)"),
    setting("quota-window-num")
        .kafka("quota.window.num")
        .kafka_in_file()
        .int(1)
        .default("11")
        .value(|c| c.network.quota_window_num.to_string())
        .doc("Samples a client's rate is measured over for its quotas (Kafka's `quota.window.num`)"),
    setting("quota-window-size-seconds")
        .kafka("quota.window.size.seconds")
        .kafka_in_file()
        .int(1)
        .default("1")
        .value(|c| c.network.quota_window_size_seconds.to_string())
        .doc("Time each quota sample covers (Kafka's `quota.window.size.seconds`)"),
    setting("group-initial-rebalance-delay-ms")
        .kafka("group.initial.rebalance.delay.ms")
        .kafka_in_file()
        .of(Type::Int)
        .default("3000")
        .value(|c| c.groups.initial_rebalance_delay_ms.to_string())
        .doc("How long an empty group waits for more members before its first rebalance"),
    setting("group-min-session-timeout-ms")
        .kafka("group.min.session.timeout.ms")
        .kafka_in_file()
        .of(Type::Int)
        .default("6000")
        .value(|c| c.groups.min_session_timeout_ms.to_string())
        .doc("Smallest session timeout a group member may ask for"),
    setting("group-max-session-timeout-ms")
        .kafka("group.max.session.timeout.ms")
        .kafka_in_file()
        .of(Type::Int)
        .default("1800000")
        .value(|c| c.groups.max_session_timeout_ms.to_string())
        .doc("Largest session timeout a group member may ask for"),
    setting("offsets-retention-minutes")
        .kafka("offsets.retention.minutes")
        .kafka_in_file()
        .of(Type::Int)
        .default("10080")
        .value(|c| c.groups.offsets_retention_minutes.to_string())
        .doc("How long committed offsets of an empty group are kept"),
    setting("transaction-max-timeout-ms")
        .kafka("transaction.max.timeout.ms")
        .kafka_in_file()
        .of(Type::Int)
        .default("900000")
        .value(|c| c.groups.transaction_max_timeout_ms.to_string())
        .doc("Largest transaction.timeout.ms a transactional producer may ask for"),
    setting("transactional-id-expiration-ms")
        .kafka("transactional.id.expiration.ms")
        .kafka_in_file()
        .of(Type::Long)
        .default("604800000")
        .value(|c| c.groups.transactional_id_expiration_ms.to_string())
        .doc("How long a transactional id with no transaction in progress is kept without activity"),
    setting("transaction-abort-timed-out-transaction-cleanup-interval-ms")
        .kafka("transaction.abort.timed.out.transaction.cleanup.interval.ms")
        .kafka_in_file()
        .of(Type::Int)
        .default("10000")
        .value(|c| c.groups.transaction_abort_timed_out_transaction_cleanup_interval_ms.to_string())
        .doc("How often the transaction coordinator aborts transactions past their timeout"),
    broker("default.replication.factor")
        .of(Type::Int)
        .default("1")
        .value(|_| "1".to_string())
        .doc("One replica, always (static): the object store and the write-ahead log keep the copies"),
    broker("min.insync.replicas")
        .int(1)
        .default("1")
        .dynamic()
        .described()
        .doc("What topics that set nothing get (see `TopicConfig::resolve`)"),
    broker("compression.type")
        .one_of(COMPRESSION_TYPES)
        .default("producer")
        .dynamic()
        .described()
        .doc("Batches are stored as produced"),
    broker("log.cleanup.policy")
        .one_of(CLEANUP_POLICIES)
        .list()
        .default("delete")
        .dynamic()
        .described()
        .doc("What topics that set nothing get"),
    broker("log.message.timestamp.type")
        .one_of(TIMESTAMP_TYPES)
        .default("CreateTime")
        .dynamic()
        .described()
        .doc("What topics that set nothing get"),
    broker("unclean.leader.election.enable").boolean().default("false").dynamic().described().doc("One replica"),
    broker("delete.topic.enable").boolean().default("true").described().doc("Topics can always be deleted (read-only in Kafka 4)"),
    // Kafka's defaults of settings that mean nothing here, listed because tools read them.
    broker("background.threads").int(1).default("10").dynamic().described().doc("Stored and described"),
    broker("num.io.threads").int(1).default("8").dynamic().described().doc("Stored and described"),
    broker("num.network.threads").int(1).default("3").dynamic().described().doc("Stored and described"),
    // Broker configs AlterConfigs may set (Kafka's dynamic ones), stored and described once set.
    broker("log.cleaner.threads").int(0).dynamic().doc("Stored and described"),
    broker("max.connections").int(0).dynamic().doc("Stored and described; `--connections-max` is the limit"),
    broker("max.connections.per.ip").int(0).dynamic().doc("Stored and described"),
    broker("num.recovery.threads.per.data.dir").int(1).dynamic().doc("Stored and described"),
    broker("num.replica.fetchers").int(1).dynamic().doc("Stored and described"),
    broker("sasl.kerberos.min.time.before.relogin").long(0).dynamic().doc("Stored and described"),
    broker("sasl.kerberos.ticket.renew.jitter").ratio().dynamic().doc("Stored and described"),
    broker("sasl.kerberos.ticket.renew.window.factor").ratio().dynamic().doc("Stored and described"),
    // The broker: who it is.
    setting("data-dir").default("./data").doc("Directory for the RocksDB hot tier and broker metadata"),
    setting("node-id").int(0).default("0").doc("This broker's node id"),
    setting("cluster-id").doc("Cluster id reported to clients (default: generated once and kept in the data dir)"),
    setting("kafka-advertised").doc("host:port clients are told to connect to"),
    setting("log-format").one_of(&["text", "json"]).default("text").doc("Log format: `text` or `json`"),
    setting("memory-max-bytes").long(64 * 1024 * 1024).default("268435456").doc(
        "Memory for the buffers that grow with load, shared out: RocksDB memtables 3/8, block cache 1/8, \
         requests read but not yet answered 1/8 (held twice: as read and as validated batches), segments \
         read back from the object store 1/8 (at most --remote-fetch-cache-bytes), segments being \
         uploaded 1/8 (one at a time when a segment is larger)",
    ),
    // Network: the Kafka listener and its limits.
    setting("kafka-listen").default("0.0.0.0:9092").doc("Address the Kafka listener binds to"),
    setting("connections-max").long(1).default("4096").doc("Most client connections served at once"),
    // Log: durability and what topics get by default.
    setting("durability").default("fsync").doc("`fsync` (per group commit) or `periodic`"),
    setting("fsync-interval-ms").of(Type::Long).default("50").doc("Interval of the WAL fsync with `--durability periodic`"),
    setting("retention-check-interval-ms").of(Type::Long).default("30000").doc("How often retention is enforced"),
    setting("producer-id-expiration-ms")
        .kafka("producer.id.expiration.ms")
        .kafka_in_file()
        .int(1)
        .default("86400000")
        .value(|c| c.log.producer_id_expiration_ms.to_string())
        .doc("How long a partition keeps an idempotent producer's state after its last write, unless it holds a transaction open"),
    setting("record-batch-decompressed-max-bytes").of(Type::Long).default("67108864").doc(
        "Largest size a stored record batch may decompress to when the broker decodes it (HTTP reads, the Iceberg sink, ListOffsets by time, key checks of compacted topics)",
    ),
    setting("remote-storage-enable")
        .kafka("remote.storage.enable")
        .kafka_in_file()
        .boolean()
        .default("true")
        .doc("Default `remote.storage.enable` of topics: upload their logs to the object store"),
    // Tier: the object store and the remote log manager.
    setting("object-store").doc(
        "Where the log's segments go: `file://DIR` (default `file://<data-dir>/objects`) or `s3://BUCKET/PREFIX` (credentials from the standard AWS environment and profile chain)",
    ),
    setting("s3-endpoint")
        .doc("Endpoint of an S3-compatible server (path-style addressing), e.g. `http://127.0.0.1:9000`"),
    setting("s3-region").doc("AWS region of the bucket (default: from the AWS environment or profile)"),
    setting("remote-log-manager-task-interval-ms")
        .kafka("remote.log.manager.task.interval.ms")
        .kafka_in_file()
        .long(1)
        .default("1000")
        .doc("How often the remote log manager looks for work (uploads, local trims, remote deletes)"),
    setting("remote-fetch-cache-bytes")
        .of(Type::Long)
        .default("268435456")
        .doc("Memory for segments read back from the object store"),
    // HTTP.
    setting("http-listen")
        .default("0.0.0.0:8080")
        .doc("Address of the HTTP listener (health, metrics, events API, admin views, web console)"),
    setting("http-request-max-bytes")
        .long(1024)
        .default("8388608")
        .doc("Largest HTTP request body accepted (the events API's produce routes)"),
    setting("http-connections-max")
        .long(1)
        .default("1024")
        .doc("Most HTTP connections served at once; more are answered 503 and closed"),
    setting("http-header-read-timeout-ms").long(1).default("10000").doc(
        "How long an HTTP client has to send a request's header, counted from when the server waits for it (a new connection, or the next request on a kept-alive one)",
    ),
    setting("http-idle-timeout-ms").long(1).default("60000").doc(
        "An HTTP connection with no bytes read or written for this long is closed (a stalled body upload, a client that stopped reading its response)",
    ),
    setting("http-auth").one_of(&["none", "basic", "bearer", "any"]).doc(
        "Authentication on the HTTP listener: `none`; `basic` (HTTP basic auth with the SCRAM users' passwords); `bearer` (JWTs checked as OAUTHBEARER checks them); `any` (either). `/health/live`, `/health/ready` and `/metrics` stay open. Default `basic` with `--authorizer standard`, else `none`",
    ),
    setting("http-tls").boolean().default("false").doc(
        "Serve the HTTP listener over TLS (HTTPS) with `--ssl-cert-file` and `--ssl-key-file`, client certificates as `--ssl-client-auth` says",
    ),
    setting("http-metrics-auth").boolean().default("false").doc(
        "Whether `/metrics` needs the authentication of `--http-auth` (and, with an authorizer, DESCRIBE on the cluster) instead of being open to scrapers",
    ),
    // Iceberg.
    setting("iceberg-catalog").doc(
        "Iceberg catalog: `sqlite://PATH` (default `sqlite://<data-dir>/iceberg/catalog.db`), `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (also `postgresql://`), or an Iceberg REST catalog `http(s)://HOST:PORT[/PATH][?warehouse=…&scope=…&header.NAME=…]` (its secrets from ZOMBI_ICEBERG_CATALOG_CREDENTIAL, `ID:SECRET`, or ZOMBI_ICEBERG_CATALOG_TOKEN; see docs/iceberg.md)",
    ),
    setting("iceberg-warehouse").doc(
        "Where tables' data and metadata files go: `file:///DIR` or `s3://BUCKET/PATH` (default `s3://BUCKET/PREFIX/iceberg/warehouse` when `--object-store` is S3, else `file://<data-dir>/iceberg/warehouse`). S3 uses `--s3-endpoint` and `--s3-region`. With a REST catalog: the catalog's `warehouse` property, as that catalog names warehouses",
    ),
    setting("iceberg-partition-by").default("day").doc(
        "Partition spec of newly created tables: `day` (day(timestamp)), `hour`, `month`, `partition` (identity on the Kafka partition) or `none`. Existing tables keep theirs",
    ),
    setting("iceberg-namespace").default("zombi").doc("Namespace of the topics' tables"),
    setting("iceberg-commit-interval-ms")
        .of(Type::Long)
        .default("60000")
        .doc("How often each table gets a commit of what was produced since the last one (freshness)"),
    setting("iceberg-target-file-bytes").of(Type::Long).default("134217728").doc(
        "Size at which a data file is closed and the next begun; one commit of a table takes in at most four times this in record bytes (a backlog is committed in several)",
    ),
    setting("iceberg-enable")
        .boolean()
        .default("true")
        .doc("Default of the topic config `zombi.iceberg.enable`: keep an Iceberg table of every topic"),
    setting("iceberg-compaction-interval-ms").of(Type::Long).default("300000").doc(
        "How often each table is compacted, its old snapshots expired and unreferenced files removed (0: never)",
    ),
    setting("iceberg-compaction-min-files")
        .of(Type::Long)
        .default("8")
        .doc("Small files of one size tier in one table partition that are rewritten together"),
    setting("iceberg-snapshot-max-age-ms")
        .of(Type::Long)
        .default("3600000")
        .doc("Snapshots older than this are expired (the current one never is)"),
    setting("iceberg-orphan-min-age-ms")
        .of(Type::Long)
        .default("86400000")
        .doc("Files in a table's directories that no snapshot references are deleted once this old"),
    // The shared write-ahead log (checked only with `--wal-store`).
    setting("wal-store").doc(
        "The shared write-ahead log: `file://DIR` or `s3://BUCKET/PREFIX`. With it a produce is acknowledged only once this store holds its batch, and the local disk is a cache",
    ),
    setting("wal-interval-ms")
        .of(Type::Long)
        .default("250")
        .doc("Least time between the starts of two write-ahead log objects (bounds PUTs per hour)"),
    setting("wal-bytes-max")
        .of(Type::Long)
        .default("8388608")
        .doc("A write-ahead log object is started as soon as this many bytes have gathered"),
    setting("wal-stream-roll-ms").of(Type::Long).default("600000").doc(
        "How long the write-ahead log writer keeps one stream before sealing it and starting the next (older streams' objects are deleted once in segments)",
    ),
    // Listeners and security (docs/security.md).
    setting("listeners")
        .kafka("listeners")
        .kafka_or_flag_in_file()
        .list()
        .doc("The Kafka listeners, `NAME://HOST:PORT,…` with NAME one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (Kafka's `listeners`); replaces `--kafka-listen`"),
    setting("ssl-cert-file")
        .doc("PEM certificate chain of the SSL and SASL_SSL listeners (reread when the file changes)"),
    setting("ssl-key-file").doc("PEM private key of `--ssl-cert-file` (PKCS#8, PKCS#1 or SEC1)"),
    setting("ssl-ca-file").doc("PEM certificates of the authorities that sign client certificates"),
    setting("ssl-client-auth")
        .kafka("ssl.client.auth")
        .kafka_or_flag_in_file()
        .one_of(super::security::CLIENT_AUTH_MODES)
        .default("none")
        .doc("Whether TLS listeners ask clients for a certificate: none, requested or required (Kafka's `ssl.client.auth`)"),
    setting("ssl-principal-mapping-rules")
        .kafka("ssl.principal.mapping.rules")
        .kafka_or_flag_in_file()
        .default("DEFAULT")
        .doc("How a client certificate's subject (`CN=alice,OU=eng,O=acme`) names its principal on SSL listeners: `RULE:pattern/replacement/[LU]` and `DEFAULT`, comma-separated (Kafka's `ssl.principal.mapping.rules`)"),
    setting("sasl-enabled-mechanisms")
        .kafka("sasl.enabled.mechanisms")
        .kafka_or_flag_in_file()
        .list()
        .default("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512")
        .doc("The SASL mechanisms SASL listeners offer (Kafka's `sasl.enabled.mechanisms`)"),
    setting("connections-max-reauth-ms")
        .kafka("connections.max.reauth.ms")
        .kafka_or_flag_in_file()
        .of(Type::Long)
        .default("0")
        .value(|c| c.security.connections_max_reauth_ms.to_string())
        .doc("How long a SASL authentication lasts before the client must re-authenticate on its connection (KIP-368; an OAUTHBEARER token's expiry shortens it); a connection past it that has not is closed. 0: for the connection's life (Kafka's `connections.max.reauth.ms`)"),
    setting("bootstrap-admin").doc(
        "A SCRAM user created at start when missing, with its password in ZOMBI_BOOTSTRAP_ADMIN_PASSWORD, so that a fresh secured broker can be administered",
    ),
    setting("authorizer")
        .one_of(super::security::AUTHORIZERS)
        .default("none")
        .doc("`standard`: ACLs decide what each principal may do, with the semantics of Kafka's StandardAuthorizer (CreateAcls, DescribeAcls, DeleteAcls manage them); `none`: every client may do everything"),
    setting("super-users")
        .kafka("super.users")
        .kafka_or_flag_in_file()
        .doc("Principals that every ACL check lets through, `User:NAME;User:OTHER` (Kafka's `super.users`); the bootstrap admin is one"),
    setting("allow-everyone-if-no-acl-found")
        .kafka("allow.everyone.if.no.acl.found")
        .kafka_or_flag_in_file()
        .boolean()
        .default("false")
        .doc("With `--authorizer standard`, whether a resource that no ACL names is open to everyone (Kafka's `allow.everyone.if.no.acl.found`)"),
    setting("oauthbearer-jwks-file").doc(
        "JWKS file of the keys that sign OAUTHBEARER tokens (and HTTP bearer tokens); reread when it changes. Needed for `OAUTHBEARER` in `--sasl-enabled-mechanisms`",
    ),
    setting("oauthbearer-jwks-endpoint-url")
        .kafka("sasl.oauthbearer.jwks.endpoint.url")
        .kafka_or_flag_in_file()
        .doc("URL (`https://`, or `http://`) of the JWKS of the keys that sign OAUTHBEARER and HTTP bearer tokens (Kafka's `sasl.oauthbearer.jwks.endpoint.url`); fetched at start, every `--oauthbearer-jwks-endpoint-refresh-ms`, and when a token names a key it lacks. Instead of `--oauthbearer-jwks-file`"),
    setting("oauthbearer-jwks-endpoint-refresh-ms")
        .kafka("sasl.oauthbearer.jwks.endpoint.refresh.ms")
        .kafka_or_flag_in_file()
        .of(Type::Long)
        .default("3600000")
        .doc("How often the JWKS of `--oauthbearer-jwks-endpoint-url` is fetched again (Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms`)"),
    setting("oauthbearer-issuer").doc("The `iss` every OAUTHBEARER token must carry (not checked when unset)"),
    setting("oauthbearer-audience").doc("An `aud` every OAUTHBEARER token must carry (not checked when unset)"),
    setting("oauthbearer-sub-claim-name")
        .kafka("sasl.oauthbearer.sub.claim.name")
        .kafka_or_flag_in_file()
        .default("sub")
        .doc("The token claim that names the principal (Kafka's `sasl.oauthbearer.sub.claim.name`)"),
    setting("oauthbearer-token-endpoint-url")
        .kafka("sasl.oauthbearer.token.endpoint.url")
        .kafka_or_flag_in_file()
        .doc("With `--sasl-mechanism-inter-broker-protocol OAUTHBEARER`, where a broker gets the token it authenticates to the others with (Kafka's `sasl.oauthbearer.token.endpoint.url`): `file:///PATH`, a file holding the JWT, read again when it changes (renew it before it expires). Its principal must be one of `--super-users` with `--authorizer standard`. An identity provider's http(s) token endpoint is not supported"),
    // Cluster mode.
    setting("coordinator").doc(
        "Cluster mode: the PostgreSQL that coordinates the brokers sharing `--object-store` (`postgres://USER:PASSWORD@HOST:PORT/DB`). Needs `--wal-store`",
    ),
    setting("broker-rack")
        .kafka("broker.rack")
        .kafka_or_flag_in_file()
        .doc("This broker's rack (Kafka's `broker.rack`): leadership spreads over racks"),
    setting("broker-session-timeout-ms")
        .kafka("broker.session.timeout.ms")
        .kafka_or_flag_in_file()
        .of(Type::Long)
        .default("9000")
        .doc("A broker whose lease was not renewed for this long is dead to the controller (Kafka's `broker.session.timeout.ms`)"),
    setting("broker-heartbeat-interval-ms")
        .kafka("broker.heartbeat.interval.ms")
        .kafka_or_flag_in_file()
        .of(Type::Long)
        .default("2000")
        .doc("How often a broker renews its lease (Kafka's `broker.heartbeat.interval.ms`)"),
    // Topic configs: every one Apache Kafka 4 accepts, so that tools and client test suites can
    // set them. Enforced: `retention.*`, `max.message.bytes`, `message.timestamp.type`,
    // `message.timestamp.before.max.ms` and `after.max.ms`, `min.insync.replicas`, the tiering settings (`segment.*`, `local.retention.*`,
    // `remote.storage.enable`, `remote.log.copy.disable`), `cleanup.policy` with `compact` and
    // `zombi.iceberg.enable` (see `log::topic_config`). The others are stored and described with
    // Kafka's defaults. Three that Kafka 4 removed are still accepted, never described.
    topic("cleanup.policy").one_of(CLEANUP_POLICIES).list().default("delete").synonym("log.cleanup.policy"),
    topic("compression.gzip.level").int(-1).default("-1").synonym("compression.gzip.level"),
    topic("compression.lz4.level").int(1).default("9").synonym("compression.lz4.level"),
    topic("compression.type").one_of(COMPRESSION_TYPES).synonym("compression.type"),
    topic("compression.zstd.level").int(-131_072).default("3").synonym("compression.zstd.level"),
    topic("delete.retention.ms").long(0).default("86400000").synonym("log.cleaner.delete.retention.ms"),
    topic("file.delete.delay.ms").long(0).default("60000").synonym("log.segment.delete.delay.ms"),
    // No synonym for `flush.*`: topics do not take `log.flush.*`, which follow `--durability`.
    topic("flush.messages").long(1).default("9223372036854775807"),
    topic("flush.ms").long(0).default("9223372036854775807"),
    topic("follower.replication.throttled.replicas").list(),
    topic("index.interval.bytes").int(0).default("4096").synonym("log.index.interval.bytes"),
    topic("leader.replication.throttled.replicas").list(),
    topic("local.retention.bytes").long(-2).synonym("log.local.retention.bytes"),
    topic("local.retention.ms").long(-2).synonym("log.local.retention.ms"),
    topic("max.compaction.lag.ms").long(1).default("9223372036854775807").synonym("log.cleaner.max.compaction.lag.ms"),
    topic("max.message.bytes").int(0).synonym("message.max.bytes"),
    topic("message.downconversion.enable").boolean().removed_in_kafka_4(),
    topic("message.format.version").removed_in_kafka_4(),
    topic("message.timestamp.after.max.ms")
        .long(0)
        .default("3600000")
        .synonym("log.message.timestamp.after.max.ms"),
    topic("message.timestamp.before.max.ms")
        .long(0)
        .default("9223372036854775807")
        .synonym("log.message.timestamp.before.max.ms"),
    topic("message.timestamp.difference.max.ms").long(0).removed_in_kafka_4(),
    topic("message.timestamp.type").one_of(TIMESTAMP_TYPES).synonym("log.message.timestamp.type"),
    topic("min.cleanable.dirty.ratio").ratio().default("0.5").synonym("log.cleaner.min.cleanable.ratio"),
    topic("min.compaction.lag.ms").long(0).default("0").synonym("log.cleaner.min.compaction.lag.ms"),
    topic("min.insync.replicas").int(1).synonym("min.insync.replicas"),
    topic("preallocate").boolean().default("false").synonym("log.preallocate"),
    topic("remote.log.copy.disable").boolean().default("false"),
    topic("remote.log.delete.on.disable").boolean().default("false"),
    topic("remote.storage.enable").boolean(),
    topic("retention.bytes").long(-1).synonym("log.retention.bytes"),
    topic("retention.ms").long(-1).synonym("log.retention.ms"),
    topic("segment.bytes").int(14).synonym("log.segment.bytes"),
    topic("segment.index.bytes").int(4).default("10485760").synonym("log.index.size.max.bytes"),
    topic("segment.jitter.ms").long(0).default("0").synonym("log.roll.jitter.ms"),
    topic("segment.ms").long(1).synonym("log.roll.ms"),
    topic("unclean.leader.election.enable").boolean().default("false").synonym("unclean.leader.election.enable"),
    topic(ICEBERG_ENABLE).boolean(),
    // Group configs (KIP-848's per-group settings): stored and described; the classic protocol
    // takes its timeouts from each member's JoinGroup.
    group("consumer.heartbeat.interval.ms").int(1),
    group("consumer.session.timeout.ms").int(1),
    group("share.heartbeat.interval.ms").int(1),
    group("share.record.lock.duration.ms").int(1),
    group("share.session.timeout.ms").int(1),
    group("streams.heartbeat.interval.ms").int(1),
    group("streams.num.standby.replicas").int(0),
    group("streams.session.timeout.ms").int(1),
];

/// The rows of `scope`, in table order.
pub fn of_scope(scope: Scope) -> impl Iterator<Item = &'static Definition> {
    DEFINITIONS.iter().filter(move |definition| definition.scope == scope)
}

/// The row of a setting by its flag.
pub fn setting_of(flag: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|definition| definition.flag == Some(flag))
}

/// The row of a config by its Kafka name in `scope`.
pub fn kafka_config(scope: Scope, name: &str) -> Option<&'static Definition> {
    of_scope(scope).find(|definition| definition.kafka == Some(name))
}

/// The flag a TOML key sets, if any.
pub fn flag_of_file_key(key: &str) -> Option<&'static str> {
    DEFINITIONS.iter().find(|definition| definition.takes_file_key(key)).and_then(|definition| definition.flag)
}

/// Checks a config that Kafka's APIs set: any topic or group config, and the broker configs
/// AlterConfigs may change. The message is what the client sees with INVALID_CONFIG.
pub fn validate(scope: Scope, name: &str, value: &str) -> Result<(), String> {
    let (known, scope_name) = match scope {
        Scope::Broker => (kafka_config(scope, name).filter(|definition| definition.dynamic), "broker"),
        Scope::Topic => (kafka_config(scope, name), "topic"),
        Scope::Group => (kafka_config(scope, name), "group"),
    };
    match known {
        Some(definition) => definition.check(name, value),
        None => Err(format!("Unknown {scope_name} config name: {name}")),
    }
}

/// Checks a flag's value (from the command line, the environment, the file or the default).
pub fn validate_setting(flag: &str, value: &str) -> Result<(), String> {
    match setting_of(flag) {
        Some(definition) => definition.valid.check(value),
        None => Ok(()),
    }
}

/// Whether AlterConfigs may set the broker config (DescribeConfigs marks the others read-only).
pub fn is_broker_dynamic(name: &str) -> bool {
    kafka_config(Scope::Broker, name).is_some_and(|definition| definition.dynamic)
}

/// Whether a config of `scope` is a list (IncrementalAlterConfigs may APPEND and SUBTRACT).
pub fn is_list(scope: Scope, name: &str) -> bool {
    kafka_config(scope, name).is_some_and(|definition| definition.ty == Type::List)
}

/// DescribeConfigs' config type of a config of `scope` (STRING for a name no row has).
pub fn described_type(scope: Scope, name: &str) -> i8 {
    kafka_config(scope, name).map_or(Type::String, |definition| definition.ty) as i8
}

/// One broker config as DescribeConfigs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    /// The value in effect: the first synonym's.
    pub value: String,
    pub source: Source,
    /// AlterConfigs cannot change it.
    pub read_only: bool,
    /// Every place a value is set, most specific first (Kafka's synonyms).
    pub synonyms: Vec<Synonym>,
}

impl DescribedConfig {
    fn from_synonyms(name: String, read_only: bool, synonyms: Vec<Synonym>) -> Option<Self> {
        let first = synonyms.first()?;
        let (value, source) = (first.value.clone(), first.source);
        Some(DescribedConfig { name, value, source, read_only, synonyms })
    }
}

/// Where the broker config `name` has a value, most specific first: AlterConfigs' value on this
/// broker (`dynamic`), the value the broker runs with (static) and the default. Kafka's order.
pub fn broker_synonyms(config: &Config, dynamic: &BTreeMap<String, String>, name: &str) -> Vec<Synonym> {
    let synonym = |value: String, source| Synonym { name: name.to_string(), value, source };
    let mut synonyms: Vec<Synonym> =
        dynamic.get(name).map(|value| synonym(value.clone(), Source::DynamicBroker)).into_iter().collect();
    let Some(definition) = kafka_config(Scope::Broker, name) else { return synonyms };
    if let Describe::Value(value) = definition.describe {
        synonyms.push(synonym(value(config), Source::StaticBroker));
    }
    if let Some(default) = definition.default {
        synonyms.push(synonym(default.to_string(), Source::Default));
    }
    synonyms
}

/// The broker configs DescribeConfigs lists for this broker, each with its synonyms: first the
/// described rows AlterConfigs did not set (in table order), then those it set (`dynamic`, by
/// name), as this broker has always listed them. Read-only are those AlterConfigs cannot set,
/// as Kafka marks them.
pub fn described_broker_configs(config: &Config, dynamic: &BTreeMap<String, String>) -> Vec<DescribedConfig> {
    let described = of_scope(Scope::Broker)
        .filter(|definition| !matches!(definition.describe, Describe::No))
        .filter_map(|definition| definition.kafka)
        .filter(|name| !dynamic.contains_key(*name));
    described
        .chain(dynamic.keys().map(String::as_str))
        .filter_map(|name| {
            let synonyms = broker_synonyms(config, dynamic, name);
            DescribedConfig::from_synonyms(name.to_string(), !is_broker_dynamic(name), synonyms)
        })
        .collect()
}

/// DescribeConfigs of the cluster-wide broker default (resource name ""): as Kafka, only the
/// values AlterConfigs set. This broker keeps one set of dynamic broker configs, which every
/// broker of a cluster shares, so those are the cluster's defaults.
pub fn described_cluster_defaults(dynamic: &BTreeMap<String, String>) -> Vec<DescribedConfig> {
    dynamic
        .iter()
        .filter_map(|(name, value)| {
            let synonym = Synonym { name: name.clone(), value: value.clone(), source: Source::DynamicDefaultBroker };
            DescribedConfig::from_synonyms(name.clone(), !is_broker_dynamic(name), vec![synonym])
        })
        .collect()
}

/// A topic config's synonyms below the topic: its broker config's (`broker_synonyms`), or, where
/// this broker has no such config, Kafka's default of it (the topic config's default).
pub fn topic_synonyms(config: &Config, dynamic: &BTreeMap<String, String>, name: &str) -> Vec<Synonym> {
    let Some(definition) = kafka_config(Scope::Topic, name) else { return Vec::new() };
    let Some(broker) = definition.synonym else { return Vec::new() };
    if kafka_config(Scope::Broker, broker).is_some() || dynamic.contains_key(broker) {
        return broker_synonyms(config, dynamic, broker);
    }
    definition
        .default
        .map(|default| Synonym { name: broker.to_string(), value: default.to_string(), source: Source::Default })
        .into_iter()
        .collect()
}

/// The default Kafka gives a topic config zombi stores without enforcing ("" for none).
pub fn topic_default(name: &str) -> &'static str {
    kafka_config(Scope::Topic, name).and_then(|definition| definition.default).unwrap_or_default()
}

/// The topic configs DescribeConfigs lists, in order (not those Kafka 4 removed).
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    of_scope(Scope::Topic).filter(|definition| !definition.removed).filter_map(|definition| definition.kafka)
}

/// Gives every flag of `command` its row's help, default and value name, and checks that each
/// flag has a row (a flag without one panics here, at start-up and in the tests).
pub fn annotate(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let Some(flag) = arg.get_long().map(str::to_string) else { return arg };
        if flag == "config" {
            return arg;
        }
        let definition = setting_of(&flag).unwrap_or_else(|| panic!("--{flag} has no row in config::definitions"));
        let arg = arg.help(definition.doc).value_name(flag.to_uppercase().replace('-', "_"));
        match definition.default {
            Some(default) => arg.default_value(default).required(false),
            None => arg,
        }
    })
}
