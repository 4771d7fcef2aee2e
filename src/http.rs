//! The HTTP listener: health checks for now (`/health/live`, `/health/ready`).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::log::Log;
use crate::tier::TierStatus;

/// Serves until `stopped` turns true. The broker only starts this after the log has recovered and
/// the Kafka listener is bound, so readiness is true for as long as it answers.
pub async fn serve(listener: TcpListener, log: Log, mut stopped: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(|| async { "ready\n" }))
        .route("/admin/tiering", get(tiering))
        .with_state(log);
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(%error, "HTTP listener failed");
    }
}

/// Every partition's tiering state: log start, hot-tier start, remote end, uploads.
async fn tiering(State(log): State<Log>) -> Json<TierStatus> {
    Json(crate::tier::status(&log))
}
