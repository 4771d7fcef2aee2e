//! The HTTP listener: health, Prometheus metrics, the events API (produce and read records), group
//! offsets and lag, consumer instances (REST Proxy v2), admin views and the web console. Routes and bodies are documented in docs/http.md.
//!
//! Writes and reads go through the broker service, as Kafka's do: records become a magic v2
//! batch, the service checks it against the topic's rules (`BrokerService::validate`) and queues
//! it to the group-commit writer, so an HTTP write is durable, ordered, authorized and counted
//! exactly like a Kafka one.

mod admin;
mod consumers;
mod events;
pub use events::IDEMPOTENCY_WINDOW_MS;
mod groups;
mod iceberg_rest;
mod listener;
pub mod records;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::handler::Broker;
use crate::log::LogError;
use crate::log::batch::BatchError;
use crate::service::session::Session;

/// The web console: one self-contained page (no external scripts, styles or fonts).
const CONSOLE_HTML: &str = include_str!("console.html");

/// Serves until `stopped` turns true. The broker only starts this after the log has recovered and
/// the Kafka listener is bound, so readiness is true for as long as it answers.
/// Connections are capped and timed out as `listener` describes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<crate::security::tls::Tls>>,
    broker: Arc<Broker>,
    stopped: watch::Receiver<bool>,
) {
    let config = &broker.config;
    let limits = listener::Limits {
        connections_max: config.http.connections_max,
        header_read_timeout: std::time::Duration::from_millis(config.http.header_read_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(config.http.idle_timeout_ms),
    };
    let metrics = broker.metrics.clone();
    listener::serve(listener, tls, router(broker), limits, metrics, stopped).await;
}

pub fn router(broker: Arc<Broker>) -> Router {
    let body_limit = broker.config.http.request_bytes_max;
    Router::new()
        .route("/", get(|| async { Html(CONSOLE_HTML) }))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/events/{topic}", post(events::produce).get(events::read))
        .route("/v3/clusters/{cluster_id}/topics/{topic}/records", post(events::produce_v3))
        .route("/consumers/lag", get(groups::lag))
        .route("/consumers/join", post(consumers::join))
        .route("/consumers/leave", post(consumers::leave_by_body))
        .route("/consumers/{group_id}", post(consumers::create))
        .route("/consumers/{group_id}/instances/{name}", delete(consumers::delete))
        .route(
            "/consumers/{group_id}/instances/{name}/subscription",
            post(consumers::subscribe).get(consumers::subscription).delete(consumers::unsubscribe),
        )
        .route("/consumers/{group_id}/instances/{name}/assignments", get(consumers::assignments))
        .route("/consumers/{group_id}/instances/{name}/records", get(consumers::records))
        .route("/consumers/{group_id}/instances/{name}/offsets", post(consumers::commit))
        .route("/consumers/{group_id}/offsets", get(groups::fetch_offsets).post(groups::commit_offsets))
        .route("/iceberg/v1/config", get(iceberg_rest::config))
        .route("/iceberg/v1/oauth/tokens", post(iceberg_rest::token))
        .route("/iceberg/v1/namespaces", get(iceberg_rest::list_namespaces).fallback(iceberg_rest::refused))
        .route(
            "/iceberg/v1/namespaces/{namespace}",
            get(iceberg_rest::load_namespace).head(iceberg_rest::load_namespace).fallback(iceberg_rest::refused),
        )
        .route(
            "/iceberg/v1/namespaces/{namespace}/tables",
            get(iceberg_rest::list_tables).fallback(iceberg_rest::refused),
        )
        .route(
            "/iceberg/v1/namespaces/{namespace}/tables/{table}",
            get(iceberg_rest::load_table).head(iceberg_rest::load_table).fallback(iceberg_rest::refused),
        )
        .route("/iceberg/v1/namespaces/{namespace}/tables/{table}/metrics", post(iceberg_rest::metrics))
        .route("/iceberg/{*rest}", axum::routing::any(iceberg_rest::refused))
        .route("/admin/topics", get(admin::topics))
        .route("/admin/groups", get(admin::groups))
        .route("/admin/transactions", get(admin::transactions))
        .route("/admin/tiering", get(admin::tiering))
        .route("/admin/iceberg", get(admin::iceberg))
        .route_layer(middleware::from_fn_with_state(broker.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(broker.clone(), observe))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(std::sync::Arc::new(consumers::Consumers::default())))
        .layer(axum::Extension(Arc::new(crate::iceberg::rest::ReaderCatalog::new(broker.iceberg.clone()))))
        .with_state(broker)
}

/// The session an HTTP request is served in: set per connection by the listener (client host on
/// the `HTTP` listener), with the principal of `--http-auth basic` when it is on.
pub(crate) struct HttpSession(pub Session);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HttpSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts.extensions.get::<Session>().cloned();
        Ok(HttpSession(session.unwrap_or_else(|| Session::anonymous(HTTP_LISTENER, ""))))
    }
}

/// The listener name HTTP sessions carry.
pub(crate) const HTTP_LISTENER: &str = "HTTP";

/// How long readiness waits for the object store.
const READY_OBJECT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Ready: the log recovered and the Kafka listener is bound (both before this listener starts),
/// and the object store answers a GET of a key that need not exist.
async fn ready(State(broker): State<Arc<Broker>>) -> Response {
    let store = broker.unified.tier().store();
    let probe = tokio::time::timeout(READY_OBJECT_STORE_TIMEOUT, store.get("meta/ready-probe")).await;
    let problem = match probe {
        Ok(Ok(_)) => return "ready\n".into_response(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {} s", READY_OBJECT_STORE_TIMEOUT.as_secs()),
    };
    let body = json!({ "error": format!("object store {} unreachable: {problem}", store.describe()) });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// Routes served without authentication whatever `--http-auth` says: probes, the REST catalog's
/// token endpoint (which checks the credentials it is given), and scrapers unless
/// `--http-metrics-auth`.
const OPEN_ROUTES: &[&str] = &["/health/live", "/health/ready", "/iceberg/v1/oauth/tokens"];

fn open_route(broker: &Broker, path: &str) -> bool {
    OPEN_ROUTES.contains(&path) || (path == "/metrics" && !broker.config.http.metrics_auth)
}

/// `--http-auth basic|bearer|any`: the request's principal from HTTP basic auth (checked
/// against the SCRAM users' passwords, as PLAIN does on the Kafka listeners) or a bearer JWT
/// (checked as OAUTHBEARER does); 401 with a `WWW-Authenticate` challenge otherwise.
async fn authenticate(State(broker): State<Arc<Broker>>, mut request: Request, next: Next) -> Response {
    let mode = broker.config.http.auth.as_str();
    if mode == "none" || open_route(&broker, request.uri().path()) {
        return next.run(request).await;
    }
    let (basic, bearer) = (mode == "basic" || mode == "any", mode == "bearer" || mode == "any");
    let user = match (basic_credentials(request.headers()).filter(|_| basic), bearer_token(request.headers())) {
        (Some((user, password)), _) => {
            let verified = broker.credentials.verify_password(&user, &password).await;
            broker.metrics.authenticated("HTTP_BASIC", verified);
            if !verified {
                tracing::warn!(%user, "HTTP authentication failed");
                tokio::time::sleep(crate::security::sasl::FAILED_AUTHENTICATION_DELAY).await;
                return unauthorized(mode, "authentication failed: unknown user or wrong password");
            }
            user
        }
        // The REST catalog's own tokens stand for a checked password, whatever the mode.
        (None, Some(token)) if bearer || crate::security::token::is_ours(&token) => {
            match broker.credentials.verify_bearer(&token).await {
                Ok(user) => {
                    broker.metrics.authenticated("HTTP_BEARER", true);
                    user
                }
                Err(error) => {
                    broker.metrics.authenticated("HTTP_BEARER", false);
                    tracing::warn!(reason = %error, "HTTP bearer token refused");
                    tokio::time::sleep(crate::security::sasl::FAILED_AUTHENTICATION_DELAY).await;
                    return unauthorized(mode, "authentication failed: the bearer token was refused");
                }
            }
        }
        _ => return unauthorized(mode, &format!("this listener needs HTTP authentication ({mode})")),
    };
    let mut session =
        request.extensions().get::<Session>().cloned().unwrap_or_else(|| Session::anonymous(HTTP_LISTENER, ""));
    session.principal = crate::service::session::Principal::user(&user);
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// `Authorization: Bearer TOKEN`.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// `Authorization: Basic base64(user:password)`.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn unauthorized(mode: &str, message: &str) -> Response {
    let body = json!({ "error_code": 401, "error": "unauthorized", "message": message });
    let challenge = match mode {
        "bearer" => "Bearer realm=\"zombi\"",
        _ => "Basic realm=\"zombi\", charset=\"UTF-8\"",
    };
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], axum::Json(body)).into_response()
}

/// One span and one `zombi_http_requests_total` count per request, labelled by route template.
async fn observe(State(broker): State<Arc<Broker>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str).to_string();
    let span = tracing::debug_span!("http", method = %request.method(), route = %route);
    let response = next.run(request).instrument(span).await;
    broker.metrics.http_request(&route, response.status().as_u16());
    response
}

async fn metrics(State(broker): State<Arc<Broker>>, HttpSession(session): HttpSession) -> Result<Response, ApiError> {
    if broker.config.http.metrics_auth {
        admin::cluster_describe(&broker, &session)?;
    }
    let metrics = broker.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|_| ApiError::Internal("metrics did not encode".into()))?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Why an HTTP request failed; each kind has one status code and a JSON body
/// `{"error_code": <status>, "error": "<kind>", "message": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// Served by another broker of the cluster.
    #[error("{0}")]
    Misdirected(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("offset {offset} is outside the partition's offsets [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, high_watermark: i64 },
    #[error("the broker is shutting down")]
    Unavailable,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::UnknownTopic(_) | ApiError::UnknownPartition { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::OffsetOutOfRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownTopic(_) => "unknown_topic",
            ApiError::UnknownPartition { .. } => "unknown_partition",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Misdirected(_) => "misdirected",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::OffsetOutOfRange { .. } => "offset_out_of_range",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A log failure on behalf of `topic`.
    fn from_log(error: LogError, topic: &str) -> ApiError {
        match error {
            LogError::UnknownTopicOrPartition | LogError::UnknownTopicId => ApiError::UnknownTopic(topic.to_string()),
            LogError::Batch(BatchError::TooLarge { size_bytes, limit_bytes }) => ApiError::PayloadTooLarge(format!(
                "the records make a batch of {size_bytes} bytes, over the topic's max.message.bytes {limit_bytes}"
            )),
            LogError::Unavailable => ApiError::Unavailable,
            LogError::Storage(error) => ApiError::Internal(error.to_string()),
            error @ (LogError::TopicAuthorizationFailed(_)
            | LogError::GroupAuthorizationFailed(_)
            | LogError::TransactionalIdAuthorizationFailed(_)
            | LogError::ClusterAuthorizationFailed) => ApiError::Forbidden(error.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "HTTP request failed");
        }
        let mut body = json!({ "error_code": status.as_u16(), "error": self.kind(), "message": self.to_string() });
        if let ApiError::OffsetOutOfRange { log_start, high_watermark, .. } = self {
            body["log_start"] = json!(log_start);
            body["high_watermark"] = json!(high_watermark);
        }
        (status, axum::Json(body)).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is over the limit (--http-request-max-bytes)".into())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the request body is over the limit (--http-request-max-bytes)".into())
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

/// The request's media type, lower-cased and without parameters (`; charset=...`).
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}
