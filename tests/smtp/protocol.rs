//! The SMTP session's replies: greeting and capabilities, command order, recipient policy, size limits,
//! line limits, pipelining, the cap on concurrent sessions, idle timeouts, and a sink that fails.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use crate::{HOSTNAME, Server};

#[test]
fn greeting_and_ehlo_capabilities() {
    let s = Server::start(|cfg| cfg.max_message_size = 10_000);
    let (mut c, greeting) = SmtpClient::connect(s.addr);
    assert_eq!(greeting.code, 220, "greeting: {greeting}");
    assert!(greeting.text().starts_with(HOSTNAME), "greeting names the hostname: {greeting}");
    assert!(greeting.text().contains("ESMTP"), "greeting: {greeting}");

    let ehlo = c.cmd("EHLO client.test");
    assert_eq!(ehlo.code, 250, "EHLO: {ehlo}");
    let caps: Vec<String> = ehlo.lines[1..].iter().map(|l| l.to_ascii_uppercase()).collect();
    for cap in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(caps.iter().any(|l| l == cap), "EHLO must advertise {cap}: {ehlo}");
    }
    assert!(!caps.iter().any(|l| l == "STARTTLS"), "no TLS configured, no STARTTLS: {ehlo}");
    let size = ehlo.size_limit();
    assert!((10_000..=10_240).contains(&size), "SIZE must be max_message_size 10KB, got {size}");

    c.cmd("NOOP").expect(250, "2.0.0");
    c.cmd("RSET").expect(250, "2.0.0");
    c.cmd("VRFY someone@example.test").expect(252, "2.5.0");
    c.cmd("XYZZY").expect(500, "5.5.1");
    c.cmd("HELO again.test");
    c.cmd("QUIT").expect(221, "2.0.0");
    assert!(c.is_closed(), "connection must close after QUIT");
}

#[test]
fn commands_out_of_order_get_503() {
    let s = Server::basic();
    let (mut c, _) = SmtpClient::connect(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(503, "5.5.1");
    c.cmd("RCPT TO:<b@example.test>").expect(503, "5.5.1");
    c.cmd("EHLO client.test");
    c.cmd("RCPT TO:<b@example.test>").expect(503, "5.5.1");
    c.cmd("DATA").expect(503, "5.5.1");
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("DATA").expect(503, "5.5.1");
    // A second MAIL inside a transaction is out of order too.
    c.cmd("MAIL FROM:<a@sender.test>").expect(503, "5.5.1");
    c.cmd("RSET").expect(250, "2.0.0");
    c.cmd("RCPT TO:<b@example.test>").expect(503, "5.5.1");
    assert!(s.sink.accepted().is_empty());
}

#[test]
fn syntax_errors_get_501() {
    let s = Server::basic();
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:no-brackets-here and junk").expect(501, "5.5.4");
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:nobrackets@example.test").expect(501, "5.5.4");
}

#[test]
fn rcpt_for_unknown_domain_is_550_never_an_open_relay() {
    let s = Server::basic();
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<victim@evil.test>").expect(550, "5.7.1");
    c.cmd("RCPT TO:<victim@sub.example.test>").expect(550, "5.7.1");
    c.cmd("RCPT TO:<victim@example.test.evil.test>").expect(550, "5.7.1");
    let data = c.cmd("DATA");
    assert!(data.code >= 500, "DATA with no accepted recipient must be refused, got `{data}`");
    assert_eq!(s.rejected("relay"), 3);
    // Domains compare case-insensitively.
    c.cmd("RCPT TO:<Someone@EXAMPLE.Test>").expect(250, "2.1.5");
    c.data(b"Subject: case\r\n\r\nx\r\n").queued_id();
    let accepted = s.sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].0.rcpt_to, ["Someone@EXAMPLE.Test"], "rejected recipients are not listed");
}

#[test]
fn too_many_recipients_get_452() {
    let s = Server::start(|cfg| cfg.max_recipients = 2);
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<one@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<two@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<three@example.test>").expect(452, "4.5.3");
    c.data(b"Subject: two of three\r\n\r\nx\r\n").queued_id();
    assert_eq!(s.sink.accepted()[0].0.rcpt_to, ["one@example.test", "two@example.test"]);
    assert_eq!(s.rejected("too_many_recipients"), 1);
}

#[test]
fn mail_from_size_over_max_is_552() {
    let s = Server::start(|cfg| cfg.max_message_size = 10_000);
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test> SIZE=20000").expect(552, "5.3.4");
    c.cmd("MAIL FROM:<a@sender.test> SIZE=5000").expect(250, "2.1.0");
    c.cmd("RSET").expect(250, "2.0.0");
    c.cmd("MAIL FROM:<> SIZE=100 BODY=8BITMIME SMTPUTF8").expect(250, "2.1.0");
    assert_eq!(s.rejected("size"), 1);
}

#[test]
fn data_over_max_size_is_552_after_the_dot_and_the_sink_accepted_nothing() {
    let s = Server::start(|cfg| cfg.max_message_size = 10_000);
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<big@example.test>").expect(250, "2.1.5");
    let mut body = b"Subject: too big\r\n\r\n".to_vec();
    while body.len() < 20_000 {
        body.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    c.data(&body).expect(552, "5.3.4");
    assert!(s.sink.accepted().is_empty(), "an oversized message must not reach the sink");
    assert_eq!(s.rejected("size"), 1);

    // The session is still usable afterwards.
    let small = b"Subject: small\r\n\r\nok\r\n";
    c.send_mail("a@sender.test", &["small@example.test"], small);
    let accepted = s.sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].1, small);
}

#[test]
fn command_line_over_4096_octets_is_500() {
    let s = Server::basic();
    let mut c = SmtpClient::ready(s.addr);
    let long = format!("NOOP {}", "x".repeat(5000));
    c.cmd(&long).expect(500, "5.5.2");
    // One reply per line: the next command gets its own answer.
    c.cmd("NOOP").expect(250, "2.0.0");
    let long_rcpt = format!("RCPT TO:<{}@example.test>", "y".repeat(4200));
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd(&long_rcpt).expect(500, "5.5.2");
    c.cmd("NOOP").expect(250, "2.0.0");
}

#[test]
fn pipelined_commands_get_replies_in_order() {
    let s = Server::basic();
    let mut c = SmtpClient::ready(s.addr);
    c.send_raw(b"MAIL FROM:<p@sender.test>\r\nRCPT TO:<p1@example.test>\r\nRCPT TO:<p@evil.test>\r\nRCPT TO:<p2@example.test>\r\nDATA\r\n");
    c.read_reply().expect(250, "2.1.0");
    c.read_reply().expect(250, "2.1.5");
    c.read_reply().expect(550, "5.7.1");
    c.read_reply().expect(250, "2.1.5");
    assert_eq!(c.read_reply().code, 354);
    c.send_raw(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\n");
    c.read_reply().queued_id();
    c.read_reply().expect(250, "2.0.0");
    let accepted = s.sink.accepted();
    assert_eq!(accepted[0].0.rcpt_to, ["p1@example.test", "p2@example.test"]);
    assert_eq!(accepted[0].1, b"Subject: pipelined\r\n\r\nbody\r\n");
}

#[test]
fn sessions_over_max_sessions_get_421() {
    let s = Server::start(|cfg| cfg.max_sessions = 2);
    let (mut a, ga) = SmtpClient::connect(s.addr);
    let (_b, gb) = SmtpClient::connect(s.addr);
    assert_eq!(ga.code, 220);
    assert_eq!(gb.code, 220);
    let (mut third, g3) = SmtpClient::connect(s.addr);
    g3.expect(421, "4.7.0");
    assert!(third.is_closed(), "the refused connection must be closed");
    assert_eq!(s.rejected("too_many_sessions"), 1);

    // A freed slot is usable again.
    a.cmd("QUIT").expect(221, "2.0.0");
    drop(a);
    wait_for(Duration::from_secs(5), "a new session to be greeted with 220 after one ended", String::new, || {
        let (_c, g) = SmtpClient::connect(s.addr);
        g.code == 220
    });
}

#[test]
fn idle_sessions_time_out_with_421() {
    let s = Server::start(|cfg| {
        cfg.command_timeout = Duration::from_millis(300);
        cfg.data_timeout = Duration::from_millis(300);
    });

    // Idle between commands: the server speaks first, then closes.
    let mut c = SmtpClient::ready(s.addr);
    let started = std::time::Instant::now();
    c.read_reply().expect(421, "4.4.2");
    assert!(started.elapsed() < Duration::from_secs(5), "command_timeout 300ms took {:?}", started.elapsed());
    assert!(c.is_closed(), "the connection must close after the timeout");

    // Idle in the middle of DATA: the partial message never reaches the sink.
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<slow@example.test>").expect(250, "2.1.5");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(b"Subject: never finished\r\n\r\npartial");
    c.read_reply().expect(421, "4.4.2");
    assert!(c.is_closed());
    assert!(s.sink.accepted().is_empty(), "a timed-out DATA must not reach the sink");
    assert_eq!(s.rejected("timeout"), 2);
}

#[test]
fn a_sink_that_fails_gets_its_reply_and_the_session_goes_on() {
    let s = Server::basic();
    s.sink.fail_accept.store(true, Ordering::SeqCst);
    let mut c = SmtpClient::ready(s.addr);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    c.data(b"Subject: refused\r\n\r\nx\r\n").expect(451, "4.3.0");
    assert_eq!(s.rejected("store_failed"), 1);
    // The transaction is over: RCPT needs a new MAIL.
    c.cmd("RCPT TO:<inbox@example.test>").expect(503, "5.5.1");

    s.sink.fail_accept.store(false, Ordering::SeqCst);
    c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: again\r\n\r\nx\r\n");
    let accepted = s.sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].0.mail_from, "a@sender.test");
    assert_eq!(accepted[0].0.helo, "client.test");
    assert_eq!(accepted[0].1, b"Subject: again\r\n\r\nx\r\n");
}
