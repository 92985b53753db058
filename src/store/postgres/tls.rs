//! TLS to PostgreSQL with rustls (ring, as STARTTLS): the URL's `sslmode` as libpq reads it.
//! `disable`: never; `prefer` (the default): when the server offers it; `require`: always, without
//! checking who answers (libpq's meaning, an encrypted channel only); `verify-ca`: the server's
//! certificate must chain to a trusted root; `verify-full`: and name the host of the URL. The
//! roots: `sslrootcert=FILE` (PEM), `sslrootcert=system` (the system's store), else the Mozilla
//! roots compiled in (webpki-roots). The driver knows only disable/prefer/require, so `url.rs`
//! takes `sslmode` and `sslrootcert` out of the URL it hands on, and they are applied here.

use std::sync::Arc;

use anyhow::Context;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

/// The URL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(super) fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told: it only knows whether to ask for TLS and whether to insist.
    pub(super) fn for_driver(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// The URL's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<String>,
}

/// The connector the pool and the LISTEN connection use.
pub(super) fn connector(tls: &Tls) -> anyhow::Result<MakeRustlsConnect> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unchecked(provider)),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(tls.root_cert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .context("the TLS certificate verifier")?;
            if tls.mode == SslMode::VerifyCa { Arc::new(AnyName(webpki)) } else { webpki }
        }
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The trusted roots for verify-ca and verify-full.
fn roots(root_cert: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root_cert {
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            anyhow::ensure!(added > 0, "sslrootcert=system: no certificates in the system's store");
        }
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("sslrootcert: reading {file}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            anyhow::ensure!(added > 0, "sslrootcert: no certificate in {file}");
        }
    }
    Ok(store)
}

/// `prefer` and `require`: an encrypted channel, whoever answers (libpq's meaning). The handshake's
/// signatures are still checked, against the certificate presented.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // The name is checked last, after the chain: this error means the chain was good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use crate::store::postgres::tests::PgCluster;
    use crate::store::postgres::{DatabaseUrl, Postgres};

    /// Runs the openssl CLI in `dir` with `args` (split at spaces).
    fn openssl(dir: &Path, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's `openssl`)");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    /// A self-signed CA: `NAME.crt`, `NAME.key` in `dir`.
    fn ca(dir: &Path, name: &str) {
        openssl(
            dir,
            &format!(
                "req -x509 {EC} -keyout {name}.key -out {name}.crt -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
    }

    /// `server.crt` (for 127.0.0.1 only, no DNS name) signed by `ca`, and `server.key`.
    fn server(dir: &Path) {
        let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
                   extendedKeyUsage=serverAuth\n";
        std::fs::write(dir.join("server.ext"), ext).unwrap();
        openssl(dir, &format!("req {EC} -keyout server.key -out server.csr -subj /CN=mxhook-test-database"));
        openssl(
            dir,
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out server.crt \
             -extfile server.ext",
        );
    }

    /// Opens the store at `url`: whether its connection is encrypted, or the error in full.
    fn encrypted(url: &str) -> Result<bool, String> {
        let url = DatabaseUrl::parse(url)?;
        let store = Postgres::open(&url).map_err(|e| format!("{e:#}"))?;
        let mut conn = store.conn().map_err(|e| format!("{e:#}"))?;
        let row = conn.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]);
        Ok(row.map_err(|e| e.to_string())?.get(0))
    }

    #[test]
    fn sslmode_is_honoured_and_verify_full_trusts_only_the_given_ca_for_the_given_name() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path(), "ca");
        ca(dir.path(), "other");
        server(dir.path());
        let cluster = PgCluster::start(false).expect("a PostgreSQL cluster");
        let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
        cluster.enable_ssl(&read("server.crt"), &read("server.key")).expect("TLS on");
        cluster.psql("postgres", "CREATE DATABASE tls").unwrap();
        let url = |host: &str, query: &str| format!("postgres://mxhook@{host}:{}/tls?{query}", cluster.port);
        let root = |name: &str| format!("sslrootcert={}", dir.path().join(format!("{name}.crt")).display());

        let full = encrypted(&url("127.0.0.1", &format!("sslmode=verify-full&{}", root("ca"))));
        assert_eq!(full, Ok(true), "verify-full with the server's CA");
        let wrong = encrypted(&url("127.0.0.1", &format!("sslmode=verify-full&{}", root("other"))));
        let e = wrong.expect_err("verify-full with another CA must fail");
        assert!(e.contains("invalid peer certificate") && e.contains("UnknownIssuer"), "{e}");
        eprintln!("verify-full, another CA: {e}");
        let e = encrypted(&url("localhost", &format!("sslmode=verify-full&{}", root("ca"))))
            .expect_err("verify-full must check the name (the certificate is for 127.0.0.1 only)");
        assert!(e.contains("invalid peer certificate") && e.contains("localhost"), "{e}");
        eprintln!("verify-full, another name: {e}");

        let ca_only = encrypted(&url("localhost", &format!("sslmode=verify-ca&{}", root("ca"))));
        assert_eq!(ca_only, Ok(true), "verify-ca does not check the name");
        let e = encrypted(&url("localhost", &format!("sslmode=verify-ca&{}", root("other"))))
            .expect_err("verify-ca with another CA must fail");
        assert!(e.contains("UnknownIssuer"), "{e}");
        let e = encrypted(&url("127.0.0.1", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))
            .expect_err("a missing sslrootcert");
        assert!(e.contains("sslrootcert: reading /nonexistent/ca.pem"), "{e}");

        assert_eq!(encrypted(&url("127.0.0.1", "sslmode=require")), Ok(true), "require: encrypted, unchecked");
        assert_eq!(encrypted(&url("127.0.0.1", "connect_timeout=5")), Ok(true), "prefer (the default) takes TLS");
        assert_eq!(encrypted(&url("127.0.0.1", "sslmode=disable")), Ok(false));
    }
}
