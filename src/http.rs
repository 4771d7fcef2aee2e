//! The HTTP listener: health checks for now (`/health/live`, `/health/ready`).

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves until `stopped` turns true. The broker only starts this after the log has recovered and
/// the Kafka listener is bound, so readiness is true for as long as it answers.
pub async fn serve(listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(|| async { "ready\n" }));
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(%error, "HTTP listener failed");
    }
}
