//! One client connection: size-prefixed frames in, responses out in request order.
//!
//! The reader decodes each frame and starts its handling (appends are queued in request order right
//! there); the writer task awaits the pending responses one by one and writes them, so a connection
//! can have up to `requests_in_flight_per_connection_max` requests pipelined while answers keep
//! their order, as the Kafka protocol requires.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::handler::{Broker, PendingResponse, Response};
use crate::protocol;

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("request of {0} bytes exceeds socket.request.max.bytes")]
    TooLarge(i64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

struct Outgoing {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    pending: PendingResponse,
}

pub async fn serve(stream: TcpStream, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let client_host = stream.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
    let (read_half, write_half) = stream.into_split();
    let (outgoing, queue) = mpsc::channel(broker.config.requests_in_flight_per_connection_max);
    let writer = tokio::spawn(write_responses(write_half, queue).in_current_span());
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max_bytes = broker.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max_bytes) => frame,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(error)) => {
                // Peers resetting or dropping connections is ordinary.
                tracing::debug!(%error, "connection ended");
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "closing connection");
                break;
            }
        };
        let request = match protocol::decode(frame.clone()) {
            Ok(request) => request,
            Err(error) => {
                let head: String = frame.iter().take(256).map(|b| format!("{b:02x}")).collect();
                tracing::debug!(frame = %head, "undecodable frame");
                // Apache Kafka closes the connection on frames it cannot parse.
                tracing::warn!(%error, "closing connection");
                break;
            }
        };
        let (api_key, version, correlation_id) = (request.api_key, request.version, request.correlation_id);
        let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id);
        let pending = broker.handle(request, &client_host).instrument(span).await;
        if outgoing.send(Outgoing { api_key, version, correlation_id, pending }).await.is_err() {
            break;
        }
    }
    drop(outgoing);
    let _ = writer.await;
}

async fn read_frame(reader: &mut BufReader<OwnedReadHalf>, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if size < 0 || size as usize > max_bytes {
        return Err(FrameError::TooLarge(i64::from(size)));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame.freeze()))
}

async fn write_responses(write_half: OwnedWriteHalf, mut queue: mpsc::Receiver<Outgoing>) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(mut item) = queue.recv().await {
        // Responses already buffered go out before waiting on one that is not ready: otherwise a
        // pipelining producer waits for later group commits to see earlier acknowledgements.
        let response = tokio::select! {
            biased;
            response = &mut item.pending => response,
            () = std::future::ready(()) => {
                if writer.flush().await.is_err() {
                    return;
                }
                (&mut item.pending).await
            }
        };
        let Some(response) = response else { continue };
        let frame = match response {
            Response::Kind(kind) => protocol::encode(item.api_key, item.version, item.correlation_id, &kind),
            Response::RawV0(body) => Ok(protocol::frame_v0(item.correlation_id, &body)),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                tracing::error!(%error, "closing connection");
                return;
            }
        };
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        // Flush when nothing else is ready, so pipelined responses share a syscall.
        if queue.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}
