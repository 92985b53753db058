//! STARTTLS material: the certificate and key from `[smtp.tls]`, loaded into a rustls server config
//! (ring provider) that SIGHUP replaces. A session takes the current config when it starts TLS, so
//! a reload never drops a session; a reload that fails keeps the old certificate and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    /// Refuse mail until the client has started TLS.
    pub require: bool,
}

impl Tls {
    pub fn load(cert: &Path, key: &Path, require: bool) -> anyhow::Result<Self> {
        let config = server_config(cert, key)?;
        Ok(Self { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(config), require })
    }

    /// Re-reads the files (SIGHUP). On error the previous certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading certificates from {}: {e}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("reading the private key {}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .with_context(|| format!("{} and {} do not make a usable certificate", cert.display(), key.display()))?;
    Ok(Arc::new(config))
}
