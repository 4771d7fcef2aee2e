//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: credentials kept
//! as Kafka keeps them (`salt=…,stored_key=…,server_key=…,iterations=…`, never the password), and
//! the server's side of the exchange.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};

/// Kafka's bounds on the iteration count (`ScramMechanism.minIterations` / `maxIterations`).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The id DescribeUserScramCredentials and AlterUserScramCredentials use.
    pub fn id(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_id(id: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.id() == id)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_len(self) -> usize {
        self.digest().output_len()
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// Hi(password, salt, iterations): PBKDF2 with this mechanism's HMAC. CPU work of a few
    /// milliseconds: callers on the async runtime run it on a blocking thread.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        let rounds = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), rounds, salt, password, &mut out);
        out
    }
}

/// A stored SCRAM credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl Credential {
    /// From the salted password (what AlterUserScramCredentials carries; the password itself
    /// never reaches the broker that way).
    pub fn from_salted(mechanism: Mechanism, salt: Vec<u8>, salted_password: &[u8], iterations: u32) -> Credential {
        let client_key = mechanism.hmac_of(salted_password, b"Client Key");
        Credential {
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac_of(salted_password, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// From a password, with a fresh random salt (blocking CPU work: see `salted_password`).
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: u32) -> Credential {
        let salt = random_bytes(24);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's (PLAIN's check; blocking CPU work).
    pub fn verifies(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let expected = Credential::from_salted(mechanism, self.salt.clone(), &salted, self.iterations);
        constant_time_eq(&expected.stored_key, &self.stored_key)
    }

    /// Kafka's text form.
    pub fn format(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key),
            self.iterations
        )
    }

    pub fn parse(text: &str) -> Option<Credential> {
        let (mut salt, mut stored_key, mut server_key, mut iterations) = (None, None, None, None);
        for part in text.split(',') {
            let (key, value) = part.split_once('=')?;
            match key {
                "salt" => salt = BASE64.decode(value).ok(),
                "stored_key" => stored_key = BASE64.decode(value).ok(),
                "server_key" => server_key = BASE64.decode(value).ok(),
                "iterations" => iterations = value.parse().ok(),
                _ => {}
            }
        }
        Some(Credential { salt: salt?, stored_key: stored_key?, server_key: server_key?, iterations: iterations? })
    }
}

pub fn random_bytes(count: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0; count];
    // The system's random source failing is not something a broker can work around.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("the system random source failed");
    }
    bytes
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed; the client only ever learns "authentication failed".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    #[error("the nonce does not continue the exchange")]
    Nonce,
}

/// The client's first message, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
    /// `client-first-message-bare`, part of the signed AuthMessage.
    pub bare: String,
    pub gs2_header: String,
}

/// `gs2-header client-first-message-bare`: `n,,n=user,r=nonce[,extensions]`.
pub fn parse_client_first(message: &str) -> Result<ClientFirst, ScramError> {
    let mut parts = message.splitn(3, ',');
    let binding = parts.next().ok_or(ScramError::Malformed("empty"))?;
    let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("no client-first-message-bare"))?;
    // Kafka supports no channel binding: "n" (client does not support it) or "y" (thinks the
    // server does not).
    if binding != "n" && binding != "y" {
        return Err(ScramError::Malformed("channel binding is not supported"));
    }
    let mut user = None;
    let mut nonce = None;
    for attribute in bare.split(',') {
        if let Some(value) = attribute.strip_prefix("n=") {
            user = Some(unescape_name(value)?);
        } else if let Some(value) = attribute.strip_prefix("r=") {
            nonce = Some(value.to_string());
        } else if attribute.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
    }
    let user = user.ok_or(ScramError::Malformed("no user name"))?;
    if let Some(authzid) = authzid.strip_prefix("a=")
        && unescape_name(authzid)? != user
    {
        return Err(ScramError::Malformed("authorization id differs from the user"));
    }
    let nonce = nonce.filter(|n| !n.is_empty()).ok_or(ScramError::Malformed("no nonce"))?;
    Ok(ClientFirst { user, nonce, bare: bare.to_string(), gs2_header: format!("{binding},{authzid},") })
}

fn unescape_name(value: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).ok_or(ScramError::Malformed("bad escape in the user name"))?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server's side of one exchange, after the client's first message.
#[derive(Debug)]
pub struct ServerExchange {
    mechanism: Mechanism,
    first: ClientFirst,
    /// `None` for an unknown user: the exchange runs on with a made-up salt and fails at the
    /// end, so that the answers do not tell which users exist.
    credential: Option<Credential>,
    server_first: String,
}

impl ServerExchange {
    /// Answers the client's first message: `r=nonce,s=salt,i=iterations`.
    pub fn start(mechanism: Mechanism, first: ClientFirst, credential: Option<Credential>) -> ServerExchange {
        let nonce = format!("{}{}", first.nonce, BASE64.encode(random_bytes(18)));
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (random_bytes(24), ITERATIONS_MIN),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        ServerExchange { mechanism, first, credential, server_first }
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    pub fn user(&self) -> &str {
        &self.first.user
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Checks the client's final message (`c=…,r=…,p=proof`) and returns the server's
    /// (`v=signature`).
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) =
            client_final.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof in the final message"))?;
        let mut channel = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(value) = attribute.strip_prefix("c=") {
                channel = Some(value);
            } else if let Some(value) = attribute.strip_prefix("r=") {
                nonce = Some(value);
            }
        }
        // Kafka checks that the final nonce ends with the server's (ScramSaslServer): older
        // librdkafka (2.0.2, Debian 12's) sends its own nonce in front of the server's, which
        // already begins with it.
        // The proof signs what the client sent either way.
        let expected_nonce = self.server_first.strip_prefix("r=").and_then(|r| r.split(',').next());
        if !nonce.zip(expected_nonce).is_some_and(|(nonce, expected)| nonce.ends_with(expected)) {
            return Err(ScramError::Nonce);
        }
        let channel =
            channel.and_then(|c| BASE64.decode(c).ok()).ok_or(ScramError::Malformed("bad channel binding"))?;
        if channel != self.first.gs2_header.as_bytes() {
            return Err(ScramError::Malformed("channel binding differs from the first message"));
        }
        let proof = BASE64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = self.credential.as_ref().ok_or(ScramError::InvalidCredentials)?;
        let auth_message = format!("{},{},{}", self.first.bare, self.server_first, without_proof);
        let m = self.mechanism;
        let client_signature = m.hmac_of(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = m.hmac_of(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

/// The client's side of one exchange, as a broker authenticates to another (inter-broker SASL).
#[derive(Debug)]
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    /// `client-first-message-bare`: `n=user,r=nonce`.
    bare: String,
    nonce: String,
}

/// What the client keeps between its final message and the server's.
#[derive(Debug)]
pub struct ClientFinal {
    pub message: String,
    server_signature: Vec<u8>,
}

impl ClientExchange {
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> ClientExchange {
        let nonce = BASE64.encode(random_bytes(18));
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ClientExchange { mechanism, password: password.to_string(), bare: format!("n={name},r={nonce}"), nonce }
    }

    /// `n,,n=user,r=nonce`.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.bare)
    }

    /// The final message (`c=biws,r=nonce,p=proof`) for the server's first (`r=…,s=…,i=…`).
    pub fn finish(&self, server_first: &str) -> Result<ClientFinal, ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            if let Some(value) = attribute.strip_prefix("r=") {
                nonce = Some(value);
            } else if let Some(value) = attribute.strip_prefix("s=") {
                salt = BASE64.decode(value).ok();
            } else if let Some(value) = attribute.strip_prefix("i=") {
                iterations = value.parse::<u32>().ok();
            }
        }
        let nonce =
            nonce.filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len()).ok_or(ScramError::Nonce)?;
        let salt = salt.ok_or(ScramError::Malformed("no salt in the server's first message"))?;
        let iterations = iterations
            .filter(|i| (1..=ITERATIONS_MAX).contains(i))
            .ok_or(ScramError::Malformed("bad iteration count in the server's first message"))?;
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac_of(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        // `biws` is base64 of the gs2 header `n,,`.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let client_signature = m.hmac_of(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(k, s)| k ^ s).collect();
        let server_key = m.hmac_of(&salted, b"Server Key");
        Ok(ClientFinal {
            message: format!("{without_proof},p={}", BASE64.encode(proof)),
            server_signature: m.hmac_of(&server_key, auth_message.as_bytes()),
        })
    }
}

impl ClientFinal {
    /// Checks the server's final message (`v=signature`): the server knew the credential too.
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        let signature = server_final
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match constant_time_eq(&signature, &self.server_signature) {
            true => Ok(()),
            false => Err(ScramError::InvalidCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side against the server's: the right password authenticates both ways, a
    /// wrong one is refused, and a forged server signature is caught.
    #[test]
    fn the_client_exchange_authenticates_against_the_server() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let credential = Credential::from_password(m, "s3cret", ITERATIONS_MIN);
            let run = |password: &str| {
                let client = ClientExchange::start(m, "broker=1,a", password);
                let first = parse_client_first(&client.client_first()).expect("first");
                assert_eq!(first.user, "broker=1,a");
                let server = ServerExchange::start(m, first, Some(credential.clone()));
                let last = client.finish(server.server_first()).expect("final");
                server.finish(&last.message).map(|server_final| (last, server_final))
            };
            let (last, server_final) = run("s3cret").expect("authenticated");
            assert_eq!(last.verify(&server_final), Ok(()));
            assert_eq!(last.verify("v=AAAA"), Err(ScramError::InvalidCredentials));
            assert_eq!(run("wrong").err(), Some(ScramError::InvalidCredentials));
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example, from the server's side: the same server-first (with
    /// the RFC's nonce and salt) and the RFC's server signature.
    #[test]
    fn rfc7677_example_verifies() {
        let m = Mechanism::Sha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let credential = Credential::from_salted(m, salt, &salted, 4096);
        let first = parse_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("first");
        let exchange = ServerExchange {
            mechanism: m,
            first,
            credential: Some(credential),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_string(),
        };
        let last = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(last), Ok("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_string()));
        let wrong = last.replace("p=dHzb", "p=dHzc");
        assert_eq!(exchange.finish(&wrong), Err(ScramError::InvalidCredentials));
    }

    #[test]
    fn credentials_round_trip_and_plain_checks_them() {
        for m in Mechanism::ALL {
            let credential = Credential::from_password(m, "s3cret", ITERATIONS_MIN);
            assert_eq!(Credential::parse(&credential.format()), Some(credential.clone()));
            assert!(credential.verifies(m, "s3cret"));
            assert!(!credential.verifies(m, "s3cres"));
        }
    }

    #[test]
    fn user_names_are_unescaped_and_bad_first_messages_refused() {
        let first = parse_client_first("n,,n=a=2Cb=3Dc,r=abc").expect("first");
        assert_eq!(first.user, "a,b=c");
        assert!(parse_client_first("p=tls-unique,,n=u,r=x").is_err());
        assert!(parse_client_first("n,,n=u").is_err());
        assert!(parse_client_first("n,a=other,n=u,r=x").is_err());
        assert!(parse_client_first("n,,n=u=2X,r=x").is_err());
    }
}
