//! Client quotas (issue 18; docs/security.md): Kafka's `producer_byte_rate`,
//! `consumer_byte_rate` and `request_percentage` per user, client id or both, with Kafka's
//! precedence, measured and throttled as Kafka's `ClientQuotaManager` does.
//!
//! A quota entity's quotas are dynamic configs of the log, one scope per entity
//! (`quota/{"client-id":null,"user":"alice"}`, a null name being Kafka's `<default>`), so they are
//! durable and, in a cluster, shared like every dynamic config. Each broker measures and
//! enforces them on its own connections, as each Kafka broker does.
//!
//! A request that takes a client over its bound is answered with Kafka's `throttle_time_ms`,
//! the excess over the bound at the bound's rate (`Sensor`), and its connection is not read from
//! for that long (`connection`). `quota.window.num` and `quota.window.size.seconds` set the
//! burst a client may take at once, as they do in Kafka.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::log::{Log, LogError};
use crate::service::session::Session;

/// The prefix of the quota entities' scopes among the dynamic configs.
const SCOPE_PREFIX: &str = "quota/";

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// Sensors kept at most; idle ones are dropped first when there are more.
const SENSORS_MAX: usize = 10_000;

/// What a quota bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes of produce requests per second.
    Produce,
    /// Bytes of fetch responses per second.
    Fetch,
    /// Percent of one thread's time spent on the client's requests.
    Request,
}

impl QuotaKind {
    const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    pub const fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The label of the throttle metrics (Kafka's quota type names).
    pub const fn name(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A refused quota request: Kafka's error code and message.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnsupportedVersion(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

fn invalid(message: impl Into<String>) -> QuotaError {
    QuotaError::InvalidRequest(message.into())
}

/// A quota entity: a user, a client id, or a user's client id. `Some(None)` is the entity type's
/// default (`<default>`), which applies to every name that has no quota of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaEntity {
    pub user: Option<Option<String>>,
    pub client_id: Option<Option<String>>,
}

impl QuotaEntity {
    /// Checks an entity as AlterClientQuotas names it (type, name or null for the default), with
    /// Kafka's messages.
    pub fn from_parts<'a>(
        parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, QuotaError> {
        let mut entity = QuotaEntity { user: None, client_id: None };
        let mut empty = true;
        for (entity_type, name) in parts {
            empty = false;
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => return Err(invalid("zombi does not enforce ip quotas (connection_creation_rate)")),
                other => return Err(invalid(format!("Unhandled client quota entity type: {other}"))),
            };
            if slot.is_some() {
                return Err(invalid(format!(
                    "Invalid empty client quota entity, duplicate entity entry {entity_type}"
                )));
            }
            if name == Some("") {
                return Err(invalid(format!("Empty {entity_type} not supported")));
            }
            *slot = Some(name.map(str::to_string));
        }
        if empty {
            return Err(invalid("Invalid empty client quota entity"));
        }
        Ok(entity)
    }

    /// The entity's (type, name) pairs, user first.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut parts = Vec::with_capacity(2);
        if let Some(user) = &self.user {
            parts.push((USER, user.as_deref()));
        }
        if let Some(client_id) = &self.client_id {
            parts.push((CLIENT_ID, client_id.as_deref()));
        }
        parts
    }

    fn scope(&self) -> String {
        let parts: BTreeMap<&str, Option<&str>> = self.parts().into_iter().collect();
        format!("{SCOPE_PREFIX}{}", serde_json::to_string(&parts).unwrap_or_default())
    }

    fn parse(scope: &str) -> Option<QuotaEntity> {
        let parts: BTreeMap<String, Option<String>> = serde_json::from_str(scope.strip_prefix(SCOPE_PREFIX)?).ok()?;
        QuotaEntity::from_parts(parts.iter().map(|(t, n)| (t.as_str(), n.as_deref()))).ok()
    }
}

/// Checks a quota value for `key`: Kafka takes producer and consumer byte rates as whole
/// numbers, request percentages as any number. Only the quotas zombi enforces are accepted.
fn check_value(key: &str, value: f64) -> Result<(), QuotaError> {
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => {
            let epsilon = 1e-6;
            if ((value + epsilon).trunc() - value).abs() > epsilon {
                return Err(invalid(format!("Configuration {key} must be a Long value")));
            }
        }
        REQUEST_PERCENTAGE => {}
        "controller_mutation_rate" => return Err(invalid("zombi does not enforce controller_mutation_rate")),
        _ => return Err(invalid(format!("Invalid configuration key {key}"))),
    }
    if !value.is_finite() || value <= 0.0 {
        return Err(invalid(format!("Configuration {key} must be a positive number")));
    }
    Ok(())
}

/// Entities with their quotas (key → value).
pub type EntityQuotas = Vec<(QuotaEntity, BTreeMap<String, f64>)>;

/// Every entity's quotas, read at one instant.
pub fn all(log: &Log) -> EntityQuotas {
    let mut all: Vec<_> = log
        .dynamic_configs_under(SCOPE_PREFIX)
        .into_iter()
        .filter_map(|(scope, configs)| {
            let entity = QuotaEntity::parse(&scope)?;
            let values: BTreeMap<String, f64> =
                configs.into_iter().filter_map(|(k, v)| Some((k, v.parse::<f64>().ok()?))).collect();
            (!values.is_empty()).then_some((entity, values))
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Sets (`Some`) or removes (`None`) quotas of `entity`, durably unless `validate_only`. Each key
/// at most once, as Kafka requires.
pub async fn alter(
    log: &Log,
    entity: &QuotaEntity,
    ops: &[(String, Option<f64>)],
    validate_only: bool,
) -> Result<(), QuotaError> {
    let mut seen = std::collections::HashSet::new();
    for (key, value) in ops {
        if !seen.insert(key.as_str()) {
            return Err(invalid(format!("Duplicate quota key {key} not updating quota for this entity")));
        }
        if let Some(value) = value {
            check_value(key, *value)?;
        }
    }
    if validate_only {
        return Ok(());
    }
    let scope = entity.scope();
    let mut configs = log.dynamic_configs(&scope);
    let before = configs.clone();
    for (key, value) in ops {
        match value {
            Some(value) => configs.insert(key.clone(), value.to_string()),
            None => configs.remove(key),
        };
    }
    if configs != before {
        log.set_dynamic_configs(&scope, configs).await?;
    }
    Ok(())
}

/// DescribeClientQuotas' match types.
pub const MATCH_EXACT: i8 = 0;
pub const MATCH_DEFAULT: i8 = 1;
pub const MATCH_SPECIFIED: i8 = 2;

/// One component of a DescribeClientQuotas filter.
#[derive(Debug, Clone)]
pub struct Component<'a> {
    pub entity_type: &'a str,
    pub match_type: i8,
    pub name: Option<&'a str>,
}

/// The entities a DescribeClientQuotas filter selects, with their quotas (Kafka's
/// `ClientQuotasImage.describe`).
pub fn describe(log: &Log, components: &[Component<'_>], strict: bool) -> Result<EntityQuotas, QuotaError> {
    // (entity type, Some(name) for an exact or default match, None for "any name").
    let mut wanted: Vec<(&str, Option<Option<&str>>)> = Vec::new();
    for component in components {
        if component.entity_type.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if wanted.iter().any(|(t, _)| *t == component.entity_type) {
            return Err(invalid(format!(
                "Entity type {} cannot appear more than once in the filter.",
                component.entity_type
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&component.entity_type) {
            return Err(QuotaError::UnsupportedVersion(format!("Unsupported entity type {}", component.entity_type)));
        }
        let name = match (component.match_type, component.name) {
            (MATCH_EXACT, Some(name)) => Some(Some(name)),
            (MATCH_EXACT, None) => {
                return Err(invalid("Request specified MATCH_TYPE_EXACT, but set match string to null."));
            }
            (MATCH_DEFAULT, None) => Some(None),
            (MATCH_DEFAULT, Some(_)) => {
                return Err(invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string."));
            }
            (MATCH_SPECIFIED, None) => None,
            (MATCH_SPECIFIED, Some(_)) => {
                return Err(invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."));
            }
            (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
        };
        wanted.push((component.entity_type, name));
    }
    let has = |t: &str| wanted.iter().any(|(w, _)| *w == t);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.",
        ));
    }
    if wanted.is_empty() && strict {
        return Ok(Vec::new());
    }
    let matches = |entity: &QuotaEntity| {
        let parts = entity.parts();
        let each = wanted.iter().all(|(entity_type, name)| {
            parts.iter().any(|(t, n)| t == entity_type && name.is_none_or(|name| name == *n))
        });
        each && (!strict || parts.len() == wanted.len())
    };
    Ok(all(log).into_iter().filter(|(entity, _)| matches(entity)).collect())
}

/// `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy)]
pub struct QuotaWindow {
    pub samples: u32,
    pub size: Duration,
}

/// The quotas by kind and entity, rebuilt when the dynamic configs change.
#[derive(Debug, Default)]
struct QuotaIndex {
    bounds: [HashMap<QuotaEntity, f64>; 3],
}

impl QuotaIndex {
    fn build(log: &Log) -> QuotaIndex {
        let mut index = QuotaIndex::default();
        for (entity, values) in all(log) {
            for kind in QuotaKind::ALL {
                if let Some(bound) = values.get(kind.key()) {
                    index.bounds[kind.index()].insert(entity.clone(), *bound);
                }
            }
        }
        index
    }

    /// The bound for `user` and `client_id`, with Kafka's precedence, and the sensor it is
    /// measured by: the names of the entity types the matching quota names, so that every
    /// client of a user with a user quota shares one rate.
    fn resolve(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<(f64, SensorKey)> {
        let bounds = &self.bounds[kind.index()];
        if bounds.is_empty() {
            return None;
        }
        let named = |name: &str| Some(Some(name.to_string()));
        let both = (Some(user.to_string()), Some(client_id.to_string()));
        let user_only = (Some(user.to_string()), None);
        let client_only = (None, Some(client_id.to_string()));
        let order = [
            (named(user), named(client_id), &both),
            (named(user), Some(None), &both),
            (named(user), None, &user_only),
            (Some(None), named(client_id), &both),
            (Some(None), Some(None), &both),
            (Some(None), None, &user_only),
            (None, named(client_id), &client_only),
            (None, Some(None), &client_only),
        ];
        order.into_iter().find_map(|(user, client_id, tags)| {
            let bound = bounds.get(&QuotaEntity { user, client_id })?;
            Some((*bound, SensorKey { kind, user: tags.0.clone(), client_id: tags.1.clone() }))
        })
    }
}

/// Whose rate a sensor measures.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SensorKey {
    kind: QuotaKind,
    user: Option<String>,
    client_id: Option<String>,
}

/// A client's allowance as a token bucket: it fills at the bound's rate up to `burst`, and each
/// request takes its value out. A bucket in debt throttles for `debt / bound`, which is Kafka's
/// `(rate - bound) / bound × elapsed` (the excess over the bound, at the bound's rate) without
/// the sampled rate's forgetting: a sample's expiry forgives what it held, so a pipelining
/// client got ~10% over its quota with few samples; a bucket holds it to the bound. The burst
/// is what Kafka's padded first window allows, `samples - 1` windows of the bound.
#[derive(Debug)]
struct Sensor {
    tokens: f64,
    updated: Instant,
}

impl Sensor {
    fn new(now: Instant, burst: f64) -> Sensor {
        Sensor { tokens: burst, updated: now }
    }

    /// Takes `value` out (a negative value puts it back) and returns the debt, if any.
    fn take(&mut self, value: f64, bound: f64, burst: f64, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * bound;
        self.tokens = (self.tokens + refill).min(burst) - value;
        self.updated = now;
        (-self.tokens).max(0.0)
    }
}

/// Measures each client against its quotas and says how long to throttle it.
pub struct Quotas {
    log: Log,
    window: QuotaWindow,
    /// The index, and the dynamic configs' generation it was built from.
    index: super::DerivedFromConfigs<QuotaIndex>,
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").field("window", &self.window).finish_non_exhaustive()
    }
}

impl Quotas {
    pub fn new(log: Log, window: QuotaWindow) -> Quotas {
        Quotas { log, window, index: super::DerivedFromConfigs::new(), sensors: Mutex::default() }
    }

    fn index(&self) -> Arc<QuotaIndex> {
        self.index.get(&self.log, || QuotaIndex::build(&self.log))
    }

    /// Whether any quota of `kind` is set (when none is, nothing is measured).
    pub fn enabled(&self, kind: QuotaKind) -> bool {
        !self.index().bounds[kind.index()].is_empty()
    }

    /// The session's bound for `kind`, if it has one.
    fn resolve(&self, kind: QuotaKind, session: &Session) -> Option<(f64, SensorKey)> {
        self.index().resolve(kind, &session.principal.name, &session.client_id)
    }

    /// Records `value` (bytes, or percent of a thread's second for `Request`) against the
    /// session's quota of `kind` and returns how long to throttle it (zero within its quota).
    pub fn record(&self, kind: QuotaKind, session: &Session, value: f64) -> Duration {
        let Some((bound, key)) = self.resolve(kind, session) else { return Duration::ZERO };
        let now = Instant::now();
        let mut sensors = self.sensors.lock();
        if sensors.len() >= SENSORS_MAX && !sensors.contains_key(&key) {
            let expire = self.window.size * self.window.samples;
            sensors.retain(|_, s| now.saturating_duration_since(s.updated) < expire);
        }
        let burst = self.burst(bound);
        let sensor = sensors.entry(key).or_insert_with(|| Sensor::new(now, burst));
        let debt = sensor.take(value, bound, burst, now);
        let throttle = Duration::from_secs_f64((debt / bound).min(1e6));
        match kind {
            // Kafka bounds only the request-time throttle, at one window.
            QuotaKind::Request => throttle.min(self.window.size),
            QuotaKind::Produce | QuotaKind::Fetch => throttle,
        }
    }

    /// Takes back a recorded value (a fetch answered empty because it was throttled).
    pub fn unrecord(&self, kind: QuotaKind, session: &Session, value: f64) {
        let Some((bound, key)) = self.resolve(kind, session) else { return };
        if let Some(sensor) = self.sensors.lock().get_mut(&key) {
            sensor.take(-value, bound, self.burst(bound), Instant::now());
        }
    }

    /// What a client may take at once: `samples - 1` windows of its bound (at least one).
    fn burst(&self, bound: f64) -> f64 {
        bound * self.window.size.as_secs_f64() * f64::from(self.window.samples.saturating_sub(1).max(1))
    }

    /// The most bytes one fetch may return within the session's consumer quota (Kafka's
    /// `getMaxValueInQuotaWindow`): the bound over `samples - 1` windows.
    pub fn fetch_bytes_max(&self, session: &Session) -> Option<usize> {
        let (bound, _) = self.resolve(QuotaKind::Fetch, session)?;
        Some(self.burst(bound) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> QuotaEntity {
        QuotaEntity { user: user.map(|u| u.map(str::to_string)), client_id: client_id.map(|c| c.map(str::to_string)) }
    }

    fn index(quotas: &[(QuotaEntity, f64)]) -> QuotaIndex {
        let mut index = QuotaIndex::default();
        for (entity, bound) in quotas {
            index.bounds[QuotaKind::Produce.index()].insert(entity.clone(), *bound);
        }
        index
    }

    /// Kafka's precedence: user and client id, then the user's default client, the user, the
    /// default user's client id, …, and the default client id last; the sensor follows the match.
    #[test]
    fn the_most_specific_quota_wins() {
        let all = [
            (entity(Some(Some("alice")), Some(Some("app"))), 1.0),
            (entity(Some(Some("alice")), None), 3.0),
            (entity(Some(None), None), 6.0),
            (entity(None, Some(Some("app"))), 7.0),
            (entity(None, Some(None)), 8.0),
        ];
        let index = index(&all);
        let bound = |user: &str, client: &str| {
            index.resolve(QuotaKind::Produce, user, client).map(|(b, k)| (b, k.user, k.client_id))
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(bound("alice", "app"), Some((1.0, some("alice"), some("app"))));
        assert_eq!(bound("alice", "other"), Some((3.0, some("alice"), None)));
        assert_eq!(bound("bob", "app"), Some((6.0, some("bob"), None)));
        let without_default_user = self::index(&all[3..]);
        let resolved =
            without_default_user.resolve(QuotaKind::Produce, "bob", "app").map(|(b, k)| (b, k.user, k.client_id));
        assert_eq!(resolved, Some((7.0, None, some("app"))));
        let resolved =
            without_default_user.resolve(QuotaKind::Produce, "bob", "x").map(|(b, k)| (b, k.user, k.client_id));
        assert_eq!(resolved, Some((8.0, None, some("x"))));
        assert!(index.resolve(QuotaKind::Fetch, "alice", "app").is_none());
    }

    /// A fresh client may take its burst at once; past it, the debt throttles for
    /// `debt / bound`, and the bucket refills at the bound's rate.
    #[test]
    fn throttle_is_the_excess_at_the_bounds_rate() {
        let now = Instant::now();
        let (bound, burst) = (1_000.0, 10_000.0);
        let mut sensor = Sensor::new(now, burst);
        assert_eq!(sensor.take(10_000.0, bound, burst, now), 0.0);
        assert_eq!(sensor.take(2_000.0, bound, burst, now), 2_000.0, "2 s at 1000/s");
        let later = now + Duration::from_secs(2);
        assert_eq!(sensor.take(500.0, bound, burst, later), 500.0, "refilled 2000, took 500");
        // Never more than the burst, however long the client was idle.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(sensor.take(10_000.0, bound, burst, much_later), 0.0);
        assert_eq!(sensor.take(1.0, bound, burst, much_later), 1.0);
    }

    #[test]
    fn entities_round_trip_through_their_scope() {
        for entity in
            [entity(Some(Some("alice")), Some(Some("a/b\"c"))), entity(Some(None), None), entity(None, Some(None))]
        {
            assert_eq!(QuotaEntity::parse(&entity.scope()), Some(entity));
        }
    }

    #[test]
    fn values_are_checked_as_kafka_does() {
        assert!(check_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(check_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(check_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(check_value("producer_bytes_rate", 1.0).is_err());
        assert!(check_value(CONSUMER_BYTE_RATE, 0.0).is_err());
        assert!(QuotaEntity::from_parts([(USER, Some(""))]).is_err());
        assert!(QuotaEntity::from_parts([(USER, Some("a")), (USER, Some("b"))]).is_err());
        assert!(QuotaEntity::from_parts([]).is_err());
    }
}
