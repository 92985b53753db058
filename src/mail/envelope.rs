//! What the SMTP session learned about a message besides its bytes.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Envelope {
    pub client_ip: IpAddr,
    pub helo: String,
    /// The reverse path; empty for the null sender `<>` (bounces, auto-replies).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// TLS version of the session (`TLSv1.3`), None for plain SMTP.
    pub tls: Option<String>,
    /// The TLS cipher suite, None for plain SMTP.
    pub tls_cipher: Option<String>,
}
