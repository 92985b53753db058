//! What the reliability tests add to the spine harness: the short/long switch and a seeded RNG (so a
//! failing run can be repeated), process checks (alive, VmRSS), /healthz, a probe message that must
//! get through, the store read directly with rusqlite, and the allowed shape of data_dir.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

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

/// xorshift64*: small, fast, and the same sequence for the same seed on every machine.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
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

/// True while the gateway process runs (not exited, not a zombie waiting to be reaped).
pub fn alive(gw: &Gateway) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/status", gw.pid())) {
        Ok(s) => !s.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// Resident set size of the gateway in KiB (`VmRSS`).
pub fn rss_kib(gw: &Gateway) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).expect("/proc/PID/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Status of `GET /healthz` (0 when the HTTP side does not answer at all).
pub fn healthz(gw: &Gateway) -> u16 {
    http_status(gw.http, "/healthz")
}

/// A minimal HTTP/1.1 GET, status only.
pub fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

/// The gateway is up, healthy, and a normal message sent now is accepted and delivered: what must
/// hold after every hostile input. Returns the probe's message id.
#[track_caller]
pub fn still_serving(h: &Harness, gw: &Gateway, after: &str) -> String {
    assert!(alive(gw), "the gateway died after {after}\n{}", h.logs());
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

/// (message id, size, rcpt_to JSON) of every stored message.
pub fn stored_messages(h: &Harness) -> Vec<(String, i64, String)> {
    let c = db(h);
    let mut st = c.prepare("SELECT id, size, rcpt_to FROM messages ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Files in `data_dir/spool` (large messages' raw bytes) with no message record: half-stored mail
/// that was never acknowledged and should have been removed.
pub fn orphan_spool_files(h: &Harness) -> Vec<String> {
    let stored: Vec<String> = stored_messages(h).into_iter().map(|(id, _, _)| format!("{id}.eml")).collect();
    let spool = std::fs::read_dir(h.data_dir().join("spool")).unwrap();
    let names = spool.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| !stored.contains(n)).collect()
}

/// (status, count) of every delivery, from the database.
pub fn delivery_counts(h: &Harness) -> Vec<(String, i64)> {
    let c = db(h);
    let mut st = c.prepare("SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

pub fn deliveries_with(h: &Harness, status: &str) -> i64 {
    delivery_counts(h).into_iter().find(|(s, _)| s == status).map_or(0, |(_, n)| n)
}

/// `PRAGMA integrity_check` of the database: "ok" when the file is sound.
pub fn integrity(h: &Harness) -> String {
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
            [name] => matches!(*name, "mxhook.db" | "mxhook.db-wal" | "mxhook.db-shm" | "serve.lock" | "url.key"),
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

/// Every file (not directory) under `dir`, relative, '/'-separated, sorted. Symlinks are listed, not
/// followed.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(base, &p, out),
                _ => out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned()),
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// A bare SMTP client that never panics and waits as long as it is told: for gateways that are
/// killed under it, and for answers that may take longer than the spine client's 15 s.
pub struct Wire {
    pub r: std::io::BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Wire {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Wire> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Wire { r: std::io::BufReader::new(s.try_clone()?), w: s })
    }

    /// A connection from the local address `from` (any of 127.0.0.0/8 on Linux): another client.
    pub fn connect_from(from: &str, addr: SocketAddr) -> Wire {
        let s = socket_from(from, addr);
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Wire { r: std::io::BufReader::new(s.try_clone().unwrap()), w: s }
    }

    /// One (possibly multi-line) reply: (code, last line without CRLF).
    pub fn reply(&mut self) -> std::io::Result<(u16, String)> {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let code = line.get(..3).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, line.trim_end().to_string()));
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    /// `line` + CRLF, then its reply.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<(u16, String)> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// The greeting and EHLO; true when both were positive.
    pub fn hello(&mut self) -> bool {
        matches!(self.reply(), Ok((220, _))) && matches!(self.cmd("EHLO wire.test"), Ok((250, _)))
    }

    /// MAIL, RCPT, DATA and the dot-stuffed message; the reply to the data, or the first refusal.
    pub fn mail(&mut self, rcpt: &str, raw: &[u8]) -> std::io::Result<(u16, String)> {
        for (line, want) in [("MAIL FROM:<wire@sender.test>".to_string(), 250), (format!("RCPT TO:<{rcpt}>"), 250)] {
            let r = self.cmd(&line)?;
            if r.0 != want {
                return Ok(r);
            }
        }
        self.data(raw)
    }

    /// DATA and the dot-stuffed message: the reply to the data (or the refusal of DATA).
    pub fn data(&mut self, raw: &[u8]) -> std::io::Result<(u16, String)> {
        let r = self.cmd("DATA")?;
        if r.0 != 354 {
            return Ok(r);
        }
        self.send(&crate::helpers::smtp_client::data_stream(raw))?;
        self.reply()
    }
}

/// A TCP connection to `addr` from the local address `from`.
pub fn socket_from(from: &str, addr: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a fresh descriptor we own; sockaddr_in is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream: TcpStream = std::os::fd::FromRawFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as _;
        sa.sin_addr.s_addr = u32::from_ne_bytes(from.parse::<std::net::Ipv4Addr>().unwrap().octets());
        let len = std::mem::size_of_val(&sa) as libc::socklen_t;
        let rc = libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let SocketAddr::V4(to) = addr else { panic!("IPv4 only") };
        sa.sin_port = to.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
        let rc = libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect from {from}: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Panics unless the gateway's RSS grew by less than `limit_mib` since `before_kib`.
#[track_caller]
pub fn assert_flat(gw: &Gateway, before_kib: u64, limit_mib: u64, what: &str) -> u64 {
    let now = rss_kib(gw);
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
