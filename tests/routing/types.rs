//! Event types and subscriptions (issue 16), end to end over SMTP: each kind of message reaches only
//! the endpoints that subscribe to its type. Two endpoints on one catch-all route: `app` without
//! `events` (the default: email.received, email.bounced, email.complained) and `all` with
//! `events = ["*"]`.
//!
//! The bounces and the complaint are hand-written samples (the shared corpus and mail-parser's test
//! resources hold none): an RFC 3464 DSN as Postfix writes them, Postfix's older plain-text bounce,
//! and RFC 5965's ARF example (as in mail-auth's resources/arf/002.eml).

use serde_json::Value;

use crate::common::{Config, Gateway, Harness, SECRET_B, SHORT, Session, SmtpClient};
use crate::engines::Engine;
use crate::support::{gtube, mail, shown};

/// `app` (default subscription) and `all` (`"*"`) both on `*@example.test`; `extra` appended.
fn two_endpoints(extra: &str) -> Harness {
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    // The harness knows `/hooks/all`'s secret from this endpoint (it checks every request's
    // signature); `every`, at the same URL with the same secret, is the one with `events`.
    cfg.add_endpoint(&h.rx, "all", SECRET_B);
    cfg.append(&format!(
        "[endpoints.every]\nurl = \"{}\"\nsecret = \"{SECRET_B}\"\nretry = [\"0s\"]\nevents = [\"*\"]\n\n\
         [[routes]]\nmatch = \"*@example.test\"\nendpoints = [\"app\", \"every\"]\n\n{extra}",
        h.rx.url("/hooks/all")
    ));
    h.write_config(&cfg);
    h
}

/// Sends `body` from `from` (empty: the null sender) to `rcpt`; returns the message id.
fn send_from(gw: &Gateway, from: &str, rcpt: &str, body: &[u8]) -> String {
    SmtpClient::ready(gw.smtp).send_mail(from, &[rcpt], body)
}

/// The events for `id` that reached each endpoint, once `all` (which wants every type) has its own.
fn events(h: &Harness, id: &str) -> (Vec<Value>, Vec<Value>) {
    h.wait_until(SHORT, "the event at `all`", || {
        h.rx.requests_for_message(id).iter().any(|r| r.path.ends_with("/all"))
    });
    // `app`'s delivery, if it has one, is created with `all`'s: wait for every delivery to settle.
    h.wait_until(SHORT, "every delivery", || {
        h.deliveries(&["--message", id]).iter().all(|d| d["status"] == "succeeded")
    });
    let at = |name: &str| -> Vec<Value> {
        h.rx.requests_for_message(id).iter().filter(|r| r.path.ends_with(name)).map(|r| r.json()).collect()
    };
    (at("/hooks/app"), at("/hooks/all"))
}

const DSN: &str = "From: MAILER-DAEMON@mx.far.test (Mail Delivery System)\r\n\
To: bounces+ord-42@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Date: Mon, 23 Nov 2026 06:00:00 +0000\r\n\
Message-ID: <dsn-1@mx.far.test>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at host mx.far.test.\r\n\
\r\n\
<gone@far.test>: host mx2.far.test[192.0.2.25] said: 550 5.1.1 User unknown\r\n\
\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.far.test\r\n\
Arrival-Date: Mon, 23 Nov 2026 05:59:58 +0000\r\n\
\r\n\
Final-Recipient: rfc822; gone@far.test\r\n\
Original-Recipient: rfc822;Gone@far.test\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx2.far.test\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <gone@far.test>: Recipient address\r\n    rejected: User unknown\r\n\
\r\n\
--B1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Return-Path: <bounces+ord-42@example.test>\r\n\
From: Shop <orders@example.test>\r\n\
To: gone@far.test\r\n\
Subject: Your order 42\r\n\
Message-ID: <order-42@example.test>\r\n\
\r\n\
Thanks for your order.\r\n\
--B1--\r\n";

const POSTFIX_PLAIN: &str = "From: MAILER-DAEMON@mx.far.test (Mail Delivery System)\r\n\
To: bounces+ord-43@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Date: Mon, 23 Nov 2026 06:00:00 +0000\r\n\
Message-ID: <dsn-2@mx.far.test>\r\n\
\r\n\
This is the mail system at host mx.far.test.\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients. It's attached below.\r\n\
\r\n\
                   The mail system\r\n\
\r\n\
<full@far.test>: host mx2.far.test[192.0.2.25] said: 452 4.2.2 Mailbox full\r\n\
    (in reply to RCPT TO command)\r\n\
\r\n\
------ This is a copy of the message, including all the headers. ------\r\n\
\r\n\
Return-Path: <bounces+ord-43@example.test>\r\n\
Subject: Your order 43\r\n\
Message-ID: <order-43@example.test>\r\n\
\r\n\
Thanks.\r\n";

const ARF: &str = "From: <abusedesk@isp.test>\r\n\
Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n\
Subject: FW: Earn money\r\n\
To: <abuse@example.test>\r\n\
Message-ID: <arf-1@isp.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n    boundary=\"part1\"\r\n\
\r\n\
--part1\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
\r\n\
--part1\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <somespammer@example.test>\r\n\
Original-Rcpt-To: <user@isp.test>\r\n\
Received-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n\
Source-IP: 192.0.2.1\r\n\
\r\n\
--part1\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
From: <somespammer@example.test>\r\n\
To: <user@isp.test>\r\n\
Subject: Earn money\r\n\
Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.test>\r\n\
\r\n\
Spam Spam Spam\r\n\
--part1--\r\n";

#[test]
fn each_type_reaches_only_the_endpoints_that_subscribe_to_it() {
    let spamd = Engine::spamd();
    let h = two_endpoints(&format!("[spam]\nspamd = \"{}\"\ntimeout = \"30s\"\n", spamd.addr));
    let gw = h.start();

    // An ordinary message: email.received to both, nothing automatic about it.
    let id = send_from(&gw, "ada@sender.test", "team@example.test", &mail("lunch", "Noon on Thursday?"));
    let (app, all) = events(&h, &id);
    assert_eq!((app.len(), all.len()), (1, 1));
    for e in [&app[0], &all[0]] {
        assert_eq!(e["type"], "email.received");
        assert_eq!((&e["message"]["auto_submitted"], &e["message"]["bounce"]), (&Value::Null, &Value::Null));
    }
    // The new fields come before `raw`, which stays last (the stored form relies on it).
    let body = String::from_utf8(h.rx.requests_for_message(&id)[0].body.clone()).unwrap();
    let (raw_at, complaint_at) = (body.rfind("\"raw\":{").unwrap(), body.rfind("\"complaint\":").unwrap());
    assert!(complaint_at < raw_at && body.ends_with("}}}"), "{body}");

    // An RFC 3464 DSN to a VERP address: email.bounced to both, with the report read field by field.
    let id = send_from(&gw, "", "bounces+ord-42@example.test", DSN.as_bytes());
    let (app, all) = events(&h, &id);
    assert_eq!((app.len(), all.len()), (1, 1));
    assert_eq!((app[0]["type"].as_str(), all[0]["type"].as_str()), (Some("email.bounced"), Some("email.bounced")));
    let b = &app[0]["message"]["bounce"];
    assert_eq!(
        b["recipients"],
        serde_json::json!([{
            "address": "gone@far.test", "original_recipient": "Gone@far.test", "action": "failed", "status": "5.1.1",
            "diagnostic_code": "550 5.1.1 <gone@far.test>: Recipient address rejected: User unknown",
            "remote_mta": "mx2.far.test"
        }])
    );
    assert_eq!(b["kind"], "hard");
    assert_eq!(
        b["original"],
        serde_json::json!({ "message_id": "order-42@example.test", "subject": "Your order 42", "mail_from": "bounces+ord-42@example.test" })
    );
    assert_eq!(b["to"], serde_json::json!({ "address": "bounces+ord-42@example.test", "tag": "ord-42" }));
    assert_eq!(app[0]["message"]["auto_submitted"], "auto-submitted: auto-replied");

    // Postfix's plain-text bounce: the same object, read from the words; 4.x.x is a soft bounce.
    let id = send_from(&gw, "", "bounces+ord-43@example.test", POSTFIX_PLAIN.as_bytes());
    let (app, all) = events(&h, &id);
    assert_eq!((app.len(), all.len()), (1, 1));
    let b = &app[0]["message"]["bounce"];
    assert_eq!(app[0]["type"], "email.bounced");
    assert_eq!(
        (&b["recipients"][0]["address"], &b["recipients"][0]["status"], &b["recipients"][0]["remote_mta"]),
        (&Value::from("full@far.test"), &Value::from("4.2.2"), &Value::from("mx2.far.test"))
    );
    assert_eq!((b["kind"].as_str(), b["to"]["tag"].as_str()), (Some("soft"), Some("ord-43")));
    assert_eq!(b["original"]["message_id"], "order-43@example.test");

    // An ARF report: email.complained to both.
    let id = send_from(&gw, "abusedesk@isp.test", "abuse@example.test", ARF.as_bytes());
    let (app, all) = events(&h, &id);
    assert_eq!((app.len(), all.len()), (1, 1));
    assert_eq!(all[0]["type"], "email.complained");
    assert_eq!(
        app[0]["message"]["complaint"],
        serde_json::json!({
            "feedback_type": "abuse", "user_agent": "SomeGenerator/1.0", "original_recipient": "user@isp.test",
            "original_message_id": "8787KJKJ3K4J3K4J3K4J3.mail@example.test", "source_ip": "192.0.2.1"
        })
    );

    // An auto-reply is still email.received, marked.
    let reply = String::from_utf8(mail("Re: lunch", "I am out of the office until Monday.")).unwrap();
    let reply = reply.replacen("Subject:", "Auto-Submitted: auto-replied\r\nSubject:", 1);
    let id = send_from(&gw, "ada@sender.test", "team@example.test", reply.as_bytes());
    let (app, all) = events(&h, &id);
    assert_eq!((app.len(), all.len()), (1, 1));
    assert_eq!(
        (app[0]["type"].as_str(), app[0]["message"]["auto_submitted"].as_str()),
        (Some("email.received"), Some("auto-submitted: auto-replied"))
    );

    // Spam (GTUBE through the real spamd): only `all` asked for it.
    let spam = send_from(&gw, "ada@sender.test", "team@example.test", &gtube());
    let (app, all) = events(&h, &spam);
    assert_eq!((app.len(), all.len()), (0, 1));
    assert_eq!(all[0]["type"], "email.received.spam");
    let m = shown(&h, &spam);
    assert_eq!((m["type"].as_str(), m["deliveries"].as_array().map(Vec::len)), (Some("email.received.spam"), Some(1)));

    // The CLI: a TYPE column, and --type filters.
    let list = h.cli(&["messages", "list"]).stdout_str();
    assert!(list.lines().next().is_some_and(|l| l.contains("TYPE")), "{list}");
    assert!(list.contains("email.complained"), "{list}");
    let bounced = h.cli_json(&["messages", "list", "--type", "email.bounced", "--json"]);
    let types: Vec<&str> = bounced.as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["email.bounced", "email.bounced"]);
}

#[test]
fn a_type_no_endpoint_wants_is_stored_and_says_why() {
    let spamd = Engine::spamd();
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    cfg.append(&format!("[spam]\nspamd = \"{}\"\ntimeout = \"30s\"\n", spamd.addr));
    h.write_config(&cfg);
    let gw = h.start();
    let id = send_from(&gw, "ada@sender.test", "team@example.test", &gtube());
    let m = shown(&h, &id);
    assert_eq!((m["type"].as_str(), m["state"].as_str()), (Some("email.received.spam"), Some("stored")), "{m}");
    assert_eq!(m["disposition"], "stored: no endpoint subscribes to email.received.spam");
    assert!(m["deliveries"].as_array().unwrap().is_empty());
    assert!(h.stored_raw(&id).is_some(), "kept, listable, replayable");
    let listed = h.cli(&["messages", "list", "--type", "email.received.spam"]).stdout_str();
    assert!(listed.contains(&id) && listed.contains("stored"), "{listed}");
}

#[test]
fn unknown_event_types_are_config_errors_with_their_line() {
    let h = two_endpoints("");
    let mut cfg = Config::basic(&h.rx);
    cfg.append("[endpoints.x]\nurl = \"http://127.0.0.1:1/x\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"email.received\", \"email.bounce\"]\n");
    h.write_config(&cfg);
    let out = h.cli(&["check-config"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let text = out.all_output();
    assert!(text.contains("endpoints.x.events") && text.contains("unknown event type `email.bounce`"), "{text}");
}
