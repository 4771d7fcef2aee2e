//! DescribeUserScramCredentials and AlterUserScramCredentials: the SCRAM users that SASL
//! listeners authenticate (`security::Credentials`), managed as Kafka's admin clients and
//! `kafka-configs --entity-type users` do. The broker only ever receives salted passwords.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, RequestKind,
};

use super::{Broker, Handled, misrouted, str_bytes};
use crate::protocol::apis::Family;
use crate::security::scram::{self, Credential, Mechanism};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    kind: RequestKind,
    version: i16,
    session: &Session,
) -> Option<Handled> {
    let may = |operation: Operation| broker.service.allowed(session, operation, Resource::Cluster);
    let refused = ResponseError::ClusterAuthorizationFailed;
    Some(match kind {
        RequestKind::DescribeUserScramCredentials(_) if !may(Operation::Describe) => Handled::uncounted(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(refused.code())
                .with_error_message(Some(str_bytes(refused.to_string()))),
        ),
        RequestKind::DescribeUserScramCredentials(body) => Handled::uncounted(describe(broker, body)),
        RequestKind::AlterUserScramCredentials(body) if !may(Operation::Alter) => {
            let users: BTreeSet<String> = body
                .deletions
                .iter()
                .map(|d| d.name.to_string())
                .chain(body.upsertions.iter().map(|u| u.name.to_string()))
                .collect();
            let results = users.into_iter().map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(user))
                    .with_error_code(refused.code())
                    .with_error_message(Some(str_bytes(refused.to_string())))
            });
            Handled::uncounted(AlterUserScramCredentialsResponse::default().with_results(results.collect()))
        }
        RequestKind::AlterUserScramCredentials(body) => Handled::uncounted(alter(broker, body).await),
        RequestKind::CreateAcls(body) => Handled::uncounted(super::acls::create(broker, body, session).await),
        RequestKind::DescribeAcls(body) => Handled::uncounted(super::acls::describe(broker, body, version, session)),
        RequestKind::DeleteAcls(body) => Handled::uncounted(super::acls::delete(broker, body, session).await),
        _ => return misrouted(Family::Security),
    })
}

fn describe(broker: &Broker, request: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let credentials = &broker.credentials;
    let info = |described: Vec<(Mechanism, u32)>| -> Vec<CredentialInfo> {
        described
            .into_iter()
            .map(|(m, iterations)| CredentialInfo::default().with_mechanism(m.id()).with_iterations(iterations as i32))
            .collect()
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        None => credentials
            .users()
            .into_iter()
            .map(|(user, described)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user))
                    .with_credential_infos(info(described))
            })
            .collect(),
        Some(users) => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for user in &users {
                *counts.entry(user.name.to_string()).or_default() += 1;
            }
            let mut seen = BTreeSet::new();
            let mut results = Vec::new();
            for user in users {
                let name = user.name.to_string();
                if !seen.insert(name.clone()) {
                    continue;
                }
                let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(name.clone()));
                let described = credentials.described(&name);
                results.push(if counts[&name] > 1 {
                    failed_describe(
                        result,
                        ResponseError::DuplicateResource,
                        "Cannot describe SCRAM credentials for the same user twice in a single request",
                    )
                } else if described.is_empty() {
                    failed_describe(
                        result,
                        ResponseError::ResourceNotFound,
                        "Attempt to describe a user credential that does not exist",
                    )
                } else {
                    result.with_credential_infos(info(described))
                });
            }
            results
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

fn failed_describe(
    result: DescribeUserScramCredentialsResult,
    error: ResponseError,
    message: &str,
) -> DescribeUserScramCredentialsResult {
    result.with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
}

/// One user's outcome: every change of that user is applied, or none.
type Outcome = Result<Vec<(Mechanism, Option<Credential>)>, (ResponseError, &'static str)>;

async fn alter(broker: &Broker, request: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let credentials = &broker.credentials;
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut touched: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut duplicated: BTreeSet<String> = BTreeSet::new();
    let mut check = |name: &str, mechanism: i8| {
        if !touched.insert((name.to_string(), mechanism)) {
            duplicated.insert(name.to_string());
        }
    };
    for deletion in &request.deletions {
        check(&deletion.name, deletion.mechanism);
    }
    for upsertion in &request.upsertions {
        check(&upsertion.name, upsertion.mechanism);
    }
    let mut record = |name: &str, change: Result<(Mechanism, Option<Credential>), (ResponseError, &'static str)>| {
        let outcome = outcomes.entry(name.to_string()).or_insert_with(|| Ok(Vec::new()));
        match (outcome, change) {
            (Ok(changes), Ok(change)) => changes.push(change),
            (outcome @ Ok(_), Err(error)) => *outcome = Err(error),
            (Err(_), _) => {}
        }
    };
    for deletion in request.deletions {
        let name = deletion.name.to_string();
        let change = if name.is_empty() {
            Err((ResponseError::UnacceptableCredential, "Username must not be empty"))
        } else {
            match Mechanism::from_id(deletion.mechanism) {
                None => Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism")),
                Some(m) if credentials.credential(&name, m).is_none() => {
                    Err((ResponseError::ResourceNotFound, "Attempt to delete a user credential that does not exist"))
                }
                Some(m) => Ok((m, None)),
            }
        };
        record(&name, change);
    }
    for upsertion in request.upsertions {
        let name = upsertion.name.to_string();
        let iterations = upsertion.iterations;
        let change = if name.is_empty() {
            Err((ResponseError::UnacceptableCredential, "Username must not be empty"))
        } else if iterations < scram::ITERATIONS_MIN as i32 {
            Err((ResponseError::UnacceptableCredential, "Too few iterations"))
        } else if iterations > scram::ITERATIONS_MAX as i32 {
            Err((ResponseError::UnacceptableCredential, "Too many iterations"))
        } else {
            match Mechanism::from_id(upsertion.mechanism) {
                None => Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism")),
                Some(m) if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() => {
                    let _ = m;
                    Err((ResponseError::UnacceptableCredential, "Salt and salted password must not be empty"))
                }
                Some(m) => Ok((
                    m,
                    Some(Credential::from_salted(
                        m,
                        upsertion.salt.to_vec(),
                        &upsertion.salted_password,
                        iterations as u32,
                    )),
                )),
            }
        };
        record(&name, change);
    }
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    for (name, outcome) in outcomes {
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(name.clone()));
        let outcome = if duplicated.contains(&name) {
            Err((ResponseError::DuplicateResource, "A user credential cannot be altered twice in the same request"))
        } else {
            outcome
        };
        match outcome {
            Ok(changes) => {
                accepted.extend(changes.into_iter().map(|(m, c)| (name.clone(), m, c)));
                results.push(result);
            }
            Err((error, message)) => {
                results.push(result.with_error_code(error.code()).with_error_message(Some(str_bytes(message))))
            }
        }
    }
    if !accepted.is_empty() {
        let users: BTreeSet<String> = accepted.iter().map(|(user, _, _)| user.clone()).collect();
        if let Err(error) = credentials.apply(accepted).await {
            tracing::warn!(%error, "cannot store SCRAM credentials");
            let (code, message) = (error.code(), error.to_string());
            for result in results.iter_mut().filter(|r| users.contains(r.user.as_str())) {
                result.error_code = code;
                result.error_message = Some(str_bytes(message.clone()));
            }
        } else {
            tracing::info!(users = ?users, "SCRAM credentials altered");
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
