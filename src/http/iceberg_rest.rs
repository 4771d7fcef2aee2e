//! The Iceberg REST catalog (apache/iceberg `open-api/rest-catalog-open-api.yaml`), read-only,
//! at `http://HOST:PORT/iceberg`: query engines on other machines open the sink's tables through
//! it, whatever catalog backs them (SQLite or PostgreSQL).
//!
//! Read-only by design: the sink's exactly-once rests on its compare-and-swap commits carrying the
//! offsets, so other engines may not commit. Every write answers 406 UnsupportedOperationException;
//! `GET /v1/config` lists what is served in `endpoints`, so clients refuse writes on their side.
//!
//! Wire types are `iceberg-catalog-rest`'s where it makes them public; the catalog is opened on
//! first use with connections of its own (never the sink's).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_catalog_rest::{ErrorModel, ListNamespaceResponse, ListTablesResponse, LoadTableResult, NamespaceResponse};
use iceberg_catalog_sql::SqlCatalog;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::handler::Broker;

/// Namespaces are one level here; levels would be joined by the unit separator, as the spec says.
const NAMESPACE_SEPARATOR: char = '\u{1f}';
const PAGE_SIZE_MAX: usize = 1000;
const TOKEN_LIFETIME_S: u64 = 3600;

/// The reader's catalog, opened on first use.
#[derive(Debug, Default)]
pub(super) struct RestCatalog {
    catalog: OnceCell<Arc<SqlCatalog>>,
}

/// An error in the spec's shape: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub(super) struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> RestError {
        RestError { status, kind, message: message.into() }
    }

    fn no_table(ident: &TableIdent) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, "NoSuchTableException", format!("Table does not exist: {ident}"))
    }

    fn no_namespace(namespace: &NamespaceIdent) -> RestError {
        let name = namespace.join(".");
        RestError::new(StatusCode::NOT_FOUND, "NoSuchNamespaceException", format!("Namespace does not exist: {name}"))
    }

    fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    fn unavailable(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", message)
    }
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

impl From<iceberg::Error> for RestError {
    fn from(error: iceberg::Error) -> Self {
        RestError::unavailable(format!("the catalog failed: {error}"))
    }
}

async fn catalog(broker: &Broker, state: &RestCatalog) -> Result<Arc<SqlCatalog>, RestError> {
    state
        .catalog
        .get_or_try_init(|| crate::iceberg::open_reader_catalog(&broker.iceberg))
        .await
        .cloned()
        .map_err(|e| RestError::unavailable(format!("the Iceberg catalog cannot be opened: {e}")))
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
pub(super) async fn config(State(broker): State<Arc<Broker>>) -> Json<serde_json::Value> {
    Json(json!({
        "defaults": storage_config(&broker),
        "overrides": {},
        "endpoints": ENDPOINTS,
    }))
}

/// What a reader needs to open the warehouse's files: for S3, the endpoint, region and
/// path-style addressing (credentials stay the reader's own).
fn storage_config(broker: &Broker) -> HashMap<String, String> {
    let settings = &broker.iceberg.settings;
    let mut config = HashMap::new();
    if settings.warehouse.starts_with("s3://") {
        if let Some(endpoint) = &settings.s3.endpoint {
            config.insert("s3.endpoint".to_string(), endpoint.clone());
            config.insert("s3.path-style-access".to_string(), "true".to_string());
        }
        if let Some(region) = &settings.s3.region {
            config.insert("s3.region".to_string(), region.clone());
            config.insert("client.region".to_string(), region.clone());
        }
    }
    config
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    parent: Option<String>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
}

/// One page of `items` from the (opaque) token: the index of the first item.
fn page<T: Clone>(items: &[T], query: &ListQuery) -> Result<(Vec<T>, Option<String>), RestError> {
    let start = match query.page_token.as_deref() {
        None | Some("") => 0,
        Some(token) => token.parse::<usize>().map_err(|_| RestError::bad_request("invalid pageToken"))?,
    };
    let size = query.page_size.unwrap_or(PAGE_SIZE_MAX).clamp(1, PAGE_SIZE_MAX);
    let end = start.saturating_add(size).min(items.len());
    let slice = items.get(start.min(items.len())..end).unwrap_or_default().to_vec();
    // A token only when the client asked for pages and more remain.
    let next = (query.page_token.is_some() || query.page_size.is_some()) && end < items.len();
    Ok((slice, next.then(|| end.to_string())))
}

fn namespace_ident(path: &str) -> Result<NamespaceIdent, RestError> {
    let levels: Vec<String> = path.split(NAMESPACE_SEPARATOR).map(str::to_string).collect();
    NamespaceIdent::from_vec(levels).map_err(|e| RestError::bad_request(e.to_string()))
}

/// `GET /iceberg/v1/namespaces?parent=&pageToken=&pageSize=`.
pub(super) async fn list_namespaces(
    State(broker): State<Arc<Broker>>,
    Extension(state): Extension<Arc<RestCatalog>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListNamespaceResponse>, RestError> {
    let catalog = catalog(&broker, &state).await?;
    let parent = query.parent.as_deref().map(namespace_ident).transpose()?;
    let namespaces = catalog.list_namespaces(parent.as_ref()).await?;
    let (namespaces, next_page_token) = page(&namespaces, &query)?;
    Ok(Json(ListNamespaceResponse { namespaces, next_page_token }))
}

/// `GET` and `HEAD /iceberg/v1/namespaces/{namespace}`.
pub(super) async fn load_namespace(
    State(broker): State<Arc<Broker>>,
    Extension(state): Extension<Arc<RestCatalog>>,
    method: Method,
    Path(namespace): Path<String>,
) -> Result<Response, RestError> {
    let catalog = catalog(&broker, &state).await?;
    let ident = namespace_ident(&namespace)?;
    if !catalog.namespace_exists(&ident).await? {
        return Err(RestError::no_namespace(&ident));
    }
    if method == Method::HEAD {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let found = catalog.get_namespace(&ident).await?;
    Ok(Json(NamespaceResponse::from(&found)).into_response())
}

/// `GET /iceberg/v1/namespaces/{namespace}/tables?pageToken=&pageSize=`.
pub(super) async fn list_tables(
    State(broker): State<Arc<Broker>>,
    Extension(state): Extension<Arc<RestCatalog>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListTablesResponse>, RestError> {
    let catalog = catalog(&broker, &state).await?;
    let ident = namespace_ident(&namespace)?;
    if !catalog.namespace_exists(&ident).await? {
        return Err(RestError::no_namespace(&ident));
    }
    let mut tables = catalog.list_tables(&ident).await?;
    tables.sort_by(|a, b| a.name().cmp(b.name()));
    let (identifiers, next_page_token) = page(&tables, &query)?;
    Ok(Json(ListTablesResponse { identifiers, next_page_token }))
}

#[derive(Debug, Deserialize)]
pub(super) struct LoadQuery {
    snapshots: Option<String>,
}

/// `GET` and `HEAD /iceberg/v1/namespaces/{namespace}/tables/{table}?snapshots=all|refs`: the
/// current metadata and its location, with the warehouse's storage settings. (`refs` gets every
/// snapshot too, a superset that clients accept.)
pub(super) async fn load_table(
    State(broker): State<Arc<Broker>>,
    Extension(state): Extension<Arc<RestCatalog>>,
    method: Method,
    Path((namespace, table)): Path<(String, String)>,
    Query(query): Query<LoadQuery>,
) -> Result<Response, RestError> {
    if !matches!(query.snapshots.as_deref(), None | Some("all") | Some("refs")) {
        return Err(RestError::bad_request("snapshots must be all or refs"));
    }
    let catalog = catalog(&broker, &state).await?;
    let ident = TableIdent::new(namespace_ident(&namespace)?, table);
    if !catalog.table_exists(&ident).await? {
        return Err(RestError::no_table(&ident));
    }
    if method == Method::HEAD {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let loaded = catalog.load_table(&ident).await?;
    let result = LoadTableResult {
        metadata_location: loaded.metadata_location().map(str::to_string),
        metadata: loaded.metadata().clone(),
        config: storage_config(&broker),
        storage_credentials: None,
    };
    Ok(Json(result).into_response())
}

/// `POST …/tables/{table}/metrics`: scan and commit reports are accepted and not kept.
pub(super) async fn metrics() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `POST /iceberg/v1/oauth/tokens`: OAuth2 client credentials, so that readers configured the
/// usual way (`credential=id:secret`) connect. Until HTTP authentication exists every client is
/// anonymous and any credentials get a token; tokens are not checked.
pub(super) async fn token() -> Json<serde_json::Value> {
    Json(json!({
        "access_token": uuid::Uuid::new_v4().simple().to_string(),
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME_S,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }))
}

/// Any other method or path under `/iceberg`: writes are refused (406), the rest is unknown.
pub(super) async fn refused(method: Method) -> RestError {
    if method == Method::GET || method == Method::HEAD {
        RestError::new(StatusCode::NOT_FOUND, "NotFoundException", "no such Iceberg REST endpoint")
    } else {
        RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            "UnsupportedOperationException",
            "zombi's Iceberg REST catalog is read-only: the sink alone commits to its tables",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_token() {
        let items: Vec<i32> = (0..5).collect();
        let query = |token: Option<&str>, size: Option<usize>| ListQuery {
            parent: None,
            page_token: token.map(str::to_string),
            page_size: size,
        };
        assert_eq!(page(&items, &query(None, None)).unwrap(), (items.clone(), None));
        assert_eq!(page(&items, &query(Some(""), Some(2))).unwrap(), (vec![0, 1], Some("2".into())));
        assert_eq!(page(&items, &query(Some("2"), Some(2))).unwrap(), (vec![2, 3], Some("4".into())));
        assert_eq!(page(&items, &query(Some("4"), Some(2))).unwrap(), (vec![4], None));
        assert_eq!(page(&items, &query(Some("9"), Some(2))).unwrap(), (vec![], None));
        assert!(page(&items, &query(Some("x"), None)).is_err());
    }
}
