//! Sender block and allow lists (issue 16): `[senders]` rules by client IP, address, `*@domain` and
//! domain-with-subdomains; allow beating block; `blocked_action = "reject"` at MAIL FROM and after
//! DATA; the default `accept` storing the mail and marking `message.sender_list`; `mxhook senders`
//! changing a running gateway's lists; `senders list`; check-config naming a bad rule's line.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::support::{harness, listed, mail};
use crate::common::{Harness, Session, SmtpClient, as_array, http::scrape, wait::poll};

/// The basic config (auth off: these tests are about the lists, not DNS) with a `[senders]` section.
fn with_senders(senders: &str) -> Harness {
    harness(&[], &format!("[auth]\nenabled = false\n\n[senders]\n{senders}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The reply to MAIL FROM:<from> from a session opened from `client`; the session then ends.
fn mail_from_reply(gw: &crate::common::Gateway, client: &str, from: &str) -> (u16, String) {
    let mut c = SmtpClient::ready_from(ip(client), gw.smtp);
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    c.cmd("QUIT");
    (r.code, r.enhanced().to_string())
}

/// A whole transaction from `client`, MAIL FROM `from`, header From `header_from`: the reply to DATA
/// (or to MAIL FROM, when that refused).
fn transaction(gw: &crate::common::Gateway, client: &str, from: &str, header_from: &str) -> crate::common::Reply {
    let mut c = SmtpClient::ready_from(ip(client), gw.smtp);
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if r.code != 250 {
        return r;
    }
    c.cmd("RCPT TO:<team@example.test>").expect(250, "2.1.5");
    let body = String::from_utf8(mail("hello", "an ordinary message")).unwrap();
    let body = body.replace("From: Ada Lovelace <ada@sender.test>", &format!("From: <{header_from}>"));
    let r = c.data(body.as_bytes());
    c.cmd("QUIT");
    r
}

/// The `message` object of the event that arrived for `id`.
fn event_message(h: &Harness, id: &str) -> Value {
    h.event_for(id).1["message"].clone()
}

#[test]
fn reject_mode_refuses_blocked_ips_addresses_star_domains_and_domains_with_subdomains_at_mail_from() {
    let h = with_senders(
        r#"blocked_action = "reject"
block = ["127.0.0.2", "10.9.0.0/16", "Spam@Bad.test", "*@star.test", "org.test"]"#,
    );
    let gw = h.start();
    let refused = (550, "5.7.1".to_string());
    let ok = (250, "2.1.0".to_string());
    for (client, from, want) in [
        ("127.0.0.2", "ada@sender.test", &refused),
        ("127.0.0.3", "ada@sender.test", &ok),
        ("127.0.0.1", "spam@bad.test", &refused),
        ("127.0.0.1", "SPAM@BAD.TEST", &refused),
        ("127.0.0.1", "other@bad.test", &ok),
        ("127.0.0.1", "x@star.test", &refused),
        ("127.0.0.1", "x@sub.star.test", &ok),
        ("127.0.0.1", "x@org.test", &refused),
        ("127.0.0.1", "x@a.b.org.test", &refused),
        ("127.0.0.1", "x@notorg.test", &ok),
        ("127.0.0.1", "", &ok),
    ] {
        assert_eq!(&mail_from_reply(&gw, client, from), want, "MAIL FROM:<{from}> from {client}\n{}", h.logs());
    }
    let metrics = scrape(&gw);
    assert_eq!(metrics.get("mxhook_messages_rejected_total{reason=\"blocked\"}"), Some(&6.0), "{metrics:?}");
}

#[test]
fn reject_mode_refuses_a_blocked_from_header_after_data_and_keeps_nothing() {
    let h = with_senders("blocked_action = \"reject\"\nblock = [\"boss@from.test\"]");
    let gw = h.start();
    let r = transaction(&gw, "127.0.0.1", "ada@sender.test", "boss@from.test");
    r.expect(550, "5.7.1");
    assert!(listed(&h).is_empty(), "a refused message is not stored");
    let id = transaction(&gw, "127.0.0.1", "ada@sender.test", "other@from.test").queued_id();
    assert_eq!(event_message(&h, &id)["sender_list"], Value::Null);
}

#[test]
fn allow_beats_block_whichever_part_of_the_sender_each_matched() {
    let h = with_senders(
        r#"blocked_action = "reject"
block = ["org.test", "127.0.0.2"]
allow = ["vip@org.test", "127.0.0.3"]"#,
    );
    let gw = h.start();
    // Allowed by address, though the domain and the client IP are blocked.
    let id = transaction(&gw, "127.0.0.2", "vip@org.test", "vip@org.test").queued_id();
    assert_eq!(event_message(&h, &id)["sender_list"], "allowed");
    // Allowed by client IP, though MAIL FROM and From are at a blocked domain.
    let id = transaction(&gw, "127.0.0.3", "x@org.test", "y@sub.org.test").queued_id();
    assert_eq!(event_message(&h, &id)["sender_list"], "allowed");
    // Neither allowed: refused.
    assert_eq!(mail_from_reply(&gw, "127.0.0.1", "x@org.test"), (550, "5.7.1".into()));
}

#[test]
fn accept_mode_stores_blocked_mail_and_marks_its_event() {
    let h = with_senders("block = [\"*@bad.test\", \"from.test\"]");
    let gw = h.start();
    let by_envelope = transaction(&gw, "127.0.0.1", "x@bad.test", "x@bad.test").queued_id();
    let by_header = transaction(&gw, "127.0.0.1", "ada@sender.test", "boss@mail.from.test").queued_id();
    let unlisted = transaction(&gw, "127.0.0.1", "ada@sender.test", "ada@sender.test").queued_id();
    // The unlisted message is delivered; `raw` stays the last field of the message after the new
    // fields (the store's copy relies on it).
    let (request, event) = h.event_for(&unlisted);
    assert_eq!(event["message"]["sender_list"], Value::Null);
    let body = String::from_utf8_lossy(&request.body);
    assert!(
        body.contains(r#""complaint":null,"#) && body.contains(r#""preview":"an ordinary message","raw":{"#),
        "{body}"
    );
    // Blocked mail is stored as `email.received.blocked`, which the default subscription leaves out:
    // no delivery was made for it, so nothing can go out.
    for id in [&by_envelope, &by_header] {
        let shown = h.cli_json(&["messages", "show", id, "--json"]);
        assert_eq!(shown["type"], "email.received.blocked", "{shown}");
        assert_eq!(shown["event_message"]["sender_list"], "blocked", "{shown}");
        assert!(
            h.deliveries(&["--message", id]).is_empty(),
            "{id} has a delivery to an endpoint that did not subscribe"
        );
        assert!(h.rx.requests_for_message(id).is_empty());
    }
}

#[test]
fn a_cli_rule_applies_to_a_running_gateway_without_a_restart() {
    let h = with_senders("blocked_action = \"reject\"");
    let gw = h.start();
    assert_eq!(mail_from_reply(&gw, "127.0.0.1", "x@late.test"), (250, "2.1.0".into()));

    let out = h.cli(&["senders", "block", "Late.test"]);
    out.assert_ok(&h.logs());
    assert!(out.stdout_str().contains("late.test"), "{}", out.describe());
    let applied = poll(Duration::from_secs(5), || mail_from_reply(&gw, "127.0.0.1", "x@sub.late.test").0 == 550);
    assert!(applied, "the block was not applied within 5 s\n{}", h.logs());

    h.cli(&["senders", "allow", "x@sub.late.test"]).assert_ok(&h.logs());
    let allowed = poll(Duration::from_secs(5), || mail_from_reply(&gw, "127.0.0.1", "x@sub.late.test").0 == 250);
    assert!(allowed, "the allow rule was not applied within 5 s\n{}", h.logs());
    assert_eq!(mail_from_reply(&gw, "127.0.0.1", "y@late.test").0, 550, "the domain stays blocked");

    h.cli(&["senders", "remove", "late.test"]).assert_ok(&h.logs());
    let removed = poll(Duration::from_secs(5), || mail_from_reply(&gw, "127.0.0.1", "y@late.test").0 == 250);
    assert!(removed, "the removal was not applied within 5 s\n{}", h.logs());
    // A CLI rule also marks accepted mail (the From header) once applied.
    h.cli(&["senders", "block", "127.0.0.5"]).assert_ok(&h.logs());
    let refused = poll(Duration::from_secs(5), || mail_from_reply(&gw, "127.0.0.5", "ada@sender.test").0 == 550);
    assert!(refused, "the IP block was not applied within 5 s\n{}", h.logs());
}

#[test]
fn senders_list_shows_the_config_and_cli_rules_and_remove_refuses_config_ones() {
    let h = with_senders("block = [\"10.1.2.3/8\"]\nallow = [\"*@Friend.test\"]");
    let _gw = h.start();
    h.cli(&["senders", "block", "Bad@Example.com"]).assert_ok(&h.logs());
    h.cli(&["senders", "allow", "2001:db8::1"]).assert_ok(&h.logs());
    let again = h.cli(&["senders", "block", "bad@example.com"]);
    again.assert_ok(&h.logs());
    assert!(again.stdout_str().contains("already"), "{}", again.describe());

    let listed = as_array(h.cli_json(&["senders", "list", "--json"]));
    let rows: Vec<(String, String, String)> = listed
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("list"), s("rule"), s("source"))
        })
        .collect();
    let row = |l: &str, r: &str, s: &str| (l.to_string(), r.to_string(), s.to_string());
    assert_eq!(
        rows,
        [
            row("allow", "*@friend.test", "config"),
            row("allow", "2001:db8::1", "store"),
            row("block", "10.0.0.0/8", "config"),
            row("block", "bad@example.com", "store"),
        ],
        "{listed:?}"
    );
    let text = h.cli(&["senders", "list"]);
    text.assert_ok(&h.logs());
    let out = text.stdout_str();
    assert!(out.starts_with("LIST") && out.contains("bad@example.com") && out.contains("10.0.0.0/8"), "{out}");

    let from_config = h.cli(&["senders", "remove", "10.0.0.0/8"]);
    assert_eq!(from_config.code, Some(1), "{}", from_config.describe());
    assert!(from_config.all_output().contains("[senders]"), "{}", from_config.describe());
    let bad = h.cli(&["senders", "block", "exa mple.com"]);
    assert_ne!(bad.code, Some(0), "{}", bad.describe());
    assert!(bad.all_output().contains("is not a domain"), "{}", bad.describe());
    h.cli(&["senders", "remove", "BAD@example.com"]).assert_ok(&h.logs());
    let left = as_array(h.cli_json(&["senders", "list", "--json"]));
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn check_config_names_a_bad_rule_with_its_line() {
    let h = with_senders("blocked_action = \"reject\"\nallow = [\"ok.test\"]\nblock = [\"10.0.0.0/33\"]");
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let line = text.lines().position(|l| l.contains("10.0.0.0/33")).unwrap() + 1;
    let out = h.cli(&["check-config"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let loc = format!("{}:{line}:", h.config_path.display());
    assert!(
        out.all_output().lines().any(|l| l.contains(&loc) && l.contains("senders.block") && l.contains("CIDR")),
        "expected `{loc}` naming senders.block:\n{}",
        out.describe()
    );
    // And a value blocked_action does not know.
    let h = with_senders("blocked_action = \"drop\"");
    let out = h.cli(&["check-config"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.all_output().contains("blocked_action"), "{}", out.describe());
}
