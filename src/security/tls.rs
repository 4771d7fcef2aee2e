//! TLS for the SSL and SASL_SSL listeners, through rustls: the PEM certificate chain and key
//! of `--ssl-cert-file` / `--ssl-key-file`, client certificates checked against `--ssl-ca-file`
//! when `--ssl-client-auth` asks for them, TLS 1.2 and 1.3. The files are reread when they
//! change (checked at most once a second, on accept), so a renewed certificate needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::Reloading;
use crate::config::{Case, ClientAuth, PrincipalRule, SecurityConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    client_auth: ClientAuth,
}

/// What the TLS files' reloads are logged as.
const CERTIFICATE: &str = "the TLS certificate";

/// The TLS versions every listener and client of this broker speaks.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Adds the authorities of the PEM file `ca` to `roots`.
fn add_authorities(roots: &mut rustls::RootCertStore, ca: &Path) -> Result<(), TlsError> {
    for certificate in certificates(ca)? {
        roots.add(certificate).map_err(|e| file_error(ca, e))?;
    }
    Ok(())
}

/// The acceptor of the TLS listeners, rebuilt when the files change.
pub struct Tls {
    files: Files,
    acceptor: Reloading<TlsAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// `None` when no listener uses TLS (`http_tls`: the HTTP listener does).
    pub fn from_config(config: &SecurityConfig, http_tls: bool) -> Result<Option<Arc<Tls>>, TlsError> {
        let (Some(cert), Some(key)) = (&config.ssl_cert_file, &config.ssl_key_file) else { return Ok(None) };
        if !config.any_tls() && !http_tls {
            return Ok(None);
        }
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            ca: config.ssl_ca_file.clone(),
            client_auth: config.ssl_client_auth,
        };
        let paths = [Some(&files.cert), Some(&files.key), files.ca.as_ref()].into_iter().flatten().cloned().collect();
        // Built now, so that bad files stop the start.
        let acceptor = Reloading::build(CERTIFICATE, paths, || build(&files))?;
        Ok(Some(Arc::new(Tls { files, acceptor })))
    }

    /// The acceptor for a new connection: rebuilt first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.get(|| build(&self.files))
    }
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certificates)
}

fn build(files: &Files) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(VERSIONS)?;
    let builder = match (&files.ca, files.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), mode) => {
            let mut roots = rustls::RootCertStore::empty();
            add_authorities(&mut roots, ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
        }
    };
    let config = builder.with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How this broker connects to another broker's SSL listener: it trusts the authorities of
/// `--ssl-ca-file` and presents its own certificate (`--ssl-cert-file`), which names its
/// principal there. The connector is built at the first connection and rebuilt when a file
/// changes, as the listeners' acceptor is.
pub struct ClientTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    /// Built at the first connection.
    connector: std::sync::OnceLock<Reloading<tokio_rustls::TlsConnector>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("cert", &self.cert).field("ca", &self.ca).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// `None` without the files (the configuration checks they are there for SSL).
    pub fn from_config(config: &SecurityConfig) -> Option<ClientTls> {
        let (cert, key, ca) =
            (config.ssl_cert_file.clone()?, config.ssl_key_file.clone()?, config.ssl_ca_file.clone()?);
        Some(ClientTls { cert, key, ca, connector: std::sync::OnceLock::new() })
    }

    fn build_connector(&self) -> Result<tokio_rustls::TlsConnector, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        add_authorities(&mut roots, &self.ca)?;
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

impl crate::cluster::forward::BrokerTls for ClientTls {
    fn connector(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let build = || self.build_connector();
        if let Some(connector) = self.connector.get() {
            return Ok(connector.get(build));
        }
        let paths = vec![self.cert.clone(), self.key.clone(), self.ca.clone()];
        let reloading = Reloading::build(CERTIFICATE, paths, build).map_err(|e| e.to_string())?;
        // Two first connections at once both build; one keeps its connector.
        Ok(self.connector.get_or_init(|| reloading).get(build))
    }
}

/// A TLS client for https URLs (the JWKS of OAUTHBEARER): the system's authorities, and those of
/// `ca_file` if given.
pub fn https_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system certificate authority could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca_file {
        add_authorities(&mut roots, ca)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The principal this broker has on its own SSL listeners: its certificate's subject through
/// `--ssl-principal-mapping-rules`, or `ANONYMOUS` where no client certificate is asked for.
pub fn own_principal(config: &SecurityConfig) -> Result<String, TlsError> {
    let (Some(cert), ClientAuth::Requested | ClientAuth::Required) = (&config.ssl_cert_file, config.ssl_client_auth)
    else {
        return Ok("ANONYMOUS".to_string());
    };
    let chain = certificates(cert)?;
    PrincipalMapper::new(&config.ssl_principal_mapping_rules).principal(&chain[0]).map_err(|e| file_error(cert, e))
}

/// A client certificate whose subject no `--ssl-principal-mapping-rules` rule maps (Kafka's
/// `NoMatchingRule`), or that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error("the client certificate cannot be parsed")]
    Unreadable,
    #[error("no rule of --ssl-principal-mapping-rules applies to {0}")]
    NoMatchingRule(String),
}

enum Rule {
    Default,
    Rule { whole: regex::Regex, pattern: regex::Regex, replacement: String, case: Option<Case> },
}

/// Names the principal of a TLS client by its certificate, as Kafka's `SslPrincipalMapper`
/// does: the first rule that matches the subject gives the name.
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for PrincipalMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalMapper").field("rules", &self.rules.len()).finish()
    }
}

impl PrincipalMapper {
    /// The rules come checked from the configuration; one that does not compile is skipped.
    pub fn new(rules: &[PrincipalRule]) -> PrincipalMapper {
        let rules = rules
            .iter()
            .filter_map(|rule| match rule {
                PrincipalRule::Default => Some(Rule::Default),
                PrincipalRule::Rule { pattern, replacement, case } => Some(Rule::Rule {
                    whole: regex::Regex::new(&format!("^(?:{pattern})$")).ok()?,
                    pattern: regex::Regex::new(pattern).ok()?,
                    // Java's `$1` is Rust's `${1}` (Rust would read `$1a` as a group named `1a`).
                    replacement: java_replacement(replacement),
                    case: *case,
                }),
            })
            .collect();
        PrincipalMapper { rules }
    }

    /// The principal name of the client with this DER certificate.
    pub fn principal(&self, certificate: &[u8]) -> Result<String, PrincipalError> {
        let subject = subject_name(certificate).ok_or(PrincipalError::Unreadable)?;
        self.map(&subject)
    }

    fn map(&self, subject: &str) -> Result<String, PrincipalError> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(subject.to_string()),
                Rule::Rule { whole, pattern, replacement, case } if whole.is_match(subject) => {
                    let name = pattern.replace_all(subject, replacement.as_str()).into_owned();
                    return Ok(match case {
                        Some(Case::Lower) => name.to_lowercase(),
                        Some(Case::Upper) => name.to_uppercase(),
                        None => name,
                    });
                }
                Rule::Rule { .. } => {}
            }
        }
        Err(PrincipalError::NoMatchingRule(subject.to_string()))
    }
}

fn java_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next().map(|next| if next == '$' { "$$".to_string() } else { next.to_string() })),
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut group = String::new();
                while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                    group.push(digit);
                }
                out.push_str(&format!("${{{group}}}"));
            }
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC 2253),
/// which is what Kafka's rules match: the RDNs last first, `CN=alice,OU=eng,O=acme`.
pub fn subject_name(certificate: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let certificate = x509_cert::Certificate::from_der(certificate).ok()?;
    let mut out = String::new();
    for (i, rdn) in certificate.tbs_certificate.subject.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&attribute_text(attribute));
        }
    }
    Some(out)
}

/// `KEYWORD=value` for the attributes RFC 2253 names, `OID=#hex` of the DER value otherwise.
fn attribute_text(attribute: &x509_cert::attr::AttributeTypeAndValue) -> String {
    use x509_cert::der::{Encode, Tag, Tagged};
    let keyword = match attribute.oid.to_string().as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        _ => None,
    };
    let bytes = attribute.value.value();
    let text = match attribute.value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(bytes).ok().map(str::to_string)
        }
        Tag::BmpString => {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match (keyword, text) {
        (Some(keyword), Some(text)) => format!("{keyword}={}", escape(&text)),
        _ => {
            let der = attribute.value.to_der().unwrap_or_default();
            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}=#{hex}", keyword.map_or_else(|| attribute.oid.to_string(), str::to_string))
        }
    }
}

/// RFC 2253's escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(rules: &str) -> PrincipalMapper {
        PrincipalMapper::new(&crate::config::security::parse_principal_rules(rules).expect("rules"))
    }

    /// Kafka's own examples: the first matching rule names the principal, `$1` its group, L and
    /// U its case; DEFAULT is the whole subject; no match refuses the client.
    #[test]
    fn rules_map_subjects_as_kafka_does() {
        let rules = mapper(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U,DEFAULT",
        );
        let map = |subject: &str| rules.map(subject).expect("mapped");
        assert_eq!(map("CN=kafka-server1,OU=ServiceUsers,O=Org,C=US"), "kafka-server1");
        assert_eq!(map("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US"), "duke@javasoft");
        assert_eq!(map("cn=duke,ou=javasoft,dc=example,dc=com"), "DUKE@JAVASOFT");
        assert_eq!(map("CN=someone,O=elsewhere"), "CN=someone,O=elsewhere");
        assert!(matches!(mapper("RULE:^CN=(.*)$/$1/").map("O=x"), Err(PrincipalError::NoMatchingRule(_))));
    }

    #[test]
    fn values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
        assert_eq!(java_replacement("$1@$2x\\$"), "${1}@${2}x$$");
    }
}
