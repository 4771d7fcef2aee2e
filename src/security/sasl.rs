//! One connection's SASL authentication on a SASL listener: SaslHandshake names the mechanism,
//! SaslAuthenticate carries its tokens (KIP-152; after a v0 handshake they come as bare frames,
//! which the connection passes here the same way). PLAIN and OAUTHBEARER take
//! one round, SCRAM two.
//! A failed authentication is answered with SASL_AUTHENTICATION_FAILED after a short delay, and
//! the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Credentials;
use super::scram::{self, Mechanism, ServerExchange};
use crate::metrics::Metrics;
use crate::service::session::Principal;

/// Kafka's `connection.failed.authentication.delay.ms` default: slows down password guessing.
pub const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaslMechanism {
    Plain,
    Scram(Mechanism),
    OAuthBearer,
}

impl SaslMechanism {
    fn parse(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            "OAUTHBEARER" => Some(SaslMechanism::OAuthBearer),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake (also after a success: KIP-368 re-authentication).
    Handshake,
    Authenticate(SaslMechanism),
    /// SCRAM: the server's first message was sent.
    ScramFinal(Box<ServerExchange>),
}

/// What the connection does with one SASL request.
pub struct Step {
    pub response: ResponseKind,
    /// Close the connection once the response is written.
    pub close: bool,
    /// The principal, when this step completed an authentication.
    pub principal: Option<Principal>,
    /// When the authentication this step completed ends (KIP-368), if it does.
    pub expires: Option<std::time::Instant>,
}

/// Why an authentication failed, for the log (never the secret).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Scram(#[from] scram::ScramError),
    #[error("malformed PLAIN message")]
    PlainMalformed,
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    #[error("malformed OAUTHBEARER message")]
    OAuthBearerMalformed,
    #[error("token refused: {0}")]
    Token(#[from] super::jwt::JwtError),
}

#[derive(Debug)]
pub struct Authenticator {
    credentials: Credentials,
    metrics: Arc<Metrics>,
    state: State,
    /// The principal of an earlier authentication on this connection: re-authentication must
    /// keep it (KIP-368).
    authenticated: Option<Principal>,
    /// `--connections-max-reauth-ms` (0: authentications do not expire).
    reauth_ms: u64,
    /// The `exp` of the OAUTHBEARER token being authenticated, which ends the session sooner.
    token_expiry_s: Option<f64>,
}

impl Authenticator {
    pub fn new(credentials: Credentials, metrics: Arc<Metrics>, reauth_ms: u64) -> Authenticator {
        Authenticator {
            credentials,
            metrics,
            state: State::Handshake,
            authenticated: None,
            reauth_ms,
            token_expiry_s: None,
        }
    }

    /// How long the session just authenticated lasts (KIP-368): `--connections-max-reauth-ms`,
    /// or less if the OAUTHBEARER token expires first; `None` when sessions do not expire.
    fn session_lifetime(&mut self) -> Option<std::time::Duration> {
        let token_expiry_s = self.token_expiry_s.take();
        if self.reauth_ms == 0 {
            return None;
        }
        let mut lifetime = std::time::Duration::from_millis(self.reauth_ms);
        if let Some(exp) = token_expiry_s {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            lifetime = lifetime.min(std::time::Duration::from_secs_f64((exp - now.as_secs_f64()).max(0.0)));
        }
        Some(lifetime)
    }

    pub fn handshake(&mut self, request: &SaslHandshakeRequest) -> Step {
        let offered: Vec<StrBytes> =
            self.credentials.mechanisms().iter().map(|m| StrBytes::from_string(m.clone())).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        let wanted = request.mechanism.as_str();
        if !matches!(self.state, State::Handshake) {
            let response = response.with_error_code(ResponseError::IllegalSaslState.code());
            return Step { response: response.into(), close: true, principal: None, expires: None };
        }
        match SaslMechanism::parse(wanted).filter(|_| self.credentials.mechanisms().iter().any(|m| m == wanted)) {
            Some(mechanism) => {
                self.state = State::Authenticate(mechanism);
                Step { response: response.into(), close: false, principal: None, expires: None }
            }
            None => {
                tracing::info!(mechanism = wanted, "SASL mechanism not enabled");
                let response = response.with_error_code(ResponseError::UnsupportedSaslMechanism.code());
                Step { response: response.into(), close: true, principal: None, expires: None }
            }
        }
    }

    pub async fn authenticate(&mut self, request: &SaslAuthenticateRequest) -> Step {
        let state = std::mem::replace(&mut self.state, State::Handshake);
        let outcome = match state {
            State::Handshake => {
                let message = "SaslAuthenticate before SaslHandshake";
                return refused(ResponseError::IllegalSaslState, message);
            }
            State::Authenticate(SaslMechanism::Plain) => {
                self.plain(&request.auth_bytes).await.map(|p| (SaslMechanism::Plain, p, Bytes::new()))
            }
            State::Authenticate(SaslMechanism::OAuthBearer) => self
                .oauthbearer(&request.auth_bytes)
                .await
                .map(|p| (SaslMechanism::OAuthBearer, p, Bytes::new()))
                .map_err(|failure| (SaslMechanism::OAuthBearer, failure)),
            State::Authenticate(SaslMechanism::Scram(mechanism)) => {
                match self.scram_first(mechanism, &request.auth_bytes) {
                    Ok(exchange) => {
                        let reply = Bytes::from(exchange.server_first().to_string());
                        self.state = State::ScramFinal(Box::new(exchange));
                        let response = SaslAuthenticateResponse::default().with_auth_bytes(reply);
                        return Step { response: response.into(), close: false, principal: None, expires: None };
                    }
                    Err(failure) => Err((SaslMechanism::Scram(mechanism), failure)),
                }
            }
            State::ScramFinal(exchange) => {
                let mechanism = SaslMechanism::Scram(exchange.mechanism());
                let text = std::str::from_utf8(&request.auth_bytes).unwrap_or_default();
                match exchange.finish(text) {
                    Ok(server_final) => Ok((mechanism, Principal::user(exchange.user()), Bytes::from(server_final))),
                    Err(error) => Err((mechanism, error.into())),
                }
            }
        };
        let (Ok((mechanism, ..)) | Err((mechanism, _))) = &outcome;
        self.metrics.authenticated(mechanism.name(), outcome.is_ok());
        match outcome {
            Ok((_, principal, reply)) => {
                if let Some(earlier) = &self.authenticated
                    && *earlier != principal
                {
                    let message = "re-authentication must keep the principal";
                    return refused(ResponseError::SaslAuthenticationFailed, message);
                }
                tracing::debug!(%principal, "authenticated");
                self.authenticated = Some(principal.clone());
                let lifetime = self.session_lifetime();
                let lifetime_ms = lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX));
                let response =
                    SaslAuthenticateResponse::default().with_auth_bytes(reply).with_session_lifetime_ms(lifetime_ms);
                let expires = lifetime.map(|lifetime| std::time::Instant::now() + lifetime);
                Step { response: response.into(), close: false, principal: Some(principal), expires }
            }
            Err((mechanism, failure)) => {
                tracing::warn!(mechanism = mechanism.name(), reason = %failure, "authentication failed");
                tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
                let message = format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                    mechanism.name()
                );
                refused(ResponseError::SaslAuthenticationFailed, &message)
            }
        }
    }

    /// `[authzid] NUL user NUL password`, checked against the user's SCRAM credential.
    async fn plain(&self, token: &[u8]) -> Result<Principal, (SaslMechanism, Failure)> {
        let fail = |failure| (SaslMechanism::Plain, failure);
        let text = std::str::from_utf8(token).map_err(|_| fail(Failure::PlainMalformed))?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail(Failure::PlainMalformed));
        };
        if user.is_empty() || (!authzid.is_empty() && authzid != user) {
            return Err(fail(Failure::PlainMalformed));
        }
        let verified = self.credentials.verify_password(user, password).await;
        if verified { Ok(Principal::user(user)) } else { Err(fail(Failure::InvalidCredentials)) }
    }

    /// RFC 7628's initial response, `n,[a=authzid],^Aauth=Bearer TOKEN^A…^A^A`: the token
    /// names the principal. A refused token fails at once (Kafka's server first answers with an
    /// error challenge that the client acknowledges; both end in SASL_AUTHENTICATION_FAILED).
    async fn oauthbearer(&mut self, token: &[u8]) -> Result<Principal, Failure> {
        let text = std::str::from_utf8(token).map_err(|_| Failure::OAuthBearerMalformed)?;
        let (gs2, pairs) = text.split_once('\u{1}').ok_or(Failure::OAuthBearerMalformed)?;
        if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
            return Err(Failure::OAuthBearerMalformed);
        }
        let bearer = pairs
            .split('\u{1}')
            .find_map(|pair| pair.strip_prefix("auth="))
            .and_then(|auth| auth.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Failure::OAuthBearerMalformed)?;
        let name = self.credentials.verify_token(bearer).await?;
        self.token_expiry_s = super::jwt::JwtValidator::expiry(bearer);
        let authzid = gs2.split(',').find_map(|part| part.strip_prefix("a="));
        if authzid.is_some_and(|a| !a.is_empty() && a != name) {
            return Err(Failure::OAuthBearerMalformed);
        }
        Ok(Principal::user(&name))
    }

    fn scram_first(&self, mechanism: Mechanism, token: &[u8]) -> Result<ServerExchange, Failure> {
        let text = std::str::from_utf8(token).map_err(|_| scram::ScramError::Malformed("not UTF-8"))?;
        let first = scram::parse_client_first(text)?;
        let credential = self.credentials.credential(&first.user, mechanism);
        Ok(ServerExchange::start(mechanism, first, credential))
    }
}

fn refused(error: ResponseError, message: &str) -> Step {
    let response = SaslAuthenticateResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message.to_string())));
    Step { response: response.into(), close: true, principal: None, expires: None }
}

/// This broker's side of SASL towards the other brokers: PLAIN or SCRAM as
/// `--inter-broker-sasl-username` with the password from `ZOMBI_INTER_BROKER_SASL_PASSWORD`, or
/// OAUTHBEARER with the token of `--oauthbearer-token-endpoint-url`
/// (`--sasl-mechanism-inter-broker-protocol`).
#[derive(Debug)]
pub struct InterBrokerClient {
    mechanism: String,
    credential: Credential,
}

enum Credential {
    Password {
        username: String,
        password: String,
    },
    /// The token in the file of `--oauthbearer-token-endpoint-url`, read again when it changes.
    Token {
        path: std::path::PathBuf,
        token: super::Reloading<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the token.
        match self {
            Credential::Password { username, .. } => f.debug_struct("Password").field("username", username).finish(),
            Credential::Token { path, .. } => f.debug_struct("Token").field("path", path).finish(),
        }
    }
}

/// What this broker's token's reloads are logged as.
const TOKEN: &str = "this broker's OAUTHBEARER token";

impl InterBrokerClient {
    /// `None` without a user and its password, or a readable token file (a cluster's broker
    /// refuses to start then).
    pub fn from_config(security: &crate::config::SecurityConfig) -> Option<InterBrokerClient> {
        use crate::config::security::InterBrokerSasl;
        let credential = match security.inter_broker_sasl.as_ref()? {
            InterBrokerSasl::Password { username, password } => {
                Credential::Password { username: username.clone(), password: password.clone()? }
            }
            InterBrokerSasl::TokenFile(path) => {
                match super::Reloading::build(TOKEN, vec![path.clone()], || read_token(path)) {
                    Ok(token) => Credential::Token { path: path.clone(), token },
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot read this broker's token");
                        return None;
                    }
                }
            }
        };
        Some(InterBrokerClient { mechanism: security.inter_broker_sasl_mechanism.clone(), credential })
    }
}

fn read_token(path: &std::path::Path) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path).map(|text| text.trim().to_string())
}

impl crate::cluster::forward::BrokerSasl for InterBrokerClient {
    fn mechanism(&self) -> &str {
        &self.mechanism
    }

    fn start(&self) -> (Box<dyn crate::cluster::forward::SaslClientExchange>, Bytes) {
        match (&self.credential, Mechanism::from_name(&self.mechanism)) {
            (Credential::Token { path, token }, _) => {
                // RFC 7628's initial client response; the principal is the token's.
                let response = format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", token.get(|| read_token(path)));
                (Box::new(OAuthBearerClient), Bytes::from(response))
            }
            (Credential::Password { username, password }, Some(mechanism)) => {
                let exchange = scram::ClientExchange::start(mechanism, username, password);
                let first = Bytes::from(exchange.client_first());
                (Box::new(ScramClient { exchange, last: None }), first)
            }
            (Credential::Password { username, password }, None) => {
                let token = format!("\0{username}\0{password}");
                (Box::new(PlainClient), Bytes::from(token))
            }
        }
    }
}

/// OAUTHBEARER: the token went out; an empty answer ends it. A server that refuses the token
/// either fails the request (zombi) or answers with its error document (RFC 7628 section 3.2.2).
struct OAuthBearerClient;

impl crate::cluster::forward::SaslClientExchange for OAuthBearerClient {
    fn next(&mut self, answer: &[u8]) -> Result<Option<Bytes>, String> {
        match answer.is_empty() {
            true => Ok(None),
            false => Err(format!("OAUTHBEARER refused: {}", String::from_utf8_lossy(answer))),
        }
    }
}

/// PLAIN: one token, and the server's empty answer ends it.
struct PlainClient;

impl crate::cluster::forward::SaslClientExchange for PlainClient {
    fn next(&mut self, _answer: &[u8]) -> Result<Option<Bytes>, String> {
        Ok(None)
    }
}

/// SCRAM: the client's first message went out; the server's first gets the final message, and
/// the server's final is checked (the server must know the credential too).
struct ScramClient {
    exchange: scram::ClientExchange,
    last: Option<scram::ClientFinal>,
}

impl crate::cluster::forward::SaslClientExchange for ScramClient {
    fn next(&mut self, answer: &[u8]) -> Result<Option<Bytes>, String> {
        let text = std::str::from_utf8(answer).map_err(|_| "a SCRAM answer that is not UTF-8".to_string())?;
        match self.last.take() {
            None => {
                let last = self.exchange.finish(text).map_err(|e| e.to_string())?;
                let message = Bytes::from(last.message.clone());
                self.last = Some(last);
                Ok(Some(message))
            }
            Some(last) => last.verify(text).map(|()| None).map_err(|e| e.to_string()),
        }
    }
}
