//! Prometheus metrics, named as Kafka's JMX exporter names them (see docs/metrics.md).
//!
//! Counters and histograms are updated on the request path through handles resolved ahead of time
//! (one per Kafka API at startup, one per topic cached on the topic itself), so recording takes no
//! shared lock: an atomic add, or one API's own histogram mutex. Gauges that mirror state the broker
//! already keeps (offsets, lag, process) are read at scrape time by collectors instead of being
//! updated on every change. Each subsystem registers its own collector (`log::metrics`,
//! `coordinator::group::metrics`, `unified::metrics`, `iceberg::metrics`) through
//! [`Metrics::register_collector`]; this module knows none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::encoding::{MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::protocol::ErrorCounts;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    request: String,
    error: String,
}

/// Labels of a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// One topic's traffic counters (Kafka's `BrokerTopicMetrics`), cached on the topic.
#[derive(Clone, Debug)]
pub struct TopicMetrics {
    bytes_in: Counter,
    messages_in: Counter,
    bytes_out: Counter,
    messages_out: Counter,
}

impl TopicMetrics {
    /// Record batches appended to the log (after they are durable).
    pub fn appended(&self, bytes: usize, records: u64) {
        self.bytes_in.inc_by(bytes as u64);
        self.messages_in.inc_by(records);
    }

    /// Record batches handed to a consumer (Kafka fetch or the HTTP read).
    pub fn fetched(&self, bytes: usize, records: u64) {
        self.bytes_out.inc_by(bytes as u64);
        self.messages_out.inc_by(records);
    }
}

#[derive(Clone, Debug)]
struct ApiMetrics {
    name: String,
    requests: Counter,
    total_time: LatencyHistogram,
}

/// Every metric of one broker.
pub struct Metrics {
    registry: Mutex<Registry>,
    bytes_in: Family<TopicLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    messages_out: Family<TopicLabels, Counter>,
    /// Indexed by API key; built once, read without locks.
    apis: Vec<Option<ApiMetrics>>,
    errors: Family<ErrorLabels, Counter>,
    connections: Gauge,
    connections_created: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_connections: Gauge,
    http_connections_refused: Counter,
    http_connections_timed_out: Family<TimeoutLabels, Counter>,
    authentications: Family<AuthenticationLabels, Counter>,
    throttled: Family<QuotaLabels, Counter>,
    throttle_ms: Family<QuotaLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthenticationLabels {
    mechanism: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    timeout: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let messages_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let messages_out = Family::<TopicLabels, Counter>::default();
        registry.register(
            "kafka_server_brokertopicmetrics_bytes_in",
            "Bytes of record batches appended, per topic",
            bytes_in.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_messages_in",
            "Records appended, per topic",
            messages_in.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_bytes_out",
            "Bytes of record batches sent to consumers, per topic",
            bytes_out.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_messages_out",
            "Records in batches sent to consumers, per topic (whole batches are counted)",
            messages_out.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let total_time = Family::<RequestLabels, LatencyHistogram>::default();
        registry.register(
            "kafka_network_requestmetrics_requests",
            "Kafka requests answered, per API",
            requests.clone(),
        );
        registry.register_with_unit(
            "kafka_network_requestmetrics_total_time",
            "Time from a request's arrival to its response being written, per API",
            Unit::Seconds,
            total_time.clone(),
        );
        let mut apis: Vec<Option<ApiMetrics>> = vec![None; usize::from(u8::MAX) + 1];
        for api in &crate::protocol::apis::APIS {
            let labels = RequestLabels { request: format!("{:?}", api.key) };
            let metrics = ApiMetrics {
                name: labels.request.clone(),
                requests: requests.get_or_create_owned(&labels),
                total_time: total_time.get_or_create_owned(&labels),
            };
            if let Some(slot) = apis.get_mut(api.key as usize) {
                *slot = Some(metrics);
            }
        }
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "kafka_network_requestmetrics_errors",
            "Error codes in Kafka responses (top-level and per partition), per API and error",
            errors.clone(),
        );
        let connections = Gauge::default();
        let connections_created = Counter::default();
        registry.register(
            "kafka_server_socketservermetrics_connection_count",
            "Open Kafka client connections",
            connections.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_connection_creation",
            "Kafka client connections accepted",
            connections_created.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("zombi_http_requests", "HTTP requests answered, per route and status", http_requests.clone());
        let http_connections = Gauge::default();
        let http_connections_refused = Counter::default();
        let http_connections_timed_out = Family::<TimeoutLabels, Counter>::default();
        registry.register("zombi_http_connection_count", "Open HTTP connections", http_connections.clone());
        registry.register(
            "zombi_http_connections_refused",
            "HTTP connections answered 503 and closed because --http-connections-max were open",
            http_connections_refused.clone(),
        );
        registry.register(
            "zombi_http_connections_timed_out",
            "HTTP connections closed by a timeout: header_read (no whole request header in time) or idle",
            http_connections_timed_out.clone(),
        );
        let authentications = Family::<AuthenticationLabels, Counter>::default();
        registry.register(
            "zombi_sasl_authentications",
            "SASL authentications on the Kafka listeners, per mechanism and result (success or failure)",
            authentications.clone(),
        );
        let throttled = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "zombi_quota_throttled_responses",
            "Responses throttled by a client quota, per quota (produce, fetch, request)",
            throttled.clone(),
        );
        let throttle_ms = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "zombi_quota_throttle_time_ms",
            "Milliseconds clients were throttled for by their quotas, per quota (produce, fetch, request)",
            throttle_ms.clone(),
        );
        for timeout in [HTTP_TIMEOUT_HEADER_READ, HTTP_TIMEOUT_IDLE] {
            let _ = http_connections_timed_out.get_or_create_owned(&TimeoutLabels { timeout });
        }
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry: Mutex::new(registry),
            bytes_in,
            messages_in,
            bytes_out,
            messages_out,
            apis,
            errors,
            connections,
            connections_created,
            http_requests,
            http_connections,
            http_connections_refused,
            http_connections_timed_out,
            authentications,
            throttled,
            throttle_ms,
        }
    }

    /// The counters of one topic; callers cache the result (see `Topic::metrics`).
    pub fn topic(&self, name: &str) -> TopicMetrics {
        let labels = TopicLabels { topic: name.to_string() };
        TopicMetrics {
            bytes_in: self.bytes_in.get_or_create_owned(&labels),
            messages_in: self.messages_in.get_or_create_owned(&labels),
            bytes_out: self.bytes_out.get_or_create_owned(&labels),
            messages_out: self.messages_out.get_or_create_owned(&labels),
        }
    }

    /// One Kafka request answered after `elapsed`, with the error codes its handler counted in
    /// the response.
    pub fn request_done(&self, api_key: ApiKey, elapsed: Duration, errors: &ErrorCounts) {
        let Some(Some(api)) = self.apis.get(api_key as usize) else { return };
        api.requests.inc();
        api.total_time.observe(elapsed);
        for (code, count) in errors.iter() {
            if let Some(error) = ResponseError::try_from_code(code) {
                let labels = ErrorLabels { request: api.name.clone(), error: kafka_error_name(&error) };
                self.errors.get_or_create(&labels).inc_by(count);
            }
        }
    }

    /// A Kafka connection opened; the guard counts it closed when dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.inc();
        self.connections_created.inc();
        ConnectionGuard { metrics: self.clone() }
    }

    /// An HTTP connection is being served; the guard counts it closed when dropped.
    pub fn http_connection_opened(self: &Arc<Self>) -> HttpConnectionGuard {
        self.http_connections.inc();
        HttpConnectionGuard { metrics: self.clone() }
    }

    /// An HTTP connection over the limit, answered 503.
    /// A SASL authentication ended (`success` or `failure`).
    pub fn authenticated(&self, mechanism: &'static str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.authentications.get_or_create(&AuthenticationLabels { mechanism, result }).inc();
    }

    /// A response throttled for `ms` by the client's `quota` (`produce`, `fetch`, `request`).
    pub fn throttled(&self, quota: &'static str, ms: u64) {
        let labels = QuotaLabels { quota };
        self.throttled.get_or_create(&labels).inc();
        self.throttle_ms.get_or_create(&labels).inc_by(ms);
    }

    pub fn http_connection_refused(&self) {
        self.http_connections_refused.inc();
    }

    /// An HTTP connection closed by `timeout` ([`HTTP_TIMEOUT_HEADER_READ`] or [`HTTP_TIMEOUT_IDLE`]).
    pub fn http_connection_timed_out(&self, timeout: &'static str) {
        self.http_connections_timed_out.get_or_create(&TimeoutLabels { timeout }).inc();
    }

    pub fn http_request(&self, route: &str, status: u16) {
        self.http_requests.get_or_create(&HttpLabels { route: route.to_string(), status }).inc();
    }

    /// Registers a gauge family with `topic` and `partition` labels, for a later stage to set
    /// (for example `zombi_iceberg_committed_offset`); returns the handle to update.
    pub fn partition_gauges(&self, name: &str, help: &str) -> Family<PartitionLabels, Gauge> {
        let family = Family::<PartitionLabels, Gauge>::default();
        self.registry.lock().register(name, help, family.clone());
        family
    }

    /// Registers a collector that is asked for its series on every scrape.
    pub fn register_collector(&self, collector: impl ScrapeCollector) {
        self.registry.lock().register_collector(Box::new(Registered(collector)));
    }

    /// Everything, in the OpenMetrics text format. Collectors read the log and the coordinator
    /// and `/proc`, so call this off the async runtime.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let registry = self.registry.lock();
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// Upper bounds of the latency buckets: 0.25 ms doubling up to 32.8 s (a Fetch long poll waits
/// up to 30 s).
const LATENCY_BUCKETS_SECONDS: [f64; 18] = {
    let mut bounds = [0.000_25; 18];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// A latency histogram of atomics: observing is two relaxed adds, with no lock, so every
/// connection can record into the same API's histogram without contending on a mutex (the
/// crate's `Histogram` takes one per observation).
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    inner: Arc<LatencyCounts>,
}

#[derive(Debug, Default)]
struct LatencyCounts {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket =
            LATENCY_BUCKETS_SECONDS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = &self.inner;
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&counts.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        // Read apart from the buckets, so a scrape may see an observation in one and not yet the
        // other; each is exact on the next scrape.
        let sum = counts.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let count = buckets.iter().map(|(_, count)| count).sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

/// Keeps an HTTP connection counted as open.
pub struct HttpConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for HttpConnectionGuard {
    fn drop(&mut self) {
        self.metrics.http_connections.dec();
    }
}

/// Label values of `zombi_http_connections_timed_out_total`.
pub const HTTP_TIMEOUT_HEADER_READ: &str = "header_read";
pub const HTTP_TIMEOUT_IDLE: &str = "idle";

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`, Kafka's own spelling.
fn kafka_error_name(error: &ResponseError) -> String {
    let camel = match error {
        ResponseError::Unknown(code) => return format!("UNKNOWN_{code}"),
        known => known.to_string(),
    };
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Writes one metric family with its name and help (for the subsystems' collectors).
pub fn encode_metric(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// What a subsystem reads when `/metrics` is scraped: prometheus-client's `Collector` without
/// its `Debug` bound, which `Registered` meets once for every collector.
pub trait ScrapeCollector: Send + Sync + 'static {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error>;
}

/// A registered collector, shown by its type's name (it holds handles to whole subsystems).
struct Registered<C>(C);

impl<C> std::fmt::Debug for Registered<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<C>())
    }
}

impl<C: ScrapeCollector> Collector for Registered<C> {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The process's CPU time, memory and file descriptors from `/proc/self` (Linux only; elsewhere
/// nothing is reported).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else { return Ok(()) };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let rss = ConstGauge::new(stats.resident_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            rss.metric_type(),
        )?)?;
        let fds = ConstGauge::new(stats.open_fds);
        fds.encode(encoder.encode_descriptor("process_open_fds", "Open file descriptors", None, fds.metric_type())?)?;
        let start = ConstGauge::new(stats.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
    start_time_seconds: f64,
}

impl ProcessStats {
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1);
        // `fields[0]` is field 3 (state) of proc(5): utime is 14, stime 15, starttime 22, rss 24.
        let number = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = (number(14)? + number(15)?) / ticks;
        let resident_bytes = number(24)? as i64 * page_bytes;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0);
        let boot_seconds = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|line| line.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok()))
        });
        let start_time_seconds = boot_seconds.map_or(0.0, |boot| boot + number(22).unwrap_or(0.0) / ticks);
        Some(ProcessStats { cpu_seconds, resident_bytes, open_fds, start_time_seconds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(kafka_error_name(&ResponseError::UnknownTopicOrPartition), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error_name(&ResponseError::Unknown(999)), "UNKNOWN_999");
    }

    #[test]
    fn requests_and_errors_are_counted_per_api() {
        let metrics = Metrics::new();
        let mut errors = ErrorCounts::default();
        errors.add(ResponseError::CorruptMessage.code());
        metrics.request_done(ApiKey::Produce, Duration::from_millis(3), &errors);
        metrics.topic("t").appended(100, 4);
        let text = metrics.encode().expect("encodes");
        assert!(text.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 1"), "{text}");
        assert!(
            text.contains("kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"CORRUPT_MESSAGE\"} 1"),
            "{text}"
        );
        assert!(text.contains("kafka_network_requestmetrics_total_time_seconds_count{request=\"Produce\"} 1"));
        let bucket = |le: &str| {
            format!("kafka_network_requestmetrics_total_time_seconds_bucket{{le=\"{le}\",request=\"Produce\"}}")
        };
        assert!(text.contains(&format!("{} 0\n", bucket("0.002"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.004"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("+Inf"))), "{text}");
        assert!(
            text.contains("kafka_network_requestmetrics_total_time_seconds_sum{request=\"Produce\"} 0.003\n"),
            "{text}"
        );
        assert!(text.contains("kafka_server_brokertopicmetrics_bytes_in_total{topic=\"t\"} 100"));
        assert!(text.contains("kafka_server_brokertopicmetrics_messages_in_total{topic=\"t\"} 4"));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn partition_gauges_plug_in_later() {
        let metrics = Metrics::new();
        let gauges = metrics.partition_gauges("zombi_iceberg_committed_offset", "test hook");
        gauges.get_or_create(&PartitionLabels { topic: "t".into(), partition: 2 }).set(7);
        let text = metrics.encode().expect("encodes");
        assert!(text.contains("zombi_iceberg_committed_offset{topic=\"t\",partition=\"2\"} 7"), "{text}");
    }
}
