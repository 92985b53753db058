//! Sender authentication's settings: `[auth]` as validated by `config`, and the two policies it names.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// What to do with mail that fails DMARC under the sender's `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcReject {
    /// Record the verdict and deliver: the receiving app decides.
    Accept,
    /// Answer `550 5.7.1` at the end of DATA; nothing is stored.
    Reject,
}

/// How the MAIL FROM SPF result is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfMode {
    /// Checked at MAIL FROM: `fail` gets 550 5.7.1, `temperror` 451 4.7.1.
    Strict,
    /// Checked and recorded; never refuses mail.
    Relaxed,
    /// Not checked: `auth.spf` and `auth.spf_helo` are null (DMARC can then pass only through DKIM).
    Off,
}

/// `[auth]` validated: None in `Settings` when disabled.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Empty: the system resolver.
    pub dns: Vec<SocketAddr>,
    pub timeout: Duration,
    pub dmarc_reject: DmarcReject,
    pub spf: SpfMode,
    /// `[lmtp] trusted_authserv_ids`, lower-case: whose SPF verdict counts for mail handed over.
    pub trusted_authserv_ids: Vec<String>,
}
