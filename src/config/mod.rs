//! Every setting and limit of the broker, with units in the names, one section per subsystem.
//!
//! Precedence: command-line flag, then `ZOMBI_*` environment variable, then the optional TOML file
//! given by `--config`, then the default: clap applies all four, the file's values entering as
//! the flags' defaults.
//!
//! `definitions.rs` is the one table of config definitions: every flag's help, default and TOML
//! keys, the validation of every value, and what DescribeConfigs says of the broker's configs.
//! Each section is a struct of flags (`#[command(flatten)]` into `Settings`); where nothing needs
//! resolving the flags are the section (`NetworkConfig`, `LogConfig`, `GroupConfig`,
//! `HttpConfig`), else a `…Flags` struct resolves into it (`TierConfig`, `IcebergSettings`,
//! `WalConfig`, `ClusterConfig`). Adding a section: a file with its struct, a field in `Settings`
//! and in `Config`, a line in `Config::resolve`, and its rows in `definitions.rs`.
//!
//! This module imports nothing else of the crate: every subsystem takes its settings from here.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};

pub mod cluster;
pub mod definitions;
mod groups;
mod http;
pub mod iceberg;
mod log;
mod network;
pub mod security;
mod storage;
mod tier;
pub mod wal;

pub use self::iceberg::{IcebergFlags, IcebergSettings};
pub use cluster::{ClusterConfig, ClusterFlags};
pub use groups::GroupConfig;
pub use http::HttpConfig;
pub use log::{Durability, LogConfig, PARTITIONS_PER_TOPIC_MAX};
pub use network::NetworkConfig;
pub use security::{
    Case, ClientAuth, JwksSource, Listener, OAuthBearerConfig, PrincipalRule, SecurityConfig, SecurityFlags,
    SecurityProtocol,
};
pub use storage::{Location, S3Options};
pub use tier::{TierConfig, TierFlags};
pub use wal::{WalConfig, WalFlags};

/// Who this broker is. The flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Broker")]
pub struct BrokerFlags {
    #[arg(long = "data-dir", env = "ZOMBI_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long = "node-id", env = "ZOMBI_NODE_ID")]
    pub node_id: i32,
    #[arg(long = "cluster-id", env = "ZOMBI_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    #[arg(long = "kafka-advertised", env = "ZOMBI_KAFKA_ADVERTISED")]
    pub kafka_advertised: Option<String>,
    #[arg(long = "log-format", env = "ZOMBI_LOG_FORMAT")]
    pub log_format: String,
    #[arg(long = "memory-max-bytes", env = "ZOMBI_MEMORY_MAX_BYTES")]
    pub memory_max_bytes: usize,
}

/// The flags, by section, as clap and the file gave them.
#[derive(Debug, clap::Parser)]
#[command(name = "zombi", version, about = "Kafka-compatible broker with a RocksDB hot tier")]
pub struct Settings {
    /// Optional TOML file with the same settings (keys: the flags' names, Kafka's where README says so).
    #[arg(long, env = "ZOMBI_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub network: NetworkConfig,
    #[command(flatten)]
    pub log: LogConfig,
    #[command(flatten)]
    pub tier: TierFlags,
    #[command(flatten)]
    pub groups: GroupConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub iceberg: IcebergFlags,
    #[command(flatten)]
    pub wal: WalFlags,
    #[command(flatten)]
    pub cluster: ClusterFlags,
    #[command(flatten)]
    pub security: SecurityFlags,
}

/// The resolved configuration: who this broker is, then one section per subsystem.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub node_id: i32,
    pub cluster_id: Option<String>,
    pub kafka_advertised_host: String,
    pub kafka_advertised_port: i32,
    /// Whether the advertised address was given (else it follows the bound listener).
    pub kafka_advertised_explicit: bool,
    pub log_format: String,
    /// `--memory-max-bytes`: the budget `resolve` shares out (see `MemoryBudget`).
    pub memory_max_bytes: usize,
    pub network: NetworkConfig,
    pub log: LogConfig,
    pub tier: TierConfig,
    pub groups: GroupConfig,
    pub http: HttpConfig,
    pub iceberg: IcebergSettings,
    /// The shared write-ahead log, when `--wal-store` is given.
    pub wal: Option<WalConfig>,
    /// Cluster mode, when `--coordinator` is given.
    pub coordinator: Option<ClusterConfig>,
    /// Listeners, TLS and SASL. `kafka_advertised_*` are the first listener's.
    pub security: SecurityConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, `--help` and `--version`: `from_args` prints it and exits, as clap does.
    #[error(transparent)]
    Flags(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads flags, environment and the TOML file they name, and resolves defaults. Bad flags,
    /// `--help` and `--version` print clap's text and exit here.
    pub fn from_args() -> Result<Self, ConfigError> {
        match Self::try_parse_from(std::env::args_os()) {
            Err(ConfigError::Flags(error)) => error.exit(),
            other => other,
        }
    }

    /// As `from_args`, with the command line given (the first item is the program's name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let (cli, matches) = matches_from(args)?;
        validate_settings(&cli, &matches)?;
        Self::resolve(Settings::from_arg_matches(&matches)?)
    }

    /// The defaults with `data_dir` and `durability` (tests and benchmarks).
    pub fn for_tests(data_dir: &std::path::Path, durability: Durability) -> Result<Self, ConfigError> {
        let durability = match durability {
            Durability::Fsync => "fsync",
            Durability::Periodic => "periodic",
        };
        let data_dir = data_dir.as_os_str().to_os_string();
        Self::try_parse_from([
            OsString::from("zombi"),
            "--data-dir".into(),
            data_dir,
            "--durability".into(),
            durability.into(),
        ])
    }

    /// Resolves what depends on several sections and checks what spans them.
    fn resolve(settings: Settings) -> Result<Self, ConfigError> {
        let Settings {
            config: _,
            broker,
            mut network,
            mut log,
            tier,
            groups,
            mut http,
            iceberg,
            wal,
            cluster,
            security,
        } = settings;
        let kafka_advertised_explicit = broker.kafka_advertised.is_some();
        let (kafka_advertised_host, kafka_advertised_port) =
            advertised_address(network.kafka_listen, broker.kafka_advertised)?;
        let security = security
            .resolve(network.kafka_listen, (kafka_advertised_host, kafka_advertised_port, kafka_advertised_explicit))?;
        if matches!(http.auth_flag.as_deref(), Some("bearer" | "any")) && security.oauthbearer.is_none() {
            let reason = "bearer tokens need --oauthbearer-jwks-file";
            return Err(ConfigError::Invalid { name: "http-auth", reason: reason.into() });
        }
        if http.tls && (security.ssl_cert_file.is_none() || security.ssl_key_file.is_none()) {
            let reason = "HTTPS needs --ssl-cert-file and --ssl-key-file";
            return Err(ConfigError::Invalid { name: "http-tls", reason: reason.into() });
        }
        // With ACLs on, the HTTP door asks who is calling unless told otherwise.
        http.auth = match &http.auth_flag {
            Some(auth) => auth.clone(),
            None if security.acls => "basic".to_string(),
            None => "none".to_string(),
        };
        // The first listener is the one the single-listener code paths (cluster registration,
        // DescribeConfigs) name.
        let first = security.listeners[0].clone();
        network.kafka_listen = first.bind;
        let (kafka_advertised_host, kafka_advertised_port, kafka_advertised_explicit) =
            (first.advertised_host, first.advertised_port, first.advertised_explicit);
        let budget = MemoryBudget::of(broker.memory_max_bytes);
        let tier = tier.resolve(&broker.data_dir, &budget)?;
        network.queued_request_bytes_max = budget.queued_requests;
        log.memtables_total_bytes = budget.memtables;
        log.memtable_bytes = budget.memtables / log.memtables_max.max(1) as usize;
        log.block_cache_bytes = budget.block_cache;
        log.group_commit_bytes_max = log.group_commit_bytes_max.min(budget.queued_requests / 2);
        let wal = wal.resolve()?;
        let coordinator = cluster.resolve(wal.is_some())?;
        // Brokers forward HTTP requests to each other over the inter-broker listener: over TLS
        // they present this broker's certificate, over SASL they authenticate as
        // `--inter-broker-sasl-username`.
        if coordinator.is_some() {
            let inter_broker = security.inter_broker();
            if inter_broker.protocol.sasl() && security.inter_broker_sasl.is_none() {
                if security.inter_broker_sasl_mechanism == "OAUTHBEARER" {
                    let reason = format!(
                        "brokers reach each other on {} with OAUTHBEARER: give them a token with --oauthbearer-token-endpoint-url file:///PATH",
                        inter_broker.name
                    );
                    return Err(ConfigError::Invalid { name: "oauthbearer-token-endpoint-url", reason });
                }
                let reason = format!(
                    "brokers reach each other on {}, a SASL listener: give them a user with --inter-broker-sasl-username (and its password in {}), or name a PLAINTEXT or SSL listener with --inter-broker-listener-name",
                    inter_broker.name,
                    security::INTER_BROKER_SASL_PASSWORD_ENV
                );
                return Err(ConfigError::Invalid { name: "inter-broker-sasl-username", reason });
            }
            if inter_broker.protocol.tls() && security.ssl_ca_file.is_none() {
                let reason =
                    "an SSL inter-broker listener needs --ssl-ca-file, to check the other brokers' certificates";
                return Err(ConfigError::Invalid { name: "ssl-ca-file", reason: reason.into() });
            }
        }
        let coordinator_url = coordinator.as_ref().map(|cluster| cluster.coordinator_url.as_str());
        let iceberg =
            IcebergSettings::resolve(&broker.data_dir, iceberg, &tier.object_store, &tier.s3, coordinator_url)
                .map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
        log.validate()?;
        if wal.is_some() {
            network.requests_in_flight_per_connection_max = network::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_WITH_WAL;
        }
        Ok(Config {
            data_dir: broker.data_dir,
            node_id: broker.node_id,
            cluster_id: broker.cluster_id,
            kafka_advertised_host,
            kafka_advertised_port,
            kafka_advertised_explicit,
            log_format: broker.log_format,
            memory_max_bytes: broker.memory_max_bytes,
            network,
            log,
            tier,
            groups,
            http,
            iceberg,
            wal,
            coordinator,
            security,
        })
    }
}

/// How `--memory-max-bytes` is shared out among the buffers that grow with load. Requests are
/// held twice until their group commit (as read, and as validated batches), so these shares add
/// up to the whole budget; the process itself (code, runtime, metadata, fetch responses on their
/// way out) comes on top, some 40 MiB at rest (docs/performance.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// RocksDB memtables of every column family together (three eighths).
    pub memtables: usize,
    /// RocksDB block cache (an eighth).
    pub block_cache: usize,
    /// Requests read but not answered, over all connections (an eighth; Kafka's
    /// `queued.max.request.bytes`).
    pub queued_requests: usize,
    /// Segments read back from the object store, at most `--remote-fetch-cache-bytes` (an eighth).
    pub remote_fetch_cache: usize,
    /// Segments being uploaded (an eighth): one at a time when a segment is larger.
    pub uploads: usize,
}

impl MemoryBudget {
    pub fn of(bytes: usize) -> MemoryBudget {
        let eighth = bytes / 8;
        MemoryBudget {
            memtables: 3 * eighth,
            block_cache: eighth,
            queued_requests: eighth,
            remote_fetch_cache: eighth,
            uploads: eighth,
        }
    }
}

/// Parses the command line, then again with the values of the TOML file it names as the flags'
/// defaults (so that flags and environment still win over the file).
fn matches_from<I, T>(args: I) -> Result<(clap::Command, clap::ArgMatches), ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cli = command();
    let matches = cli.try_get_matches_from_mut(&args)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else { return Ok((cli, matches)) };
    let file = read_file(&path)?;
    let mut cli = command().mut_args(|arg| match arg.get_long().and_then(|flag| file.get(flag)) {
        Some(value) => arg.default_value(value.clone()).required(false),
        None => arg,
    });
    let matches =
        cli.try_get_matches_from_mut(&args).map_err(|error| ConfigError::Parse { path, reason: error.to_string() })?;
    Ok((cli, matches))
}

/// The command line: the flags of every section, with their help and defaults from the table.
fn command() -> clap::Command {
    definitions::annotate(Settings::command())
}

/// The TOML file as flag → value: each key is one the table gives a flag (`data-dir`, or Kafka's
/// name where its row says so), each value a string, number or boolean.
fn read_file(path: &PathBuf) -> Result<std::collections::HashMap<&'static str, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    let invalid = |reason: String| ConfigError::Parse { path: path.clone(), reason };
    let table: toml::Table = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let mut values = std::collections::HashMap::new();
    for (key, value) in table {
        let flag = definitions::flag_of_file_key(&key).ok_or_else(|| invalid(format!("unknown key `{key}`")))?;
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => {
                return Err(invalid(format!(
                    "`{key}`: expected a string, number or boolean, not {}",
                    other.type_str()
                )));
            }
        };
        values.insert(flag, value);
    }
    Ok(values)
}

/// Checks every setting's value, wherever it came from, against its row.
fn validate_settings(command: &clap::Command, matches: &clap::ArgMatches) -> Result<(), ConfigError> {
    for arg in command.get_arguments() {
        let Some(definition) = arg.get_long().and_then(definitions::setting_of) else { continue };
        let value = matches.try_get_raw(arg.get_id().as_str()).ok().flatten().and_then(|mut values| values.next());
        if let Some(value) = value {
            definition
                .valid
                .check(&value.to_string_lossy())
                .map_err(|reason| ConfigError::Invalid { name: definition.name(), reason })?;
        }
    }
    Ok(())
}

/// The advertised address defaults to the listen address, with an unspecified IP made loopback.
fn advertised_address(listen: SocketAddr, advertised: Option<String>) -> Result<(String, i32), ConfigError> {
    let Some(text) = advertised else {
        let ip = match listen.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        return Ok((ip.to_string(), i32::from(listen.port())));
    };
    let invalid = |reason: &str| ConfigError::Invalid { name: "kafka-advertised", reason: reason.to_string() };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("expected host:port"))?;
    let port: u16 = port.parse().map_err(|_| invalid("port must be a number from 1 to 65535"))?;
    if host.is_empty() || port == 0 {
        return Err(invalid("expected host:port"));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && (ip.is_unspecified() || ip.is_ipv6())
    {
        return Err(invalid("must be an IPv4 literal or a host name clients can resolve"));
    }
    Ok((host.to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests;
