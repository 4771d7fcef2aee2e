//! Authentication (issue 18; docs/security.md): TLS listeners, SASL PLAIN and SCRAM, and the
//! SCRAM credentials they check. Credentials live where Kafka keeps them, as configs of the
//! user (`user/NAME` → `SCRAM-SHA-256` = `salt=…,stored_key=…,server_key=…,iterations=…`): in
//! the log's metadata store, so they are durable, and in PostgreSQL in a cluster, so that every
//! broker shares them. No password is ever stored.

pub mod acl;
pub mod jwt;
pub mod quota;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::SecurityConfig;
use crate::log::{Log, LogError};
use scram::{Credential, Mechanism};

/// How often the files of a [`Reloading`] value are looked at.
const RELOAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A value built from files (the TLS acceptor and connector, this broker's OAUTHBEARER token),
/// rebuilt when one of them changes: their modification times are looked at most once a
/// [`RELOAD_CHECK_INTERVAL`], on the calling thread (small files), and a new file that does not
/// build is logged and the previous value kept.
pub(crate) struct Reloading<T> {
    /// What the value is, for the logs.
    what: &'static str,
    paths: Vec<std::path::PathBuf>,
    current: Mutex<Built<T>>,
}

struct Built<T> {
    value: T,
    modified: Vec<Option<std::time::SystemTime>>,
    checked: std::time::Instant,
}

impl<T: Clone> Reloading<T> {
    /// Builds the value a first time: an error here is the caller's.
    pub(crate) fn build<E>(
        what: &'static str,
        paths: Vec<std::path::PathBuf>,
        build: impl Fn() -> Result<T, E>,
    ) -> Result<Self, E> {
        let modified = modified(&paths);
        let built = Built { value: build()?, modified, checked: std::time::Instant::now() };
        Ok(Reloading { what, paths, current: Mutex::new(built) })
    }

    /// The value, rebuilt by `build` first if a file changed.
    pub(crate) fn get<E: std::fmt::Display>(&self, build: impl Fn() -> Result<T, E>) -> T {
        let mut built = self.current.lock();
        if built.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            built.checked = std::time::Instant::now();
            let now = modified(&self.paths);
            if now != built.modified {
                built.modified = now;
                match build() {
                    Ok(value) => {
                        tracing::info!(file = %self.paths[0].display(), "{} reloaded", self.what);
                        built.value = value;
                    }
                    Err(error) => tracing::error!(%error, "cannot reload {}; keeping the previous one", self.what),
                }
            }
        }
        built.value.clone()
    }
}

fn modified(paths: &[std::path::PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    paths.iter().map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok()).collect()
}

/// A value derived from the log's dynamic configs (the ACL index, the quota index), rebuilt only
/// when they have changed since it was built, so that a check per request is a lookup.
#[derive(Debug)]
struct DerivedFromConfigs<T> {
    /// The value, and the dynamic configs' generation it was built from.
    current: parking_lot::RwLock<(u64, Arc<T>)>,
}

impl<T: Default> DerivedFromConfigs<T> {
    fn new() -> DerivedFromConfigs<T> {
        DerivedFromConfigs { current: parking_lot::RwLock::new((u64::MAX, Arc::default())) }
    }

    /// The value for the configs as they are now, built with `build` if they changed.
    fn get(&self, log: &Log, build: impl FnOnce() -> T) -> Arc<T> {
        let generation = log.dynamic_generation();
        {
            let current = self.current.read();
            if current.0 == generation {
                return current.1.clone();
            }
        }
        // Built from configs at least as new as `generation`: a change in between only makes
        // the next call build it again.
        let value = Arc::new(build());
        *self.current.write() = (generation, value.clone());
        value
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The scope of a user's configs in the metadata store.
fn user_scope(user: &str) -> String {
    format!("user/{user}")
}

/// The SCRAM credentials of every user, and the mechanisms SASL listeners offer.
#[derive(Clone)]
pub struct Credentials {
    log: Log,
    mechanisms: Vec<String>,
    /// Passwords checked for HTTP basic auth, by user and a hash of the password, with the
    /// stored key they matched: a request with the same password skips PBKDF2 while the
    /// credential is unchanged, and a changed or deleted credential is checked afresh.
    verified: Arc<Mutex<VerifiedPasswords>>,
    /// OAUTHBEARER's token validation, with `--oauthbearer-jwks-file`.
    tokens: Option<Arc<jwt::JwtValidator>>,
}

/// (user, SHA-256 of the password) → the stored key the password matched.
type VerifiedPasswords = HashMap<(String, Vec<u8>), Vec<u8>>;

/// Verified passwords remembered at most (the cache is emptied when full).
const VERIFIED_MAX: usize = 1024;

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("mechanisms", &self.mechanisms).finish_non_exhaustive()
    }
}

impl Credentials {
    /// `server::run` has checked the JWKS file of `--oauthbearer-jwks-file` already; one that
    /// became unreadable since refuses every token.
    pub fn new(log: Log, config: &SecurityConfig) -> Credentials {
        let tokens = config.oauthbearer.as_ref().and_then(|settings| match jwt::JwtValidator::new(settings.clone()) {
            Ok(validator) => Some(Arc::new(validator)),
            Err(error) => {
                tracing::error!(%error, "OAUTHBEARER tokens will be refused");
                None
            }
        });
        Credentials { log, mechanisms: config.sasl_mechanisms.clone(), verified: Arc::default(), tokens }
    }

    /// The principal name of a valid OAUTHBEARER or HTTP bearer token.
    pub async fn verify_token(&self, token: &str) -> Result<String, jwt::JwtError> {
        let tokens = self.tokens.as_ref().ok_or(jwt::JwtError::Jwks("no JWKS configured".into()))?;
        tokens.validate_fetching(token, now_s()).await
    }

    /// Fetches the JWKS of `--oauthbearer-jwks-endpoint-url` at start, so that a wrong URL shows
    /// in the log before the first client (tokens are refused until a fetch succeeds).
    pub async fn prefetch_jwks(&self) {
        if let Some(tokens) = &self.tokens {
            tokens.refresh(false).await;
        }
    }

    /// The user of a bearer token of the HTTP door: one the REST catalog's OAuth2 endpoint
    /// issued (whose user still has a credential), or a JWT as OAUTHBEARER checks it.
    pub async fn verify_bearer(&self, token: &str) -> Result<String, String> {
        if !token::is_ours(token) {
            return self.verify_token(token).await.map_err(|e| e.to_string());
        }
        let key = self.http_token_key().ok_or("no token key yet")?;
        let user = token::verify(&key, token, now_s()).map_err(|e| e.to_string())?;
        if self.password_credential(&user).is_none() {
            return Err(format!("user {user} has no credential any more"));
        }
        Ok(user)
    }

    fn http_token_key(&self) -> Option<String> {
        self.log.dynamic_configs(token::KEY_SCOPE).get(token::KEY_NAME).cloned()
    }

    /// Creates the key that signs the OAuth2 endpoint's tokens, if there is none yet. (Two
    /// brokers of a new cluster may both create one: the last write wins, and tokens signed
    /// with the other are refused, so their clients fetch new ones.)
    pub async fn ensure_http_token_key(&self) -> Result<(), LogError> {
        if self.http_token_key().is_some() {
            return Ok(());
        }
        let key = token::new_key().map_err(|_| LogError::InvalidRequest("no randomness for the token key".into()))?;
        self.log.set_dynamic_configs(token::KEY_SCOPE, BTreeMap::from([(token::KEY_NAME.to_string(), key)])).await
    }

    /// A bearer token for `user`, valid for `lifetime_s` (`None` before the key exists).
    pub fn issue_http_token(&self, user: &str, lifetime_s: i64) -> Option<String> {
        token::issue(&self.http_token_key()?, user, now_s() + lifetime_s)
    }

    pub fn mechanisms(&self) -> &[String] {
        &self.mechanisms
    }

    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        self.log.dynamic_configs(&user_scope(user)).get(mechanism.name()).and_then(|text| Credential::parse(text))
    }

    /// Every user with a SCRAM credential, with its mechanisms and iteration counts.
    pub fn users(&self) -> BTreeMap<String, Vec<(Mechanism, u32)>> {
        let mut users = BTreeMap::new();
        for scope in self.log.dynamic_config_scopes("user/") {
            let Some(user) = scope.strip_prefix("user/") else { continue };
            let described = self.described(user);
            if !described.is_empty() {
                users.insert(user.to_string(), described);
            }
        }
        users
    }

    /// A user's mechanisms and iteration counts (empty when it has none).
    pub fn described(&self, user: &str) -> Vec<(Mechanism, u32)> {
        Mechanism::ALL.into_iter().filter_map(|m| self.credential(user, m).map(|c| (m, c.iterations))).collect()
    }

    /// Sets (`Some`) or deletes (`None`) credentials of users, durably, in one change per user.
    pub async fn apply(&self, changes: Vec<(String, Mechanism, Option<Credential>)>) -> Result<(), LogError> {
        let mut by_user: BTreeMap<String, Vec<(Mechanism, Option<Credential>)>> = BTreeMap::new();
        for (user, mechanism, credential) in changes {
            by_user.entry(user).or_default().push((mechanism, credential));
        }
        for (user, changes) in by_user {
            let scope = user_scope(&user);
            let mut configs = self.log.dynamic_configs(&scope);
            for (mechanism, credential) in changes {
                match credential {
                    Some(credential) => configs.insert(mechanism.name().to_string(), credential.format()),
                    None => configs.remove(mechanism.name()),
                };
            }
            self.log.set_dynamic_configs(&scope, configs).await?;
        }
        Ok(())
    }

    /// The user's credential to check a password against: SCRAM-SHA-512 when it has one.
    fn password_credential(&self, user: &str) -> Option<(Mechanism, Credential)> {
        [Mechanism::Sha512, Mechanism::Sha256].into_iter().find_map(|m| self.credential(user, m).map(|c| (m, c)))
    }

    /// Whether `password` is `user`'s (PLAIN and HTTP basic auth). PBKDF2 runs on a blocking
    /// thread; an unknown user costs the same work.
    pub async fn verify_password(&self, user: &str, password: &str) -> bool {
        let stored = self.password_credential(user);
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes()).as_ref().to_vec();
        let key = (user.to_string(), digest);
        if let Some((_, credential)) = &stored
            && self.verified.lock().get(&key).is_some_and(|k| scram::constant_time_eq(k, &credential.stored_key))
        {
            return true;
        }
        let password = password.to_string();
        let check = stored.clone();
        let verified = tokio::task::spawn_blocking(move || match check {
            Some((mechanism, credential)) => credential.verifies(mechanism, &password),
            None => {
                let _ = Credential::from_password(Mechanism::Sha512, &password, scram::ITERATIONS_MIN);
                false
            }
        })
        .await
        .unwrap_or(false);
        if verified && let Some((_, credential)) = stored {
            let mut cache = self.verified.lock();
            if cache.len() >= VERIFIED_MAX {
                cache.clear();
            }
            cache.insert(key, credential.stored_key);
        }
        verified
    }

    /// Creates the bootstrap admin's SCRAM-SHA-256 and SCRAM-SHA-512 credentials when it has
    /// none (an existing password is never replaced from the environment).
    pub async fn ensure_user(&self, user: &str, password: &str) -> Result<bool, LogError> {
        if !self.described(user).is_empty() {
            return Ok(false);
        }
        let password = password.to_string();
        let credentials = tokio::task::spawn_blocking(move || {
            Mechanism::ALL.map(|m| (m, Credential::from_password(m, &password, scram::ITERATIONS_MIN)))
        })
        .await
        .map_err(|e| LogError::InvalidRequest(format!("deriving credentials: {e}")))?;
        self.apply(credentials.into_iter().map(|(m, c)| (user.to_string(), m, Some(c))).collect()).await?;
        Ok(true)
    }
}
