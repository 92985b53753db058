//! The PostgreSQL backend's tests, through `Store` as the program calls it, on a throwaway cluster
//! (the harness's `tests/common/postgres.rs`, one per test process), a database of its own per test.
//! Several `Store`s on one database are several gateways.

#[path = "../../../tests/common/postgres.rs"]
mod cluster;

use std::time::{Duration, Instant};

pub(crate) use cluster::PgCluster;

use super::{DatabaseUrl, Postgres};
use crate::mail::{DeliveryStatus, NextState};
use crate::store::sqlite::tests::{due, message};
use crate::store::{Attempt, Backend, Content, NewAttachment, Store};

/// The test process's cluster. Never dropped: the reaper started with it stops it when the test
/// process exits.
pub(crate) fn cluster() -> &'static PgCluster {
    cluster::shared()
}

/// A fresh database's URL.
pub(crate) fn database() -> DatabaseUrl {
    DatabaseUrl::parse(&cluster().new_database().expect("a database")).expect("its URL")
}

/// The bytes of a part, read through its chunk reader (PostgreSQL never hands them out whole).
fn read(content: Content) -> Vec<u8> {
    match content {
        Content::Reader(r) => r.into_bytes().expect("reading the chunks"),
        _ => panic!("not a reader of chunks"),
    }
}

/// A gateway on `url` whose leases last `lease`.
fn gateway(url: &DatabaseUrl, lease: Duration) -> Store {
    Store { backend: Backend::Postgres(Postgres::open_with_lease(url, lease).expect("opening the store")) }
}

fn ok(attempt: i64) -> Attempt {
    Attempt { attempt, started_at: 1, duration_ms: 1, http_status: Some(200), error: None, response_body: None }
}

/// Polls `f` until it is Some, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_message_its_chunked_bytes_and_deliveries_commit_together_and_the_due_ones_are_leased_to_the_ingester() {
    let url = database();
    let store = gateway(&url, Duration::from_secs(30));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let att =
        [NewAttachment { filename: Some("a.bin"), content_type: "application/octet-stream", sha256: "x", bytes: &big }];
    let mut fifo = due("fifo", 1_000, false);
    fifo.ordered = true;
    let eps = [due("now", 1_000, false), due("later", 9_000, false), due("sync", 1_000, true), fifo];
    let mut m = message("msg_1", 1_000, &att, &eps);
    m.raw = &big;
    let handed = store.ingest(&m).unwrap();
    assert_eq!(handed.iter().map(|d| d.endpoint.as_str()).collect::<Vec<_>>(), ["now"]);
    assert_eq!(read(store.content("msg_1", None).unwrap()), big);
    assert_eq!(read(store.content("msg_1", Some(0)).unwrap()), big);
    assert!(matches!(store.content("msg_1", Some(1)).unwrap(), Content::Missing));
    assert!(matches!(store.content("msg_nope", None).unwrap(), Content::Missing));
    let db = url.to_string().rsplit('/').next().unwrap().to_string();
    let chunks = cluster().psql(&db, "SELECT COUNT(*) FROM contents WHERE message_id = 'msg_1'").unwrap();
    assert_eq!(chunks, "24", "two parts of 3 MB in 256 KiB chunks");

    // Read anywhere, across chunk boundaries, as a Range request does.
    let Content::Reader(mut r) = store.content("msg_1", None).unwrap() else { panic!("a reader") };
    assert_eq!(r.len, big.len() as u64);
    for (start, len) in [(0usize, 10usize), (262_140, 10), (262_144, 262_144 * 2 + 5), (2_999_990, 10), (3_000_000, 0)]
    {
        use std::io::{Read, Seek, SeekFrom};
        r.reader.seek(SeekFrom::Start(start as u64)).unwrap();
        let mut got = vec![0u8; len];
        r.reader.read_exact(&mut got).unwrap();
        assert_eq!(got, big[start..start + len], "{len} bytes at {start}");
    }
    // A message deleted while read: the read fails, it never returns other bytes.
    let Content::Reader(mut r) = store.content("msg_1", Some(0)).unwrap() else { panic!("a reader") };
    cluster().psql(&db, "DELETE FROM contents WHERE message_id = 'msg_1' AND part = 0").unwrap();
    let e = std::io::Read::read(&mut r.reader, &mut [0u8; 16]).expect_err("the chunks are gone");
    assert!(e.to_string().contains("removed while read"), "{e}");

    let any = |_: &str| 10;
    let mut claimed: Vec<_> = store.claim_due(10_000, 10, &any, &[]).unwrap().into_iter().map(|d| d.endpoint).collect();
    claimed.sort();
    assert_eq!(claimed, ["fifo", "later"], "the handed one and the session's sync one are leased already");
    store.unclaim(&handed);
    let again = store.claim_due(10_000, 10, &any, &[]).unwrap();
    assert_eq!(again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [handed[0].id.as_str()]);

    store.finish_attempt(&again[0], &ok(1), &NextState::Succeeded).unwrap();
    let d = store.delivery(&again[0].id).unwrap().unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 1));
    assert_eq!(store.attempts(&d.id).unwrap().len(), 1);
    assert_eq!(store.messages(10, None).unwrap()[0].id, "msg_1");
    store.withdraw("msg_1").unwrap();
    assert!(store.message("msg_1").unwrap().is_none());
    assert_eq!(cluster().psql(&db, "SELECT COUNT(*) FROM contents").unwrap(), "0");
}

#[test]
fn concurrency_and_fifo_hold_across_gateways_and_a_dead_gateways_lease_is_taken_over() {
    let url = database();
    let (a, b) = (gateway(&url, Duration::from_millis(600)), gateway(&url, Duration::from_millis(600)));
    let mut b_woken = b.due_watch().unwrap();
    b_woken.borrow_and_update();
    for (i, id) in ["msg_1", "msg_2", "msg_3"].iter().enumerate() {
        let at = 1_000 + i as i64;
        let mut f = due("f", at, false);
        f.ordered = true;
        // Due later than received: nobody's at ingest, the queue's (and every gateway is woken).
        let eps = [due("c", at + 1, false), f];
        a.ingest(&message(id, at, &[], &eps)).unwrap();
    }
    eventually(Duration::from_secs(5), || b_woken.has_changed().unwrap().then_some(()));
    let fifo = ["f".to_string()];
    let one = |_: &str| 1;
    let now = crate::time::now_ms();
    let got_a = a.claim_due(now, 10, &one, &fifo).unwrap();
    let mut got: Vec<_> = got_a.iter().map(|d| (d.endpoint.as_str(), d.message_id.as_str())).collect();
    got.sort();
    assert_eq!(got, [("c", "msg_1"), ("f", "msg_1")]);
    assert!(b.claim_due(now, 10, &one, &fifo).unwrap().is_empty(), "c's one slot and f's turn are a's");
    let c2 = b.claim_due(now, 10, &|_: &str| 2, &fifo).unwrap();
    let c2: Vec<_> = c2.iter().map(|d| (d.endpoint.as_str(), d.message_id.as_str())).collect();
    assert_eq!(c2, [("c", "msg_2")], "room 2 less a's one on c; f's head is a's");

    // a finishes f's head: b gets the next in line.
    let head = got_a.iter().find(|d| d.endpoint == "f").unwrap();
    a.finish_attempt(head, &ok(1), &NextState::Succeeded).unwrap();
    let next = b.claim_due(crate::time::now_ms(), 10, &one, &fifo).unwrap();
    assert_eq!(next.iter().filter(|d| d.endpoint == "f").map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["msg_2"]);

    // a dies holding c's msg_1: once its lease ends, b takes it over with the same event id.
    let held = got_a.iter().find(|d| d.endpoint == "c").unwrap().clone();
    drop(a);
    let taken = eventually(Duration::from_secs(10), || {
        let got = b.claim_due(crate::time::now_ms(), 10, &|_: &str| 10, &[]).unwrap();
        got.into_iter().find(|d| d.id == held.id)
    });
    assert_eq!(taken.event_id, held.event_id);
    assert_eq!(b.next_due(&fifo).unwrap(), None, "what is left is b's, or waits in line behind it");
}

#[test]
fn a_lease_is_renewed_while_its_attempt_runs() {
    let url = database();
    let (a, b) = (gateway(&url, Duration::from_millis(300)), gateway(&url, Duration::from_millis(300)));
    a.ingest(&message("msg_1", 1_000, &[], &[due("e", 1_001, false)])).unwrap();
    let got = a.claim_due(crate::time::now_ms(), 10, &|_: &str| 5, &[]).unwrap();
    assert_eq!(got.len(), 1);
    // Several leases long: the renewal keeps it a's.
    let until = Instant::now() + Duration::from_millis(1_200);
    while Instant::now() < until {
        assert!(b.claim_due(crate::time::now_ms(), 10, &|_: &str| 5, &[]).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(50));
    }
    a.finish_attempt(&got[0], &ok(1), &NextState::Retry { at: 0, step: 1 }).unwrap();
    let d = b.claim_due(crate::time::now_ms(), 10, &|_: &str| 5, &[]).unwrap();
    assert_eq!((d.len(), d[0].attempts), (1, 1), "given back with its outcome");
}

#[test]
fn a_late_outcome_from_a_gateway_whose_lease_lapsed_does_not_undo_the_takeover() {
    let url = database();
    let (a, b) = (gateway(&url, Duration::from_millis(300)), gateway(&url, Duration::from_millis(300)));
    a.ingest(&message("msg_1", 1_000, &[], &[due("e", 1_001, false)])).unwrap();
    let mine = a.claim_due(crate::time::now_ms(), 10, &|_: &str| 5, &[]).unwrap();
    assert_eq!(mine.len(), 1);
    // a stalls (no renewal: a long pause, a starved thread): its lease lapses, b takes over and
    // delivers.
    let Backend::Postgres(pa) = &a.backend else { unreachable!() };
    pa.drop_held([&mine[0].id]);
    let taken = eventually(Duration::from_secs(10), || {
        b.claim_due(crate::time::now_ms(), 10, &|_: &str| 5, &[]).unwrap().into_iter().next()
    });
    assert_eq!(taken.event_id, mine[0].event_id);
    b.finish_attempt(&taken, &ok(1), &NextState::Succeeded).unwrap();
    // a wakes up with its own attempt's outcome (it failed for good): recorded, but the delivery
    // is b's, and delivered.
    let failed = Attempt { http_status: Some(410), ..ok(1) };
    a.finish_attempt(&mine[0], &failed, &NextState::Failed { step: 1 }).unwrap();
    let d = b.delivery(&mine[0].id).unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded, "the late outcome moved a delivery it no longer held");
    assert_eq!(b.attempts(&d.id).unwrap().len(), 2, "both attempts are on record");
}

#[test]
fn retention_senders_and_streams_on_the_shared_database() {
    let url = database();
    let (a, b) = (gateway(&url, Duration::from_secs(30)), gateway(&url, Duration::from_secs(30)));
    let att = [NewAttachment { filename: Some("a.txt"), content_type: "text/plain", sha256: "x", bytes: b"hi" }];
    for (id, at) in [("msg_old", 1_000), ("msg_new", 50_000)] {
        a.ingest(&message(id, at, &att, &[])).unwrap();
    }
    let p = b.apply_retention(60_000, 20_000, 1_000_000).unwrap();
    assert_eq!((p.files, p.records), (1, 0));
    assert!(matches!(a.content("msg_old", Some(0)).unwrap(), Content::Removed));
    assert_eq!(read(a.content("msg_new", Some(0)).unwrap()), b"hi");
    assert_eq!(b.apply_retention(60_000, 20_000, 30_000).unwrap().records, 1);
    assert!(matches!(a.content("msg_old", None).unwrap(), Content::Missing));

    let g0 = b.sender_rules_generation().unwrap();
    assert!(a.set_sender_rule("example.com", false).unwrap());
    assert!(!a.set_sender_rule("example.com", false).unwrap());
    assert!(b.sender_rules_generation().unwrap() > g0, "another gateway sees the change");
    assert!(b.remove_sender_rule("example.com").unwrap());
    assert!(a.sender_rules().unwrap().1.is_empty());

    let mut watch = b.streams_watch();
    watch.borrow_and_update();
    let dev = vec!["dev".to_string()];
    for i in 0..3 {
        let id = format!("msg_s{i}");
        let m = crate::store::NewMessage { streams: &dev, ..message(&id, 60_000 + i, &[], &[]) };
        a.ingest(&m).unwrap();
    }
    eventually(Duration::from_secs(5), || watch.has_changed().unwrap().then_some(()));
    let page = b.stream_read("dev", 0, 2, None).unwrap();
    assert_eq!((page.items.len(), page.done), (2, false));
    let rest = b.stream_read("dev", page.next, 5, None).unwrap();
    assert_eq!((rest.items.len(), rest.done), (1, true));
    assert_eq!(b.stream_last("dev").unwrap(), rest.items[0].event.cursor);
    assert_eq!(a.ack("dev", "w", 5).unwrap(), 5);
    assert_eq!(b.ack("dev", "w", 3).unwrap(), 5, "an ack never moves back");
    assert_eq!(b.consumer_acked("dev", "w").unwrap(), Some(5));
    assert!(a.writable());
}

#[test]
fn while_the_database_is_down_ingest_fails_and_afterwards_everything_works_again_without_a_restart() {
    // A cluster of its own: this test stops it.
    let own = PgCluster::start(false).expect("a throwaway PostgreSQL cluster");
    let url = DatabaseUrl::parse(&own.new_database().unwrap()).unwrap();
    let store = gateway(&url, Duration::from_secs(30));
    store.ingest(&message("msg_1", 1_000, &[], &[due("e", 5_000, false)])).unwrap();
    let mut woken = store.due_watch().unwrap();
    woken.borrow_and_update();

    own.stop_server().unwrap();
    let down = store.ingest(&message("msg_2", 2_000, &[], &[due("e", 5_000, false)]));
    assert!(down.is_err(), "no commit, no acknowledgement");
    assert!(!store.writable());

    own.start_server().unwrap();
    let again = eventually(Duration::from_secs(20), || {
        store.ingest(&message("msg_3", 3_000, &[], &[due("e", 5_000, false)])).ok()
    });
    assert!(again.is_empty());
    assert!(store.writable());
    let ids: Vec<_> = store.messages(10, None).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["msg_3", "msg_1"], "the refused one was never stored");
    // The LISTEN connection came back too: it wakes the scheduler once on its return.
    eventually(Duration::from_secs(10), || woken.has_changed().unwrap().then_some(()));
}

#[test]
fn the_apis_pages_delete_and_replay_on_the_shared_database() {
    use crate::store::{DeliveryFilter, MessageFilter, Position, Removal};
    let url = database();
    let (a, b) = (gateway(&url, Duration::from_secs(30)), gateway(&url, Duration::from_secs(30)));
    let rcpt = vec!["App@Example.test".to_string()];
    let att = [NewAttachment { filename: Some("a.txt"), content_type: "text/plain", sha256: "x", bytes: b"hi" }];
    for (i, id) in ["msg_a", "msg_b", "msg_c", "msg_d"].iter().enumerate() {
        let at = 1_000 + i as i64 / 2;
        let eps = [due("app", at, false)];
        let m =
            crate::store::NewMessage { rcpt_to: &rcpt, subject: Some("Hello there"), ..message(id, at, &att, &eps) };
        let handed = a.ingest(&m).unwrap();
        a.unclaim(&handed);
    }
    let all = MessageFilter::default();
    let first = b.list_messages(&all, None, 3).unwrap();
    assert_eq!(first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["msg_d", "msg_c", "msg_b"]);
    let after = Position { at: first[2].received_at, id: first[2].id.clone() };
    let rest = b.list_messages(&all, Some(&after), 3).unwrap();
    assert_eq!(rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["msg_a"]);
    let window = MessageFilter { since: Some(1_001), until: Some(1_002), ..Default::default() };
    assert_eq!(b.list_messages(&window, None, 10).unwrap().len(), 2);
    let to = MessageFilter { to: Some("app@example.TEST".into()), subject: Some("THERE".into()), ..Default::default() };
    assert_eq!(b.list_messages(&to, None, 10).unwrap().len(), 4);
    let nobody = MessageFilter { to: Some("nobody@example.test".into()), ..Default::default() };
    assert!(b.list_messages(&nobody, None, 10).unwrap().is_empty());
    let d = b.list_deliveries(&DeliveryFilter { message: Some("msg_b".into()), ..Default::default() }, None, 10);
    assert_eq!(d.unwrap().len(), 1);
    assert_eq!(b.attachments("msg_a").unwrap().len(), 1);
    assert_eq!(b.attachments("msg_a").unwrap()[0].filename.as_deref(), Some("a.txt"));

    // Replay: [since, until), filters, event ids kept.
    let events: Vec<String> = b.deliveries(None, None).unwrap().into_iter().map(|d| d.event_id).collect();
    assert_eq!(b.replay(1_000, 1_001, Some("other"), None).unwrap(), 0);
    assert_eq!(b.replay(1_000, 1_001, None, Some(DeliveryStatus::Pending)).unwrap(), 2);
    let after: Vec<String> = b.deliveries(None, None).unwrap().into_iter().map(|d| d.event_id).collect();
    assert_eq!(events, after);

    // Delete: a leased delivery (another gateway's claim) makes it wait.
    let claimed = a.claim_due(crate::time::now_ms(), 10, &|_: &str| 10, &[]).unwrap();
    assert_eq!(claimed.len(), 4);
    assert_eq!(b.delete_message("msg_a").unwrap(), Removal::InFlight);
    a.unclaim(&claimed);
    assert_eq!(b.delete_message("msg_a").unwrap(), Removal::Deleted { cancelled: 1 });
    assert!(a.message("msg_a").unwrap().is_none());
    assert!(matches!(a.content("msg_a", None).unwrap(), Content::Missing));
    assert!(a.deliveries(None, Some("msg_a")).unwrap().is_empty());
    assert_eq!(b.delete_message("msg_a").unwrap(), Removal::NotFound);
}

#[test]
fn a_vanished_database_host_is_noticed_in_seconds_unless_the_url_says_otherwise() {
    let config = |url: &str| {
        let mut c = DatabaseUrl::parse(url).unwrap().config().unwrap();
        super::notice_a_vanished_host(&mut c);
        c
    };
    let c = config("postgres://db/mx");
    assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
    assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
    assert_eq!((c.get_keepalives_interval(), c.get_keepalives_retries()), (Some(Duration::from_secs(10)), Some(3)));
    let c =
        config("postgres://db/mx?tcp_user_timeout=5&keepalives_idle=600&keepalives_interval=1&keepalives_retries=9");
    assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
    assert_eq!(c.get_keepalives_idle(), Duration::from_secs(600));
    assert_eq!((c.get_keepalives_interval(), c.get_keepalives_retries()), (Some(Duration::from_secs(1)), Some(9)));
}
