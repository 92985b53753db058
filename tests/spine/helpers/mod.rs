//! Test harness: a temp data_dir and config file, the real `mxhook` binary as a child process (killed on
//! drop), a real HTTP receiver, the CLI as a subprocess, and `wait_until` for deadline-bounded polling.

pub mod receiver;
pub mod smtp_client;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use receiver::{Receiver, Request};
pub use smtp_client::{SmtpClient, as_sent, to_crlf};

pub const BIN: &str = env!("CARGO_BIN_EXE_mxhook");

/// Signing secrets for the test endpoints (32 random bytes each).
pub const SECRET_A: &str = "whsec_lXFjIA/27C86ieYNnNjrpW0ZTSHRUsS9qp3VI/8xI9E=";
pub const SECRET_B: &str = "whsec_3+wnsLvZwR7RocUHvTGH87dI+bqUmF6rBGwAjfwiYZc=";

/// The configured domain of `Config::basic`.
pub const DOMAIN: &str = "example.test";

// ---------------------------------------------------------------------------------------------------
// Config

pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub secret: String,
    pub timeout: String,
    pub retry: Vec<String>,
    /// Requests in flight at once; None: the default.
    pub concurrency: Option<u32>,
}

pub struct Config {
    pub hostname: String,
    pub max_message_size: Option<String>,
    pub max_recipients: Option<u32>,
    pub max_sessions: Option<u32>,
    /// Further `key = value` lines for the [smtp] section (e.g. timeouts).
    pub smtp_extra: Vec<String>,
    /// (domain, endpoint name)
    pub domains: Vec<(String, String)>,
    pub endpoints: Vec<Endpoint>,
}

impl Config {
    /// One domain `example.test` -> endpoint `app` at `rx/hooks/app`, SECRET_A, retry 0s, 200ms, 400ms.
    pub fn basic(rx: &Receiver) -> Config {
        Config {
            hostname: "mx.spine.test".into(),
            max_message_size: None,
            max_recipients: None,
            max_sessions: None,
            smtp_extra: Vec::new(),
            domains: vec![(DOMAIN.into(), "app".into())],
            endpoints: vec![Endpoint {
                name: "app".into(),
                url: rx.url("/hooks/app"),
                secret: SECRET_A.into(),
                timeout: "5s".into(),
                retry: strings(&["0s", "200ms", "400ms"]),
                concurrency: None,
            }],
        }
    }

    pub fn endpoint(&mut self, name: &str) -> &mut Endpoint {
        self.endpoints.iter_mut().find(|e| e.name == name).expect("no such endpoint in test config")
    }

    pub fn render(&self, data_dir: &Path) -> String {
        let mut s = String::new();
        writeln!(s, "[smtp]").unwrap();
        writeln!(s, "listen = [\"127.0.0.1:0\"]").unwrap();
        writeln!(s, "hostname = {}", q(&self.hostname)).unwrap();
        if let Some(v) = &self.max_message_size {
            writeln!(s, "max_message_size = {}", q(v)).unwrap();
        }
        if let Some(v) = self.max_recipients {
            writeln!(s, "max_recipients = {v}").unwrap();
        }
        if let Some(v) = self.max_sessions {
            writeln!(s, "max_sessions = {v}").unwrap();
        }
        for line in &self.smtp_extra {
            writeln!(s, "{line}").unwrap();
        }
        writeln!(s, "\n[storage]\ndata_dir = {}", q(&data_dir.display().to_string())).unwrap();
        writeln!(s, "\n[http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:8025\"").unwrap();
        for (name, endpoint) in &self.domains {
            writeln!(s, "\n[[domains]]\nname = {}\nendpoint = {}", q(name), q(endpoint)).unwrap();
        }
        for e in &self.endpoints {
            writeln!(s, "\n[endpoints.{}]", e.name).unwrap();
            writeln!(s, "url = {}", q(&e.url)).unwrap();
            writeln!(s, "secret = {}", q(&e.secret)).unwrap();
            writeln!(s, "timeout = {}", q(&e.timeout)).unwrap();
            let retry: Vec<String> = e.retry.iter().map(|r| q(r)).collect();
            writeln!(s, "retry = [{}]", retry.join(", ")).unwrap();
            if let Some(n) = e.concurrency {
                writeln!(s, "concurrency = {n}").unwrap();
            }
        }
        s
    }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A TOML basic string (JSON string syntax is valid TOML for what we write).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Harness

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub rx: Receiver,
    /// Logs of every gateway this harness started, shown when a wait times out.
    logs: Mutex<Vec<Arc<Mutex<String>>>>,
    /// (URL path, secret) of each configured endpoint: on drop every request must verify.
    secrets: Mutex<Vec<(String, String)>>,
}

impl Harness {
    /// A temp dir and a receiver; no config written yet.
    pub fn new() -> Harness {
        let dir = tempfile::Builder::new().prefix("mxhook-spine-").tempdir().unwrap();
        let config_path = dir.path().join("gateway.toml");
        Harness {
            dir,
            config_path,
            rx: Receiver::start(),
            logs: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        }
    }

    /// A harness with `Config::basic` adjusted by `tweak`, written to disk.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let h = Harness::new();
        let mut cfg = Config::basic(&h.rx);
        tweak(&mut cfg);
        h.write_config(&cfg);
        h
    }

    pub fn basic() -> Harness {
        Harness::with(|_| {})
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write_config(&self, cfg: &Config) {
        self.write_config_with_data_dir(cfg, &self.data_dir());
    }

    /// `write_config` with another data_dir (e.g. a relative one).
    pub fn write_config_with_data_dir(&self, cfg: &Config, data_dir: &Path) {
        std::fs::write(&self.config_path, cfg.render(data_dir)).unwrap();
        let mut secrets = self.secrets.lock().unwrap();
        for e in &cfg.endpoints {
            if let Some(path) = e.url.strip_prefix(&format!("http://{}", self.rx.addr)) {
                secrets.push((path.to_string(), e.secret.clone()));
            }
        }
    }

    /// Starts `mxhook serve` and waits for both listeners to be announced.
    pub fn start(&self) -> Gateway {
        let gw = Gateway::spawn(&self.config_path, self.dir.path());
        self.logs.lock().unwrap().push(gw.log.clone());
        gw
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, log) in self.logs.lock().unwrap().iter().enumerate() {
            writeln!(out, "----- gateway #{} log -----\n{}", i + 1, log.lock().unwrap()).unwrap();
        }
        out
    }

    /// Polls `cond` every 20 ms until it holds; panics with `what` and the gateway logs after `timeout`.
    #[track_caller]
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\nreceiver got {} request(s)\n{}",
                    self.rx.count(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the receiver has at least `n` requests and returns them all.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_until(timeout, &format!("{n} webhook request(s)"), || self.rx.count() >= n);
        self.rx.requests()
    }

    /// Runs the CLI with `--config` and `args`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut full = vec!["--config", self.config_path.to_str().unwrap()];
        full.extend_from_slice(args);
        run_cli(&full, self.dir.path())
    }

    /// Runs the CLI, requires exit 0 and parses stdout as JSON.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        out.assert_ok(&self.logs());
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`mxhook {}` did not print JSON ({e}):\n{}", args.join(" "), out.describe()))
    }

    /// `deliveries list --json [extra…]` as a vector.
    #[track_caller]
    pub fn deliveries(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["deliveries", "list", "--json"];
        args.extend_from_slice(extra);
        as_array(self.cli_json(&args))
    }

    #[track_caller]
    pub fn messages(&self) -> Vec<Value> {
        as_array(self.cli_json(&["messages", "list", "--json"]))
    }

    /// `messages show MSG --raw` bytes.
    #[track_caller]
    pub fn raw(&self, msg_id: &str) -> Vec<u8> {
        let out = self.cli(&["messages", "show", msg_id, "--raw"]);
        out.assert_ok(&self.logs());
        out.stdout
    }

    /// The raw bytes as the store holds them on disk, read without the gateway: the database's
    /// `contents` row (messages up to 1 MiB) or the spool file (larger ones). None: neither exists.
    pub fn stored_raw(&self, msg_id: &str) -> Option<Vec<u8>> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let db =
            rusqlite::Connection::open_with_flags(self.data_dir().join("mxhook.db"), flags).expect("open the database");
        let inline =
            db.query_row("SELECT data FROM contents WHERE message_id = ?1 AND part = -1", [msg_id], |r| r.get(0));
        inline.ok().or_else(|| std::fs::read(self.data_dir().join("spool").join(format!("{msg_id}.eml"))).ok())
    }

    /// Waits until the message's only delivery has `status`, and returns it (from `deliveries list`).
    #[track_caller]
    pub fn wait_delivery_status(&self, msg_id: &str, status: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        self.wait_until(timeout, &format!("delivery of {msg_id} to become {status}"), || {
            let list = self.deliveries(&["--message", msg_id]);
            last = Value::Array(list.clone());
            list.len() == 1 && list[0]["status"] == status
        });
        last[0].clone()
    }
}

impl Drop for Harness {
    /// Every request any test received must pass the stock verifier with its endpoint's secret.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let secrets = self.secrets.lock().unwrap().clone();
        for r in self.rx.requests() {
            let secret = secrets
                .iter()
                .rev()
                .find(|(p, _)| *p == r.path)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| panic!("request to unconfigured path {}", r.path));
            r.assert_signed(&secret);
        }
    }
}

#[track_caller]
pub fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Gateway process

pub struct Gateway {
    child: Child,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Gateway {
    fn spawn(config: &Path, cwd: &Path) -> Gateway {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .env_remove("MXHOOK_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), log.clone(), "");
        drain(child.stdout.take().unwrap(), log.clone(), "[stdout] ");

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = strip_ansi(&log.lock().unwrap());
            if let (Some(smtp), Some(http)) =
                (announced(&text, "smtp listening on "), announced(&text, "http listening on "))
            {
                return Gateway { child, smtp, http, log, exited: None };
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // let the drain threads finish
                panic!("mxhook serve exited with {status} before listening:\n{}", log.lock().unwrap());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("mxhook serve did not announce its listeners within 30 s:\n{}", log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!("mxhook serve did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

fn drain(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>, prefix: &'static str) {
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

fn strip_ansi(s: &str) -> String {
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

/// The address after `marker` (e.g. `smtp listening on 127.0.0.1:40211`), if announced.
fn announced(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    let addr: String =
        log[at..].chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
    let addr = addr.trim_end_matches(['.', ':']);
    Some(addr.parse().unwrap_or_else(|e| panic!("cannot parse `{marker}{addr}` ({e}) in log:\n{log}")))
}

// ---------------------------------------------------------------------------------------------------
// CLI

pub struct CliOutput {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CliOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// stdout and stderr together, for matching messages wherever the CLI prints them.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout_str(), self.stderr_str())
    }
    pub fn describe(&self) -> String {
        format!(
            "`mxhook {}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(4000)]),
            self.stderr_str()
        )
    }
    #[track_caller]
    pub fn assert_ok(&self, context: &str) {
        assert_eq!(self.code, Some(0), "{}\n{context}", self.describe());
    }
}

/// Runs the binary with `args` (no config injected) and a 30 s deadline.
pub fn run_cli(args: &[&str], cwd: &Path) -> CliOutput {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("MXHOOK_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    wait_cli(&mut child, args)
}

pub fn wait_cli(child: &mut Child, args: &[&str]) -> CliOutput {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`mxhook {}` did not finish within 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------------
// Small utilities

/// Standard base64 decoding (padding optional), enough to check `whsec_` secrets.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Parses a message the way the gateway must (mail-parser 0.11.9 is the oracle).
pub fn oracle(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    mail_parser::MessageParser::default().parse(raw)
}

/// The parsed.status the gateway must report: a message mail-parser can't parse, or one without any
/// header, is "failed"; anything else is "complete".
pub fn expected_parse_status(raw: &[u8]) -> &'static str {
    match oracle(raw) {
        Some(m) if !m.headers().is_empty() => "complete",
        _ => "failed",
    }
}

pub const SHORT: Duration = Duration::from_secs(10);
