//! HTTP: the listener of the console, `/metrics` and the events API, and its limits.

use std::net::SocketAddr;

/// The flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpConfig {
    #[arg(long = "http-listen", env = "ZOMBI_HTTP_LISTEN")]
    pub listen: SocketAddr,
    /// Largest HTTP request body (413 above it).
    #[arg(long = "http-request-max-bytes", env = "ZOMBI_HTTP_REQUEST_MAX_BYTES")]
    pub request_bytes_max: usize,
    /// Most HTTP connections served at once (more are answered 503 and closed).
    #[arg(id = "http_connections_max", long = "http-connections-max", env = "ZOMBI_HTTP_CONNECTIONS_MAX")]
    pub connections_max: usize,
    /// Time to receive a request's header, from when the server starts waiting for it.
    #[arg(long = "http-header-read-timeout-ms", env = "ZOMBI_HTTP_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: u64,
    /// Time without a byte read or written after which an HTTP connection is closed.
    #[arg(long = "http-idle-timeout-ms", env = "ZOMBI_HTTP_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: u64,
    /// `--http-auth` as given: `none` or `basic` (docs/security.md); `bearer` and `any` wait
    /// for OAUTHBEARER. Without it, `basic` when an authorizer is on, else `none` (see `auth`).
    #[arg(id = "http_auth", long = "http-auth", env = "ZOMBI_HTTP_AUTH")]
    pub auth_flag: Option<String>,
    /// `--http-metrics-auth`: `/metrics` needs the authentication of `--http-auth` (and, with an
    /// authorizer, DESCRIBE on the cluster) instead of being open to scrapers.
    #[arg(
        long = "http-metrics-auth",
        env = "ZOMBI_HTTP_METRICS_AUTH",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub metrics_auth: bool,
    /// `--http-tls`: the HTTP listener serves HTTPS with the certificate of `--ssl-cert-file`
    /// (and asks for client certificates as `--ssl-client-auth` says).
    #[arg(
        long = "http-tls",
        env = "ZOMBI_HTTP_TLS",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub tls: bool,
    /// The resolved `--http-auth`.
    #[arg(skip = String::from("none"))]
    pub auth: String,
    /// Most records one `GET /events/{topic}` returns.
    #[arg(skip = 1000_usize)]
    pub read_records_max: usize,
    /// Most batch bytes one `GET /events/{topic}` reads from the log.
    #[arg(skip = 4 * 1024 * 1024_usize)]
    pub read_bytes_max: usize,
}
