//! STARTTLS with a certificate made by `openssl req`, and `openssl s_client -starttls smtp` as the client
//! (a small rustls client where s_client cannot do what a test needs).

use tokio::io::AsyncWriteExt;

use crate::common::smtp::Reply;
use crate::common::*;
use crate::support::*;

/// The cipher suite name without its protocol prefix: rustls says `TLS13_AES_256_GCM_SHA384`, OpenSSL
/// `TLS_AES_256_GCM_SHA384` for the same suite.
fn suite_core(s: &str) -> &str {
    s.strip_prefix("TLS13_").or_else(|| s.strip_prefix("TLS_")).unwrap_or(s)
}

fn ehlo_keywords(r: &Reply) -> Vec<String> {
    r.lines.iter().skip(1).map(|l| l.split_whitespace().next().unwrap_or("").to_ascii_uppercase()).collect()
}

#[test]
fn mail_over_starttls_records_version_and_cipher() {
    let (h, _cert) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();

    // In plaintext, STARTTLS is offered.
    let mut plain = SmtpClient::ready(gw.smtp);
    let ehlo = plain.cmd("EHLO plain.test");
    assert!(ehlo_keywords(&ehlo).contains(&"STARTTLS".to_string()), "plaintext EHLO must offer STARTTLS: {ehlo}");
    plain.cmd("QUIT").expect(221, "2.0.0");

    let mut tls = TlsSession::start(gw.smtp, &[]);
    assert_eq!(tls.protocol(), "TLSv1.3", "s_client and rustls should agree on TLS 1.3");
    assert_eq!(tls.peer_certificate(), "CN = mx-a.test");
    // RFC 3207: the client starts over with EHLO; STARTTLS is no longer offered, nor accepted.
    let ehlo = tls.cmd("EHLO client.test");
    assert_eq!(ehlo.code, 250, "EHLO over TLS: {ehlo}");
    assert!(!ehlo_keywords(&ehlo).contains(&"STARTTLS".to_string()), "EHLO over TLS offers STARTTLS again: {ehlo}");
    assert!(ehlo_keywords(&ehlo).contains(&"PIPELINING".to_string()), "EHLO over TLS: {ehlo}");
    tls.cmd("STARTTLS").expect(503, "5.5.1");
    tls.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    tls.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let id = tls.data(b"Subject: over TLS\r\nFrom: ada@sender.test\r\n\r\nsecret stuff\r\n").queued_id();
    tls.quit();

    let event = h.event_for(&id).1;
    let smtp = &event["message"]["smtp"];
    assert_eq!(smtp["tls"], "TLSv1.3", "message.smtp: {smtp}");
    let cipher = smtp["tls_cipher"].as_str().unwrap_or_else(|| panic!("no tls_cipher in message.smtp: {smtp}"));
    assert!(!cipher.is_empty(), "empty tls_cipher");
    assert_eq!(suite_core(cipher), suite_core(&tls.ciphersuite()), "the cipher s_client negotiated");
    assert_eq!(smtp["helo"], "client.test", "the EHLO said inside TLS counts, not s_client's own: {smtp}");
    assert_eq!(event["message"]["subject"], "over TLS");
    assert_eq!(event["message"]["text"], "secret stuff\r\n");
}

/// What a client negotiates is what the event says: TLS 1.2 with an ECDHE-ECDSA AES-128-GCM suite, and
/// TLS 1.3 with ChaCha20-Poly1305, in two sessions of one gateway.
#[test]
fn version_and_cipher_follow_the_session() {
    let (h, _cert) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            "TLSv1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (&["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"], "TLSv1.3", "TLS13_CHACHA20_POLY1305_SHA256"),
    ];
    for (args, version, cipher) in cases {
        let mut tls = TlsSession::start(gw.smtp, args);
        assert_eq!(tls.protocol(), version, "s_client {args:?}");
        assert_eq!(tls.cmd("EHLO client.test").code, 250);
        tls.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
        tls.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
        let id = tls.data(format!("Subject: {version}\r\n\r\nhi\r\n").as_bytes()).queued_id();
        tls.quit();
        let event = h.event_for(&id).1;
        let smtp = &event["message"]["smtp"];
        assert_eq!(smtp["tls"], version, "s_client {args:?}: message.smtp {smtp}");
        assert_eq!(smtp["tls_cipher"], cipher, "s_client {args:?}: message.smtp {smtp}");
    }
}

#[test]
fn without_a_certificate_starttls_is_not_offered() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let ehlo = c.cmd("EHLO client.test");
    assert!(!ehlo_keywords(&ehlo).contains(&"STARTTLS".to_string()), "STARTTLS offered without [smtp.tls]: {ehlo}");
    c.cmd("STARTTLS").expect(502, "5.5.1");
    // The session is still plain SMTP and works.
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: plain\r\n\r\nhi\r\n");
    let event = h.event_for(&id).1;
    assert_eq!(event["message"]["smtp"]["tls"], serde_json::Value::Null, "{}", event["message"]["smtp"]);
    assert_eq!(event["message"]["smtp"]["tls_cipher"], serde_json::Value::Null, "{}", event["message"]["smtp"]);
}

#[test]
fn require_refuses_mail_until_starttls() {
    let (h, _cert) = tls_harness("mx-a.test", true, |_| {});
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo_keywords(&ehlo).contains(&"STARTTLS".to_string()), "{ehlo}");
    c.cmd("MAIL FROM:<ada@sender.test>").expect(530, "5.7.0");
    c.cmd("RCPT TO:<inbox@example.test>").expect(503, "5.5.1");
    c.cmd("NOOP").expect(250, "2.0.0");
    c.cmd("QUIT").expect(221, "2.0.0");

    let mut tls = TlsSession::start(gw.smtp, &[]);
    assert_eq!(tls.cmd("EHLO client.test").code, 250);
    tls.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    tls.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let id = tls.data(b"Subject: required\r\n\r\nhi\r\n").queued_id();
    tls.quit();
    assert_eq!(h.event_for(&id).1["message"]["smtp"]["tls"], "TLSv1.3");
    assert_eq!(h.messages().len(), 1, "only the TLS message is stored");
}

/// RFC 3207 §4.2 / CVE-2011-0411: commands pipelined after STARTTLS arrived in plaintext and must not
/// run inside the TLS session. A rustls client (pinned to the test's certificate) sends
/// `STARTTLS\r\nMAIL FROM:<injected@…>\r\n` in one write, then starts TLS: the first reply inside TLS
/// must be the one to its own first command.
#[test]
fn commands_pipelined_before_tls_are_discarded() {
    let (h, cert) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let id = rt.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(gw.smtp).await.unwrap();
        let mut plain = rustls_client::Lines::default();
        assert_eq!(plain.reply(&mut tcp).await.code, 220);
        tcp.write_all(b"EHLO client.test\r\n").await.unwrap();
        plain.reply(&mut tcp).await;
        tcp.write_all(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<inbox@example.test>\r\n").await.unwrap();
        plain.reply(&mut tcp).await.expect(220, "2.0.0");
        assert!(plain.is_empty(), "nothing may follow 220 Ready in plaintext");
        let mut tls = rustls_client::connect(tcp, &cert).await;
        let mut lines = rustls_client::Lines::default();
        tls.write_all(b"NOOP\r\n").await.unwrap();
        lines.reply(&mut tls).await.expect(250, "2.0.0");
        tls.write_all(b"EHLO client.test\r\n").await.unwrap();
        assert_eq!(lines.reply(&mut tls).await.code, 250);
        tls.write_all(b"RCPT TO:<inbox@example.test>\r\n").await.unwrap();
        lines.reply(&mut tls).await.expect(503, "5.5.1"); // no MAIL: the injected one did not count
        tls.write_all(b"MAIL FROM:<ada@sender.test>\r\nRCPT TO:<inbox@example.test>\r\nDATA\r\n").await.unwrap();
        lines.reply(&mut tls).await.expect(250, "2.1.0");
        lines.reply(&mut tls).await.expect(250, "2.1.5");
        assert_eq!(lines.reply(&mut tls).await.code, 354);
        tls.write_all(b"Subject: pinned\r\n\r\nhi\r\n.\r\n").await.unwrap();
        lines.reply(&mut tls).await.queued_id()
    });
    let event = h.event_for(&id).1;
    assert_eq!(event["message"]["smtp"]["mail_from"], "ada@sender.test");
    assert_eq!(event["message"]["smtp"]["tls"], "TLSv1.3");
    assert_eq!(h.messages().len(), 1);
}

/// A client that says STARTTLS and then sends garbage loses its session, nothing more.
#[test]
fn a_failed_handshake_ends_only_that_session() {
    let (h, _cert) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    let mut c = SmtpClient::ready_from(local_ip(), gw.smtp);
    c.cmd("STARTTLS").expect(220, "2.0.0");
    c.send_raw(b"this is not a TLS ClientHello\r\n\r\n");
    // The server may answer with a TLS alert record; then it must close.
    let rest = c.read_to_close();
    assert!(rest.len() < 64 && (rest.is_empty() || rest[0] == 0x15), "only a TLS alert may be sent: {rest:?}");
    h.wait_until(WAIT, "the failed handshake to be logged", || gw.log().contains("TLS handshake failed"));
    assert!(alive(gw.pid()));
    let mut tls = TlsSession::start(gw.smtp, &[]);
    assert_eq!(tls.cmd("EHLO client.test").code, 250);
    tls.quit();
}

/// RFC 8446 §6.1: each party MUST send close_notify before closing its write side. After `221` over
/// TLS, s_client must see a TLS close, not a bare TCP EOF ("unexpected eof while reading").
#[test]
fn quit_over_tls_closes_with_close_notify() {
    let (h, _cert) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    let mut tls = TlsSession::start(gw.smtp, &[]);
    assert_eq!(tls.cmd("EHLO client.test").code, 250);
    tls.quit();
    // s_client (-ign_eof) exits when the server closes the connection.
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = tls.proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "s_client still runs after QUIT\n{}", tls.proc.describe());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(50)); // let the stderr reader finish
    let err = tls.proc.stderr();
    assert!(
        !err.contains("unexpected eof"),
        "the server closed the TLS session without close_notify (s_client exit {status}):\n{}\n{}",
        tls.proc.describe(),
        h.logs()
    );
    assert!(status.success(), "s_client exit {status}\n{}", tls.proc.describe());
}

/// A minimal async SMTP-over-rustls client for what s_client cannot do (pipelining across STARTTLS).
mod rustls_client {
    use std::sync::Arc;

    use tokio::io::{AsyncRead, AsyncReadExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use tokio_rustls::rustls::crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

    use crate::common::smtp::Reply;
    use crate::support::Cert;

    /// Accepts exactly one certificate (the test's), and checks the handshake signatures with it.
    #[derive(Debug)]
    struct Pinned {
        cert: CertificateDer<'static>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            if end_entity.as_ref() == self.cert.as_ref() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Error::General("not the test's certificate".into()))
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }

    pub async fn connect(tcp: TcpStream, cert: &Cert) -> TlsStream<TcpStream> {
        let provider = Arc::new(ring::default_provider());
        let pinned = Pinned { cert: CertificateDer::from_pem_file(&cert.cert).unwrap(), provider: provider.clone() };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinned))
            .with_no_client_auth();
        let name = ServerName::try_from(cert.cn.clone()).unwrap();
        tokio::time::timeout(crate::support::WAIT, TlsConnector::from(Arc::new(config)).connect(name, tcp))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake")
    }

    /// Reads replies from a stream, keeping what arrived beyond the current reply.
    #[derive(Default)]
    pub struct Lines {
        buf: Vec<u8>,
    }

    impl Lines {
        pub fn is_empty(&self) -> bool {
            self.buf.is_empty()
        }

        pub async fn reply(&mut self, s: &mut (impl AsyncRead + Unpin)) -> Reply {
            let mut lines = Vec::new();
            loop {
                while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=nl).collect();
                    let l = String::from_utf8_lossy(&line).trim_end().to_string();
                    assert!(l.len() >= 3, "not a reply line: {l:?}");
                    lines.push((l[..3].parse::<u16>().unwrap(), l.get(4..).unwrap_or("").to_string()));
                    if l.as_bytes().get(3) != Some(&b'-') {
                        let code = lines[0].0;
                        return Reply { code, lines: lines.into_iter().map(|(_, t)| t).collect() };
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(crate::support::WAIT, s.read(&mut chunk))
                    .await
                    .expect("no reply within the deadline")
                    .expect("read");
                assert!(n > 0, "connection closed; reply so far {lines:?}");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
