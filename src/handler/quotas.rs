//! DescribeClientQuotas and AlterClientQuotas: the client quotas `security::quota` enforces,
//! managed as `kafka-configs --entity-type users|clients` and the admin clients do. Describing
//! needs DESCRIBE_CONFIGS on the cluster, altering ALTER_CONFIGS, as in Kafka.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    alter_client_quotas_response, describe_client_quotas_response,
};

use super::{Broker, str_bytes};
use crate::log::LogError;
use crate::security::quota::{self, Component, QuotaEntity, QuotaError};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

fn error_of(error: &QuotaError) -> (i16, String) {
    let code = match error {
        QuotaError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        QuotaError::UnsupportedVersion(_) => ResponseError::UnsupportedVersion.code(),
        QuotaError::Log(error) => error.code(),
    };
    (code, error.to_string())
}

pub(super) fn describe(
    broker: &Broker,
    request: DescribeClientQuotasRequest,
    session: &Session,
) -> DescribeClientQuotasResponse {
    let failed = |code: i16, message: String| {
        DescribeClientQuotasResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    if !broker.service.allowed(session, Operation::DescribeConfigs, Resource::Cluster) {
        let error = ResponseError::ClusterAuthorizationFailed;
        return failed(error.code(), error.to_string());
    }
    let components: Vec<Component<'_>> = request
        .components
        .iter()
        .map(|c| Component { entity_type: c.entity_type.as_str(), match_type: c.match_type, name: c._match.as_deref() })
        .collect();
    match quota::describe(&broker.log, &components, request.strict) {
        Ok(found) => {
            let entries = found
                .into_iter()
                .map(|(entity, values)| {
                    let entity = entity
                        .parts()
                        .into_iter()
                        .map(|(entity_type, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(str_bytes(entity_type))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect();
                    let values = values
                        .into_iter()
                        .map(|(key, value)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(str_bytes(key))
                                .with_value(value)
                        })
                        .collect();
                    describe_client_quotas_response::EntryData::default().with_entity(entity).with_values(values)
                })
                .collect();
            DescribeClientQuotasResponse::default().with_entries(Some(entries))
        }
        Err(error) => {
            let (code, message) = error_of(&error);
            failed(code, message)
        }
    }
}

pub(super) async fn alter(
    broker: &Broker,
    request: AlterClientQuotasRequest,
    session: &Session,
) -> AlterClientQuotasResponse {
    let allowed = broker.service.allowed(session, Operation::AlterConfigs, Resource::Cluster);
    let mut entries = Vec::with_capacity(request.entries.len());
    let mut seen = Vec::new();
    for entry in request.entries {
        let echoed = entry
            .entity
            .iter()
            .map(|e| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect();
        let result = if allowed {
            let ops: Vec<(String, Option<f64>)> =
                entry.ops.iter().map(|op| (op.key.to_string(), (!op.remove).then_some(op.value))).collect();
            match QuotaEntity::from_parts(
                entry.entity.iter().map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())),
            ) {
                Ok(entity) if seen.contains(&entity) => {
                    Err(QuotaError::InvalidRequest(format!("Ignoring duplicate entity {entity:?}")))
                }
                Ok(entity) => {
                    seen.push(entity.clone());
                    quota::alter(&broker.log, &entity, &ops, request.validate_only).await
                }
                Err(error) => Err(error),
            }
        } else {
            Err(QuotaError::Log(LogError::ClusterAuthorizationFailed))
        };
        let mut out = alter_client_quotas_response::EntryData::default().with_entity(echoed);
        if let Err(error) = result {
            let (code, message) = error_of(&error);
            out = out.with_error_code(code).with_error_message(Some(str_bytes(message)));
        }
        entries.push(out);
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}
