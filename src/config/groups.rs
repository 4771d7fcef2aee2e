//! Consumer groups: the group protocol's limits and delays (Kafka's `group.*` broker configs) and
//! how long committed offsets are kept; and the transaction coordinator's timeouts (Kafka's
//! `transaction.*` broker configs).

/// The flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Consumer groups")]
pub struct GroupConfig {
    #[arg(long = "group-initial-rebalance-delay-ms", env = "ZOMBI_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub initial_rebalance_delay_ms: u64,
    #[arg(long = "group-min-session-timeout-ms", env = "ZOMBI_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub min_session_timeout_ms: i32,
    #[arg(long = "group-max-session-timeout-ms", env = "ZOMBI_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub max_session_timeout_ms: i32,
    #[arg(long = "offsets-retention-minutes", env = "ZOMBI_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: i64,
    #[arg(long = "transaction-max-timeout-ms", env = "ZOMBI_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: i32,
    #[arg(long = "transactional-id-expiration-ms", env = "ZOMBI_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: i64,
    #[arg(
        long = "transaction-abort-timed-out-transaction-cleanup-interval-ms",
        env = "ZOMBI_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// Members a group may have (Kafka's `group.max.size`).
    #[arg(skip = 1000_usize)]
    pub members_max: usize,
    /// How often committed offsets are checked for expiry (Kafka's
    /// `offsets.retention.check.interval.ms`); group sessions and rebalances have exact timers.
    #[arg(skip = 600_000_u64)]
    pub offsets_retention_check_interval_ms: u64,
}

impl GroupConfig {
    /// `offsets.retention.minutes` in milliseconds (negative: offsets never expire).
    pub fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_minutes.saturating_mul(60_000)
    }
}
