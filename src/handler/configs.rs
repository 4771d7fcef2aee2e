//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, this broker (dynamic
//! configs, over the static ones from flags, environment and file) and groups.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestKind, alter_configs_response,
    incremental_alter_configs_response,
};

use super::admin::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{Broker, Handled, str_bytes};
use crate::config::definitions::{self, Scope};
use crate::log::{LogError, topic_config};
use crate::protocol::apis::Family;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_GROUP: i8 = 8;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The config APIs' error codes are not counted (docs/metrics.md lists the APIs whose are).
pub(super) async fn handle(broker: &Arc<Broker>, request: RequestKind, version: i16) -> Option<Handled> {
    let handled = match request {
        RequestKind::DescribeConfigs(body) => Handled::uncounted(describe(broker, body, version)),
        RequestKind::AlterConfigs(body) => Handled::uncounted(alter(broker, body).await),
        RequestKind::IncrementalAlterConfigs(body) => Handled::uncounted(incremental_alter(broker, body).await),
        _ => return super::misrouted(Family::Configs),
    };
    Some(handled)
}

pub(super) fn describe(broker: &Broker, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let scope = match resource.resource_type {
            RESOURCE_TOPIC => Scope::Topic,
            RESOURCE_GROUP => Scope::Group,
            _ => Scope::Broker,
        };
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => match broker.log.topic(resource.resource_name.as_str()) {
                Some(topic) => Ok(topic_config::describe(&topic.config)
                    .into_iter()
                    .map(|(name, value, explicit)| {
                        (name.to_string(), value, if explicit { SOURCE_TOPIC } else { SOURCE_DEFAULT }, false)
                    })
                    .collect::<Vec<_>>()),
                None => Err((ResponseError::UnknownTopicOrPartition.code(), "Topic not found".to_string())),
            },
            RESOURCE_BROKER if is_this_broker(broker, resource.resource_name.as_str()) => Ok(broker_configs(broker)),
            RESOURCE_GROUP => Ok(broker
                .log
                .dynamic_configs(&format!("group/{}", resource.resource_name.as_str()))
                .into_iter()
                .map(|(name, value)| (name, value, SOURCE_GROUP, false))
                .collect()),
            RESOURCE_BROKER => Err((ResponseError::InvalidRequest.code(), "Unknown broker id".to_string())),
            other => Err((ResponseError::InvalidRequest.code(), format!("Unsupported resource type {other}"))),
        };
        match entries {
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_ref();
                for (name, value, source, read_only) in entries {
                    if wanted.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == name)) {
                        continue;
                    }
                    let mut entry = DescribeConfigsResourceResult::default();
                    entry.name = str_bytes(name);
                    entry.value = Some(str_bytes(value));
                    entry.config_source = source;
                    entry.read_only = read_only;
                    if version >= 3 {
                        entry.config_type = definitions::described_type(scope, entry.name.as_str());
                    }
                    result.configs.push(entry);
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.results.push(result);
    }
    response
}

fn is_this_broker(broker: &Broker, name: &str) -> bool {
    name.is_empty() || name.parse::<i32>() == Ok(broker.cluster.this_broker())
}

/// This broker's configs under Kafka's names. Every value is the one the broker runs with: its
/// flags, environment and file (static), replaced by AlterConfigs' values (dynamic), which are
/// applied where they are topic defaults (`Log::defaults`). Read-only are those AlterConfigs
/// cannot set, as Kafka marks them. Which configs, in which order: `config::definitions`.
fn broker_configs(broker: &Broker) -> Vec<(String, String, i8, bool)> {
    let entries = definitions::described_broker_configs(&broker.config)
        .into_iter()
        .map(|(name, value, dynamic)| (name.to_string(), value, SOURCE_STATIC_BROKER, !dynamic));
    // Dynamic values (AlterConfigs) replace the static ones and are listed after them.
    let dynamic = broker.log.dynamic_configs("broker");
    let mut entries: Vec<_> = entries.filter(|(name, ..)| !dynamic.contains_key(name)).collect();
    entries.extend(dynamic.into_iter().map(|(name, value)| (name, value, SOURCE_DYNAMIC_BROKER, false)));
    entries
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

pub(super) async fn alter(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
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
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        // A key given twice changes nothing, whatever the resource: Kafka checks it first.
        let mut names = std::collections::HashSet::new();
        let outcome = if !resource.configs.iter().all(|config| names.insert(config.name.as_str())) {
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
                        apply_operation(configs, config.name.as_str(), config.config_operation, value)?;
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

/// SET, DELETE, and for list configs APPEND and SUBTRACT, as Kafka defines them.
fn apply_operation(
    configs: &mut BTreeMap<String, String>,
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
        OP_APPEND | OP_SUBTRACT if name == "cleanup.policy" || name == "log.cleanup.policy" => {
            let current = configs.get(name).cloned().unwrap_or_else(|| "delete".to_string());
            let mut items: Vec<String> = current.split(',').map(str::to_string).collect();
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
