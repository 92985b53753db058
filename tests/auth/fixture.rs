//! In-process fixtures: an `Authenticator` whose record cache is filled with the test's DNS records
//! (positive and negative), so every check is answered from memory, and an envelope to check.
//! Its resolver points at a closed local port: a record the fixture forgot can never leave the machine.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::Spf;
use mail_auth::{DnsError, Error, Txt};
use mxhook::auth::Authenticator;
use mxhook::config::{AuthSettings, DmarcReject, SpfMode};
use mxhook::mail::Auth;
use mxhook::mail::{Envelope, Reply};

pub const SENDER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const TTL: Duration = Duration::from_secs(3600);

pub struct World {
    pub auth: Authenticator,
}

impl World {
    pub fn new(dmarc_reject: DmarcReject, spf: SpfMode) -> World {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let settings = AuthSettings {
            dns: vec![closed],
            timeout: Duration::from_secs(1),
            dmarc_reject,
            spf,
            trusted_authserv_ids: Vec::new(),
        };
        World { auth: Authenticator::new(&settings, "mx.auth.test").unwrap() }
    }

    /// The default world: records recorded, DMARC verdicts never refuse mail, SPF relaxed.
    pub fn relaxed() -> World {
        World::new(DmarcReject::Accept, SpfMode::Relaxed).with_example_org()
    }

    /// Publishes a TXT record, parsed by its kind (`v=spf1`, `v=DKIM1`, `v=DMARC1`).
    pub fn txt(&self, name: &str, record: &str) -> &Self {
        let caches = self.auth.caches();
        let bytes = record.as_bytes();
        if record.starts_with("v=spf1") {
            caches.insert_txt(name, Spf::parse(bytes), TTL);
        } else if record.starts_with("v=DKIM1") {
            caches.insert_txt(name, DomainKey::parse(bytes), TTL);
        } else if record.starts_with("v=DMARC1") {
            caches.insert_txt(name, Dmarc::parse(bytes), TTL);
        } else {
            panic!("fixture does not know the kind of record `{record}`");
        }
        self
    }

    /// `name` does not exist (NXDOMAIN).
    pub fn nx(&self, name: &str) -> &Self {
        let e = Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain));
        self.auth.caches().insert_txt(name, Txt::Error(e), TTL);
        self
    }

    /// Looking `name` up fails (SERVFAIL, timeout): a temporary error.
    pub fn broken(&self, name: &str) -> &Self {
        let e = Error::Dns(DnsError::Resolver("SERVFAIL".into()));
        self.auth.caches().insert_txt(name, Txt::Error(e), TTL);
        self
    }

    pub fn key(&self, signer: &crate::helpers::Signer) -> &Self {
        self.txt(&signer.record_name(), &signer.record())
    }

    /// example.org: SPF for 192.0.2.10 (MAIL FROM and HELO mail.example.org), DMARC p=reject with
    /// sp=quarantine; `org` and `test` publish no DMARC record.
    fn with_example_org(self) -> World {
        self.txt("example.org", "v=spf1 ip4:192.0.2.10 -all")
            .txt("mail.example.org", "v=spf1 ip4:192.0.2.10 -all")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantine")
            .nx("_dmarc.mail.example.org")
            .nx("_dmarc.org")
            .nx("_dmarc.test");
        self
    }

    pub async fn verify(&self, env: &Envelope, raw: &[u8]) -> Result<Auth, Reply> {
        self.auth.verify(env, None, raw).await
    }

    /// Verifies and expects no refusal; returns `message.auth` as the event carries it.
    pub async fn auth_json(&self, env: &Envelope, raw: &[u8]) -> serde_json::Value {
        let auth = self.verify(env, raw).await.unwrap_or_else(|r| panic!("refused: {} {}", r.code, r.text));
        serde_json::to_value(auth).unwrap()
    }
}

/// The envelope of a message from 192.0.2.10 that said `EHLO helo` and `MAIL FROM:<mail_from>`.
pub fn envelope(helo: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: SENDER_IP,
        proxy_ip: None,
        ingress: mxhook::mail::Ingress::Smtp,
        helo: helo.into(),
        mail_from: mail_from.into(),
        rcpt_to: vec!["support@mx.auth.test".into()],
        tls: None,
        tls_cipher: None,
    }
}
