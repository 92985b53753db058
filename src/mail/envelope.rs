//! What the SMTP session (or LMTP, or `mxhook deliver`) learned about a message besides its bytes.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Envelope {
    /// The client: the connecting address, or the one a trusted balancer's PROXY header carried.
    pub client_ip: IpAddr,
    /// The load balancer the connection came through (PROXY protocol), None for a direct one.
    pub proxy_ip: Option<IpAddr>,
    /// How the message came in; decides where the SPF verdict comes from.
    pub ingress: Ingress,
    pub helo: String,
    /// The reverse path; empty for the null sender `<>` (bounces, auto-replies).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// TLS version of the session (`TLSv1.3`), None for plain SMTP.
    pub tls: Option<String>,
    /// The TLS cipher suite, None for plain SMTP.
    pub tls_cipher: Option<String>,
}

/// The way a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// SMTP from the sending server itself: SPF is checked against its address.
    Smtp,
    /// LMTP from a mail server in front (RFC 2033): that server checked SPF, if anyone did.
    Lmtp,
    /// `mxhook deliver` on a pipe from a mail server in front: as LMTP.
    Pipe,
}

impl Ingress {
    /// A local MTA handed the message over: SPF against its address would mean nothing.
    pub fn from_upstream(self) -> bool {
        self != Ingress::Smtp
    }
}
