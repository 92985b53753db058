//! Building blocks shared by the routing tests: a gateway config with extra TOML (routes, [spam],
//! [forward]), sending mail, and reading back what the gateway stored.

use serde_json::Value;

use crate::common::{Config, Gateway, Harness, Session, SmtpClient};

/// SpamAssassin's and rspamd's built-in test pattern: any message containing it is spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The common basic config (`example.test` → endpoint `app`), further endpoints `(name, secret)` at
/// `/hooks/NAME`, and `extra` TOML appended (routes, more domains, [spam], [forward]).
pub fn harness(endpoints: &[(&str, &str)], extra: &str) -> Harness {
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    for (name, secret) in endpoints {
        cfg.add_endpoint(&h.rx, name, secret);
    }
    cfg.append(extra);
    h.write_config(&cfg);
    h
}

/// One transaction that must be queued; returns the message id.
#[track_caller]
pub fn send(gw: &Gateway, rcpts: &[&str], body: &[u8]) -> String {
    SmtpClient::ready(gw.smtp).send_mail("ada@sender.test", rcpts, body)
}

/// A complete, ordinary message (nothing a spam filter should mind), with `body` as its text.
pub fn mail(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ada Lovelace <ada@sender.test>\r\nTo: <team@example.test>\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 06:00:00 +0000\r\nMessage-ID: <{}@sender.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// A message carrying GTUBE.
pub fn gtube() -> Vec<u8> {
    mail(
        "gtube",
        &format!(
            "This is the GTUBE, the\r\n  Generic\r\n  Test for\r\n  Unsolicited\r\n  Bulk\r\n  Email\r\n\r\n{GTUBE}"
        ),
    )
}

/// `messages show MSG --json`.
#[track_caller]
pub fn shown(h: &Harness, id: &str) -> Value {
    h.cli_json(&["messages", "show", id, "--json"])
}

/// The event's `message.routes` as stored for `id`.
#[track_caller]
pub fn routes(h: &Harness, id: &str) -> Vec<Value> {
    shown(h, id)["event_message"]["routes"].as_array().cloned().unwrap_or_default()
}

/// The message ids `messages list` knows.
#[track_caller]
pub fn listed(h: &Harness) -> Vec<String> {
    h.messages().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

/// Whether the store keeps the raw bytes of a message (in the database or the spool).
pub fn raw_kept(h: &Harness, id: &str) -> bool {
    h.stored_raw(id).is_some()
}

/// `deliveries list --message MSG --json`.
#[track_caller]
pub fn deliveries(h: &Harness, id: &str) -> Vec<Value> {
    h.deliveries(&["--message", id])
}
