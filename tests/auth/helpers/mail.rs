//! Test mail and the keys that sign it: a fresh ed25519 key per signer, the RSA-2048 key in
//! `fixtures/`, DKIM signatures and ARC seals by mail-auth, and the DNS records that publish them.

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};

use base64::Engine;

const RSA_PEM: &str = include_str!("../fixtures/rsa2048.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa2048.pub.b64");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Ed25519,
    Rsa,
}

/// A signing identity: a key, its `d=` and `s=`, and the TXT record to publish.
pub struct Signer {
    pub domain: String,
    pub selector: String,
    algo: Algo,
    ed25519_pkcs8: Vec<u8>,
}

impl Signer {
    pub fn new(algo: Algo, domain: &str, selector: &str) -> Signer {
        let ed25519_pkcs8 = match algo {
            Algo::Ed25519 => Ed25519Key::generate_pkcs8().expect("generate ed25519 key"),
            Algo::Rsa => Vec::new(),
        };
        Signer { domain: domain.into(), selector: selector.into(), algo, ed25519_pkcs8 }
    }

    /// Where the key is published: `<s>._domainkey.<d>`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The DKIM key record (`v=DKIM1; k=…; p=…`).
    pub fn record(&self) -> String {
        match self.algo {
            Algo::Ed25519 => {
                let public = self.ed25519().public_key();
                let p = base64::engine::general_purpose::STANDARD.encode(public);
                format!("v=DKIM1; k=ed25519; p={p}")
            }
            Algo::Rsa => format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim()),
        }
    }

    fn ed25519(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.ed25519_pkcs8).expect("ed25519 key")
    }

    #[allow(deprecated)] // from_rsa_pem: the non-deprecated path needs rustls-pki-types' PEM parser
    fn rsa() -> RsaKey<Sha256> {
        RsaKey::<Sha256>::from_rsa_pem(RSA_PEM).expect("RSA key")
    }

    /// `message` with a DKIM-Signature over From, To, Subject, Date and Message-ID prepended.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let header = match self.algo {
            Algo::Ed25519 => sign_with(self.ed25519(), &self.domain, &self.selector, message),
            Algo::Rsa => sign_with(Self::rsa(), &self.domain, &self.selector, message),
        };
        [header.as_bytes(), message].concat()
    }

    /// `message` with an ARC set (i=1) by this signer prepended, as a forwarder would add it.
    pub fn arc_seal(&self, message: &[u8]) -> Vec<u8> {
        let parsed = AuthenticatedMessage::parse(message).expect("message to seal");
        let results = AuthenticationResults::new(&self.domain);
        let set = match self.algo {
            Algo::Ed25519 => seal_with(self.ed25519(), self, &parsed, &results),
            Algo::Rsa => seal_with(Self::rsa(), self, &parsed, &results),
        };
        [set.as_bytes(), message].concat()
    }
}

fn sign_with<K: SigningKey<Hasher = Sha256>>(key: K, d: &str, s: &str, message: &[u8]) -> String {
    DkimSigner::from_key(key)
        .domain(d)
        .selector(s)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message)
        .expect("DKIM sign")
        .to_header()
}

fn seal_with<K: SigningKey<Hasher = Sha256>>(
    key: K,
    signer: &Signer,
    message: &AuthenticatedMessage,
    results: &AuthenticationResults,
) -> String {
    let set = ArcSealer::from_key(key)
        .domain(signer.domain.as_str())
        .selector(signer.selector.as_str())
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(message, results, &ArcOutput::default())
        .expect("ARC seal");
    set.to_header()
}

/// A plain message from `from` (CRLF line endings), unique by `tag`.
pub fn message(from: &str, tag: &str) -> Vec<u8> {
    format!(
        "From: Ada <{from}>\r\n\
         To: support@mx.auth.test\r\n\
         Subject: Order {tag}\r\n\
         Date: Tue, 3 Feb 2026 10:00:00 +0000\r\n\
         Message-ID: <{tag}@auth.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Please ship order {tag}.\r\n\
         Thanks,\r\n\
         Ada\r\n"
    )
    .into_bytes()
}

/// `raw` with the first occurrence of `from` replaced by `to` (for tampering after signing).
pub fn replace(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).expect("test mail is UTF-8");
    assert!(text.contains(from), "`{from}` not in message");
    text.replacen(from, to, 1).into_bytes()
}
