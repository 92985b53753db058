//! Delivery: failed attempts follow the endpoint's (compressed) retry schedule with the same event id,
//! each failure is recorded with its cause, the CLI can retry while serve runs, and pending or in-flight
//! deliveries survive SIGTERM and SIGKILL.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn send_one(gw: &Gateway, subject: &str) -> String {
    let mut c = SmtpClient::ready(gw.smtp);
    let body = format!("From: <a@sender.test>\r\nTo: <inbox@example.test>\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let id = c.send_mail("a@sender.test", &["inbox@example.test"], body.as_bytes());
    c.cmd("QUIT");
    id
}

#[track_caller]
fn same_event(reqs: &[Request], event_id: &Value) {
    for (i, r) in reqs.iter().enumerate() {
        r.assert_signed(SECRET_A);
        assert_eq!(r.webhook_id(), event_id.as_str().unwrap(), "request {} has another webhook-id", i + 1);
        assert_eq!(r.json()["id"], *event_id, "request {} has another event id in the body", i + 1);
        // Attempts after the first read the event from the store, which keeps raw.base64 apart.
        assert_eq!(r.json()["message"], reqs[0].json()["message"], "request {} has another message", i + 1);
        assert!(r.json()["message"]["raw"]["base64"].is_string(), "request {}: no raw.base64", i + 1);
    }
}

#[test]
fn failed_attempts_follow_the_retry_schedule_then_cli_retry_succeeds() {
    let h = Harness::basic(); // retry = ["0s", "200ms", "400ms"]
    h.rx.set_status(500);
    let gw = h.start();
    let msg_id = send_one(&gw, "retries");

    let reqs = h.wait_requests(3, SHORT);
    let d = h.wait_delivery_status(&msg_id, "failed", SHORT);
    let reqs = if reqs.len() > 3 { reqs } else { h.rx.requests() };
    assert_eq!(reqs.len(), 3, "exactly 3 attempts for a 3-entry schedule");
    same_event(&reqs, &d["event_id"]);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.json()["delivery"]["attempt"], i + 1, "delivery.attempt of request {}", i + 1);
    }
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    assert!(gap1 >= Duration::from_millis(180), "second attempt came {gap1:?} after the first (retry 200ms)");
    assert!(gap2 >= Duration::from_millis(370), "third attempt came {gap2:?} after the second (retry 400ms)");
    assert!(
        gap1 < Duration::from_secs(3) && gap2 < Duration::from_secs(3),
        "schedule not followed: {gap1:?}, {gap2:?}"
    );

    assert_eq!(d["attempts"], 3, "delivery: {d}");
    assert_eq!(d["last_status"], 500, "delivery: {d}");
    assert_eq!(d["next_attempt_at"], Value::Null, "a failed delivery has no next attempt: {d}");
    let dlv = d["id"].as_str().unwrap().to_string();

    let failed = h.deliveries(&["--status", "failed"]);
    assert_eq!(failed.len(), 1, "deliveries list --status failed: {failed:?}");
    assert_eq!(failed[0]["id"], dlv.as_str());
    assert!(h.deliveries(&["--status", "pending"]).is_empty());
    assert!(h.deliveries(&["--status", "succeeded"]).is_empty());

    let shown = h.cli_json(&["deliveries", "show", &dlv, "--json"]);
    assert_eq!(shown["id"], dlv.as_str());
    let log = shown["attempt_log"].as_array().unwrap_or_else(|| panic!("no attempt_log: {shown}"));
    assert_eq!(log.len(), 3, "attempt_log: {log:?}");
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1, "attempt_log[{i}]: {a}");
        assert_eq!(a["http_status"], 500, "attempt_log[{i}]: {a}");
        assert!(a["started_at"].is_string(), "attempt_log[{i}]: {a}");
        assert!(a["duration_ms"].is_u64(), "attempt_log[{i}]: {a}");
        assert!(
            a["response_body"].as_str().is_some_and(|b| b.contains("receiver says 500")),
            "attempt_log[{i}] must keep the first bytes of the response: {a}"
        );
    }
    assert_eq!(h.rx.count(), 3, "no attempt after the schedule ran out");

    // The endpoint recovers; a CLI retry against the running server delivers the same event.
    h.rx.set_status(200);
    let out = h.cli(&["deliveries", "retry", &dlv]);
    out.assert_ok(&h.logs());
    assert!(out.stdout_str().contains(&format!("retry scheduled: {dlv}")), "{}", out.describe());
    let reqs = h.wait_requests(4, Duration::from_secs(5));
    same_event(&reqs[3..], &d["event_id"]);
    let d = h.wait_delivery_status(&msg_id, "succeeded", SHORT);
    assert_eq!(d["attempts"], 4, "delivery: {d}");
    assert_eq!(d["last_status"], 200, "delivery: {d}");
    assert_eq!(h.rx.count(), 4);
    drop(gw);
}

#[test]
fn an_endpoint_never_has_more_requests_in_flight_than_its_concurrency() {
    let h = Harness::with(|c| c.endpoint("app").concurrency = Some(2));
    let answer_after = Duration::from_millis(150);
    h.rx.set_delay(answer_after);
    let gw = h.start();
    let ids: Vec<String> = (0..8).map(|i| send_one(&gw, &format!("burst {i}"))).collect();
    let reqs = h.wait_requests(8, Duration::from_secs(30));

    // Each request is answered `answer_after` after it arrived. With at most two in flight, a third
    // can only be sent once one of the two before it was answered.
    let mut at: Vec<_> = reqs.iter().map(|r| r.at).collect();
    at.sort();
    for (i, w) in at.windows(3).enumerate() {
        assert!(
            w[2] - w[0] >= answer_after,
            "requests {}..{} arrived within {:?}: more than 2 in flight",
            i + 1,
            i + 3,
            w[2] - w[0]
        );
    }
    let mut delivered: Vec<String> =
        reqs.iter().map(|r| r.json()["message"]["id"].as_str().unwrap_or_default().to_string()).collect();
    delivered.sort();
    let mut sent = ids.clone();
    sent.sort();
    assert_eq!(delivered, sent, "each message delivered once");
    for id in &ids {
        h.wait_delivery_status(id, "succeeded", Duration::from_secs(10));
    }
}

#[test]
fn refused_connection_is_a_recorded_failed_attempt_and_retried() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let h = Harness::with(|cfg| {
        let e = cfg.endpoint("app");
        e.url = format!("http://{closed}/hooks/app");
        e.retry = strings(&["0s", "100ms", "100ms"]);
    });
    let gw = h.start();
    let msg_id = send_one(&gw, "refused");
    let d = h.wait_delivery_status(&msg_id, "failed", SHORT);
    assert_eq!(d["attempts"], 3, "delivery: {d}");
    assert_eq!(d["last_status"], Value::Null, "no HTTP status for a refused connection: {d}");
    assert!(d["last_error"].as_str().is_some_and(|e| !e.is_empty()), "the cause must be recorded: {d}");

    let shown = h.cli_json(&["deliveries", "show", d["id"].as_str().unwrap(), "--json"]);
    let log = shown["attempt_log"].as_array().unwrap_or_else(|| panic!("no attempt_log: {shown}"));
    assert_eq!(log.len(), 3, "attempt_log: {log:?}");
    for a in log {
        assert_eq!(a["http_status"], Value::Null, "{a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "attempt without error text: {a}");
    }
    drop(gw);
}

#[test]
fn slow_endpoint_times_out_and_is_retried() {
    let h = Harness::with(|cfg| {
        let e = cfg.endpoint("app");
        e.timeout = "300ms".into();
        e.retry = strings(&["0s", "100ms"]);
    });
    h.rx.set_delay(Duration::from_secs(3));
    let gw = h.start();
    let msg_id = send_one(&gw, "slow");
    let d = h.wait_delivery_status(&msg_id, "failed", SHORT);
    assert_eq!(d["attempts"], 2, "delivery: {d}");
    assert!(d["last_error"].as_str().is_some_and(|e| !e.is_empty()), "the timeout must be recorded: {d}");
    let reqs = h.rx.requests();
    assert_eq!(reqs.len(), 2);
    same_event(&reqs, &d["event_id"]);
    let shown = h.cli_json(&["deliveries", "show", d["id"].as_str().unwrap(), "--json"]);
    for a in shown["attempt_log"].as_array().unwrap() {
        let ms = a["duration_ms"].as_u64().unwrap_or(u64::MAX);
        assert!(ms < 2500, "an attempt with timeout 300ms took {ms} ms: {a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    }
    drop(gw);
}

#[test]
fn sigterm_exits_0_and_a_restart_resumes_the_pending_delivery() {
    let h = Harness::with(|cfg| cfg.endpoint("app").retry = strings(&["0s", "2s"]));
    h.rx.set_status(500);
    let mut gw = h.start();
    let msg_id = send_one(&gw, "restart");
    h.wait_until(SHORT, "the first failed attempt to be recorded", || {
        let d = h.deliveries(&["--message", &msg_id]);
        d.len() == 1 && d[0]["attempts"] == 1
    });
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(SHORT);
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0, got {status}:\n{}", gw.log());

    // The CLI works without a server, and the delivery waits.
    let d = h.deliveries(&["--message", &msg_id]);
    assert_eq!(d[0]["status"], "pending", "{d:?}");
    assert_eq!(d[0]["last_status"], 500, "{d:?}");
    assert!(d[0]["next_attempt_at"].is_string(), "a pending delivery has a next attempt: {d:?}");
    let event_id = d[0]["event_id"].clone();

    h.rx.set_status(200);
    let gw2 = h.start();
    let reqs = h.wait_requests(2, SHORT);
    same_event(&reqs, &event_id);
    let d = h.wait_delivery_status(&msg_id, "succeeded", SHORT);
    assert_eq!(d["attempts"], 2, "{d}");
    assert_eq!(h.rx.count(), 2);
    drop(gw2);
}

#[test]
fn sigkill_during_an_attempt_then_restart_delivers_the_same_event() {
    let h = Harness::with(|cfg| {
        let e = cfg.endpoint("app");
        e.timeout = "30s".into();
        e.retry = strings(&["0s", "1s"]);
    });
    h.rx.set_delay(Duration::from_secs(60)); // the first attempt hangs: it is in flight at the kill
    let mut gw = h.start();
    let msg_id = send_one(&gw, "crash");
    h.wait_requests(1, SHORT);
    gw.signal(libc::SIGKILL);
    gw.wait_exit(SHORT);
    let d = h.deliveries(&["--message", &msg_id]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_ne!(d[0]["status"], "succeeded", "{d:?}");
    let event_id = d[0]["event_id"].clone();

    h.rx.set_delay(Duration::ZERO);
    h.rx.set_status(200);
    let gw2 = h.start();
    // "On start, deliveries left in flight by a crash are resumed": well before the 30 s attempt timeout.
    let reqs = h.wait_requests(2, Duration::from_secs(15));
    same_event(&reqs, &event_id);
    h.wait_delivery_status(&msg_id, "succeeded", SHORT);
    drop(gw2);
}

#[test]
fn sigterm_finishes_the_in_flight_attempt() {
    let h = Harness::with(|cfg| cfg.endpoint("app").retry = strings(&["0s", "10s"]));
    h.rx.set_delay(Duration::from_millis(1500));
    let mut gw = h.start();
    let msg_id = send_one(&gw, "in flight");
    h.wait_requests(1, SHORT);
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(SHORT);
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0, got {status}:\n{}", gw.log());
    let d = h.deliveries(&["--message", &msg_id]);
    assert_eq!(d[0]["status"], "succeeded", "the attempt in flight at SIGTERM must be finished: {d:?}\n{}", gw.log());
    assert_eq!(d[0]["attempts"], 1, "{d:?}");
}

#[test]
fn sigterm_lets_an_open_session_finish_or_answers_421() {
    let h = Harness::basic();
    let mut gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<late@example.test>").expect(250, "2.1.5");
    gw.signal(libc::SIGTERM);
    let r = c.cmd("DATA");
    let stored = match r.code {
        354 => {
            c.send_raw(&data_stream(b"Subject: late\r\n\r\nx\r\n"));
            let r = c.read_reply();
            if r.code == 421 {
                r.expect(421, "4.3.2");
                None
            } else {
                Some(r.queued_id())
            }
        }
        _ => {
            r.expect(421, "4.3.2");
            None
        }
    };
    if stored.is_some() {
        c.send_raw(b"QUIT\r\n");
        if let Ok(r) = c.try_read_reply() {
            assert!(r.code == 221 || r.code == 421, "QUIT after SIGTERM: `{r}`");
        }
    }
    drop(c);
    let status = gw.wait_exit(SHORT);
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0, got {status}:\n{}", gw.log());
    let msgs = h.messages();
    match stored {
        Some(id) => assert!(msgs.iter().any(|m| m["id"] == id.as_str()), "a 250'd message must be stored: {msgs:?}"),
        None => assert!(msgs.is_empty(), "nothing stored after 421: {msgs:?}"),
    }
}
