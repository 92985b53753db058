//! Per-route policy on what spam checking found (with a real engine), and sync mode.
//! `on_dmarc_fail` applies the same way once sender authentication reports DMARC; until then it is
//! covered by the unit tests in src/route.rs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{SECRET_B, SHORT, Session, SmtpClient};
use crate::engines::Engine;
use crate::support::{deliveries, gtube, harness, listed, mail, raw_kept, routes, send, shown};

#[test]
fn on_spam_policies_with_a_real_engine() {
    let spamd = Engine::spamd();
    let h = harness(
        &[],
        &format!(
            r#"
[spam]
spamd = "{}"
timeout = "30s"

[[routes]]
match = "deliver@example.test"
endpoints = ["app"]

[[routes]]
match = "store@example.test"
endpoints = ["app"]
on_spam = "store"

[[routes]]
match = "drop@example.test"
endpoints = ["app"]
on_spam = "drop"

[[routes]]
match = "reject@example.test"
endpoints = ["app"]
on_spam = "reject"
"#,
            spamd.addr
        ),
    );
    let gw = h.start();

    // deliver (the default): the route sends it, but as `email.received.spam`, which an endpoint
    // without `events` does not subscribe to: kept, not sent, and the disposition says why.
    let id = send(&gw, &["deliver@example.test"], &gtube());
    let m = shown(&h, &id);
    assert_eq!((m["type"].as_str(), m["state"].as_str()), (Some("email.received.spam"), Some("stored")), "{m}");
    assert_eq!(m["disposition"], "stored: no endpoint subscribes to email.received.spam");
    assert_eq!(m["event_message"]["spam"]["verdict"], "spam");
    assert_eq!(m["event_message"]["routes"][0]["rule"], "route");
    assert!(deliveries(&h, &id).is_empty() && h.rx.requests_for_message(&id).is_empty());

    // store: kept, listed, not sent; the event says which rule applied.
    let stored = send(&gw, &["store@example.test"], &gtube());
    assert!(deliveries(&h, &stored).is_empty());
    assert!(raw_kept(&h, &stored));
    assert_eq!(
        routes(&h, &stored),
        [
            json!({ "rcpt": "store@example.test", "match": "store@example.test", "action": "store", "rule": "on_spam", "tag": null })
        ]
    );

    // drop: only the record.
    let dropped = send(&gw, &["drop@example.test"], &gtube());
    assert!(deliveries(&h, &dropped).is_empty() && !raw_kept(&h, &dropped));
    assert_eq!(routes(&h, &dropped)[0]["rule"], "on_spam");
    assert_eq!(shown(&h, &dropped)["event_message"]["spam"]["verdict"], "spam");

    // reject: the verdict exists only after DATA, so the refusal comes there; nothing is kept.
    let before = listed(&h).len();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<reject@example.test>").expect(250, "2.1.5");
    c.data(&gtube()).expect(550, "5.7.1");
    assert_eq!(listed(&h).len(), before);

    // The same routes let ham through as usual.
    for rcpt in ["store@example.test", "drop@example.test", "reject@example.test"] {
        let id = send(&gw, &[rcpt], &mail("quarterly report", "The numbers are attached, as discussed."));
        h.wait_until(SHORT, &format!("the ham event for {rcpt}"), || !h.rx.requests_for_message(&id).is_empty());
        let event = h.rx.requests_for_message(&id)[0].json();
        assert_eq!(event["message"]["spam"]["verdict"], "ham", "{rcpt}");
        assert_eq!(event["message"]["routes"][0]["rule"], "route", "{rcpt}");
    }
    // Only the three ham events above were sent: no spam, whatever the route's policy.
    assert_eq!(h.rx.count(), 3);
}

const SYNC: &str = r#"
[[routes]]
match = "orders@example.test"
endpoints = ["app"]
mode = "sync"
sync_timeout = "10s"
"#;

#[test]
fn sync_mode_answers_250_only_after_the_endpoint_took_it() {
    let h = harness(&[], SYNC);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<orders@example.test>").expect(250, "2.1.5");
    let id = c.data(&mail("order 1", "one widget")).queued_id();
    // The event was received before the 250 was written: no waiting needed.
    assert_eq!(h.rx.requests_for_message(&id).len(), 1);
    let d = deliveries(&h, &id);
    assert_eq!((d[0]["status"].as_str(), d[0]["attempts"].as_i64()), (Some("succeeded"), Some(1)));
}

#[test]
fn sync_mode_answers_451_and_keeps_nothing_when_the_endpoint_fails() {
    let h = harness(&[], SYNC);
    h.rx.set_status(503);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<orders@example.test>").expect(250, "2.1.5");
    let started = Instant::now();
    let r = c.data(&mail("order 2", "two widgets"));
    assert_eq!(r.code, 451, "{r}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(h.rx.count(), 1, "one attempt was made");
    assert!(listed(&h).is_empty(), "the sender keeps the message; we keep nothing");
    assert!(h.deliveries(&[]).is_empty());
    let spool: Vec<_> = std::fs::read_dir(h.data_dir().join("spool")).unwrap().collect();
    assert!(spool.is_empty(), "{spool:?}");
    // Counted as the endpoint's refusal, not as a store failure (the store was fine).
    let metrics =
        ureq::get(&format!("http://{}/metrics", gw.http)).call().unwrap().into_body().read_to_string().unwrap();
    let rejected: Vec<&str> = metrics.lines().filter(|l| l.starts_with("mxhook_messages_rejected_total{")).collect();
    assert_eq!(rejected, ["mxhook_messages_rejected_total{reason=\"sync_endpoint\"} 1"], "{metrics}");
    // When the endpoint is back, the sender's retry goes through.
    h.rx.set_status(200);
    let id = c.send_mail("ada@sender.test", &["orders@example.test"], &mail("order 2", "two widgets"));
    assert_eq!(h.rx.requests_for_message(&id).len(), 1);
}

/// A message to a sync route and an async one: on the sync route's 451 the message is withdrawn
/// (the sender keeps it and will retry), so the async endpoint must not have had it either — or the
/// retry would deliver it there twice.
#[test]
fn a_sync_451_means_no_other_endpoint_got_the_message() {
    let extra = format!("{SYNC}\n[[routes]]\nmatch = \"team@example.test\"\nendpoints = [\"crm\"]\n");
    let h = harness(&[("crm", SECRET_B)], &extra);
    h.rx.set_status(503);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<orders@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<team@example.test>").expect(250, "2.1.5");
    let r = c.data(&mail("withdrawn", "sync fails"));
    assert_eq!(r.code, 451, "{r}");

    // A later message to the async route only: once its event is in, anything the withdrawn
    // message had sent to crm (it would have gone out at once, before the 451) is in too.
    h.rx.set_status(200);
    let later = c.send_mail("ada@sender.test", &["team@example.test"], &mail("later", "async only"));
    h.wait_until(SHORT, "the later message's event", || !h.rx.requests_for_message(&later).is_empty());
    let to_crm: Vec<_> =
        h.rx.requests()
            .into_iter()
            .filter(|r| r.path == "/hooks/crm")
            .map(|r| r.json()["message"]["subject"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(to_crm, ["later"], "crm got only the later message");
}
