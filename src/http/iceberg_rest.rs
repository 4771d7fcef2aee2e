//! The Iceberg REST catalog (apache/iceberg `open-api/rest-catalog-open-api.yaml`), read-only,
//! at `http://HOST:PORT/iceberg`: query engines on other machines open the sink's tables through
//! it, whatever catalog backs them (SQLite or PostgreSQL).
//!
//! Read-only by design: the sink's exactly-once rests on its compare-and-swap commits carrying the
//! offsets, so other engines may not commit. Every write answers 406 UnsupportedOperationException;
//! `GET /v1/config` lists what is served in `endpoints`, so clients refuse writes on their side.
//!
//! With `--authorizer standard` a table is its topic as ACLs see it: listing shows the tables
//! whose topics the principal may describe, loading one needs READ on its topic (403
//! ForbiddenException otherwise).
//!
//! This is the HTTP side; the catalog side, with `iceberg-catalog-rest`'s wire types, is
//! `iceberg::rest`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use iceberg_catalog_rest::ErrorModel;
use serde::Deserialize;
use serde_json::json;

use super::HttpSession;
use crate::handler::Broker;
use crate::iceberg::rest::{Page, ReaderCatalog, RestCatalogError};
use crate::service::authorizer::{Operation, Resource};
use crate::service::session::Session;

const TOKEN_LIFETIME_S: u64 = 3600;

/// An error in the spec's shape: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub(super) struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let model = ErrorModel {
            message: self.message,
            r#type: self.kind.to_string(),
            code: self.status.as_u16(),
            stack: None,
        };
        (self.status, Json(json!({ "error": model }))).into_response()
    }
}

impl From<RestCatalogError> for RestError {
    fn from(error: RestCatalogError) -> Self {
        let (status, kind) = match &error {
            RestCatalogError::NoSuchNamespace(_) => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
            RestCatalogError::NoSuchTable(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            RestCatalogError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            RestCatalogError::Unavailable(_) | RestCatalogError::Catalog(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException")
            }
        };
        RestError { status, kind, message: error.to_string() }
    }
}

/// What `GET /v1/config` says is served; anything else is refused (406) or unknown (404).
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
];

/// `GET /iceberg/v1/config`: no prefix, the endpoints served, and the warehouse's storage
/// settings as defaults for every table.
pub(super) async fn config(Extension(catalog): Extension<Arc<ReaderCatalog>>) -> Json<serde_json::Value> {
    Json(json!({
        "defaults": catalog.storage_config(),
        "overrides": {},
        "endpoints": ENDPOINTS,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    parent: Option<String>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
}

impl ListQuery {
    fn page(&self) -> Page {
        Page { token: self.page_token.clone(), size: self.page_size }
    }
}

/// `GET /iceberg/v1/namespaces?parent=&pageToken=&pageSize=`.
pub(super) async fn list_namespaces(
    Extension(catalog): Extension<Arc<ReaderCatalog>>,
    Query(query): Query<ListQuery>,
) -> Result<Response, RestError> {
    Ok(Json(catalog.list_namespaces(query.parent.as_deref(), &query.page()).await?).into_response())
}

/// `GET` and `HEAD /iceberg/v1/namespaces/{namespace}`.
pub(super) async fn load_namespace(
    Extension(catalog): Extension<Arc<ReaderCatalog>>,
    method: Method,
    Path(namespace): Path<String>,
) -> Result<Response, RestError> {
    if method == Method::HEAD {
        catalog.namespace_exists(&namespace).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(catalog.load_namespace(&namespace).await?).into_response())
}

/// `GET /iceberg/v1/namespaces/{namespace}/tables?pageToken=&pageSize=`: the tables whose
/// topics the session may describe.
pub(super) async fn list_tables(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    Extension(catalog): Extension<Arc<ReaderCatalog>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, RestError> {
    let visible = |table: &str| broker.service.allowed(&session, Operation::Describe, Resource::Topic(table));
    Ok(Json(catalog.list_tables(&namespace, &query.page(), visible).await?).into_response())
}

/// 403 unless the session may read the table's topic.
fn authorize_read(broker: &Broker, session: &Session, table: &str) -> Result<(), RestError> {
    if broker.service.allowed(session, Operation::Read, Resource::Topic(table)) {
        return Ok(());
    }
    Err(RestError {
        status: StatusCode::FORBIDDEN,
        kind: "ForbiddenException",
        message: format!("not authorized to read topic {table}"),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct LoadQuery {
    snapshots: Option<String>,
}

/// `GET` and `HEAD /iceberg/v1/namespaces/{namespace}/tables/{table}?snapshots=all|refs`: the
/// current metadata and its location. (`refs` gets every snapshot too, a superset that clients
/// accept.)
pub(super) async fn load_table(
    State(broker): State<Arc<Broker>>,
    HttpSession(session): HttpSession,
    Extension(catalog): Extension<Arc<ReaderCatalog>>,
    method: Method,
    Path((namespace, table)): Path<(String, String)>,
    Query(query): Query<LoadQuery>,
) -> Result<Response, RestError> {
    if !matches!(query.snapshots.as_deref(), None | Some("all") | Some("refs")) {
        return Err(RestCatalogError::BadRequest("snapshots must be all or refs".into()).into());
    }
    authorize_read(&broker, &session, &table)?;
    if method == Method::HEAD {
        catalog.table_exists(&namespace, &table).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(catalog.load_table(&namespace, &table).await?).into_response())
}

/// `POST …/tables/{table}/metrics`: scan and commit reports are accepted and not kept.
pub(super) async fn metrics() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `POST /iceberg/v1/oauth/tokens`: OAuth2 client credentials (RFC 6749 §4.4), so that readers
/// configured the usual way (`credential=id:secret`) connect. With `--http-auth` on, the id and
/// secret are a SCRAM user's name and password (in the form, or as HTTP basic auth), checked as
/// basic auth checks them, and the token is taken as that user by the HTTP door until it
/// expires (`security::token`); a wrong pair is 401 `invalid_client`. Without HTTP
/// authentication every reader is anonymous, and any credentials get a token nobody checks.
pub(super) async fn token(
    State(broker): State<Arc<Broker>>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<TokenRequest>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (status, Json(json!({ "error": error, "error_description": description }))).into_response()
    };
    if form.grant_type != "client_credentials" {
        let description = "only the client_credentials grant is served";
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", description);
    }
    let issued = |token: String| {
        Json(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }))
        .into_response()
    };
    if broker.config.http.auth == "none" {
        return issued(uuid::Uuid::new_v4().simple().to_string());
    }
    let credentials = match (form.client_id, form.client_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => super::basic_credentials(&headers),
    };
    let Some((user, password)) = credentials else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id and client_secret are needed");
    };
    let verified = broker.credentials.verify_password(&user, &password).await;
    broker.metrics.authenticated("HTTP_OAUTH_CLIENT_CREDENTIALS", verified);
    if !verified {
        tracing::warn!(%user, "REST catalog token refused");
        tokio::time::sleep(crate::security::sasl::FAILED_AUTHENTICATION_DELAY).await;
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret");
    }
    match broker.credentials.issue_http_token(&user, TOKEN_LIFETIME_S as i64) {
        Some(token) => issued(token),
        None => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "no token key yet"),
    }
}

/// The form of a token request (`scope` and the rest are accepted and not used).
#[derive(Debug, Deserialize)]
pub(super) struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Any other method or path under `/iceberg`: writes are refused (406), the rest is unknown.
pub(super) async fn refused(method: Method) -> RestError {
    if method == Method::GET || method == Method::HEAD {
        RestError {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundException",
            message: "no such Iceberg REST endpoint".into(),
        }
    } else {
        RestError {
            status: StatusCode::NOT_ACCEPTABLE,
            kind: "UnsupportedOperationException",
            message: "zombi's Iceberg REST catalog is read-only: the sink alone commits to its tables".into(),
        }
    }
}
