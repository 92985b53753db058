//! What an operator watches: /metrics counters move as mail flows (accepted, refused by reason, attempts
//! by outcome, pending, per-endpoint consecutive failures), and /healthz answers 503 while the store
//! cannot take a write lock.
//!
//! How /healthz is made to fail here: the test opens the gateway's own SQLite file and holds
//! `BEGIN EXCLUSIVE`. In WAL mode that takes the database's single write lock, so the gateway can no
//! longer start a write transaction — exactly what "the store is not writable" means for ingest (a 250
//! needs a committed transaction). It needs no privileges (root ignores chmod; a read-only remount needs
//! CAP_SYS_ADMIN and fails with EBUSY while the gateway holds files open for writing).
//! A second test, for root only, makes data_dir's file system itself refuse writes (see below).
//! On PostgreSQL the first makes the database read-only instead, and the second does not apply.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

fn metric(m: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| {
        let names: Vec<&String> = m.keys().collect();
        panic!("no `{key}` in /metrics; have: {names:#?}")
    })
}

#[test]
fn metrics_move_as_mail_flows() {
    let h = setup(|cfg| cfg.endpoint("app").retry = strings(&["0s", "100ms", "1m"]), &[], &[]);
    let gw = h.start();
    let m = scrape(&gw);
    assert_eq!(metric(&m, "mxhook_messages_accepted_total"), 0.0, "before any mail");
    assert_eq!(metric(&m, "mxhook_deliveries_pending"), 0.0);

    // One session: a refused relay attempt, then one accepted message.
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<victim@elsewhere.test>").expect(550, "5.7.1");
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let first = c.data(b"Subject: counted\r\n\r\nhello\r\n").queued_id();
    h.wait_delivery_status(&first, "succeeded", SHORT);

    let mut m = scrape(&gw);
    h.wait_until(SHORT, "attempts{succeeded} to reach 1", || {
        m = scrape(&gw);
        m.get("mxhook_delivery_attempts_total{outcome=\"succeeded\"}").is_some_and(|v| *v >= 1.0)
    });
    assert_eq!(metric(&m, "mxhook_messages_accepted_total"), 1.0);
    assert_eq!(metric(&m, "mxhook_messages_rejected_total{reason=\"relay\"}"), 1.0);
    assert_eq!(metric(&m, "mxhook_delivery_attempts_total{outcome=\"succeeded\"}"), 1.0);
    assert_eq!(metric(&m, "mxhook_endpoint_consecutive_failures{endpoint=\"app\"}"), 0.0);
    assert_eq!(metric(&m, "mxhook_deliveries_pending"), 0.0);
    assert_eq!(metric(&m, "mxhook_oldest_pending_delivery_age_seconds"), 0.0);
    assert_eq!(metric(&m, "mxhook_delivery_attempt_duration_seconds_count"), 1.0);

    // The endpoint starts failing: attempts at +0 and +100 ms fail, the next is a minute away.
    h.rx.set_status(500);
    c.cmd("RSET").expect(250, "2.0.0");
    let second = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: failing\r\n\r\nhello\r\n");
    h.wait_until(SHORT, "two failed attempts in a row on endpoint app", || {
        m = scrape(&gw);
        m.get("mxhook_endpoint_consecutive_failures{endpoint=\"app\"}").is_some_and(|v| *v >= 2.0)
    });
    assert_eq!(metric(&m, "mxhook_endpoint_consecutive_failures{endpoint=\"app\"}"), 2.0);
    assert_eq!(metric(&m, "mxhook_deliveries_pending"), 1.0, "the failing delivery waits for its next attempt");
    assert_eq!(metric(&m, "mxhook_delivery_attempts_total{outcome=\"retry\"}"), 2.0);
    assert_eq!(metric(&m, "mxhook_messages_accepted_total"), 2.0);
    assert_eq!(metric(&m, "mxhook_delivery_attempt_duration_seconds_count"), 3.0);
    h.wait_until(SHORT, "the oldest pending delivery to have an age", || {
        m = scrape(&gw);
        m.get("mxhook_oldest_pending_delivery_age_seconds").is_some_and(|v| *v > 0.0)
    });

    // It recovers: a retry now succeeds and the failure streak resets.
    h.rx.set_status(200);
    let dlv = h.deliveries(&["--message", &second])[0]["id"].as_str().unwrap().to_string();
    h.cli(&["deliveries", "retry", &dlv]).assert_ok(&h.logs());
    h.wait_delivery_status(&second, "succeeded", SHORT);
    h.wait_until(SHORT, "the failure streak to reset after a success", || {
        m = scrape(&gw);
        m.get("mxhook_endpoint_consecutive_failures{endpoint=\"app\"}") == Some(&0.0)
    });
    assert_eq!(metric(&m, "mxhook_delivery_attempts_total{outcome=\"succeeded\"}"), 2.0);
    assert_eq!(metric(&m, "mxhook_deliveries_pending"), 0.0);
    assert_eq!(metric(&m, "mxhook_oldest_pending_delivery_age_seconds"), 0.0);
}

#[test]
fn healthz_is_503_while_the_store_cannot_be_written() {
    let h = setup(|_| {}, &[], &[]);
    let gw = h.start();
    let agent = agent();
    let url = format!("http://{}/healthz", gw.http);
    let ok = get(&agent, &url, &[]);
    assert_eq!(ok.status, 200, "healthz at start: {}", String::from_utf8_lossy(&ok.body));
    if h.database.is_some() {
        return read_only_database(&h, &gw);
    }

    let db = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).expect("open the gateway's database");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");
    let t = Instant::now();
    let locked = get(&agent, &url, &[]);
    let took = t.elapsed();
    assert_eq!(
        locked.status,
        503,
        "healthz while another process holds the database's write lock (answered after {took:?}): {}",
        String::from_utf8_lossy(&locked.body)
    );
    eprintln!("healthz answered 503 after {took:?} while the store was locked");

    db.execute_batch("ROLLBACK").unwrap();
    h.wait_until(Duration::from_secs(20), "healthz to answer 200 again once the lock is released", || {
        get(&agent, &url, &[]).status == 200
    });
    // And the store really works again: a message is accepted and delivered.
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: after\r\n\r\nhi\r\n");
    h.event_for(&id);
}

/// PostgreSQL's "cannot be written": the database turns read-only (`default_transaction_read_only`,
/// as a primary demoted mid-failover looks), for the gateway's new sessions; its sessions are ended
/// so that its pool opens new ones. SMTP answers 451, /healthz 503; both recover when it is writable.
fn read_only_database(h: &Harness, gw: &Gateway) {
    let agent = agent();
    let url = format!("http://{}/healthz", gw.http);
    h.set_database_read_only(true);
    h.wait_until(SHORT, "healthz 503 while the database is read-only", || get(&agent, &url, &[]).status == 503);
    let mut c = SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let refused = c.data(b"Subject: read-only\r\n\r\nhi\r\n");
    assert_eq!(
        (refused.code, refused.enhanced()),
        (451, "4.3.0"),
        "a message while the database is read-only: {refused}"
    );
    assert!(h.messages().is_empty(), "nothing was stored");

    h.set_database_read_only(false);
    h.wait_until(Duration::from_secs(20), "healthz 200 once the database takes writes", || {
        get(&agent, &url, &[]).status == 200
    });
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: after\r\n\r\nhi\r\n");
    h.event_for(&id);
}

/// Unmounts (lazily) what the test mounted, after the gateway using it is gone.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = std::process::Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The wording: "healthz flips when data_dir is read-only". A file system cannot be remounted
/// read-only while the gateway holds files open for writing (EBUSY), so this puts data_dir on its own
/// ext4 loop mount and shuts that file system down (EXT4_IOC_SHUTDOWN, what the kernel does to a failing
/// disk): every write then fails, and the gateway answers 451 to mail. /healthz must say so too.
/// Needs root and loop devices; without them it says why and does nothing.
#[test]
fn healthz_is_503_when_data_dir_stops_taking_writes() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED healthz_is_503_when_data_dir_stops_taking_writes: needs root for a loop mount");
        return;
    }
    let h = setup(|_| {}, &[], &[]);
    if h.database.is_some() {
        eprintln!(
            "SKIPPED healthz_is_503_when_data_dir_stops_taking_writes: the store is PostgreSQL, data_dir holds no mail \
             (the read-only database case is in healthz_is_503_while_the_store_cannot_be_written)"
        );
        return;
    }
    let img = h.dir.path().join("data.img");
    let data = h.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    if let Err(e) = run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), img.as_os_str()]) {
        eprintln!("SKIPPED healthz_is_503_when_data_dir_stops_taking_writes: {e}");
        return;
    }
    if let Err(e) = run("mount", &["-o".as_ref(), "loop".as_ref(), img.as_os_str(), data.as_os_str()]) {
        eprintln!("SKIPPED healthz_is_503_when_data_dir_stops_taking_writes: {e}");
        return;
    }
    let _mounted = Mounted(data.clone());
    let gw = h.start();
    let agent = agent();
    let url = format!("http://{}/healthz", gw.http);
    assert_eq!(get(&agent, &url, &[]).status, 200, "healthz at start");
    let mut c = SmtpClient::ready(gw.smtp);
    c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: before\r\n\r\nhi\r\n");

    // EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); flag 2 = EXT4_GOING_FLAGS_NOLOGFLUSH.
    let dir = std::fs::File::open(&data).unwrap();
    let flags: u32 = 2;
    // SAFETY: the ioctl reads one u32 from a valid pointer; fd is an open directory on the ext4 mount.
    let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&dir), 0x8004_587D, &flags) };
    assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
    assert!(std::fs::write(data.join("probe"), b"x").is_err(), "data_dir still takes writes after the shutdown");

    // The gateway cannot store mail any more…
    c.cmd("RSET").expect(250, "2.0.0");
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let refused = c.data(b"Subject: after\r\n\r\nhi\r\n");
    assert_eq!(refused.code, 451, "a message while data_dir takes no writes: {refused}");
    // …and /healthz must say so.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        last = get(&agent, &url, &[]).status;
        if last == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last, 503, "healthz while every write to data_dir fails (mail gets 451 4.3.0)");
    drop(gw);
}
