//! The event's `message.auth` object: mail-auth's outputs turned into the plain strings and flags of
//! ../DESIGN.md. Result words are RFC 8601's (`pass`, `fail`, `softfail`, `neutral`, `none`,
//! `temperror`, `permerror`), the same ones `header` uses.

use mail_auth::dmarc::Policy;
use mail_auth::{ArcOutput, DkimOutput, DkimResult, DmarcOutput, DmarcResult, SpfOutput, SpfResult};
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

impl SpfVerdict {
    pub(super) fn new(out: &SpfOutput) -> Self {
        let result = match out.result() {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
            SpfResult::None => "none",
        };
        Self { result: result.into(), domain: out.domain().to_ascii_lowercase() }
    }
}

impl DkimVerdict {
    pub(super) fn new(out: &DkimOutput) -> Self {
        let sig = out.signature();
        Self {
            result: dkim_word(out.result()).into(),
            domain: sig.map(|s| s.d.to_ascii_lowercase()),
            selector: sig.map(|s| s.s.clone()),
        }
    }
}

impl DmarcVerdict {
    pub(super) fn new(out: &DmarcOutput, from_domain: Option<&str>) -> Self {
        let result = match out.result() {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail(_) => "fail",
            DmarcResult::TempError(_) => "temperror",
            DmarcResult::PermError(_) => "permerror",
            DmarcResult::None => "none",
        };
        let policy = out.dmarc_record().map(|_| match out.policy() {
            Policy::Reject => "reject",
            Policy::Quarantine => "quarantine",
            Policy::None | Policy::Unspecified => "none",
        });
        let domain = Some(out.domain()).filter(|d| !d.is_empty()).or(from_domain);
        Self {
            result: result.into(),
            policy: policy.map(Into::into),
            from_domain: domain.map(str::to_ascii_lowercase),
            spf_aligned: *out.spf_result() == DmarcResult::Pass,
            dkim_aligned: *out.dkim_result() == DmarcResult::Pass,
        }
    }
}

impl ArcVerdict {
    pub(super) fn new(out: &ArcOutput) -> Self {
        Self { result: dkim_word(out.result()).into() }
    }
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}
