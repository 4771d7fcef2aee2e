//! One client connection: size-prefixed frames in, responses out in request order.
//!
//! The reader decodes each frame and starts its handling (appends are queued in request order right
//! there); the writer task awaits the pending responses one by one and writes them, so a connection
//! can have up to `requests_in_flight_per_connection_max` requests pipelined while answers keep
//! their order, as the Kafka protocol requires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::Instrument;

use crate::handler::{Broker, Handled, PendingResponse, Response};
use crate::metrics::Metrics;
use crate::protocol::{self, Body, ErrorCounts};
use crate::security::quota::{QuotaKind, Quotas};
use crate::security::sasl::{Authenticator, Step};
use crate::service::session::{Principal, Session};

/// The largest request an unauthenticated client may send on a SASL listener (Kafka's
/// `sasl.server.max.receive.size`): a stranger cannot make the broker buffer 100 MiB frames.
const SASL_RECEIVE_MAX_BYTES: usize = 524_288;

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("request of {0} bytes exceeds socket.request.max.bytes")]
    TooLarge(i64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the broker is shutting down")]
    Closed,
}

struct Outgoing {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    pending: PendingResponse,
    /// When the request's frame had been read, for `kafka_network_requestmetrics_total_time`.
    started: Instant,
    /// The request's share of the broker-wide request budget, released once answered.
    _budget: OwnedSemaphorePermit,
    /// Close the connection once this response is written (a failed authentication).
    close_after: bool,
    /// Until when the client's produce or request-time quota says to throttle it (the fetch
    /// quota's throttle is in the fetch response).
    throttle: Throttle,
}

/// A throttle a quota imposed, and which quota (for the metrics). It ends at an instant, not
/// after a time: a client's allowance refills from when its request was measured, so the time
/// until its response is sent counts towards the throttle.
#[derive(Clone, Copy)]
struct Throttle {
    until: Option<tokio::time::Instant>,
    quota: QuotaKind,
}

impl Throttle {
    const NONE: Throttle = Throttle { until: None, quota: QuotaKind::Request };

    /// A throttle of `time` from now (none for zero).
    fn after(time: Duration, quota: QuotaKind) -> Throttle {
        Throttle { until: (!time.is_zero()).then(|| tokio::time::Instant::now() + time), quota }
    }

    fn max(self, other: Throttle) -> Throttle {
        if other.until > self.until { other } else { self }
    }
}

/// Until when the reader must not read the next request: a throttled client's connection is
/// muted for its throttle time once its response is sent, as Kafka does (KIP-219).
type Mute = watch::Sender<Option<tokio::time::Instant>>;

/// A future and the time spent inside its `poll`: the work of a request, not its waiting, for
/// `request_percentage` quotas.
struct Busy<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Future for Busy<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += started.elapsed();
        polled.map(|output| (output, self.busy))
    }
}

/// A byte stream a client connection runs over, split into a read and a write half: TCP or TLS.
pub trait Stream: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    /// The client's address as Kafka shows it (`/127.0.0.1`).
    fn client_host(&self) -> String;
    /// The client's TLS certificate (DER), if it presented one.
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        None
    }
    fn split(self) -> (Self::Read, Self::Write);
}

impl Stream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn client_host(&self) -> String {
        self.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default()
    }

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let _ = self.set_nodelay(true);
        self.into_split()
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;

    fn client_host(&self) -> String {
        self.get_ref().0.client_host()
    }

    fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.get_ref().1.peer_certificates()?.first().map(|certificate| certificate.to_vec())
    }

    fn split(self) -> (Self::Read, Self::Write) {
        let _ = self.get_ref().0.set_nodelay(true);
        tokio::io::split(self)
    }
}

/// Serves one client on `listener` (its name: `PLAINTEXT`, `SASL_SSL`, …) until it leaves or
/// the broker shuts down. On a SASL listener the client must authenticate first: until then
/// only ApiVersions and the SASL requests are answered, anything else closes the connection.
pub async fn serve<S: Stream>(
    stream: S,
    listener: &str,
    sasl: bool,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = broker.metrics.connection_opened();
    // Anonymous until a SASL authentication names the principal; on an SSL listener, a client
    // certificate names it (`--ssl-principal-mapping-rules`), as in Kafka.
    let mut session = Session::anonymous(listener, &stream.client_host());
    if let Some(certificate) = stream.peer_certificate().filter(|_| !sasl) {
        match broker.principals.principal(&certificate) {
            Ok(name) => session.principal = Principal::user(&name),
            Err(error) => {
                tracing::warn!(%error, "closing connection");
                return;
            }
        }
    }
    let reauth_ms = broker.config.security.connections_max_reauth_ms;
    let mut authenticator =
        sasl.then(|| Authenticator::new(broker.credentials.clone(), broker.metrics.clone(), reauth_ms));
    let mut authenticated = !sasl;
    // After a SaslHandshake v0 (clients before KIP-152), the SASL tokens come and go as bare
    // frames until the authentication ends.
    let mut bare_tokens = false;
    // When the session's authentication ends (KIP-368): past it, only a re-authentication is
    // answered.
    let mut session_expires: Option<Instant> = None;
    let (read_half, write_half) = stream.split();
    let (outgoing, queue) = mpsc::channel(broker.config.network.requests_in_flight_per_connection_max);
    let (mute, mut muted) = watch::channel(None);
    let writer = tokio::spawn(write_responses(write_half, queue, broker.metrics.clone(), mute).in_current_span());
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max_bytes = broker.config.network.socket_request_max_bytes;
    let budget_kib_max = (broker.config.network.queued_request_bytes_max / 1024).max(1);
    loop {
        let until = *muted.borrow_and_update();
        if let Some(until) = until.filter(|until| *until > tokio::time::Instant::now()) {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                _ = shutdown.changed() => break,
                () = outgoing.closed() => break,
            }
        }
        let frame = tokio::select! {
            frame = read_frame(&mut reader, if authenticated { max_bytes } else { max_bytes.min(SASL_RECEIVE_MAX_BYTES) },
                &broker.request_budget, budget_kib_max) => frame,
            _ = shutdown.changed() => break,
            // The writer stopped: the connection is closed (write error, or a failed acks=0 produce).
            () = outgoing.closed() => break,
        };
        let (frame, budget) = match frame {
            Ok(Some(read)) => read,
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
        let started = Instant::now();
        if bare_tokens {
            let Some(authenticator) = authenticator.as_mut() else { break };
            let Some(token) = bare_token(authenticator, frame).await else {
                // As Kafka: a failed authentication without SaslAuthenticate gets no answer; the
                // connection closes.
                break;
            };
            if let Some(principal) = token.principal {
                session.principal = principal;
                authenticated = true;
                session_expires = token.expires;
                bare_tokens = false;
            }
            let handled = Handled { response: Response::SaslToken(token.reply), errors: ErrorCounts::default() };
            let answered = outgoing
                .send(Outgoing {
                    api_key: ApiKey::SaslAuthenticate,
                    version: 0,
                    correlation_id: 0,
                    pending: Box::pin(std::future::ready(Some(handled))),
                    started,
                    _budget: budget,
                    close_after: false,
                    throttle: Throttle::NONE,
                })
                .await;
            if answered.is_err() {
                break;
            }
            continue;
        }
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
        let (api_key, version, correlation_id) = (request.api.key, request.version, request.correlation_id);
        if request.client_id.as_deref().unwrap_or_default() != session.client_id {
            session.client_id = request.client_id.clone().unwrap_or_default();
        }
        let mut throttle = Throttle::NONE;
        if api_key == ApiKey::Produce && authenticated {
            let time = broker.quotas.record(QuotaKind::Produce, &session, frame.len() as f64);
            throttle = Throttle::after(time, QuotaKind::Produce);
        }
        let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id);
        let mut close_after = false;
        let pending = match (api_key, &request.body) {
            (ApiKey::SaslHandshake | ApiKey::SaslAuthenticate, Body::Kind(kind)) => {
                let step = authenticate(authenticator.as_mut(), kind).instrument(span).await;
                bare_tokens = api_key == ApiKey::SaslHandshake
                    && version == 0
                    && matches!(&step.response, ResponseKind::SaslHandshake(answer) if answer.error_code == 0);
                if let Some(principal) = step.principal {
                    session.principal = principal;
                    authenticated = true;
                    session_expires = step.expires;
                }
                close_after = step.close;
                let handled = Handled { response: Response::Kind(step.response), errors: ErrorCounts::default() };
                Box::pin(std::future::ready(Some(handled))) as PendingResponse
            }
            _ if !authenticated && !request.api.before_authentication => {
                // As Kafka: no data before authentication, and no answer either.
                tracing::info!(api = ?api_key, "request before SASL authentication; closing connection");
                break;
            }
            _ if session_expires.is_some_and(|expires| expires <= Instant::now())
                && !request.api.before_authentication =>
            {
                // As Kafka: a session past its lifetime that did not re-authenticate is closed.
                tracing::info!(api = ?api_key, "SASL session expired without re-authentication; closing connection");
                break;
            }
            _ if broker.quotas.enabled(QuotaKind::Request) => {
                let handling =
                    Busy { inner: Box::pin(broker.handle(request, &session).instrument(span)), busy: Duration::ZERO };
                let (pending, busy) = handling.await;
                throttle = throttle.max(request_throttle(&broker.quotas, &session, busy));
                pending
            }
            _ => broker.handle(request, &session).instrument(span).await,
        };
        if outgoing
            .send(Outgoing {
                api_key,
                version,
                correlation_id,
                pending,
                started,
                _budget: budget,
                close_after,
                throttle,
            })
            .await
            .is_err()
            || close_after
        {
            break;
        }
    }
    drop(outgoing);
    let _ = writer.await;
}

/// Records a request's handling time against the session's `request_percentage` quota (in
/// percent of one thread's second, as Kafka measures it).
fn request_throttle(quotas: &Quotas, session: &Session, busy: Duration) -> Throttle {
    let time = quotas.record(QuotaKind::Request, session, busy.as_secs_f64() * 100.0);
    Throttle::after(time, QuotaKind::Request)
}

/// SaslHandshake or SaslAuthenticate: answered by the connection's authenticator; on a listener
/// without SASL, ILLEGAL_SASL_STATE and the end of the connection, as in Kafka.
async fn authenticate(authenticator: Option<&mut Authenticator>, kind: &kafka_protocol::messages::RequestKind) -> Step {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::{RequestKind, SaslAuthenticateResponse, SaslHandshakeResponse};
    match (authenticator, kind) {
        (Some(authenticator), RequestKind::SaslHandshake(request)) => authenticator.handshake(request),
        (Some(authenticator), RequestKind::SaslAuthenticate(request)) => authenticator.authenticate(request).await,
        (_, RequestKind::SaslHandshake(_)) => Step {
            response: SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()).into(),
            close: true,
            principal: None,
            expires: None,
        },
        _ => Step {
            response: SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .into(),
            close: true,
            principal: None,
            expires: None,
        },
    }
}

/// What one bare SASL token (after a SaslHandshake v0) leads to.
struct BareToken {
    reply: Bytes,
    principal: Option<Principal>,
    expires: Option<Instant>,
}

/// A bare SASL token, through the same exchange as a SaslAuthenticate request's bytes; `None`
/// when the authentication failed.
async fn bare_token(authenticator: &mut Authenticator, token: Bytes) -> Option<BareToken> {
    use kafka_protocol::messages::SaslAuthenticateRequest;
    let step = authenticator.authenticate(&SaslAuthenticateRequest::default().with_auth_bytes(token)).await;
    match step.response {
        ResponseKind::SaslAuthenticate(answer) if answer.error_code == 0 && !step.close => {
            Some(BareToken { reply: answer.auth_bytes, principal: step.principal, expires: step.expires })
        }
        _ => None,
    }
}

/// Reads one frame, first taking its size (in KiB) from the broker-wide request budget.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max_bytes: usize,
    budget: &Arc<Semaphore>,
    budget_kib_max: usize,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, FrameError> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if size < 0 || size as usize > max_bytes {
        return Err(FrameError::TooLarge(i64::from(size)));
    }
    // A frame larger than the whole budget takes all of it, so it waits for the others.
    let kib = (size as usize).div_ceil(1024).clamp(1, budget_kib_max) as u32;
    let permit = budget.clone().acquire_many_owned(kib).await.map_err(|_| FrameError::Closed)?;
    // Read into uninitialised capacity: zeroing a large produce frame first costs a pass over it.
    let mut frame = BytesMut::with_capacity(size as usize);
    let mut limited = reader.take(size as u64);
    while frame.len() < size as usize {
        if limited.read_buf(&mut frame).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some((frame.freeze(), permit)))
}

async fn write_responses<W: AsyncWrite + Unpin>(
    write_half: W,
    mut queue: mpsc::Receiver<Outgoing>,
    metrics: Arc<Metrics>,
    mute: Mute,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(mut item) = queue.recv().await {
        // Responses already buffered go out before waiting on one that is not ready: otherwise a
        // pipelining producer waits for later group commits to see earlier acknowledgements.
        let handled = tokio::select! {
            biased;
            handled = &mut item.pending => handled,
            () = std::future::ready(()) => {
                if writer.flush().await.is_err() {
                    return;
                }
                (&mut item.pending).await
            }
        };
        let (mut response, errors) = match handled {
            Some(Handled { response, errors }) => (Some(response), errors),
            None => (None, ErrorCounts::default()),
        };
        let mut throttle = item.throttle;
        if let Some(Response::Kind(kind)) = &response {
            let fetch = Duration::from_millis(u64::try_from(protocol::throttle::throttle_time(kind)).unwrap_or(0));
            throttle = throttle.max(Throttle::after(fetch, QuotaKind::Fetch));
        }
        let now = tokio::time::Instant::now();
        let remaining = throttle.until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        // Muted from when the response is sent; a version without `throttle_time_ms` gets its
        // response late instead (Kafka before KIP-219).
        let mut mute_until = None;
        if !remaining.is_zero() {
            metrics.throttled(throttle.quota.name(), remaining.as_millis() as u64);
            let ms = i32::try_from(remaining.as_millis()).unwrap_or(i32::MAX);
            let told = match &mut response {
                Some(Response::Kind(kind)) => protocol::throttle::raise_throttle_time(kind, item.version, ms),
                _ => false,
            };
            if told || response.is_none() {
                mute_until = Some(now + remaining);
            } else if writer.flush().await.is_err() {
                return;
            } else {
                tokio::time::sleep(remaining).await;
            }
        }
        if let Some(until) = mute_until {
            mute.send_modify(|muted| *muted = Some(muted.map_or(until, |m| m.max(until))));
        }
        metrics.request_done(item.api_key, item.started.elapsed(), &errors);
        let Some(response) = response else { continue };
        let frame = match response {
            Response::Kind(kind) => protocol::encode(item.api_key, item.version, item.correlation_id, &kind),
            Response::RawV0(body) => Ok(protocol::frame_v0(item.correlation_id, &body)),
            Response::SaslToken(token) => Ok(protocol::frame_sasl_token(&token)),
            Response::Close => {
                tracing::debug!("closing connection after a failed acks=0 produce");
                break;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                tracing::error!(%error, "closing connection");
                return;
            }
        };
        // Parts of 64 KiB and more (the record sets of a fetch) bypass the buffer.
        for part in &frame.parts {
            if writer.write_all(part).await.is_err() {
                return;
            }
        }
        if item.close_after {
            let _ = writer.flush().await;
            let _ = writer.shutdown().await;
            return;
        }
        // Flush when nothing else is ready, so pipelined responses share a syscall.
        if queue.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}
