//! The HTTP listener's connection handling: a cap on open connections, a header read timeout
//! (slowloris) and an idle timeout, each a flag in `config.rs`.
//!
//! axum's own `serve` takes no limits, so connections are served here with hyper directly:
//! - at most `http_connections_max` are served at once; a connection beyond that is answered
//!   `503` with `Retry-After: 1` and closed, so a client learns at once rather than hanging in the
//!   accept queue (the Kafka listener queues instead: Kafka clients retry a slow connect, HTTP
//!   clients and scrapers give up on a hanging one);
//! - hyper closes a connection whose request header is not complete `http_header_read_timeout_ms`
//!   after it started waiting for it (a new connection or the next request of a kept-alive one,
//!   so this also ends idle kept-alive connections);
//! - a connection with no byte read or written for `http_idle_timeout_ms` is closed, whatever it
//!   is doing: a body that stopped arriving, a client that stopped reading its response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::metrics::{HTTP_TIMEOUT_HEADER_READ, HTTP_TIMEOUT_IDLE, Metrics};
use crate::security::tls::Tls;
use crate::service::session::Session;

/// How long an HTTPS client gets to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's limits (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Refused connections waiting for their client to close; beyond this they are closed at once.
const REFUSALS_IN_FLIGHT_MAX: usize = 256;
/// Time a refused client gets to take its 503 before the socket is closed.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a refused client's request read (and dropped) so that closing does not reset the
/// connection before the client has read the answer.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole answer to a connection over the limit (the body is `ApiError`'s JSON shape).
const REFUSAL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 115\r\n",
    "retry-after: 1\r\nconnection: close\r\n\r\n",
    r#"{"error_code":503,"error":"unavailable","message":"too many open HTTP connections (--http-connections-max); retry"}"#,
);

/// Accepts and serves connections until `stopped` turns true, then lets open ones finish their
/// requests (up to a drain timeout).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    while !*stopped.borrow() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and similar: wait a moment rather than spin.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let span = tracing::debug_span!("http_connection", %peer);
                // Every request on the connection carries its session (see `HttpSession`).
                let session = Session::anonymous(super::HTTP_LISTENER, &format!("/{}", peer.ip()));
                let router = router.clone().layer(axum::Extension(session));
                let (metrics, closing_seen) = (metrics.clone(), closing_seen.clone());
                let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                connections.spawn(
                    async move {
                        match acceptor {
                            None => serve_connection(stream, router, limits, metrics, closing_seen).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => {
                                        serve_connection(stream, router, limits, metrics, closing_seen).await
                                    }
                                    Ok(Err(error)) => tracing::debug!(%error, "HTTPS handshake failed"),
                                    Err(_) => tracing::debug!("HTTPS handshake timed out"),
                                }
                            }
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(_) if tls.is_some() => {
                // An HTTPS client cannot read a plain 503; it sees the connection close.
                metrics.http_connection_refused();
            }
            Err(_) => {
                metrics.http_connection_refused();
                // Written at once without waiting: a new socket's send buffer has room for it.
                let _ = stream.try_write(REFUSAL.as_bytes());
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    connections.spawn(close_refused(stream, permit));
                }
            }
        }
    }
    let _ = closing.send(true);
    drop(listener);
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, all_done).await.is_err() {
        tracing::warn!("HTTP connections still open after the drain timeout");
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut closing: watch::Receiver<bool>,
) {
    let _open = metrics.http_connection_opened();
    let started = Instant::now();
    let last_activity_ms = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched { inner: stream, started, last_activity_ms: last_activity_ms.clone() });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let idle_at = started + Duration::from_millis(last_activity_ms.load(Ordering::Relaxed)) + limits.idle_timeout;
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    if error.is_timeout() {
                        metrics.http_connection_timed_out(HTTP_TIMEOUT_HEADER_READ);
                    }
                    tracing::debug!(%error, "HTTP connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(idle_at) => {
                let last = started + Duration::from_millis(last_activity_ms.load(Ordering::Relaxed));
                if last + limits.idle_timeout <= Instant::now() {
                    // Dropping the connection closes the socket, mid-request or not.
                    metrics.http_connection_timed_out(HTTP_TIMEOUT_IDLE);
                    tracing::debug!("HTTP connection idle too long; closed");
                    return;
                }
            }
            _ = closing.changed(), if !shutting_down => {
                // Finish the request in progress, if any, then close.
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

/// Closes a refused connection (its 503 already written) after reading what the client sent:
/// closing a socket with unread bytes resets it, and a reset can discard the answer before the
/// client reads it. Beyond `REFUSALS_IN_FLIGHT_MAX` of these the socket is dropped at once.
async fn close_refused(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let exchange = async {
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES_MAX {
            match stream.read(&mut scratch).await? {
                0 => break,
                read => drained += read,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, exchange).await;
}

/// A socket (TCP or TLS) that notes when it last moved a byte, for the idle timeout.
struct Watched<S> {
    inner: S,
    started: Instant,
    /// Milliseconds after `started`.
    last_activity_ms: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn touch(&self) {
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(elapsed_ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal is written by hand: its length header must match its body, which must be the
    /// JSON error every other answer uses.
    #[test]
    fn the_refusal_is_a_well_formed_json_503() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!((json["error_code"].as_u64(), json["error"].as_str()), (Some(503), Some("unavailable")));
    }
}
