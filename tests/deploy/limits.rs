//! The limits that keep a public MX standing. Each refusal: its reply code, its
//! `mxhook_messages_rejected_total{reason}` series, and everyone else carrying on.

use std::time::{Duration, Instant};

use crate::common::smtp::Reply;
use crate::common::*;
use crate::support::*;

const BODY: &[u8] = b"Subject: limits\r\n\r\nhi\r\n";

/// The two limits whose replies are tested only in process (tests/smtp): their keys reach the binary.
#[test]
fn max_message_size_and_max_recipients_reach_the_binary() {
    let h = Harness::with(|c| {
        c.max_message_size = Some("10KB".into());
        c.max_recipients = Some(2);
    });
    let gw = h.start();
    let (mut c, _) = SmtpClient::connect(gw.smtp);
    let size = c.cmd("EHLO client.test").size_limit();
    assert!((10_000..=10_240).contains(&size), "SIZE must be max_message_size 10KB, got {size}");
    c.cmd("MAIL FROM:<ada@sender.test> SIZE=20000").expect(552, "5.3.4");
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<one@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<two@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<three@example.test>").expect(452, "4.5.3");
    let id = c.data(BODY).queued_id();
    assert_eq!(
        h.event_for(&id).1["message"]["smtp"]["rcpt_to"],
        serde_json::json!(["one@example.test", "two@example.test"])
    );
    expect_rejected(&h, &gw, "size", 1.0);
    expect_rejected(&h, &gw, "too_many_recipients", 1.0);
}

#[test]
fn max_sessions_refuses_the_next_connection() {
    let h = Harness::with(|c| c.max_sessions = Some(2));
    let gw = h.start();
    let mut a = SmtpClient::ready(gw.smtp);
    let mut b = SmtpClient::ready(gw.smtp);

    let (mut third, greeting) = SmtpClient::connect(gw.smtp);
    greeting.expect(421, "4.7.0");
    assert!(third.is_closed(), "the refused connection must be closed");
    // The limit is global: another address is refused too, with the same reason.
    let (_, greeting) = SmtpClient::connect_from(other_ip(), gw.smtp);
    greeting.expect(421, "4.7.0");
    expect_rejected(&h, &gw, "too_many_sessions", 2.0);
    assert_eq!(rejected(&gw, "too_many_sessions_per_ip"), 0.0, "{:?}", rejections(&gw));

    // The two admitted sessions still work.
    a.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    b.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    // A slot comes back when a session ends.
    a.cmd("QUIT").expect(221, "2.0.0");
    assert!(a.is_closed());
    let mut next = None;
    h.wait_until(WAIT, "a new session to be admitted after one ended", || {
        let (c, greeting) = SmtpClient::connect(gw.smtp);
        next = Some(c);
        greeting.code == 220
    });
    let mut c = next.unwrap();
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    c.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(3, WAIT);
}

#[test]
fn max_sessions_per_ip_refuses_that_address_only() {
    // The clients are on loopback, which trusted_networks exempts by default.
    let h = Harness::with(|c| c.smtp_extra.extend(strings(&["max_sessions_per_ip = 2", "trusted_networks = []"])));
    let gw = h.start();
    let mut a = SmtpClient::ready_from(local_ip(), gw.smtp);
    let _b = SmtpClient::ready_from(local_ip(), gw.smtp);

    let (_, greeting) = SmtpClient::connect_from(local_ip(), gw.smtp);
    greeting.expect(421, "4.7.0");
    assert!(greeting.text().contains("from your address"), "{greeting}");
    expect_rejected(&h, &gw, "too_many_sessions_per_ip", 1.0);
    assert_eq!(rejected(&gw, "too_many_sessions"), 0.0, "{:?}", rejections(&gw));

    // Another address gets in and sends mail; so does a session already open.
    let mut other = SmtpClient::ready_from(other_ip(), gw.smtp);
    let _other2 = SmtpClient::ready_from(other_ip(), gw.smtp);
    let id = other.send_mail("bob@sender.test", &["inbox@example.test"], BODY);
    assert_eq!(h.event_for(&id).1["message"]["smtp"]["client_ip"], "127.0.0.2");
    a.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(2, WAIT);
    assert_eq!(rejected(&gw, "too_many_sessions_per_ip"), 1.0);
}

#[test]
fn max_messages_per_minute_per_ip_answers_450_at_mail_from() {
    let h = Harness::with(|c| {
        c.smtp_extra.extend(strings(&["max_messages_per_minute_per_ip = 2", "trusted_networks = []"]))
    });
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    c.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(450, "4.7.1");
    // Not a transaction: RCPT has no MAIL to belong to. The session itself goes on.
    c.cmd("RCPT TO:<inbox@example.test>").expect(503, "5.5.1");
    c.cmd("NOOP").expect(250, "2.0.0");
    // The count is per address, not per session.
    let mut again = SmtpClient::ready(gw.smtp);
    again.cmd("MAIL FROM:<ada@sender.test>").expect(450, "4.7.1");
    expect_rejected(&h, &gw, "rate_limited", 2.0);

    // Another address has its own budget.
    let mut other = SmtpClient::ready_from(other_ip(), gw.smtp);
    other.send_mail("bob@sender.test", &["inbox@example.test"], BODY);
    other.send_mail("bob@sender.test", &["inbox@example.test"], BODY);
    other.cmd("MAIL FROM:<bob@sender.test>").expect(450, "4.7.1");
    expect_rejected(&h, &gw, "rate_limited", 3.0);
    h.wait_requests(4, WAIT);
    assert_eq!(h.messages().len(), 4);
}

#[test]
fn max_errors_closes_the_session() {
    let h = Harness::with(|c| c.smtp_extra.push("max_errors = 3".into()));
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("FOO").expect(500, "5.5.1");
    c.cmd("RCPT TO:<inbox@example.test>").expect(503, "5.5.1");
    // The third error is answered, then the session is closed.
    c.cmd("BAR baz").expect(500, "5.5.1");
    c.read_reply().expect(421, "4.7.0");
    assert!(c.is_closed(), "the session must be closed after max_errors");
    expect_rejected(&h, &gw, "too_many_errors", 1.0);

    // Another session with fewer errors delivers.
    let mut d = SmtpClient::ready(gw.smtp);
    d.cmd("FOO").expect(500, "5.5.1");
    d.cmd("DATA").expect(503, "5.5.1");
    d.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(1, WAIT);
    assert_eq!(rejected(&gw, "too_many_errors"), 1.0);
}

/// Reads a reply that the server sends by itself after `at_least` of silence, and no later than `at_most`.
#[track_caller]
fn unprompted(c: &mut SmtpClient, since: Instant, at_least: Duration, at_most: Duration) -> Reply {
    let r = c.read_reply();
    let took = since.elapsed();
    assert!(took >= at_least && took <= at_most, "`{r}` came after {took:?}, expected {at_least:?}..{at_most:?}");
    r
}

#[test]
fn command_timeout_closes_an_idle_session_only() {
    let h = Harness::with(|c| c.smtp_extra.push("command_timeout = \"1s\"".into()));
    let gw = h.start();
    let mut idle = SmtpClient::ready(gw.smtp);
    let since = Instant::now();
    unprompted(&mut idle, since, Duration::from_millis(900), Duration::from_secs(5)).expect(421, "4.4.2");
    assert!(idle.is_closed(), "the idle session must be closed");
    expect_rejected(&h, &gw, "timeout", 1.0);

    // A session that keeps talking outlives the timeout: it is per command, not per session.
    let mut busy = SmtpClient::ready(gw.smtp);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1800) {
        std::thread::sleep(Duration::from_millis(300)); // pacing, well under the 1 s timeout
        busy.cmd("NOOP").expect(250, "2.0.0");
    }
    busy.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(1, WAIT);
    assert_eq!(rejected(&gw, "timeout"), 1.0);
}

#[test]
fn data_timeout_closes_a_stalled_transfer() {
    let h = Harness::with(|c| c.smtp_extra.push("data_timeout = \"1s\"".into()));
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let r = c.cmd("DATA");
    assert_eq!(r.code, 354, "{r}");
    c.send_raw(b"Subject: stalled\r\n\r\nthe first half of a mess");
    let since = Instant::now();
    unprompted(&mut c, since, Duration::from_millis(900), Duration::from_secs(5)).expect(421, "4.4.2");
    assert!(c.is_closed(), "the stalled session must be closed");

    // Others deliver; nothing of the stalled message was stored.
    let mut d = SmtpClient::ready(gw.smtp);
    d.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(1, WAIT);
    assert_eq!(h.messages().len(), 1, "the stalled message must not be stored");
    // A refusal with its metric, like every other limit (issue 6).
    expect_rejected(&h, &gw, "timeout", 1.0);
}

#[test]
fn session_timeout_ends_even_a_busy_session() {
    let h = Harness::with(|c| c.smtp_extra.push("session_timeout = \"2s\"".into()));
    let gw = h.start();
    let since = Instant::now();
    let mut c = SmtpClient::ready(gw.smtp);
    let mut other = None;
    let last = loop {
        std::thread::sleep(Duration::from_millis(250)); // pacing
        let r = c.cmd("NOOP");
        if r.code != 250 || since.elapsed() > Duration::from_secs(6) {
            break r;
        }
        if other.is_none() && since.elapsed() > Duration::from_secs(1) {
            other = Some(SmtpClient::ready(gw.smtp)); // opened later: its own deadline
        }
    };
    last.expect(421, "4.4.2");
    let took = since.elapsed();
    assert!(took >= Duration::from_millis(1900) && took <= Duration::from_secs(4), "421 after {took:?}, expected ~2 s");
    assert!(c.is_closed());
    expect_rejected(&h, &gw, "timeout", 1.0);
    // The session opened a second later is still within its own two seconds.
    let mut o = other.expect("second session");
    o.send_mail("ada@sender.test", &["inbox@example.test"], BODY);
    h.wait_requests(1, WAIT);
}
