//! The sender-authentication verdicts of the event's `message.auth` (the auth stage turns
//! mail-auth's outputs into them). Result words are RFC 8601's (`pass`, `fail`, `softfail`,
//! `neutral`, `none`, `temperror`, `permerror`), the same ones `header` uses.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    /// MAIL FROM (for the null sender `<>`: the HELO name, as RFC 7208 says); null when `spf = "off"`.
    pub spf: Option<SpfVerdict>,
    /// The HELO/EHLO name; null when `spf = "off"`.
    pub spf_helo: Option<SpfVerdict>,
    /// One entry per DKIM-Signature header, in header order.
    pub dkim: Vec<DkimVerdict>,
    pub dmarc: DmarcVerdict,
    pub arc: ArcVerdict,
    /// The Authentication-Results value mxhook computed (RFC 8601), unfolded to one line:
    /// `mx.example.com; spf=pass (…) smtp.mailfrom=…; dkim=pass header.d=… ; dmarc=pass …`.
    pub header: String,
    /// Where the SPF verdicts come from (DKIM, ARC and DMARC are always verified here). Events
    /// stored before this field existed read as `smtp`, which they were.
    #[serde(default)]
    pub source: AuthSource,
}

/// `smtp`: SPF checked here against the sending server's address. `upstream`: the message was handed
/// over by a mail server in front (LMTP, `mxhook deliver`); SPF is that server's verdict from its
/// trusted `Authentication-Results` / `Received-SPF` header, or `none` without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthSource {
    #[default]
    Smtp,
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpfVerdict {
    pub result: String,
    /// The domain whose record was checked.
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DkimVerdict {
    pub result: String,
    /// `d=`; null for a signature too malformed to read.
    pub domain: Option<String>,
    /// `s=`; null for a signature too malformed to read.
    pub selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DmarcVerdict {
    pub result: String,
    /// The policy that applies to this From domain (`p`, or `sp` for a subdomain; one step milder
    /// under `t=y`); null when the domain publishes no DMARC record.
    pub policy: Option<String>,
    /// The RFC 5322 From domain DMARC was evaluated for; null without a single From domain.
    pub from_domain: Option<String>,
    /// SPF passed for a domain aligned with From.
    pub spf_aligned: bool,
    /// A DKIM signature passed for a domain aligned with From.
    pub dkim_aligned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArcVerdict {
    pub result: String,
}
