//! Spam verdicts from real engines (GTUBE must come out spam), and engines that are down or silent:
//! verdict null, the message delivered as usual, the wait bounded by `[spam] timeout`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Gateway, Harness, SHORT, Session, SmtpClient};
use crate::engines::{Engine, free_port};
use crate::support::{gtube, harness, mail, send};

/// Sends `body` to the domain's endpoint and returns the event's `message.spam`: as delivered for
/// ham, as stored for spam (`email.received.spam` does not reach an endpoint that did not ask for it).
fn verdict(h: &Harness, gw: &Gateway, body: &[u8]) -> Value {
    let id = send(gw, &["anyone@example.test"], body);
    let shown = crate::support::shown(h, &id);
    if shown["type"] == "email.received.spam" {
        return shown["event_message"]["spam"].clone();
    }
    h.wait_until(SHORT, "the event", || !h.rx.requests_for_message(&id).is_empty());
    h.rx.requests_for_message(&id)[0].json()["message"]["spam"].clone()
}

#[test]
fn spamd_finds_gtube_spam_and_plain_mail_ham() {
    let spamd = Engine::spamd();
    let h = harness(&[], &format!("[spam]\nspamd = \"{}\"\ntimeout = \"30s\"\n", spamd.addr));
    let gw = h.start();
    let spam = verdict(&h, &gw, &gtube());
    assert_eq!((spam["verdict"].as_str(), spam["engine"].as_str()), (Some("spam"), Some("spamd")), "{spam}");
    assert!(spam["score"].as_f64().unwrap() >= 5.0, "{spam}");
    let ham = verdict(&h, &gw, &mail("lunch", "Shall we meet at noon on Thursday?"));
    assert_eq!((ham["verdict"].as_str(), ham["engine"].as_str()), (Some("ham"), Some("spamd")), "{ham}");
    assert!(ham["score"].as_f64().unwrap() < 5.0, "{ham}");
}

#[test]
fn rspamd_finds_gtube_spam_and_plain_mail_ham() {
    let rspamd = Engine::rspamd();
    let h = harness(&[], &format!("[spam]\nrspamd = \"{}\"\ntimeout = \"30s\"\n", rspamd.url()));
    let gw = h.start();
    let spam = verdict(&h, &gw, &gtube());
    assert_eq!((spam["verdict"].as_str(), spam["engine"].as_str()), (Some("spam"), Some("rspamd")), "{spam}");
    assert!(spam["score"].as_f64().unwrap() > 0.0, "{spam}");
    let ham = verdict(&h, &gw, &mail("lunch", "Shall we meet at noon on Thursday?"));
    assert_eq!((ham["verdict"].as_str(), ham["engine"].as_str()), (Some("ham"), Some("rspamd")), "{ham}");
}

#[test]
fn a_down_engine_means_no_verdict_and_delivery_as_usual() {
    for engine in
        [format!("spamd = \"127.0.0.1:{}\"", free_port()), format!("rspamd = \"http://127.0.0.1:{}\"", free_port())]
    {
        let h = harness(&[], &format!("[spam]\n{engine}\n"));
        let gw = h.start();
        let spam = verdict(&h, &gw, &gtube());
        assert_eq!((spam["verdict"].clone(), spam["score"].clone()), (Value::Null, Value::Null), "{engine}: {spam}");
        assert!(spam["engine"].is_string(), "{spam}");
    }
}

#[test]
fn a_silent_engine_costs_at_most_the_timeout() {
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    for engine in [format!("spamd = \"{addr}\""), format!("rspamd = \"http://{addr}\"")] {
        let h = harness(&[], &format!("[spam]\n{engine}\ntimeout = \"500ms\"\n"));
        let gw = h.start();
        let mut c = SmtpClient::ready(gw.smtp);
        c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
        c.cmd("RCPT TO:<anyone@example.test>").expect(250, "2.1.5");
        let started = Instant::now();
        let id = c.data(&gtube()).queued_id();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{engine}: {took:?}");
        h.wait_until(SHORT, "the event", || !h.rx.requests_for_message(&id).is_empty());
        assert!(h.rx.requests_for_message(&id)[0].json()["message"]["spam"]["verdict"].is_null());
    }
    drop(silent);
}

#[test]
fn a_message_over_max_size_is_not_checked() {
    // The engine would never answer: only skipping it gives a quick 250.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h = harness(
        &[],
        &format!("[spam]\nspamd = \"{}\"\ntimeout = \"20s\"\nmax_size = \"2KB\"\n", silent.local_addr().unwrap()),
    );
    let gw = h.start();
    let mut body = gtube();
    body.extend_from_slice("padding padding padding\r\n".repeat(100).as_bytes());
    let started = Instant::now();
    let spam = verdict(&h, &gw, &body);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!((spam["verdict"].clone(), spam["engine"].as_str()), (Value::Null, Some("spamd")), "{spam}");
}
