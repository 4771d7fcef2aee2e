//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, this broker (dynamic
//! configs, over the static ones from flags, environment and file) and groups; client quotas
//! (`quotas`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestKind, alter_configs_response,
    incremental_alter_configs_response,
};

use super::{Broker, Handled, str_bytes};
use crate::config::definitions::{self, DescribedConfig, Scope, Source, Synonym};
use crate::log::LogError;
use crate::log::topic_config::{self, TopicConfig};
use crate::protocol::apis::Family;
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The config APIs' error codes are not counted (docs/metrics.md lists the APIs whose are).
pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let handled = match request {
        RequestKind::DescribeConfigs(body) => Handled::uncounted(describe(broker, body, version, session)),
        RequestKind::AlterConfigs(body) => Handled::uncounted(alter(broker, body, session).await),
        RequestKind::IncrementalAlterConfigs(body) => {
            Handled::uncounted(incremental_alter(broker, body, session).await)
        }
        RequestKind::DescribeClientQuotas(body) => Handled::uncounted(super::quotas::describe(broker, body, session)),
        RequestKind::AlterClientQuotas(body) => Handled::uncounted(super::quotas::alter(broker, body, session).await),
        _ => return super::misrouted(Family::Configs),
    };
    Some(handled)
}

/// Refuses what the session may not do to a resource's configs (DESCRIBE_CONFIGS or
/// ALTER_CONFIGS on the topic, the group, or the cluster for a broker), with Kafka's error code.
fn authorize(
    broker: &Broker,
    session: &Session,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), LogError> {
    let resource = match resource_type {
        RESOURCE_TOPIC => Resource::Topic(name),
        RESOURCE_BROKER => Resource::Cluster,
        RESOURCE_GROUP => Resource::Group(name),
        _ => return Ok(()),
    };
    broker.service.authorize(session, operation, resource)
}

pub(super) fn describe(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
    session: &Session,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    // Synonyms exist from v1; v0 has no field for them.
    let include_synonyms = request.include_synonyms && version >= 1;
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let scope = scope_of(resource.resource_type);
        let (resource_type, name) = (resource.resource_type, resource.resource_name.as_str());
        let described = authorize(broker, session, Operation::DescribeConfigs, resource_type, name)
            .and_then(|()| described(broker, resource_type, name));
        match described {
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_ref();
                for described in entries {
                    if wanted.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == described.name)) {
                        continue;
                    }
                    let mut entry = DescribeConfigsResourceResult::default();
                    if version >= 3 {
                        entry.config_type = definitions::described_type(scope, &described.name);
                    }
                    if include_synonyms {
                        entry.synonyms = described.synonyms.into_iter().map(synonym).collect();
                    }
                    entry.name = str_bytes(described.name);
                    entry.value = Some(str_bytes(described.value));
                    entry.config_source = described.source as i8;
                    entry.read_only = described.read_only;
                    result.configs.push(entry);
                }
            }
            Err(error) => {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(error.to_string()));
            }
        }
        response.results.push(result);
    }
    response
}

fn synonym(synonym: Synonym) -> DescribeConfigsSynonym {
    let mut out = DescribeConfigsSynonym::default();
    out.name = str_bytes(synonym.name);
    out.value = Some(str_bytes(synonym.value));
    out.source = synonym.source as i8;
    out
}

/// Which rows of the table a resource type's configs are.
fn scope_of(resource_type: i8) -> Scope {
    match resource_type {
        RESOURCE_TOPIC => Scope::Topic,
        RESOURCE_GROUP => Scope::Group,
        _ => Scope::Broker,
    }
}

/// The configs of one resource, each with its source and synonyms.
fn described(broker: &Broker, resource_type: i8, name: &str) -> Result<Vec<DescribedConfig>, LogError> {
    match resource_type {
        RESOURCE_TOPIC => {
            crate::log::validate_topic_name(name)?;
            let topic = broker.log.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
            Ok(topic_configs(broker, &topic.config))
        }
        // "": the cluster-wide default, which lists only what AlterConfigs set there.
        RESOURCE_BROKER if name.is_empty() => {
            Ok(definitions::described_cluster_defaults(&broker.log.dynamic_configs("broker")))
        }
        RESOURCE_BROKER if is_this_broker(broker, name) => {
            Ok(definitions::described_broker_configs(&broker.config, &broker.log.dynamic_configs("broker")))
        }
        RESOURCE_BROKER => Err(LogError::InvalidRequest(format!("Unexpected broker id {name}"))),
        RESOURCE_GROUP => Ok(broker
            .log
            .dynamic_configs(&format!("group/{name}"))
            .into_iter()
            .map(|(name, value)| {
                let synonyms = vec![Synonym { name: name.clone(), value: value.clone(), source: Source::Group }];
                DescribedConfig { name, value, source: Source::Group, read_only: false, synonyms }
            })
            .collect()),
        other => Err(LogError::InvalidRequest(format!("Unsupported resource type {other}"))),
    }
}

/// A topic's configs: set on the topic (source TOPIC) or not (DEFAULT, also where the value comes
/// from this broker's settings: clients read DEFAULT as "not set on the topic"); the synonyms
/// say where the value comes from, as Kafka lists them: the topic's own, then its broker config's.
fn topic_configs(broker: &Broker, config: &TopicConfig) -> Vec<DescribedConfig> {
    let dynamic = broker.log.dynamic_configs("broker");
    topic_config::describe(config)
        .into_iter()
        .map(|(name, value, explicit)| {
            let source = if explicit { Source::Topic } else { Source::Default };
            let own = explicit.then(|| Synonym { name: name.to_string(), value: value.clone(), source });
            let below = definitions::topic_synonyms(&broker.config, &dynamic, name);
            let synonyms = own.into_iter().chain(below).collect();
            DescribedConfig { name: name.to_string(), value, source, read_only: false, synonyms }
        })
        .collect()
}

/// The broker resource names AlterConfigs takes for this broker: its id, or "" (the cluster-wide
/// default; this broker's dynamic configs are shared by every broker of a cluster).
fn is_this_broker(broker: &Broker, name: &str) -> bool {
    name.is_empty() || name.parse::<i32>() == Ok(broker.cluster.this_broker())
}

/// Applies `change` to the explicit configs of a topic, of this broker, or of a group.
async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), LogError>,
) -> Result<(), LogError> {
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = broker.log.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
            let mut configs = topic.config.overrides.clone();
            change(&mut configs)?;
            topic_config::validate_all(&configs).map_err(LogError::InvalidConfig)?;
            broker.service.set_topic_configs(name, configs, validate_only).await
        }
        RESOURCE_BROKER if is_this_broker(broker, name) => {
            let mut configs = broker.log.dynamic_configs("broker");
            change(&mut configs)?;
            for (key, value) in &configs {
                definitions::validate(Scope::Broker, key, value).map_err(LogError::InvalidConfig)?;
            }
            if validate_only { Ok(()) } else { broker.log.set_dynamic_configs("broker", configs).await }
        }
        RESOURCE_BROKER => Err(LogError::InvalidRequest(format!("Unknown broker id {name}"))),
        RESOURCE_GROUP => {
            let scope = format!("group/{name}");
            let mut configs = broker.log.dynamic_configs(&scope);
            change(&mut configs)?;
            for (key, value) in &configs {
                definitions::validate(Scope::Group, key, value).map_err(LogError::InvalidConfig)?;
            }
            if validate_only { Ok(()) } else { broker.log.set_dynamic_configs(&scope, configs).await }
        }
        other => Err(LogError::InvalidRequest(format!("Unsupported resource type {other}"))),
    }
}

pub(super) async fn alter(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
    session: &Session,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let (resource_type, name) = (resource.resource_type, resource.resource_name.as_str());
        if let Err(error) = authorize(broker, session, Operation::AlterConfigs, resource_type, name) {
            response.responses.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(resource.resource_name.clone())
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(error.to_string()))),
            );
            continue;
        }
        // AlterConfigs replaces the whole set of explicit configs.
        let outcome = alter_resource(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            request.validate_only,
            |configs| {
                configs.clear();
                for config in &resource.configs {
                    if let Some(value) = &config.value {
                        configs.insert(config.name.as_str().to_string(), value.as_str().to_string());
                    }
                }
                Ok(())
            },
        )
        .await;
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(error) = outcome {
            result.error_code = error.code();
            result.error_message = Some(str_bytes(error.to_string()));
        }
        response.responses.push(result);
    }
    response
}

pub(super) async fn incremental_alter(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    session: &Session,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        // A key given twice changes nothing, whatever the resource: Kafka checks it first.
        let mut names = std::collections::HashSet::new();
        let (resource_type, name) = (resource.resource_type, resource.resource_name.as_str());
        let authorized = authorize(broker, session, Operation::AlterConfigs, resource_type, name);
        let outcome = if let Err(error) = authorized {
            Err(error)
        } else if !resource.configs.iter().all(|config| names.insert(config.name.as_str())) {
            Err(LogError::InvalidRequest("Error due to duplicate config keys".to_string()))
        } else {
            alter_resource(
                broker,
                resource.resource_type,
                resource.resource_name.as_str(),
                request.validate_only,
                |configs| {
                    for config in &resource.configs {
                        let value = config.value.as_ref().map(|v| v.as_str());
                        let name = config.name.as_str();
                        apply_operation(
                            configs,
                            scope_of(resource.resource_type),
                            name,
                            config.config_operation,
                            value,
                        )?;
                    }
                    Ok(())
                },
            )
            .await
        };
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(error) = outcome {
            result.error_code = error.code();
            result.error_message = Some(str_bytes(error.to_string()));
        }
        response.responses.push(result);
    }
    response
}

/// SET, DELETE, and for list configs (the table's LIST type) APPEND and SUBTRACT, as Kafka
/// defines them: on the config's value, or its default where it has none.
fn apply_operation(
    configs: &mut BTreeMap<String, String>,
    scope: Scope,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), LogError> {
    let list_value = || value.ok_or_else(|| LogError::InvalidConfig(format!("{name}: a value is required")));
    match operation {
        OP_SET => {
            let value = list_value()?;
            configs.insert(name.to_string(), value.to_string());
        }
        OP_DELETE => {
            configs.remove(name);
        }
        OP_APPEND | OP_SUBTRACT if definitions::is_list(scope, name) => {
            let default = || definitions::kafka_config(scope, name).and_then(|row| row.default).unwrap_or_default();
            let current = configs.get(name).map_or_else(default, String::as_str);
            let mut items: Vec<String> =
                current.split(',').filter(|item| !item.is_empty()).map(str::to_string).collect();
            for item in list_value()?.split(',') {
                match operation {
                    OP_APPEND if !items.iter().any(|i| i == item) => items.push(item.to_string()),
                    OP_SUBTRACT => items.retain(|i| i != item),
                    _ => {}
                }
            }
            configs.insert(name.to_string(), items.join(","));
        }
        OP_APPEND | OP_SUBTRACT => {
            return Err(LogError::InvalidConfig(format!(
                "Config {name} is not a list: APPEND and SUBTRACT do not apply"
            )));
        }
        other => return Err(LogError::InvalidRequest(format!("Unknown config operation {other}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// APPEND and SUBTRACT apply to the table's list configs, starting from the config's default
    /// where the resource has no value (Kafka's rule), and are refused for any other config.
    #[test]
    fn append_and_subtract_follow_the_tables_list_type() {
        let mut configs = BTreeMap::new();
        apply_operation(&mut configs, Scope::Topic, "cleanup.policy", OP_APPEND, Some("compact")).expect("list");
        assert_eq!(configs["cleanup.policy"], "delete,compact");
        apply_operation(&mut configs, Scope::Topic, "cleanup.policy", OP_SUBTRACT, Some("delete")).expect("list");
        assert_eq!(configs["cleanup.policy"], "compact");
        let throttled = "leader.replication.throttled.replicas";
        apply_operation(&mut configs, Scope::Topic, throttled, OP_APPEND, Some("0:0")).expect("list without default");
        assert_eq!(configs[throttled], "0:0");
        let refused = apply_operation(&mut configs, Scope::Topic, "retention.ms", OP_APPEND, Some("5"));
        assert!(matches!(refused, Err(LogError::InvalidConfig(_))), "{refused:?}");
        let broker = apply_operation(&mut configs, Scope::Broker, "log.cleanup.policy", OP_APPEND, Some("compact"));
        assert!(broker.is_ok());
        assert_eq!(configs["log.cleanup.policy"], "delete,compact");
    }
}
