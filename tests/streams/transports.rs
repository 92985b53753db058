//! Each transport: connect, read, disconnect; 50 messages arrive meanwhile; reconnect from where it
//! stopped: exactly those 50, in order, none twice. A marker message sent after the 50 ends each
//! read, so nothing here waits for "no more events".

use std::collections::BTreeSet;

use crate::common::*;
use crate::support::*;

/// The first read got `first`; the resumed read must be exactly `missed` then the marker.
#[track_caller]
fn assert_resumed(first: &Run, resumed: &Run, missed: &[String], marker: &str) {
    let ids = resumed.message_ids();
    assert_eq!(ids.len(), missed.len() + 1, "the resumed read: {ids:?}");
    assert_eq!(&ids[..missed.len()], missed, "exactly the missed messages, in order");
    assert_eq!(ids[missed.len()], marker);
    let cursors: Vec<i64> = resumed.events.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors grow: {cursors:?}");
    assert!(cursors[0] > first.last_cursor());
    let event_ids: BTreeSet<&str> =
        first.events.iter().chain(&resumed.events).map(|(_, e)| e["id"].as_str().unwrap()).collect();
    assert_eq!(event_ids.len(), first.events.len() + resumed.events.len(), "no event twice");
}

/// The scenario, with `read(after_first_run, until)` the transport's resuming read.
fn scenario(client_name: &str, first_args: &[&str], resume: impl Fn(&Gateway, &Run, &str) -> Run) {
    let h = harness();
    let gw = h.start();
    let first_id = send(&gw, "first");
    let first = client(&gw, client_name, &[&["--count", "1"], first_args].concat());
    assert_eq!(first.message_ids(), std::slice::from_ref(&first_id));
    let missed = send_many(&gw, "missed", 50);
    let marker = send(&gw, "marker");
    let resumed = resume(&gw, &first, "marker");
    assert_resumed(&first, &resumed, &missed, &marker);

    // The stream event has an id of its own (not the webhook's), the same on every read.
    let (_, webhook) = h.event_for(&first_id);
    let (_, streamed) = &first.events[0];
    assert_ne!(webhook["id"], streamed["id"]);
    assert_eq!(webhook["message"], streamed["message"], "the same message object both ways");
    let again = client(&gw, client_name, &[&["--count", "1"], first_args].concat());
    assert_eq!(again.events[0].1, *streamed, "a second read of the same event is the same event");
}

#[test]
fn sse_resumes_with_last_event_id() {
    scenario("sse", &[], |gw, first, until| {
        let last = first.last_cursor().to_string();
        client(gw, "sse", &["--last-event-id", &last, "--until-subject", until])
    });
}

#[test]
fn websocket_resumes_after_its_last_cursor() {
    scenario("ws", &[], |gw, first, until| {
        let last = first.last_cursor().to_string();
        client(gw, "ws", &["--after", &last, "--until-subject", until])
    });
}

#[test]
fn polling_resumes_with_the_iterator_of_its_last_page() {
    scenario("poll", &["--limit", "1"], |gw, first, until| {
        let it = first.iterator.clone().expect("poll.py prints its iterator");
        client(gw, "poll", &["--iterator", &it, "--until-subject", until])
    });
}

/// GET a poll URL with the token; the page as JSON.
#[track_caller]
pub fn poll_page(gw: &Gateway, query: &str) -> serde_json::Value {
    let got =
        get(&agent(), &format!("{}/poll?{query}", stream_url(gw)), &[("authorization", &format!("Bearer {TOKEN}"))]);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    serde_json::from_slice(&got.body).unwrap()
}

fn subjects(page: &serde_json::Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|e| e["message"]["subject"].as_str().unwrap().to_string()).collect()
}

/// `from=now` skips what is there, `after` starts after a cursor, and a long poll returns as soon
/// as an event arrives (well before its `wait`).
#[test]
fn polling_starts_now_or_after_a_cursor_and_a_long_poll_wakes_on_commit() {
    let h = harness();
    let gw = h.start();
    send_many(&gw, "old", 3);
    let all = poll_page(&gw, "limit=100");
    assert_eq!(subjects(&all), ["old-0", "old-1", "old-2"]);
    assert_eq!(all["done"], true);
    let second = all["data"][1]["stream"]["cursor"].as_i64().unwrap();
    assert_eq!(subjects(&poll_page(&gw, &format!("after={second}"))), ["old-2"]);
    let now = poll_page(&gw, "from=now");
    assert_eq!(subjects(&now), Vec::<String>::new());
    let it = now["iterator"].as_str().unwrap().to_string();

    let started = std::time::Instant::now();
    let waiting = {
        let (gw_http, it) = (gw.http, it.clone());
        std::thread::spawn(move || {
            let url = format!("http://{gw_http}/v1/streams/{STREAM}/poll?wait=30&iterator={it}");
            let got = get(&agent(), &url, &[("authorization", &format!("Bearer {TOKEN}"))]);
            serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()
        })
    };
    send(&gw, "new");
    let page = waiting.join().unwrap();
    assert_eq!(subjects(&page), ["new"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the long poll woke on the commit");
    drop(h);
}

/// An open SSE reader does not hold a stopping gateway open: SIGTERM ends its stream and the
/// gateway exits.
#[test]
fn sigterm_ends_open_readers_and_the_gateway_exits() {
    use std::io::{Read, Write};
    let h = harness();
    let mut gw = h.start();
    send(&gw, "one");
    let mut sse = std::net::TcpStream::connect(gw.http).unwrap();
    write!(sse, "GET /v1/streams/{STREAM}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    h.wait_until(SHORT, "the first SSE event", || {
        let n = sse.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        String::from_utf8_lossy(&got).contains("\nid: ")
    });
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(SHORT);
    assert!(status.success(), "{status}\n{}", gw.log());
}
