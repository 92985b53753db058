//! What each action does with a message: webhook (one signed event per endpoint), store, drop,
//! reject, and forward through the relay with its retries.

use crate::common::{SECRET_A, SECRET_B, SECRET_C, SHORT, Session, SmtpClient};
use crate::sink::{Answer, Sink};
use crate::support::{deliveries, harness, listed, mail, raw_kept, routes, send, shown};

const ACTIONS: &str = r#"
[[routes]]
match = "team@example.test"
endpoints = ["crm", "audit"]

[[routes]]
match = "archive@example.test"
action = "store"

[[routes]]
match = "noreply@example.test"
action = "drop"

[[routes]]
match = "closed@example.test"
action = "reject"
"#;

#[test]
fn a_webhook_route_signs_one_event_per_endpoint_with_its_own_secret() {
    let h = harness(&[("crm", SECRET_B), ("audit", SECRET_C)], ACTIONS);
    let gw = h.start();
    let id = send(&gw, &["team@example.test"], &mail("two endpoints", "hello both"));
    h.wait_until(SHORT, "both events", || h.rx.requests_for_message(&id).len() >= 2);
    let got = h.rx.requests_for_message(&id);
    let crm = got.iter().find(|r| r.path == "/hooks/crm").expect("an event for crm");
    let audit = got.iter().find(|r| r.path == "/hooks/audit").expect("an event for audit");
    crm.assert_signed(SECRET_B);
    audit.assert_signed(SECRET_C);
    assert!(crm.verify(SECRET_C).is_err() && audit.verify(SECRET_B).is_err() && crm.verify(SECRET_A).is_err());
    assert_ne!(crm.webhook_id(), audit.webhook_id(), "each endpoint has its own event id");
    assert_eq!(crm.json()["delivery"]["endpoint"], "crm");
    assert_eq!(audit.json()["delivery"]["endpoint"], "audit");
}

#[test]
fn store_keeps_the_message_and_sends_nothing() {
    let h = harness(&[("crm", SECRET_B), ("audit", SECRET_C)], ACTIONS);
    let gw = h.start();
    let body = mail("keep me", "for the archive");
    let id = send(&gw, &["archive@example.test"], &body);
    assert!(listed(&h).contains(&id));
    assert!(deliveries(&h, &id).is_empty(), "a stored message has no delivery, so nothing is ever sent");
    assert_eq!(h.raw(&id), body, "the raw message is kept");
    assert_eq!(routes(&h, &id)[0]["action"], "store");
    // A later webhook message goes out; the stored one never did.
    let later = send(&gw, &["team@example.test"], &mail("later", "x"));
    h.wait_until(SHORT, "the later message's events", || h.rx.requests_for_message(&later).len() >= 2);
    assert!(h.rx.requests_for_message(&id).is_empty());
    assert_eq!(h.rx.count(), 2);
}

#[test]
fn drop_keeps_only_the_record() {
    let h = harness(&[("crm", SECRET_B), ("audit", SECRET_C)], ACTIONS);
    let gw = h.start();
    let id = send(&gw, &["noreply@example.test"], &mail("drop me", "nobody reads this"));
    assert!(listed(&h).contains(&id), "the record stays");
    assert!(deliveries(&h, &id).is_empty());
    assert!(!raw_kept(&h, &id), "no raw bytes kept");
    let spool: Vec<_> = std::fs::read_dir(h.data_dir().join("spool")).unwrap().collect();
    assert!(spool.is_empty(), "nothing at all in the spool: {spool:?}");
    assert_eq!(routes(&h, &id)[0]["action"], "drop");
    assert_eq!(shown(&h, &id)["event_message"]["subject"], "drop me");
}

#[test]
fn reject_refuses_the_address_at_rcpt_and_only_it() {
    let h = harness(&[("crm", SECRET_B), ("audit", SECRET_C)], ACTIONS);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    let r = c.cmd("RCPT TO:<closed@example.test>");
    r.expect(550, "5.1.1");
    c.cmd("RCPT TO:<closed+tag@example.test>").expect(550, "5.1.1");
    c.cmd("RCPT TO:<team@example.test>").expect(250, "2.1.5");
    let id = c.data(&mail("half rejected", "x")).queued_id();
    assert_eq!(shown(&h, &id)["rcpt_to"], serde_json::json!(["team@example.test"]));
}

fn forward_config(sink: &Sink, extra: &str) -> String {
    format!(
        r#"
[[routes]]
match = "billing@example.test"
action = "forward"
destination = ["accounts@books.test", "Audit@Books.test"]

[[routes]]
match = "team@example.test"
endpoints = ["crm"]

[forward]
relay = "{}"
retry = ["0s", "200ms", "400ms"]
timeout = "5s"
{extra}
"#,
        sink.url()
    )
}

#[test]
fn forward_resends_the_raw_message_unchanged_through_the_relay() {
    let sink = Sink::start();
    let h = harness(&[("crm", SECRET_B)], &forward_config(&sink, ""));
    let gw = h.start();
    // A dot at a line start, 8-bit text and a long line: all must arrive byte for byte.
    let mut body = mail("Rechnung", "Grüße,\r\n.leading dot\r\n..two dots\r\nend");
    body.extend_from_slice(format!("{}\r\n", "x".repeat(1200)).as_bytes());
    let id = send(&gw, &["billing@example.test", "team@example.test"], &body);
    h.wait_until(SHORT, "the forwarded copy at the sink", || !sink.transactions().is_empty());
    let t = &sink.transactions()[0];
    assert_eq!(t.mail_from, "ada@sender.test", "the original envelope sender");
    assert_eq!(t.rcpt_to, ["accounts@books.test", "Audit@Books.test"]);
    assert_eq!(t.helo, "mx.spine.test", "we say EHLO with our [smtp] hostname");
    assert_eq!(t.data, h.raw(&id), "the stored raw message, unchanged");
    assert_eq!(t.data, body);
    h.wait_until(SHORT, "the forward delivery to succeed", || {
        deliveries(&h, &id)
            .iter()
            .any(|d| d["endpoint"] == "forward:billing@example.test" && d["status"] == "succeeded")
    });
    // The webhook recipient of the same message got its event; the forward route is in the event too.
    h.wait_until(SHORT, "the crm event", || !h.rx.requests_for_message(&id).is_empty());
    let r = routes(&h, &id);
    assert_eq!((r[0]["match"].as_str(), r[0]["action"].as_str()), (Some("billing@example.test"), Some("forward")));
    let show = h.cli_json(&[
        "deliveries",
        "show",
        deliveries(&h, &id).iter().find(|d| d["endpoint"] != "crm").unwrap()["id"].as_str().unwrap(),
        "--json",
    ]);
    assert!(show["attempt_log"][0]["response_body"].as_str().unwrap().starts_with("250 "), "{show}");
}

#[test]
fn forward_is_retried_after_a_temporary_failure_with_the_configured_sender() {
    let sink = Sink::start();
    sink.script(&[Answer::TempFail, Answer::TempFail]);
    let h = harness(&[("crm", SECRET_B)], &forward_config(&sink, "mail_from = \"bounces@example.test\""));
    let gw = h.start();
    let id = send(&gw, &["billing@example.test"], &mail("retry me", "third time lucky"));
    h.wait_until(SHORT, "the forward delivery to succeed", || {
        deliveries(&h, &id).first().is_some_and(|d| d["status"] == "succeeded")
    });
    let d = &deliveries(&h, &id)[0];
    assert_eq!((d["endpoint"].as_str(), d["attempts"].as_i64()), (Some("forward:billing@example.test"), Some(3)));
    let ts = sink.transactions();
    assert_eq!(ts.iter().map(|t| t.answer).collect::<Vec<_>>(), [Answer::TempFail, Answer::TempFail, Answer::Accept]);
    assert!(ts.iter().all(|t| t.mail_from == "bounces@example.test" && t.data == ts[0].data));
    assert!(raw_kept(&h, &id));
}

#[test]
fn forward_gives_up_at_once_on_a_permanent_refusal() {
    let sink = Sink::start();
    sink.script(&[Answer::Refuse]);
    let h = harness(&[("crm", SECRET_B)], &forward_config(&sink, ""));
    let gw = h.start();
    let id = send(&gw, &["billing@example.test"], &mail("refused", "no such user"));
    h.wait_until(SHORT, "the forward delivery to fail", || {
        deliveries(&h, &id).first().is_some_and(|d| d["status"] == "failed")
    });
    let d = &deliveries(&h, &id)[0];
    assert_eq!(d["attempts"], 1, "a 5xx is not retried: {d}");
    assert!(d["last_error"].as_str().unwrap().contains("550"), "{d}");
    // `deliveries retry` still works by hand: this time the sink accepts.
    let out = h.cli(&["deliveries", "retry", d["id"].as_str().unwrap()]);
    out.assert_ok(&h.logs());
    h.wait_until(SHORT, "the manual retry to succeed", || {
        deliveries(&h, &id).first().is_some_and(|d| d["status"] == "succeeded")
    });
    assert_eq!(sink.transactions().len(), 2);
}

#[test]
fn a_down_relay_keeps_the_forward_pending() {
    let port = crate::engines::free_port();
    let h = harness(
        &[],
        &format!(
            "[[routes]]\nmatch = \"billing@example.test\"\naction = \"forward\"\ndestination = [\"a@books.test\"]\n\
             [forward]\nrelay = \"smtp://127.0.0.1:{port}\"\nretry = [\"0s\", \"1h\"]\n"
        ),
    );
    let gw = h.start();
    let id = send(&gw, &["billing@example.test"], &mail("relay down", "x"));
    h.wait_until(SHORT, "a failed first attempt", || deliveries(&h, &id).first().is_some_and(|d| d["attempts"] == 1));
    let d = &deliveries(&h, &id)[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert!(d["last_error"].as_str().unwrap().to_lowercase().contains("connection"), "{d}");
    assert!(raw_kept(&h, &id), "kept for the next attempt");
}

#[test]
fn forward_authenticates_to_the_relay_with_a_password_file() {
    let sink = Sink::start();
    let h = harness(&[("crm", SECRET_B)], "");
    std::fs::write(h.dir.path().join("relay.password"), "s3cret pass\n").unwrap();
    let config = forward_config(&sink, "username = \"mxhook@example.test\"\npassword_file = \"relay.password\"");
    let mut file = std::fs::OpenOptions::new().append(true).open(&h.config_path).unwrap();
    std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
    let gw = h.start();
    let id = send(&gw, &["billing@example.test"], &mail("with auth", "x"));
    h.wait_until(SHORT, "the forwarded copy", || !sink.transactions().is_empty());
    assert_eq!(sink.transactions()[0].auth.as_deref(), Some("mxhook@example.test:s3cret pass"));
    h.wait_until(SHORT, "the forward delivery to succeed", || {
        deliveries(&h, &id).first().is_some_and(|d| d["status"] == "succeeded")
    });
}
