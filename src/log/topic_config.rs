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
}

/// A topic's effective configuration.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    pub min_insync_replicas: i32,
    /// The values the topic set explicitly, by Kafka name.
    pub overrides: BTreeMap<String, String>,
}

enum Kind {
    Long { min: i64 },
    Int { min: i64 },
    OneOf(&'static [&'static str]),
}

/// The configs a topic accepts. `segment.*` are accepted for tool compatibility but have no effect:
/// the hot tier has no segments. `cleanup.policy=compact` is stored but key compaction is not built:
/// such a topic keeps every record (retention applies only with `delete` in the policy).
const KNOWN: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::OneOf(&["delete", "compact", "compact,delete", "delete,compact"])),
    ("compression.type", Kind::OneOf(&["producer"])),
    ("max.message.bytes", Kind::Int { min: 0 }),
    ("message.timestamp.type", Kind::OneOf(&["CreateTime", "LogAppendTime"])),
    ("min.insync.replicas", Kind::Int { min: 1 }),
    ("retention.bytes", Kind::Long { min: -1 }),
    ("retention.ms", Kind::Long { min: -1 }),
    ("segment.bytes", Kind::Int { min: 14 }),
    ("segment.ms", Kind::Long { min: 1 }),
];

/// Checks one topic config; the message is what the client sees with INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some((_, kind)) = KNOWN.iter().find(|(known, _)| *known == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let number_at_least = |min: i64, max: i64| match value.trim().parse::<i64>() {
        Ok(number) if number >= min && number <= max => Ok(()),
        _ => Err(format!("Invalid value {value} for configuration {name}: must be an integer from {min} to {max}")),
    };
    match kind {
        Kind::Long { min } => number_at_least(*min, i64::MAX),
        Kind::Int { min } => number_at_least(*min, i64::from(i32::MAX)),
        Kind::OneOf(allowed) if allowed.contains(&value) => Ok(()),
        Kind::OneOf(allowed) => {
            Err(format!("Invalid value {value} for configuration {name}: must be one of {allowed:?}"))
        }
    }
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
                ("segment.bytes", None) => "1073741824".to_string(),
                ("segment.ms", None) => "604800000".to_string(),
                _ => String::new(),
            };
            (*name, value, explicit.is_some())
        })
        .collect()
}

impl TopicConfig {
    /// Resolves overrides (already validated) over the broker defaults.
    pub fn resolve(overrides: BTreeMap<String, String>, defaults: &BrokerDefaults) -> Self {
        let long =
            |name: &str, default: i64| overrides.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default);
        let deletes = overrides.get("cleanup.policy").is_none_or(|policy| policy.contains("delete"));
        let retention = |value: i64| if deletes { value } else { -1 };
        TopicConfig {
            retention_ms: retention(long("retention.ms", defaults.retention_ms)),
            retention_bytes: retention(long("retention.bytes", defaults.retention_bytes)),
            max_message_bytes: long("max.message.bytes", i64::from(defaults.max_message_bytes)) as i32,
            timestamp_type: match overrides.get("message.timestamp.type").map(String::as_str) {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            min_insync_replicas: long("min.insync.replicas", 1) as i32,
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
    }

    #[test]
    fn compact_only_topics_keep_everything() {
        let defaults = BrokerDefaults { retention_ms: 1000, retention_bytes: 10, max_message_bytes: 100 };
        let overrides = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let config = TopicConfig::resolve(overrides, &defaults);
        assert_eq!((config.retention_ms, config.retention_bytes), (-1, -1));
    }
}
