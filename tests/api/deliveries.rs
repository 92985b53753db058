//! `/v1/deliveries` and `/v1/replay`: a delivery with every attempt, a retry and a replay keep the
//! event id; a replay re-sends exactly the events of its window.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

#[test]
fn list_one_with_its_attempts_and_a_retry_with_the_same_event_id() {
    let h = setup(|cfg| cfg.endpoint("app").retry = strings(&["0s", "1h"]));
    // The first attempt of every event fails, the rest succeed.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    h.rx.set_script(move |e| seen.lock().unwrap().insert(e["id"].as_str().unwrap().to_string()).then_some(500));
    let gw = h.start();
    let api = Api::of(&gw);
    let id = send(&gw, "inbox@example.test", &plain("retry me", "inbox@example.test", "hi\r\n"));
    h.wait_until(SHORT, "the first attempt to fail", || h.deliveries(&[])[0]["attempts"] == 1);

    let page = api.json("/deliveries?status=pending&endpoint=app");
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert!(api.json("/deliveries?status=succeeded")["data"].as_array().unwrap().is_empty());
    assert!(api.json("/deliveries?endpoint=other")["data"].as_array().unwrap().is_empty());
    let d = &page["data"][0];
    assert_eq!(d["message_id"], id.as_str());
    let dlv = d["id"].as_str().unwrap();
    let one = api.json(&format!("/deliveries/{dlv}"));
    assert_eq!(one["attempt_log"][0]["http_status"], 500, "{one}");
    assert_eq!(one["status"], "pending");

    let (status, _) = api.error("POST", &format!("/deliveries/{dlv}/retry"), Some(READ), None);
    assert_eq!(status, 403);
    let got = api.call("POST", &format!("/deliveries/{dlv}/retry"), Some(WRITE), None);
    assert_eq!(got.status, 202, "{}", String::from_utf8_lossy(&got.body));
    h.wait_until(SHORT, "the retry to succeed", || api.json(&format!("/deliveries/{dlv}"))["status"] == "succeeded");
    let requests = h.rx.requests_for_message(&id);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].webhook_id(), requests[1].webhook_id(), "a retry keeps the event id");
    assert_eq!(api.json(&format!("/deliveries/{dlv}"))["attempt_log"].as_array().unwrap().len(), 2);

    assert_eq!(api.error("GET", "/deliveries/dlv_nope", Some(READ), None).0, 404);
    assert_eq!(api.error("POST", "/deliveries/dlv_nope/retry", Some(WRITE), None).0, 404);
    assert_eq!(api.error("GET", "/deliveries?status=lost", Some(READ), None).0, 400);
    assert_eq!(api.error("GET", "/deliveries?limit=-3", Some(READ), None).0, 400);
}

/// Waits until the wall clock is past `at` (RFC 3339 with milliseconds), so the next message is
/// received in a later millisecond than the one received `at`.
fn after(at: &str) {
    let at = humantime::parse_rfc3339(at).unwrap();
    assert!(poll(SHORT, || std::time::SystemTime::now() > at + std::time::Duration::from_millis(1)));
}

#[test]
fn a_replay_re_sends_exactly_the_window_with_the_same_event_ids_by_api_and_cli() {
    let h = setup(|_| {});
    let gw = h.start();
    let api = Api::of(&gw);
    // Five messages in a row, each in a millisecond of its own: before, three in the window, after.
    let mut sent: Vec<(String, String)> = Vec::new();
    for n in 0..5 {
        let id = send(&gw, "inbox@example.test", &plain(&format!("n{n}"), "inbox@example.test", "hi\r\n"));
        h.event_for(&id);
        let at = api.json(&format!("/messages/{id}"))["received_at"].as_str().unwrap().to_string();
        after(&at);
        sent.push((id, at));
    }
    let first_ids: Vec<String> =
        sent.iter().map(|(id, _)| h.rx.requests_for_message(id)[0].webhook_id().to_string()).collect();
    let before = h.rx.count();
    assert_eq!(before, 5);

    // [received_at of #1, received_at of #4): #1, #2 and #3.
    let window = json!({ "since": sent[1].1, "until": sent[4].1 });
    let (status, _) = api.error("POST", "/replay", Some(READ), Some(&window));
    assert_eq!(status, 403);
    let got = api.call("POST", "/replay", Some(WRITE), Some(&window));
    assert_eq!(got.status, 202, "{}", String::from_utf8_lossy(&got.body));
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["scheduled"], 3, "{v}");
    h.wait_requests(before + 3, SHORT);
    for (n, (id, _)) in sent.iter().enumerate() {
        let reqs = h.rx.requests_for_message(id);
        let expected = if (1..4).contains(&n) { 2 } else { 1 };
        assert_eq!(reqs.len(), expected, "message #{n} was sent {} time(s)", reqs.len());
        assert!(reqs.iter().all(|r| r.webhook_id() == first_ids[n]), "message #{n}: the event id changed");
    }

    // Filters that match nothing schedule nothing.
    let other = json!({ "since": sent[0].1, "until": sent[4].1, "endpoint": "other" });
    let got = api.call("POST", "/replay", Some(WRITE), Some(&other));
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap()["scheduled"], 0);
    let failed = json!({ "since": sent[0].1, "until": sent[4].1, "status": "failed" });
    let got = api.call("POST", "/replay", Some(WRITE), Some(&failed));
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap()["scheduled"], 0);

    // Bad bodies are 400s that say why.
    for (body, says) in [
        (json!({ "since": sent[4].1, "until": sent[0].1 }), "before"),
        (json!({ "since": "last week", "until": sent[0].1 }), "since"),
        (json!({ "until": sent[0].1 }), "since"),
        (json!({ "since": sent[0].1, "until": sent[4].1, "status": "lost" }), "status"),
        (json!({ "since": sent[0].1, "until": sent[4].1, "colour": "blue" }), "colour"),
        (json!([1, 2]), "JSON"),
    ] {
        let (status, message) = api.error("POST", "/replay", Some(WRITE), Some(&body));
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(says), "{body}: {message}");
    }

    // The same from the CLI: [#0, #1) re-sends #0 alone.
    let before = h.rx.count();
    let out = h.cli(&["deliveries", "replay", "--since", &sent[0].1, "--until", &sent[1].1]);
    out.assert_ok(&h.logs());
    assert!(out.stdout_str().contains("replay scheduled: 1 "), "{}", out.describe());
    h.wait_requests(before + 1, SHORT);
    let reqs = h.rx.requests_for_message(&sent[0].0);
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.webhook_id() == first_ids[0]));
    assert_eq!(h.rx.requests_for_message(&sent[1].0).len(), 2, "#1 is outside [#0, #1)");
    let out = h.cli(&["deliveries", "replay", "--since", &sent[1].1, "--until", &sent[0].1]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
}

/// Replays from several clients at once while the deliverer records the outcomes of the previous
/// ones: the same delivery rows, changed by many transactions. Each replay is a 202, and the store
/// logs no error (on PostgreSQL, rows locked in different orders deadlocked: CI's schemathesis run
/// got a 503 from /replay, and lease renewals failed).
#[test]
fn concurrent_replays_while_outcomes_are_recorded_all_succeed() {
    let h = setup(|_| {});
    let gw = h.start();
    for n in 0..20 {
        let id = send(&gw, "inbox@example.test", &plain(&format!("n{n}"), "inbox@example.test", "hi\r\n"));
        h.event_for(&id);
    }
    let everything = json!({ "since": "1970-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z" });
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (api, window) = (Api::of(&gw), everything.clone());
            std::thread::spawn(move || {
                (0..60)
                    .map(|_| api.call("POST", "/replay", Some(WRITE), Some(&window)))
                    .filter(|got| got.status != 202)
                    .map(|got| format!("{} {}", got.status, String::from_utf8_lossy(&got.body)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let refused: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(refused.is_empty(), "{} replays refused, first: {}\n{}", refused.len(), refused[0], h.logs());
    let problems = gw.problems();
    assert!(problems.is_empty(), "{problems}");
}
