//! Outage: the endpoint answers 503 for a whole (compressed) retry schedule while the gateway is
//! restarted in the middle of it (SIGTERM) and crashes after it (SIGKILL). Every message ends `failed`
//! with all its attempts recorded, none is missing, and `mxhook deliveries retry` delivers each one
//! with its original event id once the endpoint is back. Messages whose schedule is still running
//! when the endpoint recovers are delivered by the schedule alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::*;

const SCHEDULE: [&str; 4] = ["0s", "400ms", "800ms", "1200ms"];

fn send(gw: &Gateway, n: usize, tag: &str) -> Vec<String> {
    let mut c = SmtpClient::ready(gw.smtp);
    let ids = (0..n)
        .map(|i| {
            let mid = format!("outage-{tag}-{i}@load.test");
            c.send_mail("load@sender.test", &["inbox@example.test"], &message(&mid, &format!("outage {tag} {i}"), 500))
        })
        .collect();
    let _ = c.cmd("QUIT");
    ids
}

#[test]
fn a_dead_endpoint_through_a_whole_schedule_and_restarts_loses_nothing() {
    let h = harness(&[], |cfg| cfg.endpoint("app").retry = strings(&SCHEDULE));
    h.rx.set_status(503);
    let mut gw = h.start();
    let first = send(&gw, scale(10, 100), "a");

    // In the middle of the schedule (every message has had two attempts): a clean restart.
    h.wait_until(SHORT, "two failed attempts of every first-batch message", || {
        first.iter().all(|id| h.rx.requests_for_message(id).len() >= 2)
    });
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM with deliveries pending must exit 0, got {status}\n{}", h.logs());
    gw = h.start();
    let second = send(&gw, scale(10, 100), "b");
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();

    // The schedule runs out for everyone: failed, with every attempt recorded.
    h.wait_until(Duration::from_secs(30), "every delivery to be failed", || {
        deliveries_with(&h, "failed") == all.len() as i64
    });
    // A crash while they are failed changes nothing.
    gw.signal(libc::SIGKILL);
    gw.wait_exit(Duration::from_secs(10));
    gw = h.start();
    let failed = h.deliveries(&["--status", "failed"]);
    let by_msg: BTreeMap<String, Value> =
        failed.iter().map(|d| (d["message_id"].as_str().unwrap().to_string(), d.clone())).collect();
    assert_eq!(by_msg.keys().cloned().collect::<BTreeSet<_>>(), all.iter().cloned().collect(), "failed deliveries");
    for (id, d) in &by_msg {
        assert_eq!(d["attempts"], SCHEDULE.len(), "attempts of {id}: {d}");
        assert_eq!(d["last_status"], 503, "{d}");
        let reqs = h.rx.requests_for_message(id);
        assert!(reqs.len() >= SCHEDULE.len(), "{id}: {} requests for {} recorded attempts", reqs.len(), d["attempts"]);
        assert!(reqs.iter().all(|r| r.webhook_id() == d["event_id"].as_str().unwrap()), "{id}: event id changed");
    }

    // Fresh mail while the endpoint is still down; it comes back after their first attempt, and what is
    // still on its schedule then is delivered by the schedule alone (a message whose schedule ran out
    // first, on a slow machine, joins the failed ones below).
    let third = send(&gw, 5, "c");
    h.wait_until(SHORT, "a failed first attempt of each message of the third batch", || {
        third.iter().all(|id| !h.rx.requests_for_message(id).is_empty())
    });
    h.rx.set_status(200);
    let before_retry = h.rx.count();
    let mut third_failed = Vec::new();
    for id in &third {
        let mut last = String::new();
        h.wait_until(SHORT, &format!("{id} to be delivered by its schedule or to fail"), || {
            let d = h.deliveries(&["--message", id]);
            last = d[0]["status"].as_str().unwrap_or_default().to_string();
            last != "pending"
        });
        if last == "failed" {
            third_failed.push(h.deliveries(&["--message", id])[0].clone());
        }
    }
    let by_schedule = third.len() - third_failed.len();
    assert!(by_schedule > 0, "no message of the third batch was delivered by its schedule after the recovery");

    // The failed ones go out by hand, one CLI call for all of them, same event ids.
    let mut by_msg = by_msg;
    by_msg.extend(third_failed.into_iter().map(|d| (d["message_id"].as_str().unwrap().to_string(), d)));
    let mut args = vec!["deliveries", "retry"];
    args.extend(by_msg.values().map(|d| d["id"].as_str().unwrap()));
    h.cli(&args).assert_ok(&h.logs());
    h.wait_until(Duration::from_secs(30), "every delivery to succeed after the retry", || {
        deliveries_with(&h, "succeeded") == (all.len() + third.len()) as i64
    });
    let after: Vec<Request> = h.rx.requests()[before_retry..].to_vec();
    for (id, d) in &by_msg {
        let ok: Vec<&Request> = after.iter().filter(|r| r.json()["message"]["id"] == id.as_str()).collect();
        assert!(!ok.is_empty(), "{id} was not sent again after the retry");
        assert!(
            ok.iter().all(|r| r.webhook_id() == d["event_id"].as_str().unwrap()),
            "{id}: retry changed the event id"
        );
    }
    let stored: BTreeSet<String> = stored_messages(&h).into_iter().map(|(id, _, _)| id).collect();
    let sent: BTreeSet<String> = all.iter().chain(&third).cloned().collect();
    assert_eq!(stored, sent, "the store holds exactly the acknowledged messages");
    eprintln!(
        "outage: {} messages acknowledged, {} failed after {} attempts each and were retried by hand, {} delivered by \
their schedule; {} webhook requests in all, 0 missing",
        sent.len(),
        by_msg.len(),
        SCHEDULE.len(),
        by_schedule,
        h.rx.count()
    );
}
