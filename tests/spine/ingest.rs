//! A message in over SMTP, a signed event out: the event's fields, the stored raw bytes, several
//! recipients and endpoints, malformed input, smuggling, long lines.

use serde_json::{Value, json};

use crate::common::*;

const HAPPY: &[u8] = b"From: Ada Lovelace <ada@sender.test>\r\n\
To: Bob <anyone@example.test>\r\n\
Subject: Hello from the spine test\r\n\
Message-ID: <spine-1@sender.test>\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob.\r\n\
.A line that starts with a dot.\r\n\
..and one with two.\r\n\
.\tdot-tab\r\n\
Bye.\r\n";

fn simple(subject: &str, to: &str) -> Vec<u8> {
    format!(
        "From: Tester <tester@sender.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nbody of {subject}\r\n"
    )
    .into_bytes()
}

/// Waits for the single event of `msg_id` and checks its signature; returns (request, event).
#[track_caller]
fn one_event(h: &Harness, msg_id: &str, secret: &str) -> (Request, Value) {
    h.wait_until(SHORT, &format!("an event for {msg_id}"), || !h.rx.requests_for_message(msg_id).is_empty());
    let reqs = h.rx.requests_for_message(msg_id);
    assert_eq!(reqs.len(), 1, "expected exactly one request for {msg_id}, got {}", reqs.len());
    let req = reqs.into_iter().next().unwrap();
    req.assert_signed(secret);
    let ev = req.json();
    (req, ev)
}

#[test]
fn happy_path_delivers_one_signed_event_with_the_right_fields() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let msg_id = c.send_mail("ada@sender.test", &["anyone@example.test"], HAPPY);
    c.cmd("QUIT").expect(221, "2.0.0");

    let (req, ev) = one_event(&h, &msg_id, SECRET_A);
    let d = h.wait_delivery_status(&msg_id, "succeeded", SHORT);
    assert_eq!(h.rx.count(), 1, "exactly one request expected: {:?}", h.rx.requests());

    // Transport.
    assert_eq!(req.path, "/hooks/app");
    assert!(req.header("content-type").starts_with("application/json"), "content-type: {}", req.header("content-type"));
    assert!(req.header("webhook-signature").starts_with("v1,"));
    assert_eq!(req.webhook_id(), ev["id"].as_str().unwrap(), "webhook-id header must equal the event id");

    // Envelope of the event.
    assert!(ev["id"].as_str().unwrap().starts_with("evt_"), "id: {}", ev["id"]);
    assert_eq!(ev["type"], "email.received");
    assert!(ev["version"].is_string(), "version: {}", ev["version"]);
    assert!(ev["created_at"].is_string());
    let dl = &ev["delivery"];
    assert!(dl["id"].as_str().unwrap().starts_with("dlv_"), "delivery: {dl}");
    assert_eq!(dl["endpoint"], "app");
    assert_eq!(dl["attempt"], 1);
    assert!(dl["attempted_at"].is_string());

    // The message.
    let m = &ev["message"];
    assert_eq!(m["id"], msg_id.as_str());
    assert!(m["received_at"].is_string());
    assert_eq!(m["smtp"]["mail_from"], "ada@sender.test");
    assert_eq!(m["smtp"]["rcpt_to"], json!(["anyone@example.test"]));
    assert_eq!(m["smtp"]["helo"], "client.test");
    assert_eq!(m["smtp"]["client_ip"], "127.0.0.1");
    assert_eq!(m["smtp"]["tls"], Value::Null);
    assert_eq!(m["from"], json!({"address": "ada@sender.test", "name": "Ada Lovelace"}));
    assert_eq!(m["to"].as_array().unwrap().len(), 1, "to: {}", m["to"]);
    assert_eq!(m["to"][0]["address"], "anyone@example.test");
    assert_eq!(m["to"][0]["name"], "Bob");
    assert_eq!(m["subject"], "Hello from the spine test");
    let oracle_text = oracle(HAPPY).unwrap().body_text(0).unwrap().into_owned();
    assert!(oracle_text.contains(".A line that starts with a dot."));
    assert_eq!(m["text"], oracle_text.as_str(), "text must be the un-dot-stuffed body");
    assert_eq!(m["html"], Value::Null);
    assert_eq!(m["parsed"]["status"], "complete");
    assert_eq!(m["parsed"]["error"], Value::Null);
    assert_eq!(m["raw"]["size"], HAPPY.len());
    assert_eq!(m["attachments"], json!([]));
    assert!(
        m["headers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|kv| kv[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case("subject")))),
        "headers: {}",
        m["headers"]
    );

    // The CLI and the disk agree.
    assert_eq!(d["event_id"], ev["id"]);
    assert_eq!(d["id"], dl["id"]);
    assert_eq!(d["message_id"], msg_id.as_str());
    assert_eq!(d["endpoint"], "app");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_status"], 200);
    let raw = h.raw(&msg_id);
    assert!(raw == HAPPY, "messages show --raw differs from the bytes sent:\n{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(h.stored_raw(&msg_id).as_deref(), Some(HAPPY), "the raw bytes in the store on disk");
    // On PostgreSQL nothing of the store is on this host's disk.
    assert_eq!(h.data_dir().join("mxhook.db").exists(), h.database.is_none());

    let msgs = h.messages();
    assert_eq!(msgs.len(), 1, "messages list: {msgs:?}");
    assert_eq!(msgs[0]["id"], msg_id.as_str());
    assert_eq!(msgs[0]["mail_from"], "ada@sender.test");
    assert_eq!(msgs[0]["rcpt_to"], json!(["anyone@example.test"]));
    assert_eq!(msgs[0]["subject"], "Hello from the spine test");
    assert_eq!(msgs[0]["size"], HAPPY.len());
    assert_eq!(msgs[0]["parsed_status"], "complete");

    let shown = h.cli_json(&["messages", "show", &msg_id, "--json"]);
    assert_eq!(shown["id"], msg_id.as_str());
    assert_eq!(shown["event_message"]["subject"], "Hello from the spine test");
    assert_eq!(shown["deliveries"].as_array().map(Vec::len), Some(1), "messages show: {shown}");
}

#[test]
fn several_recipients_are_stored_once_with_one_delivery() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let rcpts = ["a@example.test", "b@example.test", "c@example.test"];
    let msg_id = c.send_mail("sender@sender.test", &rcpts, &simple("three", "a@example.test"));

    let (_, ev) = one_event(&h, &msg_id, SECRET_A);
    assert_eq!(ev["message"]["smtp"]["rcpt_to"], json!(rcpts));
    h.wait_delivery_status(&msg_id, "succeeded", SHORT);
    assert_eq!(h.messages().len(), 1, "stored once");
    assert_eq!(h.deliveries(&[]).len(), 1, "one delivery for one endpoint");
    assert_eq!(h.rx.count(), 1);
    assert_eq!(h.messages()[0]["rcpt_to"], json!(rcpts));
}

#[test]
fn two_domains_two_endpoints_each_signed_with_its_own_secret() {
    let h = Harness::with(|cfg| {
        cfg.domains = vec![("alpha.test".into(), "alpha".into()), ("beta.test".into(), "beta".into())];
        let url_a = cfg.endpoints[0].url.replace("/hooks/app", "/hooks/alpha");
        let url_b = cfg.endpoints[0].url.replace("/hooks/app", "/hooks/beta");
        cfg.endpoints = vec![
            Endpoint { retry: strings(&["0s"]), ..Endpoint::new("alpha", url_a, SECRET_A) },
            Endpoint { retry: strings(&["0s"]), ..Endpoint::new("beta", url_b, SECRET_B) },
        ];
    });
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let msg_id = c.send_mail("s@sender.test", &["x@alpha.test", "y@beta.test"], &simple("two", "x@alpha.test"));

    let reqs = h.wait_requests(2, SHORT);
    h.wait_until(SHORT, "both deliveries succeeded", || {
        let d = h.deliveries(&["--message", &msg_id]);
        d.len() == 2 && d.iter().all(|d| d["status"] == "succeeded")
    });
    assert_eq!(h.rx.count(), 2, "one request per endpoint");
    assert_eq!(h.messages().len(), 1);

    let alpha = reqs.iter().find(|r| r.path == "/hooks/alpha").expect("a request to /hooks/alpha");
    let beta = reqs.iter().find(|r| r.path == "/hooks/beta").expect("a request to /hooks/beta");
    alpha.assert_signed(SECRET_A);
    beta.assert_signed(SECRET_B);
    assert!(alpha.verify(SECRET_B).is_err(), "alpha's request must not verify with beta's secret");
    assert!(beta.verify(SECRET_A).is_err(), "beta's request must not verify with alpha's secret");

    let (ea, eb) = (alpha.json(), beta.json());
    assert_eq!(ea["delivery"]["endpoint"], "alpha");
    assert_eq!(eb["delivery"]["endpoint"], "beta");
    assert_eq!(ea["message"]["id"], msg_id.as_str());
    assert_eq!(eb["message"]["id"], msg_id.as_str());
    assert_ne!(ea["id"], eb["id"], "one event per message and endpoint");
    let rcpt = |e: &Value| e["message"]["smtp"]["rcpt_to"].as_array().unwrap().clone();
    assert!(rcpt(&ea).contains(&json!("x@alpha.test")), "alpha rcpt_to: {}", ea["message"]["smtp"]["rcpt_to"]);
    assert!(rcpt(&eb).contains(&json!("y@beta.test")), "beta rcpt_to: {}", eb["message"]["smtp"]["rcpt_to"]);
}

#[test]
fn null_sender_is_accepted_and_delivered_with_empty_mail_from() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<bounces@example.test>").expect(250, "2.1.5");
    let msg_id = c.data(&simple("bounce", "bounces@example.test")).queued_id();
    let (_, ev) = one_event(&h, &msg_id, SECRET_A);
    assert_eq!(ev["message"]["smtp"]["mail_from"], "");
    assert_eq!(h.messages()[0]["mail_from"], "");
}

#[test]
fn headerless_message_is_delivered_with_parse_failed() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let msg_id = c.send_mail("x@sender.test", &["junk@example.test"], b"\r\n");
    let (_, ev) = one_event(&h, &msg_id, SECRET_A);
    let parsed = &ev["message"]["parsed"];
    assert_eq!(parsed["status"], "failed", "event: {ev}");
    assert!(parsed["error"].as_str().is_some_and(|e| !e.is_empty()), "parsed.error must say why: {parsed}");
    assert_eq!(h.raw(&msg_id), b"\r\n");
    assert_eq!(h.messages()[0]["parsed_status"], "failed");
    h.wait_delivery_status(&msg_id, "succeeded", SHORT);
}

#[test]
fn garbage_and_broken_mime_are_accepted_stored_and_delivered() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("binary garbage", b"\x00\xff\xfe garbage \x01\r\n\x80\x81\x82 more \xc3\x28\r\n".to_vec()),
        ("text without headers", b"garbage without headers\r\nmore\r\n".to_vec()),
        (
            "unterminated multipart",
            b"Subject: broken\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhi\r\n--z\r\n".to_vec(),
        ),
        (
            "bad base64 and unknown charset",
            b"Subject: =?x-unknown?B?!!!?=\r\nContent-Type: text/plain; charset=x-nope\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@\r\n".to_vec(),
        ),
    ];
    let mut sent = Vec::new();
    for (what, body) in &inputs {
        let id = c.send_mail("x@sender.test", &["junk@example.test"], body);
        sent.push((what, body, id));
    }
    h.wait_requests(inputs.len(), SHORT);
    for (what, body, id) in sent {
        let (_, ev) = one_event(&h, &id, SECRET_A);
        let expect = expected_parse_status(body);
        assert_eq!(ev["message"]["parsed"]["status"], expect, "{what}: parsed: {}", ev["message"]["parsed"]);
        if expect == "complete" {
            let o = oracle(body).unwrap();
            assert_eq!(ev["message"]["subject"].as_str(), o.subject(), "{what}: subject");
        }
        assert_eq!(&h.raw(&id), body, "{what}: raw bytes");
    }
}

#[test]
fn empty_message_gets_an_answer() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<x@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<empty@example.test>").expect(250, "2.1.5");
    assert_eq!(c.cmd("DATA").code, 354);
    // No content at all: the terminator right after DATA. The server must answer, not wait for more.
    let r = c.cmd(".");
    assert!(r.code == 250 || r.code >= 500, "empty DATA: unexpected reply `{r}`");
    if r.code == 250 {
        let id = r.queued_id();
        let (_, ev) = one_event(&h, &id, SECRET_A);
        assert_eq!(ev["message"]["parsed"]["status"], "failed");
        assert_eq!(h.raw(&id), b"");
    }
    c.cmd("NOOP").expect(250, "2.0.0");
}

#[test]
fn bare_lf_dot_does_not_end_data_no_smuggling() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let body = b"From: <a@sender.test>\r\nTo: <victim@example.test>\r\nSubject: smuggle\r\n\r\n\
hello\n.\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<victim2@example.test>\r\nDATA\r\n\
From: <ceo@example.test>\r\nSubject: spoofed\r\n\r\nsmuggled\n.\nend\r\n";
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<victim@example.test>").expect(250, "2.1.5");
    let msg_id = c.data(body).queued_id();
    // Nothing else may be answered: the smuggled commands were data.
    c.cmd("NOOP").expect(250, "2.0.0");

    let (_, ev) = one_event(&h, &msg_id, SECRET_A);
    assert_eq!(ev["message"]["subject"], "smuggle");
    let msgs = h.messages();
    assert_eq!(msgs.len(), 1, "exactly one message may be stored: {msgs:?}");
    let raw = h.raw(&msg_id);
    assert_eq!(raw, body.to_vec(), "raw must keep the smuggling attempt as data");
    assert!(String::from_utf8_lossy(&raw).contains("MAIL FROM:<x@evil.test>"));
    assert_eq!(h.rx.count(), 1);
}

#[test]
fn long_data_lines_are_accepted_unchanged() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let long: String = (0..10_000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let body =
        format!("From: <a@sender.test>\r\nTo: <long@example.test>\r\nSubject: long line\r\n\r\n{long}\r\nshort\r\n")
            .into_bytes();
    let msg_id = c.send_mail("a@sender.test", &["long@example.test"], &body);
    let (_, ev) = one_event(&h, &msg_id, SECRET_A);
    assert_eq!(h.raw(&msg_id), body, "raw bytes must be unchanged");
    assert!(
        ev["message"]["text"].as_str().is_some_and(|t| t.contains(&long)),
        "text must contain the 10,000-char line"
    );
    assert_eq!(ev["message"]["raw"]["size"], body.len());
}

#[test]
fn store_failure_is_451_never_250() {
    let h = Harness::basic();
    if h.database.is_some() {
        // The spool is SQLite's: on PostgreSQL the store's failure is the database's (the cluster
        // tests stop it under load).
        eprintln!("SKIPPED on PostgreSQL: breaks SQLite's spool directory");
        return;
    }
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.send_mail("a@sender.test", &["first@example.test"], &simple("first", "first@example.test"));

    // Make the spool unusable: a plain file where the directory was. Messages over 1 MiB are
    // written there (smaller ones live in the database), so the second message is 1.2 MB.
    let spool = h.data_dir().join("spool");
    let kept = h.dir.path().join("spool-kept");
    std::fs::rename(&spool, &kept).unwrap();
    std::fs::write(&spool, b"not a directory").unwrap();

    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<second@example.test>").expect(250, "2.1.5");
    let mut big = simple("second", "second@example.test");
    big.extend(
        std::iter::repeat_n(&b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"[..], 18_000)
            .flatten(),
    );
    c.data(&big).expect(451, "4.3.0");

    // Once the spool is back, the failed message is nowhere and the same session can deliver.
    std::fs::remove_file(&spool).unwrap();
    std::fs::rename(&kept, &spool).unwrap();
    assert_eq!(h.messages().len(), 1, "the failed message must not be recorded");
    let id = c.send_mail("a@sender.test", &["third@example.test"], &simple("third", "third@example.test"));
    one_event(&h, &id, SECRET_A);
    assert_eq!(h.messages().len(), 2);
    h.wait_requests(2, SHORT);
    assert_eq!(h.rx.count(), 2, "no event for the message that got 451");
}
