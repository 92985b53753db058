//! What is new in a message, after parse and before classify: `reply` (the text without its quoted
//! history and signature), `forward` (the forwarded original and the forwarder's note) and
//! `preview`. Works on the event's `text` (which mail-parser makes from the HTML when there is no
//! text part) and, for `reply.html`, on the HTML. Imports only `mail`; the patterns are data
//! (`patterns.rs`).

mod forward;
mod html;
pub mod patterns;
mod reply;
mod signature;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::mail::{EventMessage, Forward, ReplyText};

/// The reply of a text, before it goes in the event: `text` borrows the body when nothing was cut
/// from it (most mail), so no copy of a 5 KB text is made to find out it is the same.
#[derive(Debug)]
pub struct Reply<'a> {
    pub text: Cow<'a, str>,
    pub html: Option<String>,
    pub signature: Option<String>,
    pub quoted: bool,
}

/// How many characters `preview` keeps.
const PREVIEW_CHARS: usize = 200;

/// The event's `reply`, `forward` and `preview`.
#[derive(Debug, Default)]
pub struct Fields {
    pub reply: Option<ReplyText>,
    pub forward: Option<Forward>,
    pub preview: Option<String>,
}

/// Fills `reply`, `forward` and `preview` from the event. `attachments` are the decoded parts, in
/// `event.attachments` order (an attached `message/rfc822` is a forward's original).
pub fn extract(event: &EventMessage, attachments: &[Cow<'_, [u8]>], out: &mut Fields) {
    let Some(text) = event.text.as_deref() else { return };
    // Split once for the reply and the forward.
    let lines: Vec<&str> = text.lines().collect();
    let reply = reply_of_lines(text, &lines, event.html.as_deref());
    let subject = event.subject.as_deref();
    let inline = forward::inline_lines(&lines, subject);
    let is_inline = inline.is_some();
    let mut fwd = inline.map(|f| if text.contains("\r\n") { crlf_forward(f) } else { f });
    if fwd.is_none() && !is_report(event) {
        let attached = event.attachments.iter().position(|a| a.content_type == "message/rfc822");
        if let Some(i) = attached
            && let Some(bytes) = attachments.get(i)
        {
            let note = (!reply.text.is_empty()).then(|| reply.text.to_string());
            fwd = forward::attached(bytes, note);
        }
    }
    let reply = match &fwd {
        // An inline forward: what is new is the forwarder's note.
        Some(Forward { note, .. }) if !reply.quoted && is_inline => {
            let r = reply_of(note.as_deref().unwrap_or(""), None);
            let text = Cow::Owned(r.text.into_owned());
            Reply { text, signature: r.signature, quoted: true, html: reply.html }
        }
        _ => reply,
    };
    out.preview = Some(preview(&reply.text));
    // The same as `text` (less its trailing white space): sent as null rather than a second copy,
    // which would be built, stored, signed and sent for nothing.
    let same = reply.text == text.trim_end();
    let Reply { text, html, signature, quoted } = reply;
    out.reply = Some(ReplyText { text: (!same).then(|| text.into_owned()), html, signature, quoted });
    out.forward = fwd;
}

/// Compiles every pattern (they are compiled on first use otherwise).
pub fn warm() {
    let _ = reply_of("Hi\n\nOn Mon, Ada <a@b.c> wrote:\n> x\n\nThanks,\nAda\n", Some("<p>x</p>"));
    let _ = forward::inline("x\n---------- Forwarded message ---------\nFrom: a\n\nb", Some("Fwd: x"));
}

/// The reply of a text body (and the new part of its HTML, when there is one), with the body's own
/// line ends (mail-parser keeps CRLF): a message that quotes nothing has its text, less the signature.
pub fn reply_of<'a>(text: &'a str, html: Option<&str>) -> Reply<'a> {
    reply_of_lines(text, &text.lines().collect::<Vec<_>>(), html)
}

fn reply_of_lines<'a>(text: &'a str, lines: &[&str], html: Option<&str>) -> Reply<'a> {
    let unquoted = reply::unquote_lines(text, lines);
    let quoted = unquoted.quoted;
    let (body, signature) = signature::split(unquoted.text);
    let (body, signature) = match text.contains("\r\n") {
        true => {
            let body = match body {
                // A part of the body as it came, which has only CRLF line ends already: as it is.
                Cow::Borrowed(b) if crlf_ends(text, lines) => Cow::Borrowed(b),
                body => crlf(body),
            };
            (body, signature.map(|s| crlf(s.into()).into_owned()))
        }
        false => (body, signature),
    };
    let html = html.and_then(html::new_part);
    let html_quoted = html.as_ref().is_some_and(|(_, removed)| *removed);
    Reply { text: body, html: html.map(|(h, _)| h), signature, quoted: quoted || html_quoted }
}

/// Every line of `text` (split into `lines` by `str::lines`, which takes off a CR before each LF) ends
/// in CRLF, or is the last without a line end: found from where each line ends in `text`, not by
/// reading the text again.
fn crlf_ends(text: &str, lines: &[&str]) -> bool {
    let (base, bytes) = (text.as_ptr() as usize, text.as_bytes());
    lines.iter().all(|l| match (l.as_ptr() as usize).checked_sub(base) {
        Some(at) => bytes.get(at + l.len()).is_none_or(|&b| b == b'\r'),
        None => false,
    })
}

/// `text` with every line ending in CRLF; borrowed as it is when every line already does.
fn crlf(text: Cow<'_, str>) -> Cow<'_, str> {
    let b = text.as_bytes();
    let crlf_only = b.iter().enumerate().all(|(i, &c)| c != b'\n' || (i > 0 && b[i - 1] == b'\r'));
    // `lines` drops a last line end: only a text without one is already its own result.
    if crlf_only && !text.ends_with('\n') {
        return text;
    }
    Cow::Owned(text.lines().collect::<Vec<_>>().join("\r\n"))
}

/// The quote removed, the signature still in it (what talon's `extract_from_plain` gives).
pub fn unquoted(text: &str) -> String {
    reply::unquote(text).text.into_owned()
}

/// The first `PREVIEW_CHARS` characters, white space collapsed to single spaces.
fn preview(text: &str) -> String {
    let (mut out, mut chars) = (String::new(), 0);
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += word.chars().count();
        if chars >= PREVIEW_CHARS {
            break;
        }
    }
    out.chars().take(PREVIEW_CHARS).collect()
}

fn crlf_forward(f: Forward) -> Forward {
    let c = |s: Option<String>| s.map(|s| crlf(Cow::Owned(s)).into_owned());
    Forward { text: c(f.text), note: c(f.note), ..f }
}

/// A delivery or feedback report carries the original as `message/rfc822` too; it is no forward.
fn is_report(event: &EventMessage) -> bool {
    event
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.to_ascii_lowercase().contains("multipart/report"))
}
