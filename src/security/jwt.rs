//! OAUTHBEARER's tokens (issue 18; docs/security.md): JWTs signed with a key of a JWKS (a file,
//! or an identity provider's URL), validated as Kafka's broker-side JWT validator does: the
//! signature (RS256/384/512, ES256/384), `exp` (required) and `nbf` with Kafka's 30 s clock
//! skew, the issuer and audience when configured, and the principal from a configurable claim
//! (`sub` by default). Unsecured tokens (`alg: none`) are refused. Keys rotate without a
//! restart: the file is reread when it changes; the URL is fetched again every refresh interval
//! and when a token names a key it lacks (at most once a second), as Kafka's
//! `RefreshingHttpsJwks` does. A failed fetch keeps the keys held.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use parking_lot::Mutex;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// Kafka's `sasl.oauthbearer.clock.skew.seconds` default.
const CLOCK_SKEW_S: i64 = 30;
/// How often the JWKS file's modification time is looked at, or its URL fetched, at most.
const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long one fetch of the JWKS URL may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document taken.
const JWKS_BYTES_MAX: usize = 1 << 20;

/// Why a token is refused (logged; the client only learns that authentication failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsecured tokens (alg none) are not accepted")]
    Unsecured,
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("no key in the JWKS for kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("the token has no exp claim")]
    NoExpiry,
    #[error("issuer {0:?} is not the configured one")]
    Issuer(Option<String>),
    #[error("audience is not the configured one")]
    Audience,
    #[error("no string claim {0} for the principal")]
    Principal(String),
    #[error("cannot read the JWKS file: {0}")]
    Jwks(String),
}

/// What the broker checks tokens against.
pub type JwtSettings = crate::config::OAuthBearerConfig;
use crate::config::JwksSource;

/// GETs a JWKS over HTTP or HTTPS (trusting the system's authorities and `ca_file`'s).
async fn fetch(url: &str, ca_file: Option<&std::path::Path>) -> Result<JwkSet, JwtError> {
    use http_body_util::BodyExt;
    let failed = |what: &dyn std::fmt::Display| JwtError::Jwks(format!("{url}: {what}"));
    let uri: hyper::Uri = url.parse().map_err(|e| failed(&e))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(|| failed(&"no host"))?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(&e))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| failed(&e))?;
    let response = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| failed(&e))?;
        let tls = super::tls::https_connector(ca_file).map_err(|e| failed(&e))?;
        let stream = tls.connect(name, tcp).await.map_err(|e| failed(&e))?;
        send(hyper_util::rt::TokioIo::new(stream), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await
    }
    .map_err(|e| failed(&e))?;
    if !response.status().is_success() {
        return Err(failed(&format!("HTTP {}", response.status())));
    }
    let body = http_body_util::Limited::new(response.into_body(), JWKS_BYTES_MAX);
    let bytes = body.collect().await.map_err(|e| failed(&e))?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| failed(&e))
}

async fn send<S>(
    io: hyper_util::rt::TokioIo<S>,
    request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// The keys, and the file's modification time they were read at.
#[derive(Debug, Default)]
struct Keys {
    modified: Option<SystemTime>,
    checked: Option<Instant>,
    keys: Arc<Vec<Jwk>>,
    /// From a URL: when the keys held were fetched, and how many fetches succeeded.
    fetched: Option<Instant>,
    fetches: u64,
}

#[derive(Debug)]
pub struct JwtValidator {
    settings: JwtSettings,
    keys: Mutex<Keys>,
    /// One fetch of the JWKS URL at a time.
    fetching: tokio::sync::Mutex<()>,
}

fn b64(text: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("not base64url"))
}

impl JwtValidator {
    /// Reads a JWKS file once, so that a bad file stops the broker at start (a URL is fetched
    /// by [`Self::refresh`]).
    pub fn new(settings: JwtSettings) -> Result<JwtValidator, JwtError> {
        let validator =
            JwtValidator { settings, keys: Mutex::new(Keys::default()), fetching: tokio::sync::Mutex::new(()) };
        validator.keys()?;
        Ok(validator)
    }

    /// The keys: those fetched last from a URL; from a file, reread when it changed (checked
    /// at most once a second), a file that no longer parses keeping the previous keys.
    fn keys(&self) -> Result<Arc<Vec<Jwk>>, JwtError> {
        let JwksSource::File(path) = &self.settings.jwks else {
            return Ok(self.keys.lock().keys.clone());
        };
        let mut keys = self.keys.lock();
        if keys.checked.is_some_and(|at| at.elapsed() < JWKS_CHECK_INTERVAL) {
            return Ok(keys.keys.clone());
        }
        keys.checked = Some(Instant::now());
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|e| JwtError::Jwks(e.to_string()));
        let modified = match (modified, keys.modified) {
            (Ok(modified), Some(before)) if modified == before => return Ok(keys.keys.clone()),
            (Ok(modified), _) => modified,
            (Err(error), None) => return Err(error),
            (Err(error), Some(_)) => {
                tracing::warn!(%error, "keeping the previous JWKS");
                return Ok(keys.keys.clone());
            }
        };
        let parsed = std::fs::read(path)
            .map_err(|e| JwtError::Jwks(e.to_string()))
            .and_then(|bytes| serde_json::from_slice::<JwkSet>(&bytes).map_err(|e| JwtError::Jwks(e.to_string())));
        match (parsed, keys.modified) {
            (Ok(set), _) => {
                tracing::info!(keys = set.keys.len(), file = %path.display(), "JWKS loaded");
                keys.keys = Arc::new(set.keys);
                keys.modified = Some(modified);
            }
            (Err(error), None) => return Err(error),
            (Err(error), Some(_)) => tracing::warn!(%error, "the JWKS file does not parse; keeping the previous keys"),
        }
        Ok(keys.keys.clone())
    }

    /// The `exp` of a token (seconds since the epoch), read without checking it: for a token
    /// `validate` accepted.
    pub fn expiry(token: &str) -> Option<f64> {
        let payload = token.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&b64(payload).ok()?).ok()?;
        claims.get("exp").and_then(Value::as_f64)
    }

    /// Fetches the JWKS URL again if its keys are older than the refresh interval, or if
    /// `missing_key` (a token named a key not held); at most once a second either way. Returns
    /// whether new keys were taken in.
    pub async fn refresh(&self, missing_key: bool) -> bool {
        let JwksSource::Url { url, refresh_ms } = &self.settings.jwks else { return false };
        let refresh = Duration::from_millis(*refresh_ms);
        let wanted = |keys: &Keys| {
            let due = keys.fetched.is_none_or(|at| at.elapsed() >= refresh);
            (due || missing_key) && keys.checked.is_none_or(|at| at.elapsed() >= JWKS_CHECK_INTERVAL)
        };
        // Most validations find nothing due and take no lock but the keys'.
        let seen = {
            let keys = self.keys.lock();
            if !wanted(&keys) {
                return false;
            }
            keys.fetches
        };
        let _fetching = self.fetching.lock().await;
        {
            let mut keys = self.keys.lock();
            if keys.fetches != seen {
                // Fetched while this one waited: the caller looks at the new keys.
                return true;
            }
            if !wanted(&keys) {
                return false;
            }
            keys.checked = Some(Instant::now());
        }
        let fetched = tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch(url, self.settings.ca_file.as_deref()))
            .await
            .unwrap_or_else(|_| Err(JwtError::Jwks(format!("{url}: timed out"))));
        match fetched {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), %url, "JWKS fetched");
                let mut keys = self.keys.lock();
                keys.keys = Arc::new(set.keys);
                keys.fetched = Some(Instant::now());
                keys.fetches += 1;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the JWKS; keeping the keys held");
                false
            }
        }
    }

    /// [`Self::validate`], with the keys of a JWKS URL fetched first when they are due, and
    /// again when the token names a key not held (a rotation at the identity provider).
    pub async fn validate_fetching(&self, token: &str, now_s: i64) -> Result<String, JwtError> {
        self.refresh(false).await;
        match self.validate(token, now_s) {
            Err(JwtError::UnknownKey(_)) if self.refresh(true).await => self.validate(token, now_s),
            other => other,
        }
    }

    /// The principal name a valid token carries, at `now_s` (seconds since the epoch).
    pub fn validate(&self, token: &str, now_s: i64) -> Result<String, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts"));
        };
        let parsed: Header =
            serde_json::from_slice(&b64(header)?).map_err(|_| JwtError::Malformed("header is not JSON"))?;
        if parsed.alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::Unsecured);
        }
        let keys = self.keys()?;
        let key = keys
            .iter()
            .find(|k| parsed.kid.is_none() || k.kid == parsed.kid)
            .ok_or_else(|| JwtError::UnknownKey(parsed.kid.clone()))?;
        let signed = &token[..header.len() + 1 + payload.len()];
        verify(&parsed.alg, key, signed.as_bytes(), &b64(signature)?)?;
        let claims: Value =
            serde_json::from_slice(&b64(payload)?).map_err(|_| JwtError::Malformed("payload is not JSON"))?;
        self.check_claims(&claims, now_s)
    }

    fn check_claims(&self, claims: &Value, now_s: i64) -> Result<String, JwtError> {
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(JwtError::NoExpiry)?;
        if (now_s - CLOCK_SKEW_S) as f64 >= exp {
            return Err(JwtError::Expired);
        }
        if claims.get("nbf").and_then(Value::as_f64).is_some_and(|nbf| nbf > (now_s + CLOCK_SKEW_S) as f64) {
            return Err(JwtError::NotYetValid);
        }
        if let Some(issuer) = &self.settings.issuer {
            let iss = claims.get("iss").and_then(Value::as_str);
            if iss != Some(issuer.as_str()) {
                return Err(JwtError::Issuer(iss.map(str::to_string)));
            }
        }
        if let Some(audience) = &self.settings.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err(JwtError::Audience);
            }
        }
        let claim = &self.settings.principal_claim;
        match claims.get(claim).and_then(Value::as_str) {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(JwtError::Principal(claim.clone())),
        }
    }
}

fn verify(alg: &str, key: &Jwk, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let field = |value: &Option<String>| value.as_deref().ok_or(JwtError::Malformed("JWK lacks a field")).and_then(b64);
    let verified = match (alg, key.kty.as_str()) {
        ("RS256" | "RS384" | "RS512", "RSA") => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n: field(&key.n)?, e: field(&key.e)? }.verify(params, message, sig)
        }
        ("ES256" | "ES384", "EC") => {
            let (params, crv): (&'static signature::EcdsaVerificationAlgorithm, &str) = match alg {
                "ES256" => (&signature::ECDSA_P256_SHA256_FIXED, "P-256"),
                _ => (&signature::ECDSA_P384_SHA384_FIXED, "P-384"),
            };
            if key.crv.as_deref() != Some(crv) {
                return Err(JwtError::Algorithm(format!("{alg} with curve {:?}", key.crv)));
            }
            let mut point = vec![4u8];
            point.extend(field(&key.x)?);
            point.extend(field(&key.y)?);
            UnparsedPublicKey::new(params, point).verify(message, sig)
        }
        _ => return Err(JwtError::Algorithm(format!("{alg} with a {} key", key.kty))),
    };
    verified.map_err(|_| JwtError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn encode(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// A P-256 key, its JWKS file, and a validator over it.
    fn setup(issuer: Option<&str>, audience: Option<&str>) -> (EcdsaKeyPair, tempfile::NamedTempFile, JwtValidator) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        let public = pair.public_key().as_ref();
        let b = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": b(&public[1..33]), "y": b(&public[33..65])}]});
        let file = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(file.path(), jwks.to_string()).expect("write");
        let settings = JwtSettings {
            jwks: JwksSource::File(file.path().to_path_buf()),
            ca_file: None,
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            principal_claim: "sub".to_string(),
        };
        (pair, file, JwtValidator::new(settings).expect("validator"))
    }

    fn sign(pair: &EcdsaKeyPair, claims: Value) -> String {
        let signed = format!("{}.{}", encode(&serde_json::json!({"alg": "ES256", "kid": "k1"})), encode(&claims));
        let signature = pair.sign(&SystemRandom::new(), signed.as_bytes()).expect("sign");
        format!("{signed}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    #[test]
    fn valid_tokens_name_their_subject_and_the_rest_are_refused_with_a_reason() {
        let (pair, _file, validator) = setup(Some("https://idp"), Some("zombi"));
        let now = 1_800_000_000;
        let good = serde_json::json!({"sub": "alice", "exp": now + 60, "iss": "https://idp", "aud": ["x", "zombi"]});
        assert_eq!(validator.validate(&sign(&pair, good.clone()), now), Ok("alice".to_string()));
        let mut expired = good.clone();
        expired["exp"] = (now - 31).into();
        assert_eq!(validator.validate(&sign(&pair, expired), now), Err(JwtError::Expired));
        let mut early = good.clone();
        early["nbf"] = (now + 31).into();
        assert_eq!(validator.validate(&sign(&pair, early), now), Err(JwtError::NotYetValid));
        let mut issuer = good.clone();
        issuer["iss"] = "https://other".into();
        assert!(matches!(validator.validate(&sign(&pair, issuer), now), Err(JwtError::Issuer(_))));
        let mut audience = good.clone();
        audience["aud"] = "other".into();
        assert_eq!(validator.validate(&sign(&pair, audience), now), Err(JwtError::Audience));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().expect("object").remove("exp");
        assert_eq!(validator.validate(&sign(&pair, no_exp), now), Err(JwtError::NoExpiry));
        let token = sign(&pair, good.clone());
        let tampered = token.replacen(&encode(&good), &encode(&serde_json::json!({"sub": "root", "exp": now + 60})), 1);
        assert_eq!(validator.validate(&tampered, now), Err(JwtError::Signature));
        let unsecured = format!("{}.{}.", encode(&serde_json::json!({"alg": "none"})), encode(&good));
        assert_eq!(validator.validate(&unsecured, now), Err(JwtError::Unsecured));
    }
}
