//! Network: the Kafka listener, client connections and the limits of one request.

use std::net::SocketAddr;

/// Requests read ahead on one connection while earlier ones are being answered. With a
/// write-ahead log a produce waits up to `--wal-interval-ms` for its object, so a client
/// pipelining small requests needs many in flight to keep its rate; memory stays bounded by
/// `queued_request_bytes_max`, which every pending request holds a share of.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 64;
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_WITH_WAL: usize = 1024;

/// The flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Network")]
pub struct NetworkConfig {
    #[arg(long = "kafka-listen", env = "ZOMBI_KAFKA_LISTEN")]
    pub kafka_listen: SocketAddr,
    #[arg(long = "connections-max", env = "ZOMBI_CONNECTIONS_MAX")]
    pub connections_max: usize,
    /// Kafka's `socket.request.max.bytes`: the largest request frame.
    #[arg(long = "socket-request-max-bytes", env = "ZOMBI_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: usize,
    /// Bytes of requests read but not yet answered, over all connections (Kafka's
    /// `queued.max.request.bytes`): bounds the memory a burst of large produce requests can take.
    /// Its share of `--memory-max-bytes` (`Config::resolve`).
    #[arg(skip)]
    pub queued_request_bytes_max: usize,
    /// See `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX`.
    #[arg(skip = REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX)]
    pub requests_in_flight_per_connection_max: usize,
    /// Kafka's `quota.window.num`: the samples a client's rate is measured over.
    #[arg(long = "quota-window-num", env = "ZOMBI_QUOTA_WINDOW_NUM")]
    pub quota_window_num: u32,
    /// Kafka's `quota.window.size.seconds`: the time each sample covers.
    #[arg(long = "quota-window-size-seconds", env = "ZOMBI_QUOTA_WINDOW_SIZE_SECONDS")]
    pub quota_window_size_seconds: u32,
    /// Longest time a Fetch may wait (caps the client's max_wait_ms).
    #[arg(skip = 30_000_u64)]
    pub fetch_wait_ms_max: u64,
    /// Largest fetch response (Kafka's `fetch.max.bytes`, 55 MiB), whatever the client asks for.
    #[arg(skip = 55 * 1024 * 1024_usize)]
    pub fetch_bytes_max: usize,
}
