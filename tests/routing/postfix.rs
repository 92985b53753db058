//! A real Postfix bounces a message and sends its own delivery status notification to the gateway
//! (issue 16): a throwaway Postfix instance (`common::postfix`) relaying mail for `example.test` to
//! the running gateway and mail for `nowhere.test` to a dead-end SMTP server that refuses every
//! recipient with `550 5.1.1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::postfix::{self, Postfix};
use crate::common::{Harness, wait_for};
use crate::sink::{Answer, Sink};

/// Postfix bounces at once on a 5xx, and relays the DSN at once; a slow CI machine may still take a
/// few seconds for the start of each of its daemons.
const DSN_TIMEOUT: Duration = Duration::from_secs(60);

/// Relays `domain`'s mail to `addr` over SMTP.
fn relay(domain: &str, addr: SocketAddr) -> (&str, String) {
    (domain, format!("smtp:[{}]:{}", addr.ip(), addr.port()))
}

/// The header `name` (case-insensitive) of an event's message, or "".
fn header<'a>(event: &'a Value, name: &str) -> &'a str {
    let headers = event["message"]["headers"].as_array().expect("message.headers is an array");
    headers
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
        .unwrap_or("")
}

#[test]
fn a_real_postfix_bounce_reaches_the_gateway_as_its_dsn() {
    if !postfix::available() {
        return;
    }
    let h = Harness::basic();
    let gw = h.start();
    let dead_end = Sink::start();
    dead_end.script(&[Answer::Refuse]);
    let pf = Postfix::start(&[relay("example.test", gw.smtp), relay("nowhere.test", dead_end.addr)], "");

    // An app's message with a VERP return path at the gateway's domain, to an address that does not exist.
    let original = b"From: Shop <orders@example.test>\r\nTo: <gone@nowhere.test>\r\nSubject: Your order 42\r\n\
        Date: Mon, 23 Nov 2026 06:00:00 +0000\r\nMessage-ID: <order-42@example.test>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nYour order has shipped.\r\n";
    pf.submit("bounces+42@example.test", "gone@nowhere.test", original);

    let context = || {
        format!(
            "receiver got {} request(s); dead end saw {} transaction(s)\n----- Postfix maillog -----\n{}\n{}",
            h.rx.count(),
            dead_end.transactions().len(),
            pf.maillog(),
            h.logs()
        )
    };
    wait_for(DSN_TIMEOUT, "Postfix's DSN as a webhook", context, || h.rx.count() >= 1);

    let tried = dead_end.transactions();
    assert_eq!(tried[0].mail_from, "bounces+42@example.test", "Postfix relayed the original: {tried:?}");
    assert_eq!(tried[0].rcpt_to, ["gone@nowhere.test"]);

    let event = h.rx.requests()[0].json();
    let m = &event["message"];
    assert_eq!(m["smtp"]["mail_from"], "", "a DSN has the null sender: {event:#}");
    assert_eq!(m["smtp"]["rcpt_to"], serde_json::json!(["bounces+42@example.test"]));
    assert_eq!(m["smtp"]["helo"], "postfix.test");
    let content_type = header(&event, "Content-Type");
    assert!(
        content_type.starts_with("multipart/report; report-type=delivery-status"),
        "Postfix's DSN is an RFC 3464 report, Content-Type: {content_type}\n{event:#}"
    );
    let text = m["text"].as_str().unwrap_or("");
    assert!(text.contains("gone@nowhere.test"), "the notice names the failed recipient: {text}");
    assert!(text.contains("550 5.1.1"), "the notice quotes the dead end's answer: {text}");

    // Classified as a bounce, with Postfix's report read field by field and the VERP tag given back.
    assert_eq!(event["type"], "email.bounced", "{event:#}");
    let b = &m["bounce"];
    assert_eq!(b["kind"], "hard", "{b:#}");
    assert_eq!(b["recipients"][0]["address"], "gone@nowhere.test", "{b:#}");
    assert_eq!(b["recipients"][0]["action"], "failed", "{b:#}");
    assert_eq!(b["recipients"][0]["status"], "5.1.1", "{b:#}");
    assert!(b["recipients"][0]["diagnostic_code"].as_str().is_some_and(|d| d.contains("550 5.1.1")), "{b:#}");
    assert_eq!(b["original"]["message_id"], "order-42@example.test", "{b:#}");
    assert_eq!(b["original"]["subject"], "Your order 42", "{b:#}");
    assert_eq!(b["to"], serde_json::json!({ "address": "bounces+42@example.test", "tag": "42" }), "{b:#}");
    assert!(m["auto_submitted"].is_string(), "a DSN is automatic (Auto-Submitted: auto-replied): {m:#}");

    // The fixture of the bounce parser's unit tests is this very DSN: rerun with the variable set to
    // refresh it.
    if std::env::var_os("MXHOOK_RECORD_POSTFIX_DSN").is_some() {
        let raw = h.raw(m["id"].as_str().expect("message.id"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix-dsn.eml");
        std::fs::write(&path, raw).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
