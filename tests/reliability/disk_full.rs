//! Disk full: data_dir on its own 16 MiB tmpfs, which the test fills to the last byte. Mail gets
//! `451`/`452` while it is full (never a 250 for bytes that were not stored), /healthz says 503, the
//! delivery scheduler pauses (claiming work is a write) and says so, the gateway keeps running, and once space is back it accepts mail again and delivers what it had
//! acknowledged before, without a restart. Needs root (mount); skipped with a message otherwise, and on
//! PostgreSQL (data_dir holds no mail there).

use std::io::Write;
use std::time::Duration;

use crate::common::*;
use crate::support::*;

/// Writes `path` until the file system says ENOSPC, down to single bytes. Returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut total = 0u64;
    for chunk in [1 << 20, 64 << 10, 4096, 1] {
        let buf = vec![0x5a; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    f.sync_all().ok();
    total
}

/// Uses up the room the WAL file still has once the file system is full. SQLite writes a WAL that
/// was checkpointed from its beginning again, into blocks the file already has: a store whose
/// disk just filled keeps taking small writes until they reach the end of that file (or a
/// checkpoint cannot move its frames into the database, which needs new blocks). The tests want
/// the disk full for every write: committed rows of a table of the test's own, in ever smaller
/// pieces, take the WAL up to its end (their frames cannot be checkpointed: the database file
/// cannot grow), after which every transaction needs a block the file system does not have.
fn fill_wal(h: &Harness) {
    let path = h.data_dir().join("mxhook.db");
    let c = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    for size in [1 << 20, 64 << 10, 4096, 512, 16, 1] {
        while c.execute("INSERT INTO wal_filler (b) VALUES (zeroblob(?1))", [size]).is_ok() {}
    }
}

/// Made before the disk fills: creating it is a write too.
fn wal_filler_table(h: &Harness) {
    let c = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS wal_filler (b BLOB)").unwrap();
}

#[test]
fn a_full_disk_gets_451_and_the_gateway_recovers_when_space_returns() {
    if postgres::on_postgres() {
        eprintln!(
            "SKIPPED a_full_disk_gets_451_and_the_gateway_recovers_when_space_returns: the store is PostgreSQL, \
             data_dir holds no mail (a read-only database: store_faults.rs)"
        );
        return;
    }
    if !is_root() {
        eprintln!(
            "SKIPPED a_full_disk_gets_451_and_the_gateway_recovers_when_space_returns: needs root to mount a tmpfs"
        );
        return;
    }
    let h = harness(&[], |cfg| {
        // Long enough to span the whole full-disk phase: the delivery stays pending through it.
        let mut retry = vec!["0s".to_string()];
        retry.extend(std::iter::repeat_n("250ms".to_string(), 200));
        cfg.endpoint("app").retry = retry;
    });
    let data = h.data_dir();
    let _mounted = match tmpfs(&data, "16m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED a_full_disk_gets_451_and_the_gateway_recovers_when_space_returns: {e}");
            return;
        }
    };
    let gw = h.start();
    still_serving(&h, &gw, "start");

    // Acknowledged before the disk fills; its endpoint is down, so it stays pending through it.
    h.rx.set_status(503);
    let mut c = SmtpClient::ready(gw.smtp);
    let pending =
        c.send_mail("ada@sender.test", &["inbox@example.test"], &message("pending@full.test", "pending", 4000));
    h.wait_until(SHORT, "a failed attempt of the pending message", || !h.rx.requests_for_message(&pending).is_empty());

    wal_filler_table(&h);
    let filler = data.join("filler");
    let filled = fill(&filler);
    fill_wal(&h);
    eprintln!("disk_full: filled data_dir with {}", mib(filled));
    let mut replies = Vec::new();
    for (i, size) in [300usize, 20_000, 2_000_000].into_iter().enumerate() {
        c.cmd("RSET").expect(250, "2.0.0");
        c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
        c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
        let r = c.data(&message(&format!("full-{i}@full.test"), "while full", size));
        assert!(
            matches!(r.code, 451 | 452) && r.enhanced().starts_with("4."),
            "a {size}-byte message on a full disk: expected 451/452, got `{r}`\n{}",
            h.logs()
        );
        replies.push(format!("{size} B: {r}"));
    }
    eprintln!("disk_full: replies while full: {replies:?}");
    h.wait_until(SHORT, "healthz 503 while the disk is full", || healthz(&gw) == 503);
    // The scheduler cannot claim work either (a claim is a write): it pauses, says so, and must pick the
    // pending delivery up again by itself once there is space.
    h.wait_until(SHORT, "the scheduler to report it cannot use the queue", || {
        !log_lines(&h, "disk is full").is_empty()
    });
    assert!(gw.alive(), "the gateway died on a full disk\n{}", h.logs());

    // Space returns: no restart, mail is accepted again, the acknowledged message is delivered.
    std::fs::remove_file(&filler).unwrap();
    h.rx.set_status(200);
    h.wait_until(SHORT, "healthz 200 once space returns", || healthz(&gw) == 200);
    h.wait_delivery_status(&pending, "succeeded", Duration::from_secs(20));
    c.cmd("RSET").expect(250, "2.0.0");
    let after = c.send_mail("ada@sender.test", &["inbox@example.test"], &message("after@full.test", "after", 2000));
    h.wait_delivery_status(&after, "succeeded", SHORT);
    still_serving(&h, &gw, "space returned");
    assert_eq!(integrity(&h), "ok");
    assert_eq!(orphan_spool_files(&h), Vec::<String>::new(), "spool files without a record: half-written mail");
    assert!(foreign_files(&data).is_empty(), "unexpected files in data_dir: {:?}", foreign_files(&data));
}

/// A delivery attempt in flight when the disk fills cannot be recorded. The acknowledged message must
/// still be delivered once space returns and the endpoint answers, without a restart.
#[test]
fn an_attempt_in_flight_when_the_disk_fills_is_made_again_once_space_returns() {
    if postgres::on_postgres() {
        eprintln!(
            "SKIPPED an_attempt_in_flight_when_the_disk_fills_is_made_again_once_space_returns: the store is \
             PostgreSQL, data_dir holds no mail (store_faults.rs makes the database read-only mid-attempt)"
        );
        return;
    }
    let h = harness(&[], |cfg| cfg.endpoint("app").retry = strings(&["0s", "300ms", "300ms", "300ms", "300ms"]));
    let data = h.data_dir();
    let _mounted = match tmpfs(&data, "16m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED an_attempt_in_flight_when_the_disk_fills_is_made_again_once_space_returns: {e}");
            return;
        }
    };
    let gw = h.start();

    // The endpoint holds the first attempt for 1.5 s and then refuses it; the disk fills meanwhile.
    h.rx.set_status(503);
    h.rx.set_delay(Duration::from_millis(1500));
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &message("inflight@full.test", "in flight", 2000));
    h.wait_until(SHORT, "the first attempt to reach the endpoint", || !h.rx.requests_for_message(&id).is_empty());
    wal_filler_table(&h);
    let filler = data.join("filler");
    fill(&filler);
    fill_wal(&h);
    h.wait_until(SHORT, "the attempt's outcome to fail to be recorded", || {
        !log_lines(&h, "cannot record a delivery attempt").is_empty()
    });

    std::fs::remove_file(&filler).unwrap();
    h.rx.set_delay(Duration::ZERO);
    h.rx.set_status(200);
    h.wait_until(SHORT, "healthz 200 once space returns", || healthz(&gw) == 200);
    let got = poll(Duration::from_secs(15), || h.rx.requests_for_message(&id).len() >= 2);
    let d = h.deliveries(&["--message", &id]);
    assert!(
        got,
        "the acknowledged message {id} was not attempted again within 15 s after space returned (its attempt could \
not be recorded while the disk was full); delivery now: {d:?}\n{}",
        h.logs()
    );
    h.wait_delivery_status(&id, "succeeded", SHORT);
}
