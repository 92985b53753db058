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
    let reply = reply_of(text, event.html.as_deref());
    let subject = event.subject.as_deref();
    let inline = forward::inline(text, subject);
    let is_inline = inline.is_some();
    let mut fwd = inline.map(|f| if text.contains("\r\n") { crlf_forward(f) } else { f });
    if fwd.is_none() && !is_report(event) {
        let attached = event.attachments.iter().position(|a| a.content_type == "message/rfc822");
        if let Some(i) = attached
            && let Some(bytes) = attachments.get(i)
        {
            let note = (!reply.text.is_empty()).then(|| reply.text.clone());
            fwd = forward::attached(bytes, note);
        }
    }
    let reply = match &fwd {
        // An inline forward: what is new is the forwarder's note.
        Some(Forward { note, .. }) if !reply.quoted && is_inline => {
            let r = reply_of(note.as_deref().unwrap_or(""), None);
            ReplyText { text: r.text, signature: r.signature, quoted: true, html: reply.html }
        }
        _ => reply,
    };
    out.preview = Some(preview(&reply.text));
    out.reply = Some(reply);
    out.forward = fwd;
}

/// Compiles every pattern (they are compiled on first use otherwise).
pub fn warm() {
    let _ = reply_of("Hi\n\nOn Mon, Ada <a@b.c> wrote:\n> x\n\nThanks,\nAda\n", Some("<p>x</p>"));
    let _ = forward::inline("x\n---------- Forwarded message ---------\nFrom: a\n\nb", Some("Fwd: x"));
}

/// The reply of a text body (and the new part of its HTML, when there is one), with the body's own
/// line ends (mail-parser keeps CRLF): a message that quotes nothing has its text, less the signature.
pub fn reply_of(text: &str, html: Option<&str>) -> ReplyText {
    let unquoted = reply::unquote(text);
    let (body, signature) = signature::split(&unquoted.text);
    let (body, signature) =
        if text.contains("\r\n") { (crlf(&body), signature.map(|s| crlf(&s))) } else { (body, signature) };
    let html = html.and_then(html::new_part);
    let html_quoted = html.as_ref().is_some_and(|(_, removed)| *removed);
    ReplyText { text: body, html: html.map(|(h, _)| h), signature, quoted: unquoted.quoted || html_quoted }
}

/// `text` with every line ending in CRLF.
fn crlf(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\r\n")
}

/// The quote removed, the signature still in it (what talon's `extract_from_plain` gives).
pub fn unquoted(text: &str) -> String {
    reply::unquote(text).text
}

/// The first `PREVIEW_CHARS` characters, white space collapsed to single spaces.
fn preview(text: &str) -> String {
    let mut out = String::new();
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= PREVIEW_CHARS {
            break;
        }
    }
    out.chars().take(PREVIEW_CHARS).collect()
}

fn crlf_forward(f: Forward) -> Forward {
    let c = |s: Option<String>| s.map(|s| crlf(&s));
    Forward { text: c(f.text), note: c(f.note), ..f }
}

/// A delivery or feedback report carries the original as `message/rfc822` too; it is no forward.
fn is_report(event: &EventMessage) -> bool {
    event
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.to_ascii_lowercase().contains("multipart/report"))
}
