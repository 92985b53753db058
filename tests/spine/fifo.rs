//! Ordered delivery: an endpoint with `ordering = "fifo"` gets its events one at a time in arrival
//! order, a failing event holding the later ones until it succeeds; a concurrent endpoint beside it
//! is not held up.
//!
//! The shared receiver answers one status to every request; this file's `Scripted` receiver answers
//! by the request's event (500 to the first two attempts of the message "fifo 1"), and records each
//! request as the shared `Request`, so signatures are checked with the same stock verifier.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::common::*;

type Requests = Arc<Mutex<Vec<Request>>>;

/// A receiver that fails the first two attempts of the event for the message with subject
/// `fifo 1`, and accepts everything else.
struct Scripted {
    addr: SocketAddr,
    requests: Requests,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

async fn answer(State(requests): State<Requests>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fail = v["message"]["subject"] == "fifo 1" && v["delivery"]["attempt"].as_i64().is_some_and(|a| a <= 2);
    let r = Request { path: uri.path().to_string(), headers, body: body.to_vec(), at: Instant::now() };
    requests.lock().unwrap().push(r);
    if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
}

impl Scripted {
    fn start() -> Scripted {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Requests = Arc::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let state = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(answer).with_state(state);
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("receiver server failed"),
                    _ = stopped => {}
                }
            });
        });
        Scripted { addr, requests, stop: Some(stop), thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// (subject, delivery.attempt) of each request to `path`, in arrival order.
    fn arrivals(&self, path: &str) -> Vec<(String, i64)> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.path == path)
            .map(|r| {
                r.assert_signed(SECRET_A);
                let v = r.json();
                (v["message"]["subject"].as_str().unwrap_or("").to_string(), v["delivery"]["attempt"].as_i64().unwrap())
            })
            .collect()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn arrived(list: &[(String, i64)]) -> Vec<String> {
    list.iter().map(|(s, a)| format!("{s} #{a}")).collect()
}

#[test]
fn a_fifo_endpoint_gets_later_events_only_after_the_failing_first_one_succeeded_in_order() {
    let rx = Scripted::start();
    let h = Harness::with(|c| {
        let app = c.endpoint("app");
        app.url = rx.url("/hooks/app");
        app.retry = strings(&["0s", "300ms", "300ms"]);
        // Its retries are longer, so that the sends (slow on a loaded machine) surely end while
        // its first event is still failing.
        let mut side = Endpoint::new("side", rx.url("/hooks/side"), SECRET_A);
        side.retry = strings(&["0s", "2s", "2s"]);
        c.endpoints.push(side);
        c.append("[[routes]]\nmatch = \"inbox@example.test\"\nendpoints = [\"app\", \"side\"]\n");
    });
    // `Config` has no `ordering` field: the line goes into the rendered file.
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    assert!(text.contains("[endpoints.app]\n"), "{text}");
    std::fs::write(&h.config_path, text.replace("[endpoints.app]\n", "[endpoints.app]\nordering = \"fifo\"\n"))
        .unwrap();

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

    let all_in = || rx.arrivals("/hooks/app").len() >= 5 && rx.arrivals("/hooks/side").len() >= 5;
    h.wait_until(SHORT * 2, "3 attempts of the first event and one of each other, at both endpoints", all_in);
    let expected = ["fifo 1 #1", "fifo 1 #2", "fifo 1 #3", "fifo 2 #1", "fifo 3 #1"];
    assert_eq!(arrived(&rx.arrivals("/hooks/app")), expected, "the fifo endpoint, in arrival order");

    // The concurrent endpoint got the later events while the first one was still failing.
    let side = arrived(&rx.arrivals("/hooks/side"));
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
    assert_eq!(rx.arrivals("/hooks/app").len(), 5, "{:?}", arrived(&rx.arrivals("/hooks/app")));
}
