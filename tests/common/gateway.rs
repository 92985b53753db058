//! `mxhook serve` as a child process: started on port-0 listeners, its addresses read from the log
//! (IPv4 or IPv6, ANSI colours stripped), its log collected, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cli::mxhook;
use super::wait::poll;

pub struct Gateway {
    child: Child,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Gateway {
    /// Starts `mxhook --config CONFIG serve` in `cwd` and waits (30 s) for both listeners to be announced.
    pub fn spawn(config: &Path, cwd: &Path) -> Gateway {
        let mut child = mxhook(&["--config", config.to_str().unwrap(), "serve"], cwd)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", super::BIN));
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), log.clone(), "");
        drain(child.stdout.take().unwrap(), log.clone(), "[stdout] ");

        let mut listening = None;
        let mut exited = None;
        let up = poll(Duration::from_secs(30), || {
            let text = strip_ansi(&log.lock().unwrap());
            listening = announced(&text, "smtp listening on ").zip(announced(&text, "http listening on "));
            exited = child.try_wait().unwrap();
            listening.is_some() || exited.is_some()
        });
        if let Some((smtp, http)) = listening {
            return Gateway { child, smtp, http, log, exited: None };
        }
        if let Some(status) = exited {
            std::thread::sleep(Duration::from_millis(100)); // let the drain threads finish
            panic!("mxhook serve exited with {status} before listening:\n{}", log.lock().unwrap());
        }
        assert!(!up);
        let _ = child.kill();
        panic!("mxhook serve did not announce its listeners within 30 s:\n{}", log.lock().unwrap());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log's ERROR and WARN lines, one per line ("" when there are none).
    pub fn problems(&self) -> String {
        let log = self.log();
        log.lines().filter(|l| l.contains(" ERROR ") || l.contains(" WARN ")).collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; the child is not reaped until `wait_exit`/drop.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits for the process to exit; panics with the log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let mut status = None;
        if !poll(timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        }) {
            panic!("mxhook serve did not exit within {timeout:?}:\n{}", self.log());
        }
        self.exited = status;
        status.unwrap()
    }

    /// True while the process runs (not exited, not a zombie waiting to be reaped).
    pub fn alive(&self) -> bool {
        alive(self.pid())
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        vm_rss_kib(self.pid())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The process's resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Appends each line of `stream` to `log`, prefixed, on a thread of its own.
pub fn drain(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>, prefix: &'static str) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let mut l = log.lock().unwrap();
            l.push_str(prefix);
            l.push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The address after `marker` (e.g. `smtp listening on 127.0.0.1:40211` or `[::1]:25`), if announced.
pub fn announced(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    let addr: String =
        log[at..].chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
    let addr = addr.trim_end_matches(['.', ':']);
    Some(addr.parse().unwrap_or_else(|e| panic!("cannot parse `{marker}{addr}` ({e}) in log:\n{log}")))
}
