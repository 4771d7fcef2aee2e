//! Forwarding to a partition's leader over the Kafka protocol, for the HTTP door: an HTTP client
//! may ask any broker, and the broker it asked produces to or reads from the leader for it, as a
//! Kafka client would (Produce v9 with acks=all, Fetch v12). The transaction coordinator's calls
//! to other brokers go the same way: markers to a partition's leader (WriteTxnMarkers v1), and a
//! leader's verification of a transactional write with the id's coordinator (AddPartitionsToTxn
//! v4, verify only).
//!
//! Calls go to the other broker's address on the inter-broker listener (over TLS with this
//! broker's certificate when that listener is SSL, after a SASL authentication as
//! `--inter-broker-sasl-username` when it is SASL), on connections kept for the next call: a
//! TLS handshake and a SCRAM exchange per call cost more than the call (docs/cluster.md). A
//! kept connection is used for one call at a time, and dropped after any error, when the peer
//! closed it (checked before each use), after `IDLE_MAX` unused, or before its SASL session
//! ends (KIP-368: the peer would close it). A call that fails on a kept connection is tried once
//! more on a new one only when sending it twice is harmless (Fetch, verification); a Produce or
//! a marker whose answer was lost is reported, as a client would see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    write_txn_markers_request,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BrokerInfo;
use crate::coordinator::txn::MarkerSpec;
use crate::log::{AppendInfo, LogError, ReadResult};

/// How a broker opens TLS to another broker's SSL listener, as itself (`security::tls`).
pub trait BrokerTls: Send + Sync + std::fmt::Debug {
    /// A connector from the current files: a renewed certificate is used at once.
    fn connector(&self) -> Result<tokio_rustls::TlsConnector, String>;
}

/// How a broker authenticates to another broker's SASL listener, as itself (`security::sasl`).
pub trait BrokerSasl: Send + Sync + std::fmt::Debug {
    /// The mechanism it names in SaslHandshake.
    fn mechanism(&self) -> &str;
    /// A new exchange, and its first token.
    fn start(&self) -> (Box<dyn SaslClientExchange>, Bytes);
}

/// One SASL exchange from the client's side.
pub trait SaslClientExchange: Send {
    /// The next token for the server's answer, or `None` once the authentication is complete.
    fn next(&mut self, answer: &[u8]) -> Result<Option<Bytes>, String>;
}

/// Produces to and reads from a partition's leader on behalf of a client of another door.
#[async_trait]
pub trait Forwarder: Send + Sync + std::fmt::Debug {
    /// Appends `records` (one or more v2 batches) to the partition, acks=all.
    async fn produce(
        &self,
        leader: &BrokerInfo,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<AppendInfo, LogError>;
    /// The listener whose addresses it connects to.
    fn listener(&self) -> &str;
    /// Connections opened to other brokers since start, and calls sent on a kept one.
    fn connections(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Reads from `offset` up to `max_bytes` (the first batch whole).
    async fn read(
        &self,
        leader: &BrokerInfo,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError>;
    /// Asks `coordinator`, which coordinates `id`, whether the producer's transaction is in
    /// progress at this epoch and holds the partition (AddPartitionsToTxn v4, verify only, as
    /// Kafka's partition leaders ask since KIP-890): the partition's error code.
    async fn verify_txn(
        &self,
        coordinator: &BrokerInfo,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<i16, LogError>;
    /// Writes a commit or abort marker for the producer in each of `partitions`, which the
    /// leader leads (WriteTxnMarkers, as Kafka's transaction coordinators send it). Each
    /// partition's result, in order.
    async fn write_markers(
        &self,
        leader: &BrokerInfo,
        marker: &MarkerSpec,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), LogError>>, LogError>;
}

/// Forwards over the Kafka protocol, on the inter-broker listener.
#[derive(Debug)]
pub struct KafkaForwarder {
    listener: String,
    /// On an SSL listener: how to connect, as this broker.
    tls: Option<Arc<dyn BrokerTls>>,
    /// On a SASL listener: how to authenticate, as this broker.
    sasl: Option<Arc<dyn BrokerSasl>>,
    pool: Pool,
}

impl KafkaForwarder {
    /// Forwards on `listener`, over TLS with `tls`, authenticating with `sasl`.
    pub fn new(listener: &str, tls: Option<Arc<dyn BrokerTls>>, sasl: Option<Arc<dyn BrokerSasl>>) -> KafkaForwarder {
        KafkaForwarder { listener: listener.to_string(), tls, sasl, pool: Pool::default() }
    }

    fn connection(&self) -> Connection<'_> {
        Connection { tls: self.tls.as_deref(), sasl: self.sasl.as_deref(), pool: &self.pool }
    }
}

/// The inter-broker connections' series, read when `/metrics` is scraped.
pub struct ForwarderCollector {
    pub forwarder: Arc<dyn Forwarder>,
}

impl crate::metrics::ScrapeCollector for ForwarderCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::Counter;
        let (opened, reused) = self.forwarder.connections();
        for (name, help, value) in [
            (
                "zombi_inter_broker_connections_opened",
                "Connections opened to other brokers (a TCP connect, and a TLS handshake and a SASL exchange when the inter-broker listener has them)",
                opened,
            ),
            ("zombi_inter_broker_connections_reused", "Calls to other brokers sent on a kept connection", reused),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            crate::metrics::encode_metric(&mut encoder, name, help, &counter)?;
        }
        Ok(())
    }
}

/// How to open a connection to another broker on the inter-broker listener, and where the
/// kept ones wait.
#[derive(Clone, Copy)]
struct Connection<'a> {
    tls: Option<&'a dyn BrokerTls>,
    sasl: Option<&'a dyn BrokerSasl>,
    pool: &'a Pool,
}

/// A connection to another broker: TCP, or TLS over TCP.
trait BrokerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> BrokerStream for S {}

/// A connection between calls.
struct Kept {
    stream: Box<dyn BrokerStream>,
    /// When it went back to the pool.
    since: Instant,
    /// Before this instant it may still be used (its SASL session's end, less a margin).
    usable_until: Option<Instant>,
}

/// Kept connections by the other broker's address.
#[derive(Default)]
struct Pool {
    idle: parking_lot::Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    kept: HashMap<(String, u16), Vec<Kept>>,
    opened: u64,
    reused: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.idle.lock();
        f.debug_struct("Pool").field("opened", &state.opened).field("reused", &state.reused).finish_non_exhaustive()
    }
}

/// A kept connection unused this long is closed (well below the idle limits brokers apply).
const IDLE_MAX: Duration = Duration::from_secs(60);
/// Connections kept per other broker at most (calls beyond run on connections of their own).
const KEPT_PER_BROKER_MAX: usize = 8;
/// A connection is not used in the last stretch of its SASL session.
const SESSION_MARGIN: Duration = Duration::from_secs(5);

impl Pool {
    /// A kept connection to `address` that is still open, if any.
    fn take(&self, address: &(String, u16)) -> Option<Kept> {
        let now = Instant::now();
        loop {
            let mut kept = self.idle.lock().kept.get_mut(address)?.pop()?;
            if now.duration_since(kept.since) >= IDLE_MAX || kept.usable_until.is_some_and(|until| now >= until) {
                continue;
            }
            // Between calls the peer sends nothing: a readable connection was closed (or broke
            // the protocol), and goes.
            let mut byte = [0u8; 1];
            if futures::FutureExt::now_or_never(kept.stream.read(&mut byte)).is_none() {
                self.idle.lock().reused += 1;
                return Some(kept);
            }
        }
    }

    fn give_back(&self, address: (String, u16), mut kept: Kept) {
        kept.since = Instant::now();
        let mut state = self.idle.lock();
        let now = kept.since;
        let list = state.kept.entry(address).or_default();
        list.retain(|k| now.duration_since(k.since) < IDLE_MAX);
        if list.len() < KEPT_PER_BROKER_MAX {
            list.push(kept);
        }
    }
}

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const ADD_PARTITIONS_TO_TXN_VERSION: i16 = 4;
/// How long a forwarded request may take, the leader's own wait included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer a forwarded request may bring back.
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

fn unavailable(what: impl std::fmt::Display) -> LogError {
    LogError::Remote(format!("forwarding to the partition's leader: {what}"))
}

fn code_error(code: i16) -> LogError {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::NotLeaderOrFollower) => LogError::NotLeaderOrFollower,
        Some(ResponseError::UnknownTopicOrPartition) => LogError::UnknownTopicOrPartition,
        Some(ResponseError::OffsetOutOfRange) => LogError::OffsetOutOfRange,
        Some(ResponseError::InvalidProducerEpoch) => LogError::InvalidProducerEpoch,
        Some(error) => unavailable(format!("{error:?}")),
        None => unavailable(format!("error code {code}")),
    }
}

/// Whether a call may be sent again after its connection failed without an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// It only reads (Fetch, verification): sending it twice is harmless.
    Harmless,
    /// It writes (Produce, markers): the first may have been done.
    Never,
}

/// Sends one request to `leader` (over TLS and after SASL, as `connection` says) and reads its
/// answer, on a kept connection when there is one.
async fn call<Req, Resp>(
    leader: &BrokerInfo,
    connection: Connection<'_>,
    key: ApiKey,
    version: i16,
    request: &Req,
    resend: Resend,
) -> Result<Resp, LogError>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let address = (leader.host.clone(), leader.port as u16);
    let attempt = async {
        if let Some(mut kept) = connection.pool.take(&address) {
            match exchange(&mut kept.stream, key, version, request).await {
                Ok(response) => {
                    connection.pool.give_back(address.clone(), kept);
                    return Ok(response);
                }
                Err(error) if resend == Resend::Never => return Err(error),
                Err(error) => tracing::debug!(%error, "a kept connection to another broker failed; opening a new one"),
            }
        }
        let mut kept = open(leader, connection).await?;
        let response = exchange(&mut kept.stream, key, version, request).await?;
        connection.pool.give_back(address.clone(), kept);
        Ok(response)
    };
    tokio::time::timeout(TIMEOUT, attempt).await.map_err(|_| unavailable("timed out"))?
}

/// A new connection to `leader`: TCP, TLS if the listener has it, then SASL.
async fn open(leader: &BrokerInfo, connection: Connection<'_>) -> Result<Kept, LogError> {
    let stream = TcpStream::connect((leader.host.as_str(), leader.port as u16)).await.map_err(unavailable)?;
    let _ = stream.set_nodelay(true);
    let mut stream: Box<dyn BrokerStream> = match connection.tls {
        None => Box::new(stream),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(leader.host.clone()).map_err(unavailable)?;
            Box::new(tls.connector().map_err(unavailable)?.connect(name, stream).await.map_err(unavailable)?)
        }
    };
    connection.pool.idle.lock().opened += 1;
    let opened = Instant::now();
    let lifetime = match connection.sasl {
        Some(sasl) => authenticate(&mut stream, sasl).await?,
        None => None,
    };
    let usable_until = lifetime.map(|lifetime| opened + lifetime.saturating_sub(SESSION_MARGIN));
    Ok(Kept { stream, since: opened, usable_until })
}

/// SaslHandshake v1 and SaslAuthenticate v2 until the exchange is complete; returns the
/// session's lifetime, if the peer limits it (KIP-368).
async fn authenticate<S>(stream: &mut S, sasl: &dyn BrokerSasl) -> Result<Option<Duration>, LogError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    use kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    };
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(sasl.mechanism().into()));
    let answer: SaslHandshakeResponse = exchange(stream, ApiKey::SaslHandshake, 1, &handshake).await?;
    if answer.error_code != 0 {
        return Err(unavailable(format!("SASL handshake for {}: error {}", sasl.mechanism(), answer.error_code)));
    }
    let (mut client, mut token) = sasl.start();
    loop {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let answer: SaslAuthenticateResponse = exchange(stream, ApiKey::SaslAuthenticate, 2, &request).await?;
        if answer.error_code != 0 {
            let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(unavailable(format!("SASL authentication: error {}: {message}", answer.error_code)));
        }
        match client.next(&answer.auth_bytes).map_err(unavailable)? {
            Some(next) => token = next,
            None => {
                let lifetime = u64::try_from(answer.session_lifetime_ms).ok().filter(|ms| *ms > 0);
                return Ok(lifetime.map(Duration::from_millis));
            }
        }
    }
}

async fn exchange<S, Req, Resp>(stream: &mut S, key: ApiKey, version: i16, request: &Req) -> Result<Resp, LogError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    {
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        // Distinct per call, so that an answer to another request on a kept connection (the
        // stream out of step) is refused rather than taken for this one's.
        static CORRELATION: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);
        let correlation_id = CORRELATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str("zombi-forward"));
        let mut body = BytesMut::new();
        header.encode(&mut body, Req::header_version(version)).map_err(unavailable)?;
        request.encode(&mut body, version).map_err(unavailable)?;
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        stream.write_all(&frame).await.map_err(unavailable)?;
        let size = stream.read_i32().await.map_err(unavailable)?;
        let size =
            usize::try_from(size).ok().filter(|s| *s <= RESPONSE_BYTES_MAX).ok_or_else(|| unavailable("size"))?;
        let mut answer = vec![0u8; size];
        stream.read_exact(&mut answer).await.map_err(unavailable)?;
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, Resp::header_version(version)).map_err(unavailable)?;
        if header.correlation_id != correlation_id {
            return Err(unavailable(format!(
                "an answer to request {} where {correlation_id} was due",
                header.correlation_id
            )));
        }
        let response = Resp::decode(&mut answer, version).map_err(unavailable)?;
        if answer.has_remaining() {
            return Err(unavailable("trailing bytes"));
        }
        Ok(response)
    }
}

#[async_trait]
impl Forwarder for KafkaForwarder {
    fn listener(&self) -> &str {
        &self.listener
    }

    fn connections(&self) -> (u64, u64) {
        let state = self.pool.idle.lock();
        (state.opened, state.reused)
    }

    async fn produce(
        &self,
        leader: &BrokerInfo,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<AppendInfo, LogError> {
        let data = PartitionProduceData::default().with_index(partition).with_records(Some(records));
        let topic_data = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![data]);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![topic_data]);
        let response: ProduceResponse =
            call(leader, self.connection(), ApiKey::Produce, PRODUCE_VERSION, &request, Resend::Never).await?;
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| unavailable("an empty answer"))?;
        if answer.error_code != 0 {
            return Err(code_error(answer.error_code));
        }
        Ok(AppendInfo {
            base_offset: answer.base_offset,
            log_append_time_ms: answer.log_append_time_ms,
            log_start: answer.log_start_offset,
        })
    }

    async fn read(
        &self,
        leader: &BrokerInfo,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let max_bytes = i32::try_from(max_bytes).unwrap_or(i32::MAX);
        let wanted = FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(max_bytes)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1);
        let fetch_topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![wanted]);
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_topic]);
        let response: FetchResponse =
            call(leader, self.connection(), ApiKey::Fetch, FETCH_VERSION, &request, Resend::Harmless).await?;
        if response.error_code != 0 {
            return Err(code_error(response.error_code));
        }
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| unavailable("an empty answer"))?;
        if answer.error_code != 0 {
            return Err(code_error(answer.error_code));
        }
        Ok(ReadResult {
            records: answer.records.clone().unwrap_or_default(),
            high_watermark: answer.high_watermark,
            last_stable_offset: answer.last_stable_offset,
            log_start: answer.log_start_offset,
            aborted: answer
                .aborted_transactions
                .iter()
                .flatten()
                .map(|txn| crate::log::AbortedTxn {
                    producer_id: txn.producer_id.0,
                    first_offset: txn.first_offset,
                    last_offset: -1,
                })
                .collect(),
        })
    }

    async fn verify_txn(
        &self,
        coordinator: &BrokerInfo,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<i16, LogError> {
        use kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        let transaction = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(StrBytes::from_string(id.to_string()).into())
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch)
            .with_verify_only(true)
            .with_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![partition]),
            ]);
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
        let response: AddPartitionsToTxnResponse = call(
            coordinator,
            self.connection(),
            ApiKey::AddPartitionsToTxn,
            ADD_PARTITIONS_TO_TXN_VERSION,
            &request,
            Resend::Harmless,
        )
        .await?;
        if response.error_code != 0 {
            return Ok(response.error_code);
        }
        response
            .results_by_transaction
            .iter()
            .filter(|t| t.transactional_id.as_str() == id)
            .flat_map(|t| &t.topic_results)
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| &t.results_by_partition)
            .find(|p| p.partition_index == partition)
            .map(|p| p.partition_error_code)
            .ok_or_else(|| unavailable("no answer for the partition"))
    }

    async fn write_markers(
        &self,
        leader: &BrokerInfo,
        marker: &MarkerSpec,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), LogError>>, LogError> {
        let mut topics: Vec<write_txn_markers_request::WritableTxnMarkerTopic> = Vec::new();
        for (topic, index) in partitions {
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(entry) => entry.partition_indexes.push(*index),
                None => topics.push(
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partition_indexes(vec![*index]),
                ),
            }
        }
        let request = WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(marker.producer_id.into())
                .with_producer_epoch(marker.producer_epoch)
                .with_transaction_result(marker.commit)
                .with_coordinator_epoch(marker.coordinator_epoch)
                .with_topics(topics),
        ]);
        let response: WriteTxnMarkersResponse = call(
            leader,
            self.connection(),
            ApiKey::WriteTxnMarkers,
            WRITE_TXN_MARKERS_VERSION,
            &request,
            Resend::Never,
        )
        .await?;
        let answered = response.markers.first().ok_or_else(|| unavailable("an empty answer"))?;
        Ok(partitions
            .iter()
            .map(|(topic, index)| {
                let code = answered
                    .topics
                    .iter()
                    .filter(|t| t.name.as_str() == topic)
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.partition_index == *index)
                    .map(|p| p.error_code);
                match code {
                    Some(0) => Ok(()),
                    Some(code) => Err(code_error(code)),
                    None => Err(unavailable("no answer for a partition")),
                }
            })
            .collect())
    }
}
