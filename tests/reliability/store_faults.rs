//! Store faults: while the store cannot take a write, mail gets `451 4.3.0` (the sender's server keeps
//! it and tries again), the log says why, /healthz answers 503, other sessions are still served, and
//! nothing half-stored stays behind; once the fault is gone the gateway accepts mail again by itself.
//!
//! - The database locked: the test holds `BEGIN EXCLUSIVE` on the gateway's own SQLite file (the
//!   single write lock in WAL mode). tests/http/observe.rs checks /healthz for this; here the SMTP
//!   side and the log.
//! - The spool read-only (root only): a read-only bind mount over `data_dir/spool`. A remount of
//!   data_dir itself fails with EBUSY while the gateway holds the database open for writing; the
//!   spool holds no open file, and every message over 1 MiB must be written there before its 250
//!   (smaller ones are kept in the database, and are still accepted).
//! - On PostgreSQL: the database turned read-only instead of locked; no spool, so no spool case.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

fn refused_with_451(h: &Harness, gw: &Gateway, what: &str, size: usize) {
    // Behind a locked database the answer can take two busy timeouts (10 s each): the scheduler's claim
    // and this message's transaction wait on the same connection. Senders wait 10 minutes for it.
    let mut c = Wire::connect(gw.smtp, Duration::from_secs(60)).unwrap();
    assert!(c.hello());
    let t = Instant::now();
    let raw = message(&format!("{}@fault.test", what.replace(' ', "-")), what, size);
    let (code, text) = c.mail("inbox@example.test", &raw).unwrap();
    assert!(code == 451 && text.starts_with("451 4.3.0"), "a message while {what}: `{text}`\n{}", h.logs());
    eprintln!("store_faults: {what}: `{text}` after {:?}", t.elapsed());
    // The session goes on: the client may try again in it.
    assert_eq!(c.cmd("RSET").unwrap().0, 250);
    assert_eq!(c.cmd("NOOP").unwrap().0, 250);
}

/// Nothing half-stored: no spool file without its record.
#[track_caller]
fn no_orphans(h: &Harness) {
    assert_eq!(orphan_spool_files(h), Vec::<String>::new(), "spool files without a stored message");
}

#[test]
fn a_locked_database_gets_451_a_log_line_and_a_503_healthz() {
    let h = harness(&[], |_| {});
    if h.database.is_some() {
        return a_read_only_database_gets_451_and_a_log_line(&h);
    }
    let gw = h.start();
    still_serving(&h, &gw, "start");

    let db = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").expect("take the database's write lock");

    // One session waits on the lock for its answer; other sessions are served meanwhile.
    let mut other = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| refused_with_451(&h, &gw, "the database is locked", 2000));
        let t = Instant::now();
        let mut other = SmtpClient::ready(gw.smtp);
        other.cmd("MAIL FROM:<bob@sender.test>").expect(250, "2.1.0");
        other.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(3), "a second session took {took:?} to get through RCPT");
        assert_eq!(healthz(&gw), 503, "/healthz while the database is locked");
        waiting.join().unwrap();
        other
    });
    // The gateway's log reaches us through a reader thread: the line may land just after the reply.
    h.wait_until(SHORT, "a log line saying the store failed and why", || {
        log_lines(&h, "answering 451")
            .iter()
            .any(|l| l.contains("cannot store a message") && l.contains("database is locked"))
    });

    db.execute_batch("ROLLBACK").unwrap();
    h.wait_until(Duration::from_secs(20), "healthz 200 once the lock is gone", || healthz(&gw) == 200);
    let id = other.data(b"Subject: after the lock\r\n\r\nx\r\n").queued_id();
    h.wait_delivery_status(&id, "succeeded", SHORT);
    still_serving(&h, &gw, "the lock was released");
    no_orphans(&h);
}

/// PostgreSQL has no file lock to hold: its case is a database that turns read-only (observe.rs in
/// tests/http checks /healthz for it). 451 with the cause in the log; accepted again after.
fn a_read_only_database_gets_451_and_a_log_line(h: &Harness) {
    let gw = h.start();
    still_serving(h, &gw, "start");
    h.set_database_read_only(true);
    refused_with_451(h, &gw, "the database is read-only", 2000);
    h.wait_until(SHORT, "a log line saying the store failed and why", || {
        log_lines(h, "answering 451")
            .iter()
            .any(|l| l.contains("cannot store a message") && l.contains("read-only transaction"))
    });
    h.set_database_read_only(false);
    h.wait_until(Duration::from_secs(20), "healthz 200 once the database takes writes", || healthz(&gw) == 200);
    still_serving(h, &gw, "the database takes writes again");
}

#[test]
fn a_read_only_spool_gets_451_and_a_503_healthz() {
    if postgres::on_postgres() {
        eprintln!("SKIPPED a_read_only_spool_gets_451_and_a_503_healthz: no spool on PostgreSQL (bytes are rows)");
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED a_read_only_spool_gets_451_and_a_503_healthz: needs root for a bind mount");
        return;
    }
    let h = harness(&[], |_| {});
    let gw = h.start();
    let before = still_serving(&h, &gw, "start");
    let spool = h.data_dir().join("spool");
    let s = spool.to_str().unwrap();
    if let Err(e) = run("mount", &["--bind", s, s]) {
        eprintln!("SKIPPED a_read_only_spool_gets_451_and_a_503_healthz: {e}");
        return;
    }
    let mounted = Unmount(spool.clone());
    run("mount", &["-o", "remount,bind,ro", s, s]).expect("remount the spool read-only");
    assert!(std::fs::write(spool.join("probe"), b"x").is_err(), "the spool still takes writes");

    refused_with_451(&h, &gw, "the spool is read-only", 2_000_000);
    h.wait_until(SHORT, "a log line naming the spool and the cause", || {
        log_lines(&h, "answering 451").iter().any(|l| l.contains("spool") && l.contains("Read-only file system"))
    });
    h.wait_until(SHORT, "healthz 503 while the spool is read-only", || healthz(&gw) == 503);

    drop(mounted);
    h.wait_until(SHORT, "the spool to take writes again", || {
        run("touch", &[spool.join(".w").to_str().unwrap()]).is_ok()
    });
    std::fs::remove_file(spool.join(".w")).unwrap();
    h.wait_until(SHORT, "healthz 200 once the spool is writable", || healthz(&gw) == 200);
    still_serving(&h, &gw, "the spool became writable");
    assert!(stored_messages(&h).iter().any(|(id, _, _)| *id == before));
    no_orphans(&h);
}

/// An attempt whose outcome cannot be recorded (the database is locked past the busy timeout when it
/// ends) must not leave its acknowledged message behind: once the store works again the delivery is
/// attempted again, without a restart. (disk_full.rs has the same with a full disk, as root.)
#[test]
fn an_attempt_that_cannot_be_recorded_is_made_again_once_the_store_works() {
    let h = harness(&[], |cfg| cfg.endpoint("app").retry = strings(&["0s", "300ms", "300ms", "300ms"]));
    let gw = h.start();
    h.rx.set_status(503);
    h.rx.set_delay(Duration::from_millis(1500));
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &message("unrecorded@fault.test", "x", 500));
    h.wait_until(SHORT, "the first attempt to reach the endpoint", || !h.rx.requests_for_message(&id).is_empty());

    // SQLite: the write lock held past the busy timeout; PostgreSQL: the database read-only.
    let db = h.database.is_none().then(|| {
        let db = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).unwrap();
        db.execute_batch("BEGIN EXCLUSIVE").expect("take the database's write lock");
        db
    });
    if db.is_none() {
        h.set_database_read_only(true);
    }
    h.wait_until(Duration::from_secs(40), "the attempt's outcome to fail to be recorded", || {
        !log_lines(&h, "cannot record a delivery attempt").is_empty()
    });
    match db {
        Some(db) => db.execute_batch("ROLLBACK").unwrap(),
        None => h.set_database_read_only(false),
    }
    h.rx.set_delay(Duration::ZERO);
    h.rx.set_status(200);
    let again = poll(Duration::from_secs(10), || h.rx.requests_for_message(&id).len() >= 2);
    assert!(
        again,
        "acknowledged message {id} was not attempted again within 10 s of the store working again (its attempt could \
not be recorded while the database was locked); delivery now: {:?}\n{}",
        h.deliveries(&["--message", &id]),
        log_lines(&h, "delivery").join("\n")
    );
    h.wait_delivery_status(&id, "succeeded", SHORT);
}
