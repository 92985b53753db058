//! What a message is: its event type, decided once after parse and before route, from what the
//! earlier stages found (the sender's standing, the spam verdict, the auth verdicts) and from the
//! message itself (a bounce, a complaint). It also fills the event's `bounce`, `complaint` and
//! `auto_submitted`. Imports only `mail`; route and ingest read the type it returns.

mod auto_submitted;
mod bounce;
mod complaint;

use crate::mail::{Auth, EventMessage, EventType, Standing};

/// The message's type, in the order of precedence: blocked, spam, bounced, complained,
/// unauthenticated, received. An allowed sender (`sender_list`, set by ingest from the lists) is
/// never blocked, spam or unauthenticated.
pub fn classify(event: &mut EventMessage, raw: &[u8]) -> EventType {
    event.auto_submitted = auto_submitted::reason(&event.headers);
    let standing = event.sender_list;
    let allowed = standing == Standing::Allowed;
    if standing == Standing::Blocked {
        return EventType::ReceivedBlocked;
    }
    if !allowed && event.spam.verdict.as_deref() == Some("spam") {
        return EventType::ReceivedSpam;
    }
    let report = report_type(&event.headers);
    // Both parse the message again, as parse did under the same guard: a panic of the MIME parser
    // costs the message its report, not the session its answer.
    let bounce = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bounce::read(event, raw, report.as_deref())));
    if let Some(b) = bounce.ok().flatten() {
        event.bounce = Some(b);
        return EventType::Bounced;
    }
    if report.as_deref() == Some("feedback-report")
        && let Some(c) = std::panic::catch_unwind(|| complaint::read(raw)).ok().flatten()
    {
        event.complaint = Some(c);
        return EventType::Complained;
    }
    if !allowed && event.auth.as_ref().is_some_and(unauthenticated) {
        return EventType::ReceivedUnauthenticated;
    }
    EventType::Received
}

/// Nothing authenticates the From domain, and something says so: DMARC failed, or no SPF or DKIM
/// pass is aligned with From while a check answered against the sender (SPF `fail` or `softfail`,
/// a DKIM signature that does not verify). Two cases stay `email.received`, by choice:
/// - every check is `none` (the domain publishes no SPF, DKIM or DMARC): nothing can be verified
///   either way, and calling such mail unauthenticated would take it away from every endpoint that
///   did not ask for the type (mail between small hosts, test setups);
/// - a check could not finish (`temperror`): an open question is not an accusation, and an app
///   that filters on the type should not lose mail while DNS is down.
fn unauthenticated(auth: &Auth) -> bool {
    let d = &auth.dmarc;
    match d.result.as_str() {
        "fail" => return true,
        "pass" => return false,
        _ => {}
    }
    if d.spf_aligned || d.dkim_aligned {
        return false;
    }
    let spf = auth.spf.as_ref().map_or("none", |s| s.result.as_str());
    let temperror = d.result == "temperror" || spf == "temperror" || auth.dkim.iter().any(|k| k.result == "temperror");
    // A broken record or a signature whose key is gone (`permerror`, `neutral`) says nothing
    // about who sent the message; a policy that excludes the sender or a signature that does
    // not verify does.
    let against = matches!(spf, "fail" | "softfail") || auth.dkim.iter().any(|k| k.result == "fail");
    if temperror || !against {
        return false;
    }
    let Some(from) = d.from_domain.as_deref() else { return true };
    // Relaxed alignment without a public-suffix list: the same domain, or one under the other.
    let aligned = |domain: &str| {
        let (a, b) = (domain.to_ascii_lowercase(), from.to_ascii_lowercase());
        a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
    };
    let spf_pass = auth.spf.as_ref().is_some_and(|s| s.result == "pass" && aligned(&s.domain));
    let dkim_pass = auth.dkim.iter().any(|k| k.result == "pass" && k.domain.as_deref().is_some_and(aligned));
    !(spf_pass || dkim_pass)
}

/// The `report-type` of a `multipart/report` message, lower-case.
fn report_type(headers: &[(String, String)]) -> Option<String> {
    let (_, value) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type"))?;
    let value = value.to_ascii_lowercase();
    if !value.trim_start().starts_with("multipart/report") {
        return None;
    }
    let (_, rest) = value.split_once("report-type")?;
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let token: String = rest
        .trim_start_matches('"')
        .chars()
        .take_while(|c| !matches!(c, '"' | ';' | ' ' | '\t' | '\r' | '\n'))
        .collect();
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{ArcVerdict, DkimVerdict, DmarcVerdict, SpfVerdict};

    fn auth(dmarc: &str, spf: (&str, &str), dkim: Option<(&str, &str)>) -> Auth {
        Auth {
            source: crate::mail::AuthSource::Smtp,
            spf: Some(SpfVerdict { result: spf.0.into(), domain: spf.1.into() }),
            spf_helo: None,
            dkim: dkim
                .into_iter()
                .map(|(r, d)| DkimVerdict { result: r.into(), domain: Some(d.into()), selector: None })
                .collect(),
            dmarc: DmarcVerdict {
                result: dmarc.into(),
                policy: None,
                from_domain: Some("sender.test".into()),
                spf_aligned: false,
                dkim_aligned: false,
            },
            arc: ArcVerdict { result: "none".into() },
            header: String::new(),
        }
    }

    #[test]
    fn unauthenticated_means_nothing_aligned_passes() {
        assert!(unauthenticated(&auth("fail", ("pass", "sender.test"), None)));
        assert!(!unauthenticated(&auth("none", ("none", "sender.test"), None)), "nothing published, nothing known");
        assert!(unauthenticated(&auth("none", ("softfail", "sender.test"), None)));
        assert!(unauthenticated(&auth("none", ("pass", "other.test"), Some(("fail", "sender.test")))));
        assert!(!unauthenticated(&auth("none", ("fail", "sender.test"), Some(("pass", "sender.test")))));
        assert!(!unauthenticated(&auth("none", ("none", "x.test"), Some(("pass", "mail.sender.test")))));
        assert!(!unauthenticated(&auth("none", ("pass", "sender.test"), None)));
        assert!(!unauthenticated(&auth("pass", ("none", "x.test"), None)));
        assert!(!unauthenticated(&auth("none", ("temperror", "sender.test"), None)));
    }

    #[test]
    fn report_types_are_read_from_content_type() {
        let h = |v: &str| vec![("Content-Type".to_string(), v.to_string())];
        assert_eq!(
            report_type(&h("multipart/report; report-type=delivery-status; boundary=x")).as_deref(),
            Some("delivery-status")
        );
        assert_eq!(
            report_type(&h("Multipart/Report; boundary=\"b\";\r\n report-type=\"feedback-report\"")).as_deref(),
            Some("feedback-report")
        );
        assert_eq!(report_type(&h("multipart/mixed; report-type=x")), None);
    }
}
