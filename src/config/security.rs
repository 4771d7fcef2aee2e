//! Listeners and their security (issue 18): Kafka's listener model (`--listeners`,
//! `--advertised-listeners`), TLS through rustls, and the SASL mechanisms a SASL listener offers.
//! docs/security.md is the user's guide.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::ConfigError;

/// The flags as given; the flags' help, defaults and TOML keys are their rows in `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Security")]
pub struct SecurityFlags {
    #[arg(long = "listeners", env = "ZOMBI_LISTENERS")]
    pub listeners: Option<String>,
    #[arg(long = "advertised-listeners", env = "ZOMBI_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    #[arg(long = "inter-broker-listener-name", env = "ZOMBI_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    #[arg(long = "sasl-mechanism-inter-broker-protocol", env = "ZOMBI_SASL_MECHANISM_INTER_BROKER_PROTOCOL")]
    pub sasl_mechanism_inter_broker_protocol: String,
    #[arg(long = "inter-broker-sasl-username", env = "ZOMBI_INTER_BROKER_SASL_USERNAME")]
    pub inter_broker_sasl_username: Option<String>,
    #[arg(long = "ssl-cert-file", env = "ZOMBI_SSL_CERT_FILE")]
    pub ssl_cert_file: Option<PathBuf>,
    #[arg(long = "ssl-key-file", env = "ZOMBI_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,
    #[arg(long = "ssl-ca-file", env = "ZOMBI_SSL_CA_FILE")]
    pub ssl_ca_file: Option<PathBuf>,
    #[arg(long = "ssl-client-auth", env = "ZOMBI_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: String,
    #[arg(long = "ssl-principal-mapping-rules", env = "ZOMBI_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: String,
    #[arg(long = "sasl-enabled-mechanisms", env = "ZOMBI_SASL_ENABLED_MECHANISMS")]
    pub sasl_enabled_mechanisms: String,
    #[arg(long = "connections-max-reauth-ms", env = "ZOMBI_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: u64,
    #[arg(long = "bootstrap-admin", env = "ZOMBI_BOOTSTRAP_ADMIN")]
    pub bootstrap_admin: Option<String>,
    #[arg(long = "authorizer", env = "ZOMBI_AUTHORIZER")]
    pub authorizer: String,
    #[arg(long = "super-users", env = "ZOMBI_SUPER_USERS")]
    pub super_users: Option<String>,
    #[arg(
        long = "allow-everyone-if-no-acl-found",
        env = "ZOMBI_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_everyone_if_no_acl_found: bool,
    #[arg(long = "oauthbearer-jwks-file", env = "ZOMBI_OAUTHBEARER_JWKS_FILE")]
    pub oauthbearer_jwks_file: Option<PathBuf>,
    #[arg(long = "oauthbearer-jwks-endpoint-url", env = "ZOMBI_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub oauthbearer_jwks_endpoint_url: Option<String>,
    #[arg(long = "oauthbearer-jwks-endpoint-refresh-ms", env = "ZOMBI_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS")]
    pub oauthbearer_jwks_endpoint_refresh_ms: u64,
    #[arg(long = "oauthbearer-issuer", env = "ZOMBI_OAUTHBEARER_ISSUER")]
    pub oauthbearer_issuer: Option<String>,
    #[arg(long = "oauthbearer-audience", env = "ZOMBI_OAUTHBEARER_AUDIENCE")]
    pub oauthbearer_audience: Option<String>,
    #[arg(long = "oauthbearer-sub-claim-name", env = "ZOMBI_OAUTHBEARER_SUB_CLAIM_NAME")]
    pub oauthbearer_sub_claim_name: String,
    #[arg(long = "oauthbearer-token-endpoint-url", env = "ZOMBI_OAUTHBEARER_TOKEN_ENDPOINT_URL")]
    pub oauthbearer_token_endpoint_url: Option<String>,
}

/// Kafka's security protocols, one per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One Kafka listener: its name (the security protocol's), where it binds, and the address
/// clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Whether the advertised address was given (else it follows the bound port).
    pub advertised_explicit: bool,
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// Where the bootstrap admin's password comes from.
pub const BOOTSTRAP_ADMIN_PASSWORD_ENV: &str = "ZOMBI_BOOTSTRAP_ADMIN_PASSWORD";
/// Where the password of `--inter-broker-sasl-username` comes from.
pub const INTER_BROKER_SASL_PASSWORD_ENV: &str = "ZOMBI_INTER_BROKER_SASL_PASSWORD";
/// The mechanisms a broker can authenticate to another with (OAUTHBEARER with the token of
/// `--oauthbearer-token-endpoint-url`).
pub const INTER_BROKER_SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// The SASL mechanisms zombi implements.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
pub const CLIENT_AUTH_MODES: &[&str] = &["none", "requested", "required"];
pub const AUTHORIZERS: &[&str] = &["none", "standard"];

/// One of Kafka's `ssl.principal.mapping.rules`: how a client certificate's subject (as
/// RFC 2253 writes it, `CN=alice,OU=eng,O=acme`) becomes the name of its principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalRule {
    /// The whole subject.
    Default,
    /// When `pattern` matches the whole subject, the subject with every match of `pattern`
    /// replaced by `replacement` (Java's `replaceAll`, `$1` naming a group), in lower or upper
    /// case if asked.
    Rule { pattern: String, replacement: String, case: Option<Case> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Lower,
    Upper,
}

/// Kafka's rules syntax: `RULE:pattern/replacement/[LU]` and `DEFAULT`, separated by commas or
/// new lines; a `/` inside a pattern or replacement is escaped as `\/`.
pub fn parse_principal_rules(text: &str) -> Result<Vec<PrincipalRule>, String> {
    let mut rules = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            rules.push(PrincipalRule::Default);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("RULE:") {
            let (pattern, after) = until_slash(after).ok_or_else(|| format!("{rest:?}: no `/` after the pattern"))?;
            let (replacement, after) =
                until_slash(after).ok_or_else(|| format!("{rest:?}: no `/` after the replacement"))?;
            let (case, after) = match after.chars().next() {
                Some('L') => (Some(Case::Lower), &after[1..]),
                Some('U') => (Some(Case::Upper), &after[1..]),
                _ => (None, after),
            };
            regex::Regex::new(&pattern).map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))?;
            rules.push(PrincipalRule::Rule { pattern, replacement, case });
            rest = after;
        } else {
            let rule = rest.split([',', '\n']).next().unwrap_or(rest);
            return Err(format!("Invalid rule: {rule}"));
        }
        rest = rest.trim_start();
        match rest.chars().next() {
            None => {}
            Some(',' | '\n') => rest = rest[1..].trim_start(),
            Some(_) => return Err(format!("Invalid rule: {}", rest.split([',', '\n']).next().unwrap_or(rest))),
        }
    }
    if rules.is_empty() {
        return Err("no rule (DEFAULT is the default)".to_string());
    }
    Ok(rules)
}

/// The text up to the first unescaped `/` (escapes kept, as Kafka keeps them) and what follows it.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((text[..index].to_string(), &text[index + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// Where the keys that sign tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `--oauthbearer-jwks-file`: reread when it changes.
    File(PathBuf),
    /// `--oauthbearer-jwks-endpoint-url` (http or https), fetched every `refresh_ms` and when a
    /// token names a key it does not hold.
    Url { url: String, refresh_ms: u64 },
}

/// What OAUTHBEARER (and HTTP bearer) tokens are checked against (`security::jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerConfig {
    pub jwks: JwksSource,
    /// `--ssl-ca-file`: authorities trusted for an https JWKS URL beside the system's.
    pub ca_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The claim that names the principal (Kafka's `sasl.oauthbearer.sub.claim.name`).
    pub principal_claim: String,
}

/// The resolved security settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// The first is the one `--kafka-listen` names when `--listeners` is not given.
    pub listeners: Vec<Listener>,
    /// The listener brokers of a cluster reach each other on (Kafka's
    /// `inter.broker.listener.name`): given, else PLAINTEXT, else SSL, else the first.
    pub inter_broker_listener: String,
    /// `--sasl-mechanism-inter-broker-protocol`: the mechanism brokers authenticate to each
    /// other with on a SASL inter-broker listener.
    pub inter_broker_sasl_mechanism: String,
    /// Who a broker authenticates to the others as on a SASL inter-broker listener.
    pub inter_broker_sasl: Option<InterBrokerSasl>,
    pub ssl_cert_file: Option<PathBuf>,
    pub ssl_key_file: Option<PathBuf>,
    pub ssl_ca_file: Option<PathBuf>,
    pub ssl_client_auth: ClientAuth,
    /// `--ssl-principal-mapping-rules`: how a client certificate names the principal on an SSL
    /// listener.
    pub ssl_principal_mapping_rules: Vec<PrincipalRule>,
    pub sasl_mechanisms: Vec<String>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): how long a SASL authentication lasts
    /// before the client must re-authenticate on the same connection (0: for the connection's
    /// life).
    pub connections_max_reauth_ms: u64,
    /// `--bootstrap-admin`; its password is read from `ZOMBI_BOOTSTRAP_ADMIN_PASSWORD` at start
    /// (`BOOTSTRAP_ADMIN_PASSWORD_ENV`), and never kept in the configuration.
    pub bootstrap_admin: Option<String>,
    /// `--authorizer standard`: Kafka's StandardAuthorizer over ACLs (`security::acl`).
    pub acls: bool,
    /// `--super-users` and the bootstrap admin, as principals (`User:NAME`).
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
    /// OAUTHBEARER's JWT validation, when `--oauthbearer-jwks-file` is given.
    pub oauthbearer: Option<OAuthBearerConfig>,
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("listeners", &self.listeners)
            .field("inter_broker_listener", &self.inter_broker_listener)
            .field("inter_broker_sasl_mechanism", &self.inter_broker_sasl_mechanism)
            .field("inter_broker_sasl", &self.inter_broker_sasl)
            .field("ssl_cert_file", &self.ssl_cert_file)
            .field("ssl_key_file", &self.ssl_key_file)
            .field("ssl_ca_file", &self.ssl_ca_file)
            .field("ssl_client_auth", &self.ssl_client_auth)
            .field("ssl_principal_mapping_rules", &self.ssl_principal_mapping_rules)
            .field("sasl_mechanisms", &self.sasl_mechanisms)
            .field("connections_max_reauth_ms", &self.connections_max_reauth_ms)
            .field("bootstrap_admin", &self.bootstrap_admin)
            .field("acls", &self.acls)
            .field("super_users", &self.super_users)
            .field("allow_everyone_if_no_acl_found", &self.allow_everyone_if_no_acl_found)
            .field("oauthbearer", &self.oauthbearer)
            .finish()
    }
}

/// A broker's SASL credentials towards the other brokers.
#[derive(Clone, PartialEq, Eq)]
pub enum InterBrokerSasl {
    /// PLAIN or SCRAM: `--inter-broker-sasl-username` and the password from
    /// `ZOMBI_INTER_BROKER_SASL_PASSWORD`.
    Password { username: String, password: Option<String> },
    /// OAUTHBEARER: the token (a JWT) in the file `--oauthbearer-token-endpoint-url file://…`
    /// names, read again as it changes; its principal is the token's.
    TokenFile(PathBuf),
}

impl std::fmt::Debug for InterBrokerSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        match self {
            InterBrokerSasl::Password { username, .. } => {
                f.debug_struct("InterBrokerSasl::Password").field("username", username).finish()
            }
            InterBrokerSasl::TokenFile(path) => f.debug_tuple("InterBrokerSasl::TokenFile").field(path).finish(),
        }
    }
}

impl SecurityConfig {
    /// The listener brokers reach each other on.
    pub fn inter_broker(&self) -> &Listener {
        self.listeners.iter().find(|l| l.name == self.inter_broker_listener).unwrap_or(&self.listeners[0])
    }

    pub fn any_tls(&self) -> bool {
        self.listeners.iter().any(|l| l.protocol.tls())
    }

    pub fn any_sasl(&self) -> bool {
        self.listeners.iter().any(|l| l.protocol.sasl())
    }
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

impl SecurityFlags {
    /// `kafka_listen` and `kafka_advertised` are the one-listener shorthand, used when
    /// `--listeners` is not given.
    pub(super) fn resolve(
        self,
        kafka_listen: SocketAddr,
        kafka_advertised: (String, i32, bool),
    ) -> Result<SecurityConfig, ConfigError> {
        let listeners = match &self.listeners {
            None => {
                if self.advertised_listeners.is_some() {
                    return Err(invalid("advertised-listeners", "needs --listeners"));
                }
                let (host, port, explicit) = kafka_advertised;
                vec![Listener {
                    name: "PLAINTEXT".to_string(),
                    protocol: SecurityProtocol::Plaintext,
                    bind: kafka_listen,
                    advertised_host: host,
                    advertised_port: port,
                    advertised_explicit: explicit,
                }]
            }
            Some(text) => listeners(text, self.advertised_listeners.as_deref())?,
        };
        let ssl_client_auth = match self.ssl_client_auth.as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(invalid("ssl-client-auth", format!("{other:?} is not one of none, requested, required")));
            }
        };
        let mut sasl_mechanisms = Vec::new();
        for mechanism in self.sasl_enabled_mechanisms.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !SASL_MECHANISMS.contains(&mechanism) {
                return Err(invalid(
                    "sasl-enabled-mechanisms",
                    format!("{mechanism} is not supported (supported: {})", SASL_MECHANISMS.join(", ")),
                ));
            }
            if !sasl_mechanisms.iter().any(|m| m == mechanism) {
                sasl_mechanisms.push(mechanism.to_string());
            }
        }
        let inter_broker_listener = match &self.inter_broker_listener_name {
            Some(name) if listeners.iter().any(|l| &l.name == name) => name.clone(),
            Some(name) => {
                return Err(invalid("inter-broker-listener-name", format!("{name} is not one of --listeners")));
            }
            None => ["PLAINTEXT", "SSL"]
                .into_iter()
                .find(|name| listeners.iter().any(|l| l.name == *name))
                .unwrap_or(&listeners[0].name)
                .to_string(),
        };
        let mechanism = self.sasl_mechanism_inter_broker_protocol;
        if !INTER_BROKER_SASL_MECHANISMS.contains(&mechanism.as_str()) {
            let reason = format!("{mechanism} is not one of {}", INTER_BROKER_SASL_MECHANISMS.join(", "));
            return Err(invalid("sasl-mechanism-inter-broker-protocol", reason));
        }
        let token_file = match self.oauthbearer_token_endpoint_url {
            Some(url) => match url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => Some(PathBuf::from(path)),
                _ => {
                    let reason = format!(
                        "{url:?}: only a file:///PATH URL, of a file holding this broker's token (a JWT), is supported; a broker does not fetch tokens from an identity provider"
                    );
                    return Err(invalid("oauthbearer-token-endpoint-url", reason));
                }
            },
            None => None,
        };
        let oauthbearer = mechanism == "OAUTHBEARER";
        let inter_broker_sasl = match (self.inter_broker_sasl_username, token_file) {
            (Some(username), _) if username.is_empty() => {
                return Err(invalid("inter-broker-sasl-username", "must not be empty"));
            }
            (Some(username), None) if !oauthbearer => {
                // Checked at start, where a missing password stops the broker with its own error.
                let password = std::env::var(INTER_BROKER_SASL_PASSWORD_ENV).ok().filter(|p| !p.is_empty());
                Some(InterBrokerSasl::Password { username, password })
            }
            (None, Some(file)) if oauthbearer => Some(InterBrokerSasl::TokenFile(file)),
            (None, None) => None,
            (Some(_), _) if oauthbearer => {
                let reason = "with OAUTHBEARER between brokers their principal is their token's: give --oauthbearer-token-endpoint-url instead";
                return Err(invalid("inter-broker-sasl-username", reason));
            }
            _ => {
                let reason = "is the brokers' token for --sasl-mechanism-inter-broker-protocol OAUTHBEARER";
                return Err(invalid("oauthbearer-token-endpoint-url", reason));
            }
        };
        if inter_broker_sasl.is_some() && !sasl_mechanisms.contains(&mechanism) {
            let reason = format!("{mechanism} is not one of --sasl-enabled-mechanisms");
            return Err(invalid("sasl-mechanism-inter-broker-protocol", reason));
        }
        let jwks = match (self.oauthbearer_jwks_file, self.oauthbearer_jwks_endpoint_url) {
            (Some(_), Some(_)) => {
                let reason = "give --oauthbearer-jwks-file or --oauthbearer-jwks-endpoint-url, not both";
                return Err(invalid("oauthbearer-jwks-endpoint-url", reason));
            }
            (Some(file), None) => Some(JwksSource::File(file)),
            (None, Some(url)) => {
                let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or("");
                if host.is_empty() || host.starts_with('/') || url.contains(char::is_whitespace) {
                    return Err(invalid("oauthbearer-jwks-endpoint-url", format!("{url:?} is not an http(s) URL")));
                }
                if self.oauthbearer_jwks_endpoint_refresh_ms == 0 {
                    return Err(invalid("oauthbearer-jwks-endpoint-refresh-ms", "must be above 0"));
                }
                Some(JwksSource::Url { url, refresh_ms: self.oauthbearer_jwks_endpoint_refresh_ms })
            }
            (None, None) => None,
        };
        let config = SecurityConfig {
            listeners,
            inter_broker_listener,
            inter_broker_sasl_mechanism: mechanism,
            inter_broker_sasl,
            ssl_cert_file: self.ssl_cert_file,
            ssl_key_file: self.ssl_key_file,
            ssl_ca_file: self.ssl_ca_file.clone(),
            ssl_client_auth,
            ssl_principal_mapping_rules: parse_principal_rules(&self.ssl_principal_mapping_rules)
                .map_err(|e| invalid("ssl-principal-mapping-rules", e))?,
            sasl_mechanisms,
            connections_max_reauth_ms: self.connections_max_reauth_ms,
            bootstrap_admin: None,
            acls: match self.authorizer.as_str() {
                "none" => false,
                "standard" => true,
                other => return Err(invalid("authorizer", format!("{other:?} is not one of none, standard"))),
            },
            super_users: match &self.super_users {
                Some(text) => parse_super_users(text).map_err(|e| invalid("super-users", e))?,
                None => Vec::new(),
            },
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
            oauthbearer: jwks.map(|jwks| OAuthBearerConfig {
                jwks,
                ca_file: self.ssl_ca_file.clone(),
                issuer: self.oauthbearer_issuer,
                audience: self.oauthbearer_audience,
                principal_claim: self.oauthbearer_sub_claim_name,
            }),
        };
        if config.sasl_mechanisms.iter().any(|m| m == "OAUTHBEARER") && config.oauthbearer.is_none() {
            let reason = "OAUTHBEARER needs --oauthbearer-jwks-file or --oauthbearer-jwks-endpoint-url";
            return Err(invalid("oauthbearer-jwks-file", reason));
        }
        if config.any_tls() && (config.ssl_cert_file.is_none() || config.ssl_key_file.is_none()) {
            return Err(invalid(
                "ssl-cert-file",
                "an SSL or SASL_SSL listener needs --ssl-cert-file and --ssl-key-file",
            ));
        }
        if config.ssl_client_auth != ClientAuth::None && config.ssl_ca_file.is_none() {
            return Err(invalid("ssl-ca-file", "--ssl-client-auth requested or required needs --ssl-ca-file"));
        }
        if config.any_sasl() && config.sasl_mechanisms.is_empty() {
            return Err(invalid("sasl-enabled-mechanisms", "a SASL listener needs at least one mechanism"));
        }
        let bootstrap_admin = match self.bootstrap_admin {
            Some(name) if name.is_empty() || name.contains(['=', ',']) => {
                return Err(invalid("bootstrap-admin", "a user name without '=' or ','"));
            }
            other => other,
        };
        // The bootstrap admin administers a fresh secured broker: it is a super user.
        let mut super_users = config.super_users.clone();
        if let Some(admin) = &bootstrap_admin
            && !super_users.contains(&format!("User:{admin}"))
        {
            super_users.push(format!("User:{admin}"));
        }
        Ok(SecurityConfig { bootstrap_admin, super_users, ..config })
    }
}

/// `--super-users`: Kafka's `super.users`, `User:NAME;User:OTHER`.
fn parse_super_users(text: &str) -> Result<Vec<String>, String> {
    let mut users = Vec::new();
    for user in text.split(';').map(str::trim).filter(|u| !u.is_empty()) {
        match user.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => users.push(user.to_string()),
            _ => return Err(format!("{user:?} is not a principal (User:NAME)")),
        }
    }
    Ok(users)
}

/// `NAME://host:port,…`: Kafka's listener syntax, each name one of its security protocols.
fn endpoints(name: &'static str, text: &str) -> Result<Vec<(SecurityProtocol, String, u16)>, ConfigError> {
    let mut found = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (protocol, address) =
            part.split_once("://").ok_or_else(|| invalid(name, format!("{part:?} is not NAME://HOST:PORT")))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            invalid(name, format!("{protocol:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))
        })?;
        let (host, port) =
            address.rsplit_once(':').ok_or_else(|| invalid(name, format!("{part:?} is not NAME://HOST:PORT")))?;
        let port: u16 = port.parse().map_err(|_| invalid(name, format!("{part:?}: the port is not a number")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if found.iter().any(|(p, _, _)| *p == protocol) {
            return Err(invalid(name, format!("{} is named twice", protocol.name())));
        }
        found.push((protocol, host, port));
    }
    if found.is_empty() {
        return Err(invalid(name, "no listener given"));
    }
    Ok(found)
}

fn listeners(text: &str, advertised: Option<&str>) -> Result<Vec<Listener>, ConfigError> {
    let advertised = match advertised {
        Some(text) => endpoints("advertised-listeners", text)?,
        None => Vec::new(),
    };
    let mut listeners = Vec::new();
    for (protocol, host, port) in endpoints("listeners", text)? {
        let ip: IpAddr = if host.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            match host.parse() {
                Ok(ip) => ip,
                Err(_) => (host.as_str(), port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addresses| addresses.next())
                    .map(|address| address.ip())
                    .ok_or_else(|| invalid("listeners", format!("cannot resolve {host:?}")))?,
            }
        };
        let bind = SocketAddr::new(ip, port);
        let (advertised_host, advertised_port, advertised_explicit) =
            match advertised.iter().find(|(p, _, _)| *p == protocol) {
                Some((_, host, port)) => (host.clone(), i32::from(*port), true),
                None => {
                    let shown = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
                    (shown.to_string(), i32::from(port), false)
                }
            };
        listeners.push(Listener {
            name: protocol.name().to_string(),
            protocol,
            bind,
            advertised_host,
            advertised_port,
            advertised_explicit,
        });
    }
    if let Some((protocol, _, _)) = advertised.iter().find(|(p, _, _)| !listeners.iter().any(|l| l.protocol == *p)) {
        return Err(invalid("advertised-listeners", format!("{} is not among --listeners", protocol.name())));
    }
    Ok(listeners)
}
