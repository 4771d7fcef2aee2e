//! TLS for the SSL and SASL_SSL listeners, through rustls: the PEM certificate chain and key
//! of `--ssl-cert-file` / `--ssl-key-file`, client certificates checked against `--ssl-ca-file`
//! when `--ssl-client-auth` asks for them, TLS 1.2 and 1.3. The files are reread when they
//! change (checked at most once a second, on accept), so a renewed certificate needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, SecurityConfig};

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

/// How often the files' modification times are looked at.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The acceptor of the TLS listeners, rebuilt when the files change.
pub struct Tls {
    files: Files,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

struct Current {
    acceptor: TlsAcceptor,
    modified: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl Tls {
    /// `None` when no listener uses TLS.
    pub fn from_config(config: &SecurityConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        let (Some(cert), Some(key)) = (&config.ssl_cert_file, &config.ssl_key_file) else { return Ok(None) };
        if !config.any_tls() {
            return Ok(None);
        }
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            ca: config.ssl_ca_file.clone(),
            client_auth: config.ssl_client_auth,
        };
        let acceptor = build(&files)?;
        let current = Current { acceptor, modified: modified(&files), checked: Instant::now() };
        Ok(Some(Arc::new(Tls { files, current: Mutex::new(current) })))
    }

    /// The acceptor for a new connection: rebuilt first if a file changed (a broken new file
    /// is logged and the previous configuration kept).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut current = self.current.lock();
        if current.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            current.checked = Instant::now();
            let now = modified(&self.files);
            if now != current.modified {
                current.modified = now;
                match build(&self.files) {
                    Ok(acceptor) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                        current.acceptor = acceptor;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot reload the TLS certificate; keeping the previous one")
                    }
                }
            }
        }
        current.acceptor.clone()
    }
}

fn modified(files: &Files) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
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
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (&files.ca, files.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), mode) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots.add(certificate).map_err(|e| file_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
        }
    };
    let config = builder.with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
