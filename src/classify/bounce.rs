//! Delivery status notifications: RFC 3464 `multipart/report; report-type=delivery-status` (its
//! `message/delivery-status` part read field by field), and the plain-text bounces servers still
//! send (Postfix's "This is the mail system at host", Exim's "Mail delivery failed", qmail's
//! "failure notice"), read the way a person would: an address, then what the remote server said.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use crate::mail::{Bounce, BounceOriginal, BounceRecipient, BounceTo, EventMessage};

/// The recipients a bounce may list in the event: a report of millions (25 MB of `\n\nA:b`) would
/// cost memory and an event no endpoint accepts. A real one lists a handful.
const MAX_RECIPIENTS: usize = 100;
/// The longest field kept (an SMTP line's 998 octets): a diagnostic is a server's reply, not a book.
const MAX_FIELD: usize = 998;

fn short(s: String) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((at, _)) => s[..at].to_string(),
        None => s,
    }
}

/// The report, if the message is a bounce.
pub fn read(event: &EventMessage, raw: &[u8], report: Option<&str>) -> Option<Bounce> {
    let dsn = report == Some("delivery-status");
    // Most mail is neither: it costs a header look-up, not a second MIME parse. A report counts only
    // from a mail system (the null sender, or a daemon's From), as RFC 3464 has them sent: anyone can
    // write a multipart/report, and a bounce makes an app stop mailing the address.
    if !from_a_mail_system(event) || (!dsn && !looks_like_a_bounce(event)) {
        return None;
    }
    let parsed = MessageParser::default().parse(raw);
    let (recipients, mut original) = match &parsed {
        Some(msg) if dsn => (dsn_recipients(msg)?, BounceOriginal::default()),
        _ => plain_recipients(event.text.as_deref().unwrap_or(""))?,
    };
    if let Some(msg) = &parsed
        && let Some(returned) = returned_message(msg)
    {
        original = returned;
    }
    // Hard unless every recipient is only delayed or has a 4.x.x status.
    let soft = !recipients.is_empty()
        && recipients
            .iter()
            .all(|r| r.status.as_deref().is_some_and(|s| s.starts_with('4')) || r.action.as_deref() == Some("delayed"));
    let to = event.smtp.rcpt_to.first().map(|a| a.as_str());
    let tag =
        to.and_then(|a| a.rsplit_once('@')).and_then(|(local, _)| local.split_once('+')).map(|(_, t)| t.to_string());
    Some(Bounce {
        recipients,
        kind: if soft { "soft" } else { "hard" },
        original,
        to: BounceTo { address: to.map(str::to_string), tag },
    })
}

/// The per-recipient fields of the `message/delivery-status` part (RFC 3464 2.3).
fn dsn_recipients(msg: &Message<'_>) -> Option<Vec<BounceRecipient>> {
    let part = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    let text = String::from_utf8_lossy(part.contents());
    let unfolded = text.replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
    // The first block is about the message (Reporting-MTA …); each further one about a recipient.
    let recipients = unfolded
        .split("\n\n")
        .skip(1)
        .map(fields)
        .filter(|f| !f.is_empty())
        .take(MAX_RECIPIENTS)
        .map(|f| {
            let get = |name: &str| f.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            BounceRecipient {
                address: get("Final-Recipient").map(|v| short(typed(&v))),
                original_recipient: get("Original-Recipient").map(|v| short(typed(&v))),
                action: get("Action").map(|v| short(v.to_ascii_lowercase())),
                status: get("Status").map(|v| short(v.split_whitespace().next().unwrap_or("").to_string())),
                diagnostic_code: get("Diagnostic-Code").map(|v| short(typed(&v))),
                remote_mta: get("Remote-MTA").map(|v| short(typed(&v))),
            }
        })
        .collect();
    Some(recipients)
}

fn fields(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| l.split_once(':'))
        // Unfolded lines keep their indentation: one space wherever there was a run of them.
        .map(|(n, v)| (n.trim().to_string(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .filter(|(n, _)| !n.is_empty() && !n.contains(' '))
        .collect()
}

/// `rfc822; ada@x.test` → `ada@x.test` (the address, MTA-name or diagnostic type is left out).
fn typed(v: &str) -> String {
    v.split_once(';').map_or(v, |(_, rest)| rest).trim().to_string()
}

/// The returned message (`message/rfc822`) or its headers (`text/rfc822-headers`).
fn returned_message(msg: &Message<'_>) -> Option<BounceOriginal> {
    for part in msg.parts.iter().skip(1) {
        let from = |m: &Message<'_>| BounceOriginal {
            message_id: m.message_id().map(str::to_string),
            subject: m.subject().map(str::to_string),
            mail_from: m
                .header_raw("Return-Path")
                .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>').to_string()),
        };
        match &part.body {
            PartType::Message(m) => return Some(from(m)),
            _ if part
                .content_type()
                .is_some_and(|c| c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))) =>
            {
                let headers = MessageParser::default().parse_headers(part.contents())?;
                return Some(from(&headers));
            }
            _ => {}
        }
    }
    None
}

/// A plain-text bounce: from the null sender or a mailer daemon, and saying so in its words.
/// Sent by a mail system: the null sender, or a MAILER-DAEMON / postmaster From.
fn from_a_mail_system(event: &EventMessage) -> bool {
    let from = event.from.as_ref().and_then(|f| f.address.as_deref()).unwrap_or("").to_ascii_lowercase();
    event.smtp.mail_from.is_empty()
        || ["mailer-daemon@", "postmaster@", "mail-daemon@"].iter().any(|p| from.starts_with(p))
}

fn looks_like_a_bounce(event: &EventMessage) -> bool {
    let text = event.text.as_deref().unwrap_or("");
    let subject = event.subject.as_deref().unwrap_or("").to_ascii_lowercase();
    MARKERS.iter().any(|m| text.contains(m))
        || [
            "undelivered mail",
            "failure notice",
            "mail delivery failed",
            "delivery status notification",
            "returned mail",
            "undeliverable",
        ]
        .iter()
        .any(|s| subject.contains(s))
}

const MARKERS: [&str; 5] = [
    "This is the mail system at host",
    "This message was created automatically by mail delivery software",
    "This is the qmail-send program",
    "could not be delivered to one or more",
    "I'm afraid I wasn't able to deliver your message",
];

/// Where the returned message starts in a plain-text bounce.
const RETURNED: [&str; 5] = [
    "------ This is a copy of the message",
    "--- Below this line is a copy of the message",
    "--- Enclosed are the original headers",
    "------ Original message",
    "Original message follows",
];

/// Each paragraph that starts with an address (`<a@b>: …`, `a@b:` or `  a@b`) is a recipient, and
/// the rest of it what the remote server said.
fn plain_recipients(text: &str) -> Option<(Vec<BounceRecipient>, BounceOriginal)> {
    let text = text.replace("\r\n", "\n");
    let (report, returned) = match RETURNED.iter().filter_map(|m| text.find(m)).min() {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (&text[..], None),
    };
    let delayed = ["has not yet been delivered", "will keep trying", "Delayed Mail", "delayed"]
        .iter()
        .any(|m| report.contains(m));
    let permanent = ["permanent error", "I've given up", "could not be delivered"].iter().any(|m| report.contains(m));
    let mut recipients = Vec::new();
    for para in report.split("\n\n") {
        if recipients.len() == MAX_RECIPIENTS {
            break;
        }
        let mut lines = para.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(first) = lines.next() else { continue };
        let (addr, rest) = match first.split_once(':') {
            Some((a, rest)) if is_address(a) => (a, rest.trim().to_string()),
            _ if is_address(first) => (first, String::new()),
            _ => continue,
        };
        let said: Vec<&str> = std::iter::once(rest.as_str()).chain(lines).filter(|l| !l.is_empty()).collect();
        let said = said.join(" ");
        let status = enhanced_status(&said).or_else(|| {
            smtp_code(&said).map(|c| format!("{}.0.0", &c[..1])).or_else(|| permanent.then(|| "5.0.0".to_string()))
        });
        recipients.push(BounceRecipient {
            address: Some(short(addr.trim_start_matches('<').trim_end_matches('>').to_string())),
            original_recipient: None,
            action: Some(if delayed && !permanent { "delayed" } else { "failed" }.to_string()),
            status,
            diagnostic_code: Some(short(said.clone())).filter(|s| !s.is_empty()),
            remote_mta: remote_mta(&said),
        });
    }
    if recipients.is_empty() {
        return None;
    }
    let original = returned
        .and_then(|r| r.split_once('\n').map(|(_, rest)| rest.trim_start()))
        .and_then(|r| {
            MessageParser::default().parse_headers(r.as_bytes()).map(|m| {
                (
                    m.message_id().map(str::to_string),
                    m.subject().map(str::to_string),
                    m.header_raw("Return-Path")
                        .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>').to_string()),
                )
            })
        })
        .map(|(message_id, subject, mail_from)| BounceOriginal { message_id, subject, mail_from })
        .unwrap_or_default();
    Some((recipients, original))
}

fn is_address(s: &str) -> bool {
    let s = s.trim().trim_start_matches('<').trim_end_matches('>');
    !s.is_empty()
        && !s.contains(char::is_whitespace)
        && s.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
}

/// The first `X.Y.Z` enhanced status code (RFC 3463) with X of 2, 4 or 5.
fn enhanced_status(s: &str) -> Option<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '#' | '<' | '>'))
        .map(|w| w.trim_end_matches(['.', ':']))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The first SMTP reply code, `4xx` or `5xx`, standing as a word.
fn smtp_code(s: &str) -> Option<&str> {
    s.split(|c: char| c.is_whitespace() || c == '-')
        .find(|w| w.len() == 3 && matches!(w.as_bytes()[0], b'4' | b'5') && w.bytes().all(|b| b.is_ascii_digit()))
}

/// `host mx.example.net[192.0.2.25] said:` (Postfix), `host mx.example.net [192.0.2.25]` (Exim).
fn remote_mta(s: &str) -> Option<String> {
    let (_, rest) = s.split_once("host ")?;
    let name: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '[').collect();
    Some(name).filter(|n| n.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_exim_and_qmail_plain_text() {
        let postfix = "This is the mail system at host mx.sender.test.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n<gone@far.test>: host mx.far.test[192.0.2.25] said: 550 5.1.1\n    <gone@far.test>: Recipient address rejected: User unknown (in reply to\n    RCPT TO command)\n";
        let (r, _) = plain_recipients(postfix).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].address.as_deref(), r[0].status.as_deref()), (Some("gone@far.test"), Some("5.1.1")));
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.far.test"));

        let exim = "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  gone@far.test\n    host mx.far.test [192.0.2.25]\n    SMTP error from remote mail server after RCPT TO:<gone@far.test>:\n    550 User unknown\n\n------ This is a copy of the message, including all the headers. ------\n\nReturn-path: <app+42@sender.test>\nMessage-ID: <m1@sender.test>\nSubject: Hello\n\nbody\n";
        let (r, o) = plain_recipients(exim).unwrap();
        assert_eq!((r[0].address.as_deref(), r[0].status.as_deref()), (Some("gone@far.test"), Some("5.0.0")));
        assert_eq!(
            (o.message_id.as_deref(), o.subject.as_deref(), o.mail_from.as_deref()),
            (Some("m1@sender.test"), Some("Hello"), Some("app+42@sender.test"))
        );

        let qmail = "Hi. This is the qmail-send program at far.test.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n<gone@far.test>:\n192.0.2.25 does not like recipient.\nRemote host said: 550 5.1.1 User unknown\nGiving up on 192.0.2.25.\n";
        let (r, _) = plain_recipients(qmail).unwrap();
        assert_eq!((r[0].address.as_deref(), r[0].status.as_deref()), (Some("gone@far.test"), Some("5.1.1")));
        assert!(plain_recipients("Hello,\n\nsee you at 5.1.1 tomorrow\n").is_none());
    }

    #[test]
    fn a_huge_report_keeps_a_bounded_number_of_recipients_and_field_lengths() {
        let mut text = String::from("This is the mail system at host mx.sender.test.\n\n");
        for i in 0..5_000 {
            text.push_str(&format!("<gone{i}@far.test>: {}\n\n", "x".repeat(if i == 0 { 100_000 } else { 10 })));
        }
        let (r, _) = plain_recipients(&text).unwrap();
        assert_eq!(r.len(), MAX_RECIPIENTS);
        assert_eq!(r[0].diagnostic_code.as_ref().map(|d| d.chars().count()), Some(MAX_FIELD));
    }
}
