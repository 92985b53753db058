//! The new part of an HTML reply: the document without the quoted history that mail clients mark.
//! Removed with what they mark: Gmail `.gmail_quote`, Apple Mail `blockquote[type=cite]`, Thunderbird
//! `.moz-cite-prefix` and its cite blockquote, Yahoo `.yahoo_quoted`. Cut with everything after them:
//! Outlook's `#divRplyFwdMsg` / `#appendonsend` and the new Outlook's reference container (the original
//! follows them as siblings, unmarked).
//!
//! lol_html rewrites as it streams: no DOM is built, memory stays about the size of the output, and
//! the selectors above are its CSS selectors.

use std::cell::Cell;
use std::rc::Rc;

use lol_html::{RewriteStrSettings, doc_text, element, rewrite_str};

const REMOVED: &[&str] = &[
    "div.gmail_quote",
    "div.gmail_quote_container",
    "blockquote.gmail_quote",
    "blockquote[type=cite]",
    ".moz-cite-prefix",
    "div.yahoo_quoted",
    "div.protonmail_quote",
    "blockquote[data-type=quote]",
];

const CUT_FROM: &[&str] =
    &["#divRplyFwdMsg", "#appendonsend", "#mail-editor-reference-message-container", "div.OutlookMessageHeader"];

/// (the HTML without its marked history, whether anything was removed). None when lol_html could
/// not read it (the event keeps `reply.html` null).
pub fn new_part(html: &str) -> Option<(String, bool)> {
    let removed = Rc::new(Cell::new(false));
    let cutting = Rc::new(Cell::new(false));
    let mut handlers = Vec::new();
    for selector in CUT_FROM {
        let (cutting, removed) = (cutting.clone(), removed.clone());
        handlers.push(element!(*selector, move |el| {
            cutting.set(true);
            removed.set(true);
            el.remove();
            Ok(())
        }));
    }
    for selector in REMOVED {
        let removed = removed.clone();
        handlers.push(element!(*selector, move |el| {
            removed.set(true);
            el.remove();
            Ok(())
        }));
    }
    let after = cutting.clone();
    handlers.push(element!("*", move |el| {
        if after.get() {
            el.remove();
        }
        Ok(())
    }));
    let text_after = cutting.clone();
    // Not strict: mail HTML is often malformed, and lol_html bails out on ambiguous input in strict mode.
    let mut settings = RewriteStrSettings::new().with_strict(false).with_enable_esi_tags(false);
    for h in handlers {
        settings = settings.append_element_content_handler(h);
    }
    let settings = settings.append_document_content_handler(doc_text!(move |t| {
        if text_after.get() {
            t.remove();
        }
        Ok(())
    }));
    let out = rewrite_str(html, settings).ok()?;
    Some((out, removed.get()))
}

#[cfg(test)]
mod tests {
    use super::new_part;

    #[track_caller]
    fn keeps(html: &str, kept: &str, gone: &str) {
        let (out, removed) = new_part(html).expect("rewritten");
        assert!(removed, "{html}");
        assert!(out.contains(kept) && !out.contains(gone), "{out}");
    }

    #[test]
    fn each_clients_quote_goes() {
        keeps(
            r#"<div dir="ltr">Yes.</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Bob wrote:</div><blockquote class="gmail_quote">Lunch?</blockquote></div>"#,
            "Yes.",
            "Lunch?",
        );
        keeps(
            r#"<html><body>Yes.<div><br><blockquote type="cite"><div>On Nov 23, Bob wrote:</div><div>Lunch?</div></blockquote></div></body></html>"#,
            "Yes.",
            "Lunch?",
        );
        keeps(
            r#"<p>Yes.</p><div class="moz-cite-prefix">On 23/11/2026 Bob wrote:<br></div><blockquote type="cite" cite="mid:x">Lunch?</blockquote>"#,
            "Yes.",
            "wrote",
        );
        keeps(
            r#"<div>Yes.</div><div class="yahoo_quoted"><div>On Monday, Bob wrote:</div>Lunch?</div>"#,
            "Yes.",
            "Lunch?",
        );
        // Outlook: the header block and the original after it, unmarked.
        keeps(
            r#"<div>Yes.</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Bob<br><b>Sent:</b> Monday</div><div>Lunch?</div></body>"#,
            "Yes.",
            "Lunch?",
        );
    }

    #[test]
    fn html_without_a_marked_quote_is_kept() {
        let (out, removed) = new_part("<p>Hello <b>there</b></p>").unwrap();
        assert_eq!((out.as_str(), removed), ("<p>Hello <b>there</b></p>", false));
    }
}
