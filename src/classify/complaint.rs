//! An ARF feedback report (RFC 5965): a mailbox provider telling the sender that a recipient
//! complained. Its `message/feedback-report` part is a block of fields; the reported message (or
//! its headers) follows it.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::mail::Complaint;

pub fn read(raw: &[u8]) -> Option<Complaint> {
    let msg = MessageParser::default().parse(raw)?;
    let report = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("feedback-report"))
        })
    })?;
    let text =
        String::from_utf8_lossy(report.contents()).replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let original_message_id = msg.parts.iter().skip(1).find_map(|p| match &p.body {
        PartType::Message(m) => m.message_id().map(str::to_string),
        _ if p
            .content_type()
            .is_some_and(|c| c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))) =>
        {
            MessageParser::default().parse_headers(p.contents()).and_then(|m| m.message_id().map(str::to_string))
        }
        _ => None,
    });
    let bare = |v: String| v.trim_start_matches('<').trim_end_matches('>').to_string();
    Some(Complaint {
        feedback_type: field("Feedback-Type")?.to_ascii_lowercase(),
        user_agent: field("User-Agent"),
        original_recipient: field("Original-Rcpt-To").map(bare),
        original_message_id,
        // `192.0.2.1 (host.example)` → the address.
        source_ip: field("Source-IP").and_then(|v| v.split_whitespace().next().map(str::to_string)),
    })
}
