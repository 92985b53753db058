//! What the reliability tests add to the common harness: the short/long switch and a seeded RNG (so a
//! failing run can be repeated), a probe message that must get through, the store read directly with
//! rusqlite, the allowed shape of data_dir, memory checks, and tmpfs mounts.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// `MXHOOK_LONG=1`: the long forms (more kills, more fuzz executions, bigger inputs).
pub fn long() -> bool {
    std::env::var("MXHOOK_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `short` in CI, `long` when `MXHOOK_LONG=1`.
pub fn scale<T>(short: T, long_form: T) -> T {
    if long() { long_form } else { short }
}

/// The seed for a test's RNG: `MXHOOK_SEED` when set (to repeat a run), else from the clock. Printed,
/// so every failure message can be reproduced.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("MXHOOK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("{test}: seed {s} (repeat with MXHOOK_SEED={s})");
    s
}

/// A harness on `Config::basic` with the given extra `[smtp]` lines, and the per-IP limits out of the
/// way unless they are among them (every test client is 127.0.0.1), adjusted by `tweak`.
pub fn harness(smtp: &[&str], tweak: impl FnOnce(&mut Config)) -> Harness {
    Harness::with(|cfg| {
        cfg.smtp_extra = smtp.iter().map(|s| s.to_string()).collect();
        for default in ["max_sessions_per_ip = 1000", "max_messages_per_minute_per_ip = 0"] {
            let key = default.split(' ').next().unwrap();
            if !smtp.iter().any(|l| l.split([' ', '=']).next() == Some(key)) {
                cfg.smtp_extra.push(default.to_string());
            }
        }
        tweak(cfg);
    })
}

/// The gateway is up, healthy, and a normal message sent now is accepted and delivered: what must
/// hold after every hostile input. Returns the probe's message id.
#[track_caller]
pub fn still_serving(h: &Harness, gw: &Gateway, after: &str) -> String {
    assert!(gw.alive(), "the gateway died after {after}\n{}", h.logs());
    let status = healthz(gw);
    assert_eq!(status, 200, "/healthz after {after}\n{}", h.logs());
    let mut c = SmtpClient::ready(gw.smtp);
    let body =
        format!("From: <probe@sender.test>\r\nTo: <probe@example.test>\r\nSubject: probe after {after}\r\n\r\nok\r\n");
    c.cmd("MAIL FROM:<probe@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<probe@example.test>").expect(250, "2.1.5");
    let id = c.data(body.as_bytes()).queued_id();
    let _ = c.cmd("QUIT");
    h.wait_until(SHORT, &format!("the probe message after {after} to be delivered"), || {
        !h.rx.requests_for_message(&id).is_empty()
    });
    id
}

/// The gateway's database, opened read-only beside the running process (WAL allows it).
pub fn db(h: &Harness) -> rusqlite::Connection {
    let path = h.data_dir().join("mxhook.db");
    let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Rows of `sql` in the harness's PostgreSQL database (None: the run is on SQLite), each row's
/// columns split at the unit separator.
fn pg_rows(h: &Harness, sql: &str) -> Option<Vec<Vec<String>>> {
    let url = h.database.as_ref()?;
    let db = url.rsplit('/').next().unwrap_or_default();
    let out = crate::common::postgres::shared().psql(db, sql).unwrap_or_else(|e| panic!("{e}"));
    Some(out.lines().filter(|l| !l.is_empty()).map(|l| l.split('\x1f').map(str::to_string).collect()).collect())
}

/// (message id, size, rcpt_to JSON) of every stored message.
pub fn stored_messages(h: &Harness) -> Vec<(String, i64, String)> {
    if let Some(rows) = pg_rows(h, "SELECT id, size, rcpt_to FROM messages ORDER BY id") {
        return rows.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap_or(-1), r[2].clone())).collect();
    }
    let c = db(h);
    let mut st = c.prepare("SELECT id, size, rcpt_to FROM messages ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Files in `data_dir/spool` (large messages' raw bytes) with no message record: half-stored mail
/// that was never acknowledged and should have been removed.
pub fn orphan_spool_files(h: &Harness) -> Vec<String> {
    if h.database.is_some() {
        // No spool on PostgreSQL: the bytes are rows of the message's own transaction.
        return Vec::new();
    }
    let stored: Vec<String> = stored_messages(h).into_iter().map(|(id, _, _)| format!("{id}.eml")).collect();
    let spool = std::fs::read_dir(h.data_dir().join("spool")).unwrap();
    let names = spool.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| !stored.contains(n)).collect()
}

/// How many attachments the store recorded for message `id`.
pub fn stored_attachment_count(h: &Harness, id: &str) -> i64 {
    // Ids are ours (`msg_` + ULID): safe to put in the SQL text.
    let sql = format!("SELECT COUNT(*) FROM attachments WHERE message_id = '{id}'");
    if let Some(rows) = pg_rows(h, &sql) {
        return rows[0][0].parse().unwrap_or(-1);
    }
    db(h).query_row("SELECT COUNT(*) FROM attachments WHERE message_id = ?1", [id], |r| r.get(0)).unwrap()
}

/// (status, count) of every delivery, from the database.
pub fn delivery_counts(h: &Harness) -> Vec<(String, i64)> {
    if let Some(rows) = pg_rows(h, "SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status") {
        return rows.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap_or(-1))).collect();
    }
    let c = db(h);
    let mut st = c.prepare("SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

pub fn deliveries_with(h: &Harness, status: &str) -> i64 {
    delivery_counts(h).into_iter().find(|(s, _)| s == status).map_or(0, |(_, n)| n)
}

/// `PRAGMA integrity_check` of the database: "ok" when the file is sound.
pub fn integrity(h: &Harness) -> String {
    if h.database.is_some() {
        // PostgreSQL checks its own pages; what the tests mean is the file SQLite keeps.
        return "ok".into();
    }
    db(h).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Every file under data_dir must be one the gateway makes: the database and its WAL, the lock, the
/// link key, `spool/msg_….eml` and `attachments/msg_…/N`. Returns the offenders.
pub fn foreign_files(data_dir: &Path) -> Vec<String> {
    let is_id = |s: &str| s.starts_with("msg_") && s[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    let mut bad = Vec::new();
    for f in files_under(data_dir) {
        let parts: Vec<&str> = f.split('/').collect();
        let ok = match parts.as_slice() {
            [name] => matches!(
                *name,
                "mxhook.db" | "mxhook.db-wal" | "mxhook.db-shm" | "serve.lock" | "url.key" | "gateway.run"
            ),
            ["spool", name] => name.strip_suffix(".eml").is_some_and(is_id),
            ["attachments", id, n] => is_id(id) && n.parse::<usize>().is_ok_and(|v| v.to_string() == *n),
            _ => false,
        };
        if !ok {
            bad.push(f);
        }
    }
    bad
}

/// The message's own Message-ID as the event reports it (`message.message_id`, without brackets).
pub fn message_id_of(r: &Request) -> Option<String> {
    r.json()["message"]["message_id"].as_str().map(str::to_string)
}

/// The log of every gateway the harness started, lines containing `needle`.
pub fn log_lines(h: &Harness, needle: &str) -> Vec<String> {
    h.logs().lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// A plain message with a given Message-ID and a body of `body_len` bytes of text.
pub fn message(message_id: &str, subject: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load <load@sender.test>\r\nTo: <inbox@example.test>\r\nMessage-ID: <{message_id}>\r\n\
Subject: {subject}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz.\r\n";
    while m.len() < body_len {
        m.extend_from_slice(line);
    }
    m
}

/// Formats a count of bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Panics unless the gateway's RSS grew by less than `limit_mib` since `before_kib`.
#[track_caller]
pub fn assert_flat(gw: &Gateway, before_kib: u64, limit_mib: u64, what: &str) -> u64 {
    let now = gw.rss_kib();
    let grew = now.saturating_sub(before_kib);
    assert!(grew < limit_mib * 1024, "memory grew by {grew} KiB ({before_kib} -> {now} KiB) with {what}");
    eprintln!("rss: {what}: {before_kib} -> {now} KiB");
    grew
}

/// Unmounts (lazily) what a test mounted, after the gateway using it is gone.
pub struct Unmount(pub std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs a command; Err with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts a tmpfs of `size` (e.g. "16m") on `dir` (created if needed); Err says why not (not root,
/// no mount).
pub fn tmpfs(dir: &Path, size: &str) -> Result<Unmount, String> {
    if !is_root() {
        return Err("needs root to mount a tmpfs".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])?;
    Ok(Unmount(dir.to_path_buf()))
}
