//! Raw bytes + envelope → the event's `message` object (mail-parser). This stage never fails a
//! message: input mail-parser cannot make sense of becomes `parsed.status = "failed"` with the
//! reason, and the raw bytes stay available. Auth and spam verdicts are filled by their stages.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders, PartType};

use crate::mail::{Attachment, Envelope, EventMessage, Mailbox, ParseStatus, Raw, Smtp, Spam, Standing, sha256_hex};

/// What parsing yields: the event's `message` object, and the decoded bytes of each attachment
/// (in `event.attachments` order) for the store to keep. Decoded parts are moved out of the parser,
/// not copied: a 50 MB attachment is in memory once besides the raw message.
pub struct ParseOutput<'a> {
    pub event: EventMessage,
    pub attachments: Vec<Cow<'a, [u8]>>,
}

/// Builds the event's `message` object. `received_at` is RFC 3339.
pub fn parse<'a>(id: &str, received_at: String, envelope: &Envelope, raw: &'a [u8]) -> ParseOutput<'a> {
    parse_bounded(id, received_at, envelope, raw, u64::MAX)
}

/// `parse`, for an event of at most `max_payload` bytes: a text body larger than that could never
/// be in it, so it is not copied (a 50 MB text message costs its raw bytes, not twice them).
pub fn parse_bounded<'a>(
    id: &str,
    received_at: String,
    envelope: &Envelope,
    raw: &'a [u8],
    max_payload: u64,
) -> ParseOutput<'a> {
    let raw_info = Raw { size: raw.len(), sha256: sha256_hex(raw), url: None, base64: None };
    let mut event = EventMessage {
        id: id.to_string(),
        received_at,
        smtp: Smtp {
            client_ip: envelope.client_ip.to_string(),
            proxy_ip: envelope.proxy_ip.map(|ip| ip.to_string()),
            helo: envelope.helo.clone(),
            mail_from: envelope.mail_from.clone(),
            rcpt_to: envelope.rcpt_to.clone(),
            tls: envelope.tls.clone(),
            tls_cipher: envelope.tls_cipher.clone(),
        },
        from: None,
        to: Vec::new(),
        cc: Vec::new(),
        reply_to: Vec::new(),
        subject: None,
        date: None,
        message_id: None,
        in_reply_to: None,
        references: Vec::new(),
        thread_id: id.to_string(),
        headers: Vec::new(),
        text: None,
        withheld_text: None,
        html: None,
        omitted: Vec::new(),
        attachments: Vec::new(),
        attachments_url: None,
        raw: raw_info,
        parsed: ParseStatus { status: "complete", error: None },
        auth: None,
        spam: Spam::default(),
        routes: serde_json::Value::Array(Vec::new()),
        sender_list: Standing::Unlisted,
        auto_submitted: None,
        bounce: None,
        complaint: None,
        reply: None,
        forward: None,
        preview: None,
    };
    // mail-parser survived 200,000 random mutations without a panic; should a new input find one,
    // it costs this message its parsed fields, not the gateway or the message.
    let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&mut event, raw, max_payload)));
    let (attachments, error) = match filled {
        Ok(Ok(a)) => (a, None),
        Ok(Err(e)) => (Vec::new(), Some(e)),
        Err(_) => (Vec::new(), Some("the MIME parser crashed on this message".to_string())),
    };
    if let Some(e) = error {
        event.attachments.clear();
        event.parsed = ParseStatus { status: "failed", error: Some(e) };
    }
    ParseOutput { event, attachments }
}

fn fill<'a>(e: &mut EventMessage, raw: &'a [u8], max_payload: u64) -> Result<Vec<Cow<'a, [u8]>>, String> {
    // mail-parser decodes every part as it parses, into a new buffer up to twice the part's size. A
    // plain-text message whose body can never fit the event is parsed without its body: the body is
    // withheld as it would be anyway, and a 50 MB text message costs its raw bytes only.
    // Only a message larger than the cap can have such a body: the others skip the header pass.
    let shortcut = if raw.len() as u64 > max_payload { unencoded_text_body(raw) } else { None };
    let whole = match shortcut {
        Some(body_at) if (raw.len() - body_at) as u64 > max_payload => {
            e.withheld_text = Some((raw.len() - body_at) as u64);
            &raw[..body_at]
        }
        _ => raw,
    };
    let mut msg = MessageParser::default().parse(whole).ok_or("empty message")?;
    // The shortcut read the headers one way; should the parser make anything but one text part of
    // them (two Content-Type fields, say), the body matters after all: parse the message whole.
    if whole.len() < raw.len() && (msg.parts.len() != 1 || !msg.attachments.is_empty()) {
        e.withheld_text = None;
        msg = MessageParser::default().parse(raw).ok_or("empty message")?;
    }
    if msg.headers().is_empty() {
        return Err("no header section: the message does not start with a header field".into());
    }
    e.from = msg.from().and_then(|a| a.iter().next()).map(mailbox);
    e.to = mailboxes(msg.to());
    e.cc = mailboxes(msg.cc());
    e.reply_to = mailboxes(msg.reply_to());
    e.subject = msg.subject().map(str::to_string);
    e.date = msg.date().map(|d| d.to_rfc3339());
    e.message_id = msg.message_id().map(str::to_string);
    e.in_reply_to = ids(msg.in_reply_to()).into_iter().next();
    e.references = ids(msg.references());
    if let Some(t) = e.references.first().or(e.in_reply_to.as_ref()).or(e.message_id.as_ref()) {
        e.thread_id = t.clone();
    }
    e.headers = decoded_headers(raw, msg.root_part().offset_body as usize);
    e.text = match msg.body_text(0) {
        _ if e.withheld_text.is_some() => None,
        Some(t) if t.len() as u64 > max_payload => {
            e.withheld_text = Some(t.len() as u64);
            None
        }
        t => t.map(|t| t.into_owned()),
    };
    // body_html(0) would invent HTML from a text-only message; only a real HTML part counts.
    e.html = msg.html_part(0).filter(|p| p.is_text_html()).and_then(|_| msg.body_html(0)).map(|h| h.into_owned());
    let mut uudecoded = Vec::new();
    for (i, part) in msg.attachments().enumerate() {
        let decoded = uudecode(part);
        let contents = decoded.as_deref().unwrap_or(part.contents());
        // A part without Content-Type in a multipart/digest is a message/rfc822 (RFC 2046 5.1.5).
        let default_type = if part.is_message() { "message/rfc822" } else { "application/octet-stream" };
        let content_type = part.content_type().map_or_else(
            || default_type.to_string(),
            |c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub).to_ascii_lowercase(),
                None => c.ctype().to_ascii_lowercase(),
            },
        );
        e.attachments.push(Attachment {
            id: format!("{}:{i}", e.id),
            filename: part.attachment_name().map(str::to_string),
            content_type,
            size: contents.len(),
            sha256: sha256_hex(contents),
            inline: part.content_disposition().is_some_and(|d| d.is_inline()),
            content_id: part.content_id().map(str::to_string),
            url: None,
        });
        uudecoded.push(decoded);
    }
    let ids = msg.attachments.clone();
    let bytes = ids
        .into_iter()
        .zip(uudecoded)
        .map(|(id, decoded)| match (decoded, msg.parts.get_mut(id as usize).map(|p| std::mem::take(&mut p.body))) {
            (Some(d), _) => Cow::Owned(d),
            (None, body) => match body {
                Some(PartType::Binary(b) | PartType::InlineBinary(b)) => b,
                Some(PartType::Text(t) | PartType::Html(t)) => match t {
                    Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                },
                // The attached message's own bytes (what `contents()` measured), not the whole buffer.
                Some(PartType::Message(m)) => {
                    let range = m.parts.first().map_or(0..0, |p| p.offset_header as usize..p.offset_end as usize);
                    match m.raw_message {
                        Cow::Borrowed(b) => Cow::Borrowed(b.get(range).unwrap_or_default()),
                        Cow::Owned(v) => Cow::Owned(v.get(range).unwrap_or_default().to_vec()),
                    }
                }
                Some(PartType::Multipart(_)) | None => Cow::Borrowed(&[][..]),
            },
        })
        .collect();
    Ok(bytes)
}

/// The bytes of a part sent with `Content-Transfer-Encoding: x-uuencode` (or `uuencode`, `x-uue`,
/// `uue`), which mail-parser leaves encoded. A part that does not decode stays as it came, as
/// Python's `email` package does.
fn uudecode(part: &mail_parser::MessagePart<'_>) -> Option<Vec<u8>> {
    let cte = part.content_transfer_encoding()?;
    if !["x-uuencode", "uuencode", "x-uue", "uue"].iter().any(|u| cte.eq_ignore_ascii_case(u)) {
        return None;
    }
    uuencoding::decode(part.contents()).ok().map(|b| b.data)
}

/// Where the body starts, when the message is one text/plain part (or has no Content-Type) that is
/// not an attachment and whose bytes are its text (no base64 or quoted-printable): then the body's
/// length is the text's length, and nothing else in the message needs the body decoded.
fn unencoded_text_body(raw: &[u8]) -> Option<usize> {
    let head = MessageParser::default().parse_headers(raw)?;
    // After the last header field, the blank line.
    let end = head.headers().last()?.offset_end as usize;
    let body_at = match raw.get(end..)? {
        [b'\r', b'\n', ..] => end + 2,
        [b'\n', ..] => end + 1,
        _ => return None,
    };
    let plain = head.content_type().is_none_or(|c| {
        c.ctype().eq_ignore_ascii_case("text") && c.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
    });
    let attached = head.content_disposition().is_some_and(|d| !d.is_inline());
    let identity = head
        .content_transfer_encoding()
        .is_none_or(|c| ["7bit", "8bit", "binary"].iter().any(|i| c.eq_ignore_ascii_case(i)));
    (plain && !attached && identity).then_some(body_at)
}

fn mailbox(a: &mail_parser::Addr<'_>) -> Mailbox {
    Mailbox { address: a.address().map(str::to_string), name: a.name().map(str::to_string) }
}

fn mailboxes(a: Option<&Address<'_>>) -> Vec<Mailbox> {
    a.map(|a| a.iter().map(mailbox).collect()).unwrap_or_default()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Every header in order, as the sender wrote its name, with its value unfolded and RFC 2047-decoded.
///
/// The value is the field's own text, whatever mail-parser makes of it: its structured parsers
/// (addresses, dates, content types, received chains) give structures whose text would have to be
/// rebuilt, and its unstructured parser collapses runs of white space. Unfolding removes the line
/// breaks only (RFC 5322 2.2.3); encoded words are decoded by mail-parser, and the white space
/// between two adjacent ones dropped (RFC 2047 6.2). Raw 8-bit text is read as UTF-8 (RFC 6532).
fn decoded_headers(raw: &[u8], header_end: usize) -> Vec<(String, String)> {
    let head = raw.get(..header_end).unwrap_or(raw);
    // Raw values are all this needs from the parse: parse no field.
    let parser = MessageParser::new().header_raw(HeaderName::Subject).default_header_raw();
    let Some(msg) = parser.parse(head) else {
        return Vec::new();
    };
    msg.headers()
        .iter()
        .map(|h| {
            let (field, start, end) = (h.offset_field as usize, h.offset_start as usize, h.offset_end as usize);
            let name = match head.get(field..start.saturating_sub(1)) {
                Some(n) => String::from_utf8_lossy(n).trim().to_string(),
                None => h.name().to_string(),
            };
            (name, decode_value(head.get(start..end).unwrap_or_default()))
        })
        .collect()
}

/// A header field's raw value → text: line breaks removed, encoded words decoded, trimmed.
fn decode_value(value: &[u8]) -> String {
    let unfolded: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let mut out = Vec::with_capacity(unfolded.len());
    // Where the last encoded word ended in `out`, and in `unfolded`: white space between it and
    // the next encoded word is dropped.
    let mut after_word: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < unfolded.len() {
        if unfolded[i] == b'=' && unfolded.get(i + 1) == Some(&b'?') {
            let mut stream = MessageStream::new(&unfolded[i + 1..]);
            if let Some(text) = stream.decode_rfc2047() {
                if let Some((out_at, in_at)) = after_word
                    && unfolded[in_at..i].iter().all(|b| *b == b' ' || *b == b'\t')
                {
                    out.truncate(out_at);
                }
                out.extend_from_slice(text.as_bytes());
                i += 1 + stream.offset();
                after_word = Some((out.len(), i));
                continue;
            }
        }
        out.push(unfolded[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::with_raw_base64;

    fn envelope() -> Envelope {
        Envelope {
            client_ip: "127.0.0.1".parse().unwrap(),
            proxy_ip: None,
            ingress: crate::mail::Ingress::Smtp,
            helo: "client.test".into(),
            mail_from: "a@b.test".into(),
            rcpt_to: vec!["x@example.test".into()],
            tls: None,
            tls_cipher: None,
        }
    }

    #[test]
    fn fields_and_thread_id() {
        let raw = b"From: Ada <ada@b.test>\r\nTo: x@example.test\r\nSubject: =?utf-8?q?h=C3=A9llo?=\r\n\
Message-ID: <m2@b.test>\r\nIn-Reply-To: <m1@b.test>\r\nReferences: <m0@b.test> <m1@b.test>\r\n\r\nbody\r\n";
        let e = parse("msg_1", "t".into(), &envelope(), raw).event;
        assert_eq!(e.parsed.status, "complete");
        assert_eq!(e.from, Some(Mailbox { address: Some("ada@b.test".into()), name: Some("Ada".into()) }));
        assert_eq!(e.subject.as_deref(), Some("héllo"));
        assert_eq!(e.thread_id, "m0@b.test");
        assert_eq!(e.text.as_deref(), Some("body\r\n"));
        assert_eq!(e.html, None);
        assert!(e.headers.contains(&("Subject".into(), "héllo".into())));
    }

    #[test]
    fn oversized_events_drop_html_then_text() {
        let raw = b"Subject: big\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n";
        let mut e = parse("msg_1", "t".into(), &envelope(), raw).event;
        e.inline_raw(raw, 1 << 20);
        let fits = e.to_json(8000).unwrap();
        assert_eq!(fits.full, serde_json::to_string(&e).unwrap(), "an event under the cap is left as it is");
        // Stored without raw.base64, which comes back byte for byte.
        let stored = fits.without_raw.expect("the event has raw.base64");
        let b64 = e.raw.base64.take().unwrap();
        assert_eq!(stored, serde_json::to_string(&e).unwrap());
        assert_eq!(with_raw_base64(&stored, raw).as_deref(), Some(fits.full.as_str()));
        e.raw.base64 = Some(b64);
        assert!(e.omitted.is_empty());
        e.html = Some("h".repeat(5000));
        e.text = Some("t".repeat(5000));
        let json = e.to_json(8000).unwrap();
        assert_eq!(e.omitted, vec!["html".to_string()]);
        assert!(e.text.is_some() && e.raw.base64.is_some());
        assert_eq!(json.full, serde_json::to_string(&e).unwrap());
        e.text = Some("t".repeat(50_000));
        let json = e.to_json(8000).unwrap();
        assert_eq!(e.omitted, vec!["html".to_string(), "text".to_string()]);
        assert!(json.full.len() + 1024 <= 8000);
        e.raw.base64 = None;
        assert!(e.to_json(8000).unwrap().without_raw.is_none(), "nothing to leave out");
    }

    #[test]
    fn a_text_body_that_cannot_fit_is_withheld_without_decoding_and_the_rest_is_parsed() {
        let body = "x".repeat(9_998) + "\r\n";
        let head = "From: Ada <ada@b.test>\r\nSubject: big\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
        let raw = format!("{head}{body}");
        // Bytes outside us-ascii decode to U+FFFD (3 bytes each): a withheld size of exactly the
        // body's 10,000 bytes shows the body was never decoded.
        let mut undecoded = head.as_bytes().to_vec();
        undecoded.extend(std::iter::repeat_n(0xE9u8, 1_000).chain(body.bytes().skip(1_000)));
        let e = parse_bounded("msg_1", "t".into(), &envelope(), &undecoded, 5_000).event;
        assert_eq!((e.parsed.status, e.text, e.withheld_text), ("complete", None, Some(10_000)));
        let decoded = parse_bounded("msg_1", "t".into(), &envelope(), &undecoded, 50_000).event;
        assert!(decoded.text.is_some_and(|t| t.len() > 10_000), "the same body decoded is longer");
        let e = parse_bounded("msg_1", "t".into(), &envelope(), raw.as_bytes(), 5_000).event;
        assert_eq!((e.parsed.status, e.text, e.withheld_text), ("complete", None, Some(10_000)));
        assert_eq!(e.subject.as_deref(), Some("big"));
        assert!(e.from.is_some() && e.headers.iter().any(|(k, _)| k == "Content-Type"));
        // Under the cap, or encoded, or an attachment: parsed whole as before.
        let e = parse_bounded("msg_1", "t".into(), &envelope(), raw.as_bytes(), 50_000).event;
        assert_eq!(e.text.as_deref(), Some(body.as_str()));
        let attached = raw.replace("charset=us-ascii", "charset=us-ascii\r\nContent-Disposition: attachment");
        let e = parse_bounded("msg_1", "t".into(), &envelope(), attached.as_bytes(), 5_000).event;
        assert_eq!((e.attachments.len(), e.attachments[0].size), (1, 10_000));
        let qp = raw.replace("charset=us-ascii", "charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable");
        let e = parse_bounded("msg_1", "t".into(), &envelope(), qp.as_bytes(), 5_000).event;
        assert_eq!(e.withheld_text, Some(10_000), "decoded, then withheld");
    }

    #[test]
    fn two_content_types_make_the_capped_parse_read_the_body_as_the_whole_parse_does() {
        // Found by the parse fuzzer: the shortcut took the last Content-Type (text), the parser the
        // first (multipart), and the capped event lost the attachment's bytes.
        let raw = format!(
            "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\nContent-Type: text/\r\n\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\n{}\r\n--b--\r\n",
            "p".repeat(6_000)
        );
        let whole = parse("msg_1", "t".into(), &envelope(), raw.as_bytes()).event;
        let capped = parse_bounded("msg_1", "t".into(), &envelope(), raw.as_bytes(), 1_024).event;
        let sums = |e: &EventMessage| e.attachments.iter().map(|a| (a.size, a.sha256.clone())).collect::<Vec<_>>();
        assert!(!whole.attachments.is_empty());
        assert_eq!(sums(&capped), sums(&whole));
    }

    #[test]
    fn garbage_is_failed_not_lost() {
        for raw in [&b""[..], b"\r\n", b"\r\n\r\njust a body"] {
            let e = parse("msg_1", "t".into(), &envelope(), raw).event;
            assert_eq!(e.parsed.status, "failed", "{raw:?}");
            assert!(e.parsed.error.is_some());
            assert_eq!(e.raw.size, raw.len());
        }
    }
}
