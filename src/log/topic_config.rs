//! Topic-level configuration under Kafka's names, validated, with broker-level defaults.

use std::collections::BTreeMap;

use crate::config::definitions::{self, Scope};

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
    /// `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937): how far a CreateTime may
    /// lie before or after the broker's clock when the record is appended.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
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
    /// What the topic inherits where it sets nothing (DescribeConfigs shows these, not the
    /// values resolved against `cleanup.policy` and `retention.*`, as Kafka does).
    pub defaults: BrokerDefaults,
}

/// The topic config that turns a topic's Iceberg table on or off.
pub use crate::config::definitions::ICEBERG_ENABLE;

/// Checks one topic config; the message is what the client sees with INVALID_CONFIG.
/// Every topic config Apache Kafka 4 accepts is known (the table in `config::definitions`, which
/// also says which ones are enforced).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    definitions::validate(Scope::Topic, name, value)
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

/// Every described topic config with its value and whether the topic set it. A value the topic
/// did not set is what it inherits, as Kafka describes it: `retention.*` of a compact-only topic
/// is the broker's default although nothing is deleted, and `local.retention.*` may stay -2 ("as
/// `retention.*`"). The exception is `remote.storage.enable`, described as it applies (false for
/// compacted topics, which are never tiered), since this broker's default differs from Kafka's.
pub fn describe(config: &TopicConfig) -> Vec<(&'static str, String, bool)> {
    definitions::topic_config_names()
        .map(|name| {
            let explicit = config.overrides.get(name);
            let value = match (name, explicit) {
                (_, Some(value)) => value.clone(),
                ("retention.ms", None) => config.defaults.retention_ms.to_string(),
                ("retention.bytes", None) => config.defaults.retention_bytes.to_string(),
                ("max.message.bytes", None) => config.max_message_bytes.to_string(),
                ("message.timestamp.type", None) => "CreateTime".to_string(),
                ("cleanup.policy", None) => "delete".to_string(),
                ("compression.type", None) => "producer".to_string(),
                ("min.insync.replicas", None) => "1".to_string(),
                ("segment.bytes", None) => config.segment_bytes.to_string(),
                ("segment.ms", None) => config.segment_ms.to_string(),
                ("local.retention.ms", None) => config.defaults.local_retention_ms.to_string(),
                ("local.retention.bytes", None) => config.defaults.local_retention_bytes.to_string(),
                ("remote.storage.enable", None) => config.remote_copy.to_string(),
                (ICEBERG_ENABLE, None) => config.iceberg_enable.to_string(),
                (name, None) => definitions::topic_default(name).to_string(),
            };
            (name, value, explicit.is_some())
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

/// A topic config's default as Kafka documents it (`definitions`), as a number.
fn default_long(name: &str) -> i64 {
    definitions::topic_default(name).parse().unwrap_or(i64::MAX)
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
            timestamp_before_max_ms: long(
                "message.timestamp.before.max.ms",
                default_long("message.timestamp.before.max.ms"),
            ),
            timestamp_after_max_ms: long(
                "message.timestamp.after.max.ms",
                default_long("message.timestamp.after.max.ms"),
            ),
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
            defaults: defaults.clone(),
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

    /// DescribeConfigs shows what a topic set or inherits, not what it resolves to: a compact-only
    /// topic deletes nothing, yet its `retention.ms` is the broker's default (so a DELETE of it
    /// shows the default again), and `local.retention.bytes` stays -2 ("as `retention.bytes`").
    #[test]
    fn described_values_are_the_inherited_ones() {
        let defaults = BrokerDefaults::basic(604_800_000, -1, 100);
        let overrides = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let config = TopicConfig::resolve(overrides, &defaults);
        assert_eq!(config.retention_ms, -1, "compact-only: nothing expires");
        let described = describe(&config);
        let value = |name: &str| {
            described.iter().find(|(n, ..)| *n == name).map(|(_, value, explicit)| (value.as_str(), *explicit))
        };
        assert_eq!(value("retention.ms"), Some(("604800000", false)));
        assert_eq!(value("local.retention.bytes"), Some(("-2", false)));
        assert_eq!(value("local.retention.ms"), Some(("600000", false)));
        assert_eq!(value("cleanup.policy"), Some(("compact", true)));
        assert_eq!(value("message.format.version"), None, "removed in Kafka 4");
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
