//! A gateway killed with SIGKILL while mail arrives, then restarted on the same data_dir: every
//! message that got a 250 has its stream event, once, and every consumer's ack survives.

use std::collections::BTreeSet;

use crate::common::*;
use crate::support::*;

#[test]
fn sigkill_loses_no_streamed_event_of_a_250_and_no_ack() {
    let h = harness();
    let gw = h.start();
    let before = send_many(&gw, "before", 5);
    let acked = client(&gw, "ws", &["--consumer", "w1", "--count", "5"]);
    assert_eq!(acked.message_ids(), before);

    // Mail keeps arriving while the gateway dies: what got 250 must be in the stream.
    let smtp = gw.smtp;
    let sender = std::thread::spawn(move || {
        let mut got_250 = Vec::new();
        let Ok(mut c) = Wire::connect(smtp, std::time::Duration::from_secs(10)) else { return got_250 };
        if !c.hello() {
            return got_250;
        }
        for i in 0.. {
            let raw = format!("Subject: during-{i}\r\n\r\nbody\r\n");
            match c.mail("inbox@example.test", raw.as_bytes()) {
                Ok((250, text)) => got_250.push(text.split("queued as ").nth(1).unwrap_or("").trim().to_string()),
                _ => return got_250,
            }
            if c.cmd("RSET").is_err() {
                return got_250;
            }
        }
        got_250
    });
    h.wait_until(SHORT, "some mail during the crash window", || poll_count(&gw) >= 5 + 10);
    gw.signal(libc::SIGKILL);
    let during = sender.join().unwrap();
    assert!(!during.is_empty());
    drop(gw);

    let gw = h.start();
    let end = send(&gw, "after-restart");
    let all = client(&gw, "poll", &["--until-subject", "after-restart", "--limit", "100"]);
    let ids = all.message_ids();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice");
    for id in before.iter().chain(&during).chain([&end]) {
        assert!(unique.contains(id), "{id} got 250 and is not in the stream");
    }
    // The consumer's ack survived: it continues after the 5 it acked.
    let resumed = client(&gw, "ws", &["--consumer", "w1", "--count", "1"]);
    assert_eq!(resumed.message_ids()[0], ids[5]);
}

/// How many events the stream has now (one poll page, at most 100).
fn poll_count(gw: &Gateway) -> usize {
    let got =
        get(&agent(), &format!("{}/poll?limit=100", stream_url(gw)), &[("authorization", &format!("Bearer {TOKEN}"))]);
    serde_json::from_slice::<serde_json::Value>(&got.body).map_or(0, |v| v["data"].as_array().map_or(0, Vec::len))
}
