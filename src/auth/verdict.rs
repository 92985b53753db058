//! mail-auth's outputs turned into the event's verdicts (`mail::verdicts`): plain strings and flags, as
//! ../DESIGN.md has them. Result words are RFC 8601's (`pass`, `fail`, `softfail`, `neutral`, `none`,
//! `temperror`, `permerror`), the same ones `header` uses.

use mail_auth::dmarc::Policy;
use mail_auth::{ArcOutput, DkimOutput, DkimResult, DmarcOutput, DmarcResult, SpfOutput, SpfResult};

use crate::mail::{ArcVerdict, DkimVerdict, DmarcVerdict, SpfVerdict};

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
