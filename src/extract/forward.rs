//! A forwarded message: inline (a marker line such as "---------- Forwarded message ---------" or
//! "Begin forwarded message:", or Outlook's header block under a `Fwd:`/`WG:` subject), or attached
//! as a `message/rfc822` part. Gives the original's header fields and text, and the forwarder's note.

use mail_parser::MessageParser;

use super::patterns;
use super::reply::{
    CC_FIELD, FORWARD_LINE, FROM_FIELD, Mark, SENT_FIELD, SUBJECT_FIELD, TO_FIELD, mark, may_be_forward,
};
use crate::mail::Forward;

/// An inline forward in `text`; `subject` tells an Outlook forward (no marker line) from a reply.
pub fn inline(text: &str, subject: Option<&str>) -> Option<Forward> {
    inline_lines(&text.lines().collect::<Vec<_>>(), subject)
}

/// `inline`, on the text's lines as the caller already split them.
pub fn inline_lines(lines: &[&str], subject: Option<&str>) -> Option<Forward> {
    let at = match lines.iter().position(|l| may_be_forward(l) && FORWARD_LINE.is_match(l)) {
        Some(i) => i,
        None if forward_subject(subject) => {
            // Outlook's block, or "-----Original Message-----" above it.
            mark(lines).iter().position(|m| *m == Mark::Header)?
        }
        None => return None,
    };
    // Nothing quoted above the marker: a reply quoting a forward is a reply.
    if lines[..at].iter().any(|l| l.trim_start().starts_with('>')) {
        return None;
    }
    // Outlook's rule above its block belongs to the block.
    let mut end = at;
    while end > 0 && (lines[end - 1].trim().is_empty() || is_rule(lines[end - 1])) {
        end -= 1;
    }
    let note = lines[..end].join("\n");
    let mut f = Forward { note: non_empty(note.trim()), ..Forward::default() };
    let mut i = if FORWARD_LINE.is_match(lines[at]) || !is_field(lines[at]) { at + 1 } else { at };
    // Skip blank lines, then read the header block up to the first blank line after it.
    while i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    let mut any = false;
    while i < lines.len() && !lines[i].trim().is_empty() {
        let l = lines[i].trim_start_matches('>').trim();
        let value = |re: &regex::Regex| re.captures(l).and_then(|c| c.get(1)).map(|m| m.as_str().trim().to_string());
        if let Some(v) = value(&FROM_FIELD) {
            f.from = Some(v);
        } else if let Some(v) = value(&SENT_FIELD) {
            f.date = Some(v);
        } else if let Some(v) = value(&SUBJECT_FIELD) {
            f.subject = Some(v);
        } else if let Some(v) = value(&TO_FIELD) {
            f.to = Some(v);
        } else if value(&CC_FIELD).is_none() && !any {
            break;
        }
        any = true;
        i += 1;
    }
    let body = lines[i.min(lines.len())..].join("\n");
    f.text = non_empty(body.trim());
    Some(f)
}

/// The first `message/rfc822` attachment, read as the forwarded original.
pub fn attached(bytes: &[u8], note: Option<String>) -> Option<Forward> {
    let msg = MessageParser::default().parse(bytes)?;
    let addr = |a: Option<&mail_parser::Address<'_>>| {
        a.map(|a| {
            a.iter()
                .map(|m| match (m.name(), m.address()) {
                    (Some(n), Some(a)) => format!("{n} <{a}>"),
                    (None, Some(a)) => a.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
    };
    Some(Forward {
        from: addr(msg.from()),
        to: addr(msg.to()),
        date: msg.date().map(|d| d.to_rfc3339()),
        subject: msg.subject().map(str::to_string),
        text: msg.body_text(0).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        note,
    })
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 4 && t.chars().all(|c| matches!(c, '_' | '-' | '=' | '—'))
}

fn is_field(line: &str) -> bool {
    FROM_FIELD.is_match(line) || SENT_FIELD.is_match(line)
}

/// `Fwd:`, `FW:`, `WG:`, `TR:` … at the start of the subject (after any `Re:`).
pub fn forward_subject(subject: Option<&str>) -> bool {
    let Some(s) = subject else { return false };
    let s = s.trim_start().to_lowercase();
    patterns::FORWARD_SUBJECT
        .iter()
        .any(|p| s.strip_prefix(p).is_some_and(|rest| rest.trim_start().starts_with([':', '：'])))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}
