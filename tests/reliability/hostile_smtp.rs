//! Hostile SMTP: each attack answered with the right code, the gateway's memory flat (VmRSS), and other
//! sessions served meanwhile. The spine's smtp_policy.rs has the polite versions (order, limits,
//! pipelining, the session cap); these are the abusive ones.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// Sends `bytes` from a thread (so replies can be read meanwhile); joined by the caller.
fn send_in_background(w: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<std::io::Result<()>> {
    let mut w = w.try_clone().unwrap();
    std::thread::spawn(move || w.write_all(&bytes))
}

/// The data as the server must store it: a line (after CRLF) that starts with a dot loses that dot
/// (RFC 5321 4.5.2); nothing else changes.
fn unstuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &data[i - 2..i] == b"\r\n");
        if !(line_start && b == b'.') {
            out.push(b);
        }
    }
    out
}

/// A message for `inbox@example.test` is accepted and delivered while something else is going on.
#[track_caller]
fn served_meanwhile(h: &Harness, gw: &Gateway, during: &str) {
    let t = Instant::now();
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(15)).unwrap();
    assert!(c.hello(), "greeting/EHLO during {during}");
    let raw = message(&format!("meanwhile-{}@probe.test", during.replace(' ', "-")), during, 300);
    let (code, text) = c.mail("inbox@example.test", &raw).unwrap();
    assert_eq!(code, 250, "a normal message during {during}: {text}");
    assert!(t.elapsed() < Duration::from_secs(5), "a normal message took {:?} during {during}", t.elapsed());
    let id = text.split("queued as ").nth(1).unwrap().trim().to_string();
    h.wait_until(SHORT, &format!("delivery of the message sent during {during}"), || {
        !h.rx.requests_for_message(&id).is_empty()
    });
}

#[test]
fn open_relay_attempts_are_refused() {
    let h = harness(&["max_errors = 1000"], |_| {});
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<spammer@evil.test>").expect(250, "2.1.0");
    // The README's promise: foreign domains and relaying tricks are refused with 550 5.7.1.
    let relay = [
        "<victim@evil.test>",
        "<victim@evil.test.>",
        "<victim@EVIL.test>",
        "<victim@example.test.evil.test>",
        "<victim@sub.example.test>",
        "<victim@xn--exmple-cua.test>",
        "<victim@exаmple.test>", // Cyrillic а
        "<victim%evil.test@example.test>",
        "<victim%evil.test%example.test@example.test>",
        "<evil.test!victim@example.test>",
        "<\"victim@evil.test\"@example.test>",
        "<\"victim%evil.test\"@example.test>",
        "<\"@evil.test\"@example.test>",
        "<@example.test:victim@evil.test>",
        "<@a.test,@example.test:victim@evil.test>",
    ];
    let mut refused = Vec::new();
    let mut wrong = Vec::new();
    for rcpt in relay {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        refused.push(format!("{rcpt} -> {} {}", r.code, r.enhanced()));
        if (r.code, r.enhanced()) != (550, "5.7.1") {
            wrong.push(format!("RCPT TO:{rcpt} -> `{r}`"));
        }
    }
    assert!(wrong.is_empty(), "must be refused as relaying with 550 5.7.1:\n{}", wrong.join("\n"));
    // Malformed spellings: refused one way or another (syntax or relay), never accepted.
    for rcpt in [
        "<victim@evil.test> NOTIFY=NEVER",
        "<victim@example.test@evil.test>",
        "<victim@[127.0.0.1]>",
        "<victim@[IPv6:::1]>",
        "<victim(comment)@evil.test>",
        "<\"victim\\@evil.test\"@example.test>",
        "<victim@example.test%evil.test>",
        "<victim@>",
        "<@example.test>",
        "<example.test>",
        "<victim@evil.test\u{0}.example.test>",
        "victim@evil.test",
        "<<victim@evil.test>>",
        "<victim@evil.test",
    ] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        refused.push(format!("{rcpt:?} -> {} {}", r.code, r.enhanced()));
        assert!(r.code >= 500, "RCPT TO:{rcpt:?} must be refused: `{r}`");
    }
    eprintln!("open relay: {} attempts refused", refused.len());
    c.cmd("DATA").expect(503, "5.5.1");
    assert!(stored_messages(&h).is_empty(), "nothing may be stored for refused recipients");

    // Mixed with a real recipient, only the real one is in the event.
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<victim%evil.test@example.test>").expect(550, "5.7.1");
    let id = c.data(b"Subject: mixed\r\n\r\nx\r\n").queued_id();
    h.wait_until(SHORT, "the event", || !h.rx.requests_for_message(&id).is_empty());
    let ev = h.rx.requests_for_message(&id)[0].json();
    assert_eq!(ev["message"]["smtp"]["rcpt_to"], serde_json::json!(["inbox@example.test"]));
}

/// README: "Recipients at domains not listed in `[[domains]]` are refused at RCPT with `550 5.7.1`, as
/// are relaying tricks (`user%other@`, `host!user@`, source routes)".
#[test]
fn source_routed_recipients_are_refused_as_the_readme_promises() {
    let h = harness(&[], |_| {});
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<spammer@evil.test>").expect(250, "2.1.0");
    let mut wrong = Vec::new();
    for rcpt in ["<@evil.test:victim@example.test>", "<@a.test,@b.test:victim@example.test>"] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        if (r.code, r.enhanced()) != (550, "5.7.1") {
            wrong.push(format!("RCPT TO:{rcpt} -> `{r}`"));
        }
    }
    if !wrong.is_empty() {
        // Where such a recipient would go: shown in the failure so the fix (code or README) is clear.
        let shown = match c.data(b"Subject: source route\r\n\r\nx\r\n") {
            r if r.code == 250 => {
                let id = r.queued_id();
                h.wait_until(SHORT, "the event", || !h.rx.requests_for_message(&id).is_empty());
                h.rx.requests_for_message(&id)[0].json()["message"]["smtp"]["rcpt_to"].to_string()
            }
            r => format!("(DATA: {r})"),
        };
        panic!(
            "source routes must be refused with 550 5.7.1:\n{}\nthe message was accepted for {shown}",
            wrong.join("\n")
        );
    }
}

#[test]
fn smuggled_messages_stay_inside_the_first() {
    let h = harness(&[], |_| {});
    let gw = h.start();
    let smuggled = "MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\
Subject: SMUGGLED\r\n\r\nsmuggled body\r\n";
    let endings: [(&str, &str); 6] = [
        ("LF.CRLF", "\n.\r\n"),
        ("CR.CR", "\r.\r"),
        ("CRLF.LF", "\r\n.\n"),
        ("LF.LF", "\n.\n"),
        ("CRLF.CR", "\r\n.\r"),
        ("CR.CRLF", "\r.\r\n"),
    ];
    let mut c = SmtpClient::ready(gw.smtp);
    for (name, fake_end) in endings {
        let body = format!("Subject: carrier {name}\r\n\r\nbefore{fake_end}{smuggled}{fake_end}after\r\n");
        c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
        c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
        assert_eq!(c.cmd("DATA").code, 354);
        // Raw, not dot-stuffed: the fake endings go on the wire exactly as written.
        c.send_raw(format!("{body}.\r\nNOOP\r\n").as_bytes());
        let id = c.read_reply().queued_id();
        // The very next reply is NOOP's: no reply to a smuggled command came in between.
        c.read_reply().expect(250, "2.0.0");
        let raw = h.raw(&id);
        assert_eq!(
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&unstuff(body.as_bytes())),
            "{name}: the stored message is the whole data, smuggled part included"
        );
    }
    let stored = stored_messages(&h);
    assert_eq!(stored.len(), endings.len(), "one message per transaction, nothing smuggled: {stored:?}");
    assert!(stored.iter().all(|(_, _, rcpt)| rcpt == "[\"inbox@example.test\"]"), "{stored:?}");
    still_serving(&h, &gw, "smuggling");
}

#[test]
fn over_long_lines_and_a_stream_without_newline_keep_memory_flat() {
    let h = harness(&["max_message_size = \"4MB\""], |_| {});
    let gw = h.start();
    still_serving(&h, &gw, "start");
    let rss0 = gw.rss_kib();
    let mut c = SmtpClient::ready(gw.smtp);
    for len in [4097, 65_536, 1 << 20] {
        c.cmd(&format!("NOOP {}", "x".repeat(len))).expect(500, "5.5.2");
        c.cmd("NOOP").expect(250, "2.0.0");
    }
    c.cmd(&format!("MAIL FROM:<{}@sender.test>", "a".repeat(10_000))).expect(500, "5.5.2");

    // A stream with no newline at all, as a command: discarded as it comes.
    let n: usize = scale(20, 200) << 20;
    let mut w = Wire::connect(gw.smtp, Duration::from_secs(120)).unwrap();
    assert!(w.hello());
    let chunk = vec![b'A'; 1 << 20];
    let writer = {
        let mut s = w.stream().try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..(n >> 20) {
                s.write_all(&chunk)?;
            }
            s.write_all(b"\r\n")
        })
    };
    served_meanwhile(&h, &gw, "a stream with no newline");
    writer.join().unwrap().unwrap();
    let r = w.reply().unwrap();
    assert_eq!(r.0, 500, "after {} MiB without a newline: {}", n >> 20, r.1);
    assert_eq!(w.cmd("NOOP").unwrap().0, 250);
    assert_flat(&gw, rss0, 16, &format!("a {} MiB command line", n >> 20));

    // The same inside DATA: read to the end and refused (552), bounded by max_message_size (4 MB).
    let rss1 = gw.rss_kib();
    assert_eq!(w.cmd("MAIL FROM:<a@sender.test>").unwrap().0, 250);
    assert_eq!(w.cmd("RCPT TO:<inbox@example.test>").unwrap().0, 250);
    assert_eq!(w.cmd("DATA").unwrap().0, 354);
    let writer = {
        let mut s = w.stream().try_clone().unwrap();
        let chunk = vec![b'B'; 1 << 20];
        std::thread::spawn(move || {
            for _ in 0..(n >> 20) {
                s.write_all(&chunk)?;
            }
            s.write_all(b"\r\n.\r\n")
        })
    };
    writer.join().unwrap().unwrap();
    let (code, text) = w.reply().unwrap();
    assert!(code == 552 && text.contains("5.3.4"), "{} MiB of data without a newline: {text}", n >> 20);
    assert_eq!(w.cmd("NOOP").unwrap().0, 250);
    assert_flat(&gw, rss1, 24, &format!("{} MiB of data without a newline (limit 4 MB)", n >> 20));
    assert!(stored_messages(&h).iter().all(|(_, size, _)| *size < 1_000_000), "nothing big was stored");

    // Long data lines are content: kept unchanged.
    let mut body = b"Subject: long line\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'L', 200_000));
    body.extend_from_slice(b"\r\n");
    let id = c.send_mail("a@sender.test", &["inbox@example.test"], &body);
    assert_eq!(h.raw(&id), body);
    still_serving(&h, &gw, "over-long lines");
}

#[test]
fn slowloris_is_cut_off_by_the_timeouts() {
    let h = harness(&["command_timeout = \"700ms\"", "data_timeout = \"700ms\"", "session_timeout = \"4s\""], |_| {});
    let gw = h.start();
    let rss0 = gw.rss_kib();

    // One byte per second against a 700 ms command timeout: 421 4.4.2 at the first gap.
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(10)).unwrap();
    assert_eq!(c.reply().unwrap().0, 220);
    let t = Instant::now();
    for b in b"EHLO slow.test\r\n" {
        if c.send(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1)); // deliberate: one byte per second
        if t.elapsed() > Duration::from_millis(1500) {
            break;
        }
    }
    let (code, text) = c.reply().unwrap();
    assert!(code == 421 && text.contains("4.4.2"), "slowloris command: `{text}`");

    // The same inside DATA: the partial message is dropped.
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(10)).unwrap();
    assert!(c.hello());
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").unwrap().0, 250);
    assert_eq!(c.cmd("RCPT TO:<inbox@example.test>").unwrap().0, 250);
    assert_eq!(c.cmd("DATA").unwrap().0, 354);
    c.send(b"S").unwrap();
    std::thread::sleep(Duration::from_secs(1)); // deliberate: one byte per second
    let _ = c.send(b"u");
    let (code, text) = c.reply().unwrap();
    assert!(code == 421 && text.contains("4.4.2"), "slowloris data: `{text}`");

    // Bytes just fast enough for the command timeout: the session timeout (4 s) ends it. Twenty at once,
    // and a normal client is served meanwhile.
    let started = Instant::now();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = gw.smtp;
            std::thread::spawn(move || {
                let mut c = Wire::connect(addr, Duration::from_secs(15)).unwrap();
                assert_eq!(c.reply().unwrap().0, 220);
                let t = Instant::now();
                // Until the server has closed (a write fails) or 10 s have passed.
                for b in b"NOOP\r\n".iter().cycle() {
                    if c.send(&[*b]).is_err() || t.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500)); // deliberate: slower than any client
                }
                let mut last = 0;
                while let Ok((code, _)) = c.reply() {
                    last = code;
                }
                (last, t.elapsed())
            })
        })
        .collect();
    served_meanwhile(&h, &gw, "twenty slowloris sessions");
    for s in slow {
        let (code, took) = s.join().unwrap();
        assert_eq!(code, 421, "a slowloris session kept under the command timeout must end with 421");
        assert!(took < Duration::from_secs(8), "session_timeout 4s ended it only after {took:?}");
    }
    eprintln!("slowloris: 20 sessions ended by session_timeout within {:?}", started.elapsed());
    assert_flat(&gw, rss0, 16, "slowloris");
    assert!(stored_messages(&h).len() == 1, "only the normal message is stored");
}

#[test]
fn thousands_of_recipients_get_452_past_the_limit() {
    let h = harness(&[], |_| {});
    let gw = h.start();
    still_serving(&h, &gw, "start");
    let rss0 = gw.rss_kib();
    let n = scale(5_000, 100_000);
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(30)).unwrap();
    assert!(c.hello());
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").unwrap().0, 250);
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(format!("RCPT TO:<user{i}@example.test>\r\n").as_bytes());
    }
    let writer = send_in_background(c.stream(), batch);
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..n {
        let (code, text) = c.reply().unwrap();
        let want = if i < 100 { 250 } else { 452 };
        assert_eq!(code, want, "reply to RCPT #{}: {text}", i + 1);
        *codes.entry(code).or_insert(0) += 1;
    }
    writer.join().unwrap().unwrap();
    let (code, text) = c.data(b"Subject: many\r\n\r\nx\r\n").unwrap();
    assert_eq!(code, 250, "{text}");
    eprintln!("recipients: {n} RCPTs answered {codes:?}");
    let stored = stored_messages(&h);
    let rcpts: Vec<String> = serde_json::from_str(&stored.last().unwrap().2).unwrap();
    assert_eq!(rcpts.len(), 100, "max_recipients (100) recipients are kept");

    // Thousands of foreign recipients: each is an error; at max_errors (20) the session is closed.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").unwrap().0, 250);
    let batch: Vec<u8> = (0..n).flat_map(|i| format!("RCPT TO:<v{i}@evil.test>\r\n").into_bytes()).collect();
    let writer = send_in_background(c.stream(), batch);
    let mut replies = Vec::new();
    while let Ok((code, _)) = c.reply() {
        replies.push(code);
    }
    let _ = writer.join().unwrap(); // the server closes the connection under the writer
    assert_eq!(replies.len(), 21, "20 refusals, then 421 and close: {replies:?}");
    assert!(replies[..20].iter().all(|&c| c == 550) && replies[20] == 421, "{replies:?}");
    assert_flat(&gw, rss0, 32, &format!("{n} recipients"));
    still_serving(&h, &gw, "thousands of recipients");
}

#[test]
fn commands_before_helo_and_unknown_verbs_are_refused() {
    let h = harness(&["max_errors = 1000"], |_| {});
    let gw = h.start();
    let (mut c, _) = SmtpClient::connect(gw.smtp);
    c.cmd("MAIL FROM:<a@sender.test>").expect(503, "5.5.1");
    c.cmd("RCPT TO:<inbox@example.test>").expect(503, "5.5.1");
    c.cmd("DATA").expect(503, "5.5.1");
    // What follows a refused DATA is commands, never a message.
    c.send_raw(b"Subject: not a message\r\n\r\nbody\r\n.\r\n");
    for _ in 0..4 {
        assert!(c.read_reply().code >= 500);
    }
    for verb in [
        "BDAT 10 LAST",
        "AUTH PLAIN AGFAYQ==",
        "STARTTLS",
        "ETRN example.test",
        "EXPN all",
        "TURN",
        "XCLIENT ADDR=1.2.3.4",
    ] {
        let r = c.cmd(verb);
        assert!(r.code >= 500, "{verb} before HELO: `{r}`");
    }
    c.cmd("NOOP").expect(250, "2.0.0");
    c.cmd("EHLO late.test");
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    assert!(stored_messages(&h).is_empty());
}

#[test]
fn pipelining_abuse_is_answered_in_order_with_flat_memory() {
    let h = harness(&[], |_| {});
    let gw = h.start();
    still_serving(&h, &gw, "start");
    let rss0 = gw.rss_kib();

    // Thousands of commands in one write, the replies not read until all are sent.
    let n = scale(20_000, 500_000);
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(30)).unwrap();
    assert!(c.hello());
    let batch: Vec<u8> =
        (0..n).flat_map(|i| if i % 2 == 0 { &b"NOOP\r\n"[..] } else { &b"RSET\r\n"[..] }).copied().collect();
    let writer = send_in_background(c.stream(), batch);
    served_meanwhile(&h, &gw, "a pipelining flood");
    for i in 0..n {
        let (code, text) = c.reply().unwrap();
        assert!(code == 250 && text.contains("2.0.0"), "reply #{}: {text}", i + 1);
    }
    writer.join().unwrap().unwrap();

    // Whole transactions pipelined without waiting for 354: each one a message, in order.
    let m = scale(50, 1000);
    let mut batch = Vec::new();
    for i in 0..m {
        batch.extend_from_slice(b"MAIL FROM:<p@sender.test>\r\nRCPT TO:<inbox@example.test>\r\nDATA\r\n");
        batch.extend_from_slice(format!("Subject: pipelined {i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes());
    }
    batch.extend_from_slice(b"QUIT\r\nMAIL FROM:<after-quit@sender.test>\r\n");
    let before = stored_messages(&h).len();
    let writer = send_in_background(c.stream(), batch);
    for i in 0..m {
        for want in [250, 250, 354, 250] {
            let (code, text) = c.reply().unwrap();
            assert_eq!(code, want, "transaction {i}: {text}");
        }
    }
    assert_eq!(c.reply().unwrap().0, 221);
    assert!(c.reply().is_err(), "nothing after QUIT is answered");
    writer.join().unwrap().unwrap();
    assert_eq!(stored_messages(&h).len(), before + m);
    assert_flat(&gw, rss0, 32, &format!("{n} pipelined commands and {m} pipelined transactions"));
    still_serving(&h, &gw, "pipelining abuse");
}

#[test]
fn binary_garbage_gets_errors_then_421() {
    let seed = seed("binary_garbage_gets_errors_then_421");
    let mut rng = Rng::new(seed);
    let h = harness(&[], |_| {});
    let gw = h.start();
    let rss0 = gw.rss_kib();
    for round in 0..scale(20, 500) {
        let len = rng.range(1, 1 << 20) as usize;
        let mut garbage = rng.bytes(len);
        if round % 2 == 0 {
            // Lines of garbage, so each one is a (bad) command.
            for i in (0..garbage.len()).step_by(rng.range(1, 200) as usize) {
                garbage[i] = b'\n';
            }
        }
        let mut s = TcpStream::connect(gw.smtp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let writer = {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || w.write_all(&garbage).and_then(|()| w.shutdown(std::net::Shutdown::Write)))
        };
        let mut replies = Vec::new();
        let _ = s.read_to_end(&mut replies);
        let _ = writer.join();
        let text = String::from_utf8_lossy(&replies).into_owned();
        for line in text.split_terminator("\r\n") {
            assert!(
                line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "malformed reply line {line:?} (seed {seed})"
            );
            let code: u16 = line[..3].parse().unwrap();
            assert!(
                matches!(code, 220 | 250 | 252 | 214 | 221 | 354 | 421 | 500..=555),
                "reply {line:?} (seed {seed})"
            );
        }
        assert!(!text.contains("queued as"), "garbage was accepted as a message (seed {seed}): {text}");
    }
    assert_flat(&gw, rss0, 32, "binary garbage");
    still_serving(&h, &gw, "binary garbage");
}

/// Opens `n` connections at once from `from` and reads each greeting: (220s, 421s).
fn flood(addr: SocketAddr, from: &str, n: usize) -> (Vec<TcpStream>, usize, usize) {
    let mut held = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..n {
        let s = socket_from(from.parse().unwrap(), addr);
        held.push(s);
    }
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut g = [0u8; 3];
        match s.read_exact(&mut g) {
            Ok(()) if &g == b"220" => ok += 1,
            Ok(()) if &g == b"421" => refused += 1,
            other => panic!("greeting: {other:?} {g:?}"),
        }
    }
    (held, ok, refused)
}

#[test]
fn a_connection_flood_gets_421_beyond_the_limits() {
    // The flood comes from loopback, which trusted_networks exempts by default.
    let h = harness(&["max_sessions = 40", "max_sessions_per_ip = 10", "trusted_networks = []"], |_| {});
    let gw = h.start();
    still_serving(&h, &gw, "start");
    let rss0 = gw.rss_kib();

    // One address: 10 sessions, the rest refused; another address is still served.
    let n = scale(300, 5000);
    let (held, ok, refused) = flood(gw.smtp, "127.0.0.1", n);
    assert_eq!((ok, refused), (10, n - 10), "per-IP cap of 10 with {n} connections from one address");
    let mut other = Wire::connect_from("127.0.0.2", gw.smtp);
    assert!(other.hello(), "another address during the flood");
    let raw = message("flood@probe.test", "during the flood", 300);
    assert_eq!(other.mail("inbox@example.test", &raw).unwrap().0, 250);

    // Many addresses: max_sessions (40) in all, the rest refused.
    let mut all = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for i in 3..13 {
        let (h2, o, r) = flood(gw.smtp, &format!("127.0.0.{i}"), 10);
        all.extend(h2);
        ok += o;
        refused += r;
    }
    // 10 from .1, 1 from .2, and now 29 more fit under max_sessions = 40.
    assert_eq!((ok, refused), (29, 71), "max_sessions = 40 across addresses");
    // Sessions that declare the largest size and start DATA cost no memory until data arrives.
    let mut declared = Vec::new();
    drop(held);
    drop(all);
    drop(other);
    h.wait_until(Duration::from_secs(10), "the freed slots to be usable", || {
        let mut c = Wire::connect(gw.smtp, Duration::from_secs(5)).unwrap();
        c.hello()
    });
    for _ in 0..9 {
        let mut c = Wire::connect(gw.smtp, Duration::from_secs(15)).unwrap();
        assert!(c.hello());
        assert_eq!(c.cmd("MAIL FROM:<a@sender.test> SIZE=25000000").unwrap().0, 250);
        assert_eq!(c.cmd("RCPT TO:<inbox@example.test>").unwrap().0, 250);
        assert_eq!(c.cmd("DATA").unwrap().0, 354);
        declared.push(c);
    }
    assert_flat(&gw, rss0, 32, &format!("a flood of {n} connections and 9 sessions in DATA declaring 25 MB"));
    drop(declared);
    h.wait_until(Duration::from_secs(10), "slots back after the flood", || {
        Wire::connect(gw.smtp, Duration::from_secs(5)).is_ok_and(|mut c| c.hello())
    });
    still_serving(&h, &gw, "a connection flood");
}
