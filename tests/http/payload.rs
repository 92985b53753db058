//! The event stays small: `[webhook] max_payload` drops `html`, then `text` (then `raw.base64`), naming
//! them in `omitted`, and the event that arrives is valid, signed JSON under the cap; `[webhook]
//! inline_raw_max` decides whether the raw message is inlined as `raw.base64`, to the byte.

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// `64KB` as the config reads it (decimal kilobytes).
const CAP: usize = 64_000;

/// About `n` bytes of plain text in CRLF lines.
fn text_of(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("line {i:05} lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n"));
        i += 1;
    }
    s
}

fn html_of(n: usize) -> String {
    let mut s = String::from("<html><body>\r\n");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("<p>paragraph {i:05} <b>lorem</b> ipsum dolor sit amet</p>\r\n"));
        i += 1;
    }
    s.push_str("</body></html>\r\n");
    s
}

/// multipart/alternative with a text and an HTML part of about these sizes.
fn alternative(subject: &str, text: usize, html: usize) -> Vec<u8> {
    format!(
        "From: ada@sender.test\r\nTo: inbox@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
{}--alt\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n{}--alt--\r\n",
        text_of(text),
        html_of(html)
    )
    .into_bytes()
}

/// A message of exactly `n` bytes as stored (CRLF-terminated).
fn exactly(n: usize) -> Vec<u8> {
    let mut m =
        format!("From: ada@sender.test\r\nTo: inbox@example.test\r\nSubject: exactly {n} bytes\r\n\r\n").into_bytes();
    while n - m.len() > 80 {
        m.extend_from_slice(&[b'y'; 70]);
        m.extend_from_slice(b"\r\n");
    }
    let rest = n - m.len();
    assert!(rest >= 3);
    m.extend(std::iter::repeat_n(b'z', rest - 2));
    m.extend_from_slice(b"\r\n");
    assert_eq!(m.len(), n);
    m
}

fn omitted(m: &Value) -> Vec<String> {
    m["omitted"].as_array().expect("omitted is an array").iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn max_payload_drops_html_then_text_and_inline_raw_max_is_exact() {
    let h = setup(|_| {}, &[], &["max_payload = \"64KB\"", "inline_raw_max = 20000"]);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let a = alternative("fifty and fifty", 50_000, 50_000);
    let b = alternative("seventy and fifty", 70_000, 50_000);
    let (small, over) = (exactly(20_000), exactly(20_001));
    let mut ids = Vec::new();
    for m in [&a, &b, &small, &over] {
        ids.push(c.send_mail("ada@sender.test", &["inbox@example.test"], m));
        c.cmd("RSET").expect(250, "2.0.0");
    }
    let mut events = Vec::new();
    for id in &ids {
        let (req, ev) = h.event_for(id);
        req.assert_signed(SECRET_A);
        assert!(req.body.len() <= CAP, "event for {id} is {} bytes, over max_payload {CAP}", req.body.len());
        events.push(ev);
    }

    // 50 KB text + 50 KB html: leaving out the html and the reply (its html is the html again, as
    // nothing is quoted) is enough.
    let m = &events[0]["message"];
    assert_eq!(omitted(m), ["html", "reply"], "omitted for text 50 KB + html 50 KB ({} byte event)", events[0]);
    assert!(m["reply"].is_null() && m["preview"].is_string());
    assert!(m["html"].is_null());
    let oracle_text = oracle(&as_sent(&a)).unwrap().body_text(0).unwrap().into_owned();
    assert_eq!(m["text"].as_str(), Some(oracle_text.as_str()), "the text stays, whole");
    assert!(m["raw"]["base64"].is_null(), "raw is over inline_raw_max");
    assert!(m["raw"]["url"].as_str().is_some_and(|u| u.starts_with(PUBLIC)), "the raw link stays: {}", m["raw"]);

    // 70 KB text + 50 KB html: both go.
    let m = &events[1]["message"];
    assert_eq!(omitted(m), ["html", "reply", "text"], "omitted for text 70 KB + html 50 KB");
    assert!(m["html"].is_null() && m["text"].is_null());
    assert_eq!(m["subject"], "seventy and fifty", "the rest of the event is still there");
    assert!(m["raw"]["url"].is_string());

    // inline_raw_max = 20000: a 20000-byte message is inlined, byte for byte; 20001 bytes is not.
    let m = &events[2]["message"];
    assert_eq!(m["raw"]["size"], 20_000);
    let inlined = m["raw"]["base64"].as_str().expect("a raw message of exactly inline_raw_max bytes is inlined");
    assert!(b64_decode(inlined) == small, "raw.base64 does not decode to the bytes sent");
    // Its text (20 KB) and 27 KB of base64 fit 64 KB: the reply, which quotes nothing, is null
    // rather than a second copy of the text (before issue 21 that copy did not fit and was left out).
    assert_eq!(omitted(m), Vec::<String>::new());
    assert!(m["reply"].is_object() && m["reply"]["text"].is_null() && m["text"].is_string(), "{}", m["reply"]);
    let m = &events[3]["message"];
    assert_eq!(m["raw"]["size"], 20_001);
    assert!(m["raw"]["base64"].is_null(), "raw.base64 present for a message one byte over inline_raw_max");
    assert!(m["raw"]["url"].is_string());
    assert_eq!(omitted(m), Vec::<String>::new());
}

/// With the default inline_raw_max (256 KiB) the ~100 KB raw message is inlined too: html, text and
/// raw.base64 all have to go to fit 64 KB, and the raw message stays reachable by its link.
#[test]
fn max_payload_also_drops_the_inlined_raw_message_when_needed() {
    let h = setup(|_| {}, &[], &["max_payload = \"64KB\""]);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let a = alternative("fifty and fifty", 50_000, 50_000);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &a);
    let (req, ev) = h.event_for(&id);
    assert!(req.body.len() <= CAP, "event is {} bytes, over max_payload {CAP}", req.body.len());
    let m = &ev["message"];
    let o = omitted(m);
    assert!(o.starts_with(&["html".into(), "reply".into(), "text".into()]), "omitted {o:?}: html, reply, then text");
    assert!(o.contains(&"raw.base64".to_string()), "omitted {o:?}: a 136 KB base64 cannot fit in 64 KB");
    assert!(m["raw"]["base64"].is_null() && m["html"].is_null() && m["text"].is_null());
    let agent = agent();
    let got = get(&agent, &local(&gw, m["raw"]["url"].as_str().unwrap()), &[]);
    assert!(got.status == 200 && got.body == as_sent(&a), "raw link: {} ({} bytes)", got.status, got.body.len());

    // Small mail is untouched by the cap.
    c.cmd("RSET").expect(250, "2.0.0");
    let small = b"From: ada@sender.test\r\nSubject: small\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n";
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], small);
    let (_, ev) = h.event_for(&id);
    assert_eq!(omitted(&ev["message"]), Vec::<String>::new());
    assert!(ev["message"]["html"].is_string() && ev["message"]["raw"]["base64"].is_string(), "{}", ev["message"]);
}
