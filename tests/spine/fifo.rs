//! Ordered delivery: an endpoint with `ordering = "fifo"` gets its events one at a time in arrival
//! order, a failing event holding the later ones until it succeeds; a concurrent endpoint beside it
//! is not held up.
//!
//! The receiver is scripted to answer 500 to the first two attempts of the message "fifo 1".

use serde_json::Value;

use crate::common::*;

/// (subject, delivery.attempt) of each request to `path`, in arrival order.
fn arrivals(rx: &Receiver, path: &str) -> Vec<(String, i64)> {
    rx.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| {
            let v = r.json();
            (v["message"]["subject"].as_str().unwrap_or("").to_string(), v["delivery"]["attempt"].as_i64().unwrap())
        })
        .collect()
}

fn arrived(list: &[(String, i64)]) -> Vec<String> {
    list.iter().map(|(s, a)| format!("{s} #{a}")).collect()
}

#[test]
fn a_fifo_endpoint_gets_later_events_only_after_the_failing_first_one_succeeded_in_order() {
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    let app = cfg.endpoint("app");
    app.retry = strings(&["0s", "300ms", "300ms"]);
    app.ordering = Some("fifo".into());
    // Its retries are longer, so that the sends (slow on a loaded machine) surely end while its first
    // event is still failing.
    cfg.add_endpoint(&h.rx, "side", SECRET_A);
    cfg.endpoint("side").retry = strings(&["0s", "2s", "2s"]);
    cfg.append("[[routes]]\nmatch = \"inbox@example.test\"\nendpoints = [\"app\", \"side\"]\n");
    h.write_config(&cfg);
    h.rx.set_script(|v: &Value| {
        let first = v["message"]["subject"] == "fifo 1" && v["delivery"]["attempt"].as_i64().is_some_and(|a| a <= 2);
        first.then_some(500)
    });
    let rx = &h.rx;

    let listed = as_array(h.cli_json(&["endpoints", "list", "--json"]));
    let orderings: Vec<_> = listed.iter().map(|e| (e["name"].clone(), e["ordering"].clone())).collect();
    assert_eq!(orderings, [("app".into(), "fifo".into()), ("side".into(), "concurrent".into())]);

    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    for n in 1..=3 {
        let body = format!("From: <a@sender.test>\r\nTo: <inbox@example.test>\r\nSubject: fifo {n}\r\n\r\nhello\r\n");
        c.send_mail("a@sender.test", &["inbox@example.test"], body.as_bytes());
    }
    c.cmd("QUIT");

    let all_in = || arrivals(rx, "/hooks/app").len() >= 5 && arrivals(rx, "/hooks/side").len() >= 5;
    h.wait_until(SHORT * 2, "3 attempts of the first event and one of each other, at both endpoints", all_in);
    let expected = ["fifo 1 #1", "fifo 1 #2", "fifo 1 #3", "fifo 2 #1", "fifo 3 #1"];
    assert_eq!(arrived(&arrivals(rx, "/hooks/app")), expected, "the fifo endpoint, in arrival order");

    // The concurrent endpoint got the later events while the first one was still failing.
    let side = arrived(&arrivals(rx, "/hooks/side"));
    let last_try = side.iter().position(|s| s == "fifo 1 #3").expect("the first event's third attempt");
    for later in ["fifo 2 #1", "fifo 3 #1"] {
        let at = side.iter().position(|s| s == later).unwrap_or_else(|| panic!("{later} at side: {side:?}"));
        assert!(at < last_try, "the concurrent endpoint waited for the first event: {side:?}");
    }
    // Nothing more comes: every delivery has succeeded.
    h.wait_until(SHORT, "all six deliveries succeeded", || {
        let d = h.deliveries(&[]);
        d.len() == 6 && d.iter().all(|d| d["status"] == "succeeded")
    });
    assert_eq!(arrivals(rx, "/hooks/app").len(), 5, "{:?}", arrived(&arrivals(rx, "/hooks/app")));
}
