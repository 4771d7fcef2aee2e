//! Topic-level configuration under Kafka's names, validated, with broker-level defaults.

use std::collections::BTreeMap;

/// How record timestamps are set (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The broker-wide defaults a topic inherits where it sets nothing.
#[derive(Debug, Clone)]
pub struct BrokerDefaults {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    /// Tiering: how large and how old the unuploaded tail may grow before it is uploaded.
    pub segment_bytes: i64,
    pub segment_ms: i64,
    /// Tiering: what the hot tier keeps after upload (-2: as much as `retention.*`).
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub remote_storage_enable: bool,
    /// `--iceberg-enable`: whether topics that set nothing get an Iceberg table.
    pub iceberg_enable: bool,
}

impl BrokerDefaults {
    /// Defaults with tiering settings for tests: nothing is uploaded early.
    pub fn basic(retention_ms: i64, retention_bytes: i64, max_message_bytes: i32) -> Self {
        BrokerDefaults {
            retention_ms,
            retention_bytes,
            max_message_bytes,
            segment_bytes: 64 << 20,
            segment_ms: 600_000,
            local_retention_ms: 600_000,
            local_retention_bytes: -2,
            remote_storage_enable: true,
            iceberg_enable: true,
        }
    }
}

/// A topic's effective configuration.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    pub min_insync_replicas: i32,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// Tiering (`segment.bytes`, `segment.ms`): the unuploaded tail is uploaded as one segment
    /// when it reaches this size or its oldest record has waited this long.
    pub segment_bytes: i64,
    pub segment_ms: i64,
    /// Tiering (`local.retention.*`, resolved: never above `retention.*`; -1 is unlimited).
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    /// `remote.storage.enable` and not `remote.log.copy.disable`, and not compacted: the flusher
    /// uploads only such topics (Kafka has no tiering of compacted topics).
    pub remote_copy: bool,
    /// `zombi.iceberg.enable`: the Iceberg sink keeps a table of this topic.
    pub iceberg_enable: bool,
    /// The values the topic set explicitly, by Kafka name.
    pub overrides: BTreeMap<String, String>,
}

enum Kind {
    Long { min: i64 },
    Int { min: i64 },
    Ratio,
    Bool,
    Text,
    OneOf(&'static [&'static str]),
}

/// Every topic config Apache Kafka 4 accepts, so that tools and client test suites can set them.
/// Enforced here: `retention.ms`, `retention.bytes`, `max.message.bytes`, `message.timestamp.type`,
/// `min.insync.replicas` (acks=all above 1 gets NOT_ENOUGH_REPLICAS), the tiering settings
/// (`segment.bytes`, `segment.ms`, `local.retention.*`, `remote.storage.enable`,
/// `remote.log.copy.disable`) and, for `cleanup.policy` with `compact`, Kafka's rules that records
/// need keys and that the topic is not tiered (`validate_all`). Stored and described but without effect: the index, flush and replication settings
/// (one replica), `compression.type` other than `producer` (batches are stored as produced), and key
/// compaction itself (a compacted topic keeps every record).
///
/// Zombi's own topic configs start with `zombi.`: `zombi.iceberg.enable` turns the topic's Iceberg
/// table on or off (default: `--iceberg-enable`).
const KNOWN: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::OneOf(&["delete", "compact", "compact,delete", "delete,compact"])),
    ("compression.gzip.level", Kind::Int { min: -1 }),
    ("compression.lz4.level", Kind::Int { min: 1 }),
    ("compression.type", Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"])),
    ("compression.zstd.level", Kind::Int { min: -131_072 }),
    ("delete.retention.ms", Kind::Long { min: 0 }),
    ("file.delete.delay.ms", Kind::Long { min: 0 }),
    ("flush.messages", Kind::Long { min: 1 }),
    ("flush.ms", Kind::Long { min: 0 }),
    ("follower.replication.throttled.replicas", Kind::Text),
    ("index.interval.bytes", Kind::Int { min: 0 }),
    ("leader.replication.throttled.replicas", Kind::Text),
    ("local.retention.bytes", Kind::Long { min: -2 }),
    ("local.retention.ms", Kind::Long { min: -2 }),
    ("max.compaction.lag.ms", Kind::Long { min: 1 }),
    ("max.message.bytes", Kind::Int { min: 0 }),
    ("message.downconversion.enable", Kind::Bool),
    ("message.format.version", Kind::Text),
    ("message.timestamp.after.max.ms", Kind::Long { min: 0 }),
    ("message.timestamp.before.max.ms", Kind::Long { min: 0 }),
    ("message.timestamp.difference.max.ms", Kind::Long { min: 0 }),
    ("message.timestamp.type", Kind::OneOf(&["CreateTime", "LogAppendTime"])),
    ("min.cleanable.dirty.ratio", Kind::Ratio),
    ("min.compaction.lag.ms", Kind::Long { min: 0 }),
    ("min.insync.replicas", Kind::Int { min: 1 }),
    ("preallocate", Kind::Bool),
    ("remote.log.copy.disable", Kind::Bool),
    ("remote.log.delete.on.disable", Kind::Bool),
    ("remote.storage.enable", Kind::Bool),
    ("retention.bytes", Kind::Long { min: -1 }),
    ("retention.ms", Kind::Long { min: -1 }),
    ("segment.bytes", Kind::Int { min: 14 }),
    ("segment.index.bytes", Kind::Int { min: 4 }),
    ("segment.jitter.ms", Kind::Long { min: 0 }),
    ("segment.ms", Kind::Long { min: 1 }),
    ("unclean.leader.election.enable", Kind::Bool),
    (ICEBERG_ENABLE, Kind::Bool),
];

/// The topic config that turns a topic's Iceberg table on or off.
pub const ICEBERG_ENABLE: &str = "zombi.iceberg.enable";

/// Apache Kafka's defaults of the configs that are described but not enforced.
const DEFAULTS: &[(&str, &str)] = &[
    ("compression.gzip.level", "-1"),
    ("compression.lz4.level", "9"),
    ("compression.zstd.level", "3"),
    ("delete.retention.ms", "86400000"),
    ("file.delete.delay.ms", "60000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("index.interval.bytes", "4096"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("message.downconversion.enable", "true"),
    ("message.format.version", "3.0-IV1"),
    ("message.timestamp.after.max.ms", "3600000"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.difference.max.ms", "9223372036854775807"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("preallocate", "false"),
    ("remote.log.copy.disable", "false"),
    ("remote.log.delete.on.disable", "false"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
    ("unclean.leader.election.enable", "false"),
];

/// Checks one topic config; the message is what the client sees with INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    validate_in(KNOWN, "topic", name, value)
}

/// Apache Kafka 4.0's refusal of tiered storage for a compacted topic, word for word
/// (`LogConfig.validateNoRemoteStorageForCompactedTopic`).
pub const REMOTE_STORAGE_COMPACTED: &str = "Remote log storage is unsupported for the compacted topics";

/// Checks a topic's explicit configs as CreateTopics and AlterConfigs leave them: each one, then
/// the rules that span several. As in Kafka, `remote.storage.enable=true` and a `cleanup.policy`
/// with `compact` exclude each other. Only an explicit `remote.storage.enable=true` counts: the
/// broker default (`--remote-storage-enable`, true here, false in Kafka) does not apply to
/// compacted topics (`TopicConfig::resolve`), so creating one without the setting works as in Kafka.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        validate(name, value)?;
    }
    let remote = configs.get("remote.storage.enable").is_some_and(|value| is_true(value));
    if remote && is_compact_policy(configs) {
        return Err(REMOTE_STORAGE_COMPACTED.to_string());
    }
    Ok(())
}

/// Kafka's boolean parsing: `true` in any case.
fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

fn is_compact_policy(configs: &BTreeMap<String, String>) -> bool {
    configs.get("cleanup.policy").is_some_and(|policy| policy.to_ascii_lowercase().contains("compact"))
}

fn validate_in(known: &[(&str, Kind)], scope: &str, name: &str, value: &str) -> Result<(), String> {
    let Some((_, kind)) = known.iter().find(|(known, _)| *known == name) else {
        return Err(format!("Unknown {scope} config name: {name}"));
    };
    let number_at_least = |min: i64, max: i64| match value.trim().parse::<i64>() {
        Ok(number) if number >= min && number <= max => Ok(()),
        _ => Err(format!("Invalid value {value} for configuration {name}: must be an integer from {min} to {max}")),
    };
    match kind {
        Kind::Long { min } => number_at_least(*min, i64::MAX),
        Kind::Int { min } => number_at_least(*min, i64::from(i32::MAX)),
        Kind::Ratio => match value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}: must be between 0 and 1")),
        },
        Kind::Bool if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") => Ok(()),
        Kind::Bool => Err(format!("Invalid value {value} for configuration {name}: must be true or false")),
        Kind::Text => Ok(()),
        Kind::OneOf(allowed) if allowed.contains(&value) => Ok(()),
        Kind::OneOf(allowed) => {
            Err(format!("Invalid value {value} for configuration {name}: must be one of {allowed:?}"))
        }
    }
}

/// Broker configs that Apache Kafka lets AlterConfigs change at run time. Enforced here, as the
/// defaults of topics that set nothing: `log.retention.ms`, `log.retention.bytes`,
/// `message.max.bytes`, `log.segment.bytes`, `log.roll.ms` and `log.local.retention.*` (see
/// `BrokerDefaults::with_dynamic`); the rest are stored and described (thread pools and the like
/// do not exist here).
const BROKER_DYNAMIC: &[(&str, Kind)] = &[
    ("background.threads", Kind::Int { min: 1 }),
    ("compression.type", Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"])),
    ("log.cleaner.threads", Kind::Int { min: 0 }),
    ("log.cleanup.policy", Kind::OneOf(&["delete", "compact", "compact,delete", "delete,compact"])),
    ("log.flush.interval.messages", Kind::Long { min: 1 }),
    ("log.flush.interval.ms", Kind::Long { min: 0 }),
    ("log.local.retention.bytes", Kind::Long { min: -2 }),
    ("log.local.retention.ms", Kind::Long { min: -2 }),
    ("log.message.timestamp.type", Kind::OneOf(&["CreateTime", "LogAppendTime"])),
    ("log.retention.bytes", Kind::Long { min: -1 }),
    ("log.retention.ms", Kind::Long { min: -1 }),
    ("log.roll.ms", Kind::Long { min: 1 }),
    ("log.segment.bytes", Kind::Int { min: 14 }),
    ("max.connections", Kind::Int { min: 0 }),
    ("max.connections.per.ip", Kind::Int { min: 0 }),
    ("message.max.bytes", Kind::Int { min: 0 }),
    ("min.insync.replicas", Kind::Int { min: 1 }),
    ("num.io.threads", Kind::Int { min: 1 }),
    ("num.network.threads", Kind::Int { min: 1 }),
    ("num.recovery.threads.per.data.dir", Kind::Int { min: 1 }),
    ("num.replica.fetchers", Kind::Int { min: 1 }),
    ("sasl.kerberos.min.time.before.relogin", Kind::Long { min: 0 }),
    ("sasl.kerberos.ticket.renew.jitter", Kind::Ratio),
    ("sasl.kerberos.ticket.renew.window.factor", Kind::Ratio),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// Group configs (KIP-848's per-group settings): stored and described; the classic protocol takes
/// its timeouts from each member's JoinGroup.
const GROUP: &[(&str, Kind)] = &[
    ("consumer.heartbeat.interval.ms", Kind::Int { min: 1 }),
    ("consumer.session.timeout.ms", Kind::Int { min: 1 }),
    ("share.heartbeat.interval.ms", Kind::Int { min: 1 }),
    ("share.record.lock.duration.ms", Kind::Int { min: 1 }),
    ("share.session.timeout.ms", Kind::Int { min: 1 }),
    ("streams.heartbeat.interval.ms", Kind::Int { min: 1 }),
    ("streams.num.standby.replicas", Kind::Int { min: 0 }),
    ("streams.session.timeout.ms", Kind::Int { min: 1 }),
];

/// DescribeConfigs' config type (BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7) of a topic,
/// broker or group config name.
pub fn config_type(name: &str) -> i8 {
    if name.ends_with("cleanup.policy") || name.ends_with(".replicas") || name == "advertised.listeners" {
        return 7;
    }
    let kind = [KNOWN, BROKER_DYNAMIC, GROUP].iter().find_map(|known| known.iter().find(|(n, _)| *n == name));
    match kind.map(|(_, kind)| kind) {
        Some(Kind::Long { .. }) => 5,
        Some(Kind::Int { .. }) => 3,
        Some(Kind::Ratio) => 6,
        Some(Kind::Bool) => 1,
        Some(Kind::Text | Kind::OneOf(_)) => 2,
        None if name.ends_with(".ms") || name.ends_with(".bytes") => 5,
        None if name.ends_with(".id") || name.ends_with(".partitions") => 3,
        None if name.ends_with(".enable") => 1,
        None => 2,
    }
}

/// Checks a dynamic broker config.
pub fn validate_broker(name: &str, value: &str) -> Result<(), String> {
    validate_in(BROKER_DYNAMIC, "broker", name, value)
}

/// Whether AlterConfigs may set the broker config (DescribeConfigs marks the others read-only).
pub fn is_broker_dynamic(name: &str) -> bool {
    BROKER_DYNAMIC.iter().any(|(known, _)| *known == name)
}

/// Checks a group config.
pub fn validate_group(name: &str, value: &str) -> Result<(), String> {
    validate_in(GROUP, "group", name, value)
}

/// Every known topic config name with its effective value and whether the topic set it.
pub fn describe(config: &TopicConfig) -> Vec<(&'static str, String, bool)> {
    KNOWN
        .iter()
        .map(|(name, _)| {
            let explicit = config.overrides.get(*name);
            let value = match (*name, explicit) {
                (_, Some(value)) => value.clone(),
                ("retention.ms", None) => config.retention_ms.to_string(),
                ("retention.bytes", None) => config.retention_bytes.to_string(),
                ("max.message.bytes", None) => config.max_message_bytes.to_string(),
                ("message.timestamp.type", None) => "CreateTime".to_string(),
                ("cleanup.policy", None) => "delete".to_string(),
                ("compression.type", None) => "producer".to_string(),
                ("min.insync.replicas", None) => "1".to_string(),
                ("segment.bytes", None) => config.segment_bytes.to_string(),
                ("segment.ms", None) => config.segment_ms.to_string(),
                ("local.retention.ms", None) => config.local_retention_ms.to_string(),
                ("local.retention.bytes", None) => config.local_retention_bytes.to_string(),
                ("remote.storage.enable", None) => config.remote_copy.to_string(),
                (ICEBERG_ENABLE, None) => config.iceberg_enable.to_string(),
                (name, None) => {
                    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()).unwrap_or_default()
                }
            };
            (*name, value, explicit.is_some())
        })
        .collect()
}

impl BrokerDefaults {
    /// The defaults with the dynamic broker configs that change them applied.
    pub fn with_dynamic(&self, dynamic: &BTreeMap<String, String>) -> BrokerDefaults {
        let long = |name: &str, current: i64| dynamic.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(current);
        BrokerDefaults {
            retention_ms: long("log.retention.ms", self.retention_ms),
            retention_bytes: long("log.retention.bytes", self.retention_bytes),
            max_message_bytes: long("message.max.bytes", i64::from(self.max_message_bytes)) as i32,
            segment_bytes: long("log.segment.bytes", self.segment_bytes),
            segment_ms: long("log.roll.ms", self.segment_ms),
            local_retention_ms: long("log.local.retention.ms", self.local_retention_ms),
            local_retention_bytes: long("log.local.retention.bytes", self.local_retention_bytes),
            remote_storage_enable: self.remote_storage_enable,
            iceberg_enable: self.iceberg_enable,
        }
    }
}

/// `local.retention.*` of -2 means "as `retention.*`"; a local limit never exceeds the total one.
fn local_limit(local: i64, total: i64) -> i64 {
    match (local, total) {
        (-2, total) => total,
        (local, -1) => local,
        (-1, total) => total,
        (local, total) => local.min(total),
    }
}

impl TopicConfig {
    /// Resolves overrides (already validated) over the broker defaults.
    pub fn resolve(overrides: BTreeMap<String, String>, defaults: &BrokerDefaults) -> Self {
        let long =
            |name: &str, default: i64| overrides.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default);
        let flag = |name: &str, default: bool| overrides.get(name).map_or(default, |v| is_true(v));
        let deletes = overrides.get("cleanup.policy").is_none_or(|policy| policy.contains("delete"));
        let retention = |value: i64| if deletes { value } else { -1 };
        let compacted = is_compact_policy(&overrides);
        TopicConfig {
            retention_ms: retention(long("retention.ms", defaults.retention_ms)),
            retention_bytes: retention(long("retention.bytes", defaults.retention_bytes)),
            max_message_bytes: long("max.message.bytes", i64::from(defaults.max_message_bytes)) as i32,
            timestamp_type: match overrides.get("message.timestamp.type").map(String::as_str) {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            min_insync_replicas: long("min.insync.replicas", 1) as i32,
            compacted,
            segment_bytes: long("segment.bytes", defaults.segment_bytes),
            segment_ms: long("segment.ms", defaults.segment_ms),
            local_retention_ms: local_limit(
                long("local.retention.ms", defaults.local_retention_ms),
                retention(long("retention.ms", defaults.retention_ms)),
            ),
            local_retention_bytes: local_limit(
                long("local.retention.bytes", defaults.local_retention_bytes),
                retention(long("retention.bytes", defaults.retention_bytes)),
            ),
            remote_copy: !compacted
                && flag("remote.storage.enable", defaults.remote_storage_enable)
                && !flag("remote.log.copy.disable", false),
            iceberg_enable: flag(ICEBERG_ENABLE, defaults.iceberg_enable),
            overrides,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_and_values() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("max.message.bytes", "4294967296").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate(ICEBERG_ENABLE, "false").is_ok());
        assert!(validate(ICEBERG_ENABLE, "maybe").is_err());
    }

    #[test]
    fn compact_only_topics_keep_everything() {
        let defaults = BrokerDefaults::basic(1000, 10, 100);
        let overrides = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let config = TopicConfig::resolve(overrides, &defaults);
        assert_eq!((config.retention_ms, config.retention_bytes), (-1, -1));
    }

    #[test]
    fn tiered_storage_and_compaction_exclude_each_other() {
        let configs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
        };
        let defaults = BrokerDefaults::basic(1000, 10, 100);
        let refused = Err(REMOTE_STORAGE_COMPACTED.to_string());
        for policy in ["compact", "compact,delete", "delete,compact"] {
            for remote in ["true", "TRUE"] {
                let both = configs(&[("cleanup.policy", policy), ("remote.storage.enable", remote)]);
                assert_eq!(validate_all(&both), refused, "{policy} {remote}");
            }
            let off = configs(&[("cleanup.policy", policy), ("remote.storage.enable", "false")]);
            assert_eq!(validate_all(&off), Ok(()));
            let compacted = configs(&[("cleanup.policy", policy)]);
            assert_eq!(validate_all(&compacted), Ok(()));
            assert!(!TopicConfig::resolve(compacted, &defaults).remote_copy, "{policy}: never tiered");
        }
        let tiered = configs(&[("cleanup.policy", "delete"), ("remote.storage.enable", "true")]);
        assert_eq!(validate_all(&tiered), Ok(()));
        assert!(validate_all(&configs(&[("remote.storage.enable", "yes")])).is_err());
        let off_by_default = BrokerDefaults { remote_storage_enable: false, ..defaults };
        let upper = configs(&[("remote.storage.enable", "TRUE")]);
        assert!(TopicConfig::resolve(upper, &off_by_default).remote_copy, "booleans parse as Kafka's do");
    }

    #[test]
    fn iceberg_switch_overrides_the_broker_default() {
        let defaults = BrokerDefaults::basic(1000, 10, 100);
        assert!(TopicConfig::resolve(BTreeMap::new(), &defaults).iceberg_enable);
        let off = BTreeMap::from([(ICEBERG_ENABLE.to_string(), "false".to_string())]);
        assert!(!TopicConfig::resolve(off, &defaults).iceberg_enable);
        let defaults = BrokerDefaults { iceberg_enable: false, ..defaults };
        let on = BTreeMap::from([(ICEBERG_ENABLE.to_string(), "true".to_string())]);
        assert!(TopicConfig::resolve(on, &defaults).iceberg_enable);
    }
}
