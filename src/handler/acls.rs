//! CreateAcls, DescribeAcls and DeleteAcls: the ACLs `--authorizer standard` checks
//! (`security::acl`), managed as Kafka's admin clients and `kafka-acls.sh` do. Without an
//! authorizer each answers SECURITY_DISABLED; each needs ALTER (create, delete) or DESCRIBE on
//! the cluster.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};

use super::{Broker, str_bytes};
use crate::security::acl::{AclBinding, AclFilter, AclStore};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Why the request is refused as a whole (no authorizer, or no right on the cluster).
fn refused(broker: &Broker, session: &Session, operation: Operation) -> Option<(ResponseError, String)> {
    if !broker.service.acls_enabled() {
        return Some((ResponseError::SecurityDisabled, NO_AUTHORIZER.to_string()));
    }
    if !broker.service.allowed(session, operation, Resource::Cluster) {
        let error = ResponseError::ClusterAuthorizationFailed;
        return Some((error, error.to_string()));
    }
    None
}

/// DescribeAcls' request and DeleteAcls' filters carry the same fields.
trait FilterFields {
    fn filter(&self) -> Result<AclFilter, crate::security::acl::InvalidAcl>;
}

macro_rules! filter_fields {
    ($type:ty) => {
        impl FilterFields for $type {
            fn filter(&self) -> Result<AclFilter, crate::security::acl::InvalidAcl> {
                AclFilter::from_codes(
                    self.resource_type_filter,
                    self.resource_name_filter.as_deref(),
                    self.pattern_type_filter,
                    self.principal_filter.as_deref(),
                    self.host_filter.as_deref(),
                    self.operation,
                    self.permission_type,
                )
            }
        }
    };
}

filter_fields!(DescribeAclsRequest);
filter_fields!(kafka_protocol::messages::delete_acls_request::DeleteAclsFilter);

pub(super) async fn create(broker: &Broker, request: CreateAclsRequest, session: &Session) -> CreateAclsResponse {
    let failed = |code: i16, message: String| {
        AclCreationResult::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(broker, session, Operation::Alter) {
        let results = request.creations.iter().map(|_| failed(error.code(), message.clone())).collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            let binding = AclBinding::from_codes(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            );
            binding.map_err(|invalid| invalid.0)
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let stored = AclStore::new(broker.log.clone()).create(&valid).await;
    if let Err(error) = &stored {
        tracing::warn!(%error, "cannot store ACLs");
    } else if !valid.is_empty() {
        tracing::info!(principal = %session.principal, acls = ?valid, "ACLs created");
    }
    let results = checked
        .into_iter()
        .map(|checked| match (checked, &stored) {
            (Err(message), _) => failed(ResponseError::InvalidRequest.code(), message),
            (Ok(_), Err(error)) => failed(error.code(), error.to_string()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub(super) fn describe(
    broker: &Broker,
    request: DescribeAclsRequest,
    _version: i16,
    session: &Session,
) -> DescribeAclsResponse {
    let failed = |error: ResponseError, message: &str| {
        DescribeAclsResponse::default().with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(broker, session, Operation::Describe) {
        return failed(error, &message);
    }
    let filter = match request.filter() {
        Ok(filter) => filter,
        Err(invalid) => return failed(ResponseError::InvalidRequest, &invalid.0),
    };
    // One entry per resource pattern, with its ACLs.
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in AclStore::new(broker.log.clone()).all().into_iter().filter(|acl| filter.matches(acl)) {
        let key = (acl.resource_type.code(), acl.resource_name.clone(), acl.pattern_type.code());
        resources.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(acl.principal))
                .with_host(str_bytes(acl.host))
                .with_operation(acl.operation.code())
                .with_permission_type(acl.permission.code()),
        );
    }
    let resources = resources.into_iter().map(|((resource_type, name, pattern_type), acls)| {
        DescribeAclsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str_bytes(name))
            .with_pattern_type(pattern_type)
            .with_acls(acls)
    });
    DescribeAclsResponse::default().with_resources(resources.collect())
}

pub(super) async fn delete(broker: &Broker, request: DeleteAclsRequest, session: &Session) -> DeleteAclsResponse {
    let failed = |code: i16, message: &str| {
        DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    if let Some((error, message)) = refused(broker, session, Operation::Alter) {
        let results = request.filters.iter().map(|_| failed(error.code(), &message)).collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let store = AclStore::new(broker.log.clone());
    let all = store.all();
    // Each ACL is deleted (and reported) by the first filter that matches it.
    let mut deleted: BTreeSet<AclBinding> = BTreeSet::new();
    let mut per_filter: Vec<Result<Vec<AclBinding>, String>> = Vec::new();
    for f in &request.filters {
        per_filter.push(match f.filter() {
            Err(invalid) => Err(invalid.0),
            Ok(filter) => {
                let matching: Vec<AclBinding> =
                    all.iter().filter(|acl| filter.matches(acl) && !deleted.contains(*acl)).cloned().collect();
                deleted.extend(matching.iter().cloned());
                Ok(matching)
            }
        });
    }
    let doomed: Vec<AclBinding> = deleted.into_iter().collect();
    let stored = store.delete(&doomed).await;
    if let Err(error) = &stored {
        tracing::warn!(%error, "cannot delete ACLs");
    } else if !doomed.is_empty() {
        tracing::info!(principal = %session.principal, acls = ?doomed, "ACLs deleted");
    }
    let results = per_filter
        .into_iter()
        .map(|outcome| match (outcome, &stored) {
            (Err(message), _) => failed(ResponseError::InvalidRequest.code(), &message),
            (Ok(_), Err(error)) => failed(error.code(), &error.to_string()),
            (Ok(matching), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                matching
                    .into_iter()
                    .map(|acl| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(acl.resource_type.code())
                            .with_resource_name(str_bytes(acl.resource_name))
                            .with_pattern_type(acl.pattern_type.code())
                            .with_principal(str_bytes(acl.principal))
                            .with_host(str_bytes(acl.host))
                            .with_operation(acl.operation.code())
                            .with_permission_type(acl.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
