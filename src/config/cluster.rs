//! Cluster mode's settings (`--coordinator` and the broker's membership): several brokers on one
//! object store, coordinated through PostgreSQL (docs/cluster.md).

use super::ConfigError;

/// The flags as given; the flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterFlags {
    #[arg(long = "coordinator", env = "ZOMBI_COORDINATOR")]
    pub coordinator: Option<String>,
    #[arg(long = "broker-rack", env = "ZOMBI_BROKER_RACK")]
    pub rack: Option<String>,
    #[arg(long = "broker-session-timeout-ms", env = "ZOMBI_BROKER_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: u64,
    #[arg(long = "broker-heartbeat-interval-ms", env = "ZOMBI_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: u64,
}

impl ClusterFlags {
    /// Cluster mode, when `--coordinator` is given; it needs a write-ahead log.
    pub(super) fn resolve(self, with_wal: bool) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(coordinator_url) = self.coordinator else { return Ok(None) };
        let cluster = ClusterConfig {
            coordinator_url,
            rack: self.rack,
            session_timeout_ms: self.session_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        };
        cluster.validate().map_err(|(name, reason)| ConfigError::Invalid { name, reason })?;
        if !with_wal {
            let reason = "cluster mode needs --wal-store: no acknowledged record may live on one disk only";
            return Err(ConfigError::Invalid { name: "coordinator", reason: reason.into() });
        }
        Ok(Some(cluster))
    }
}

/// How this broker joins a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `--coordinator postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub coordinator_url: String,
    /// `--broker-rack` (Kafka's `broker.rack`).
    pub rack: Option<String>,
    /// `--broker-session-timeout-ms` (Kafka's `broker.session.timeout.ms`): a broker whose lease
    /// was not renewed for this long is dead to the controller.
    pub session_timeout_ms: u64,
    /// `--broker-heartbeat-interval-ms` (Kafka's `broker.heartbeat.interval.ms`).
    pub heartbeat_interval_ms: u64,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("coordinator_url", &redact(&self.coordinator_url))
            .field("rack", &self.rack)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .finish()
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url = &self.coordinator_url;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(("coordinator", format!("{}: expected postgres://USER:PASSWORD@HOST:PORT/DB", redact(url))));
        }
        if self.heartbeat_interval_ms == 0 || self.session_timeout_ms < 2 * self.heartbeat_interval_ms {
            let reason = "the session timeout must be at least twice the heartbeat interval".to_string();
            return Err(("broker-session-timeout-ms", reason));
        }
        Ok(())
    }

    /// The coordinator's URL without its password, for logs and views.
    pub fn coordinator_shown(&self) -> String {
        redact(&self.coordinator_url)
    }
}

/// `scheme://user:password@host/…` with the password shown as `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let Some((credentials, host)) = authority.rsplit_once('@') else { return url.to_string() };
    let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
    let path = redact_query_password(path);
    if credentials.contains(':') {
        format!("{scheme}://{user}:***@{host}{path}")
    } else {
        format!("{scheme}://{user}@{host}{path}")
    }
}

fn redact_query_password(path: &str) -> String {
    let Some((before, query)) = path.split_once('?') else { return path.to_string() };
    let parts: Vec<String> = query
        .split('&')
        .map(|part| if part.starts_with("password=") { "password=***".to_string() } else { part.to_string() })
        .collect();
    format!("{before}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://zombi:s3cr3t@db:5432/zombi"), "postgres://zombi:***@db:5432/zombi");
        assert_eq!(redact("postgres://u@h/db?password=p&x=1"), "postgres://u@h/db?password=***&x=1");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        let config = ClusterConfig {
            coordinator_url: "postgres://a:hidden@h/d".into(),
            rack: None,
            session_timeout_ms: 9000,
            heartbeat_interval_ms: 2000,
        };
        assert!(!format!("{config:?}").contains("hidden"));
        assert!(config.validate().is_ok());
        let bad = ClusterConfig { coordinator_url: "mysql://a:hidden@h/d".into(), ..config.clone() };
        assert!(bad.validate().is_err_and(|(_, reason)| !reason.contains("hidden")));
        let slow = ClusterConfig { heartbeat_interval_ms: 5000, ..config };
        assert!(slow.validate().is_err());
    }
}
