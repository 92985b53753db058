//! What the deploy tests add to the spine harness: self-signed certificates made with the `openssl` CLI,
//! `[smtp.tls]` in the test config, an interactive `openssl s_client -starttls smtp` session (the real TLS
//! client), a certificate probe, an SMTP client that connects from a chosen loopback address
//! (127.0.0.2 is "another IP"), /metrics scraping, child processes killed on drop, and Standard Webhooks
//! signing with ring.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::helpers::smtp_client::{Reply, data_stream};
use crate::helpers::*;

pub const OPENSSL: &str = "openssl";
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond` every 20 ms until it holds; panics with `what` and `context()` after `timeout`.
#[track_caller]
pub fn wait_for(timeout: Duration, what: &str, context: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Panics with an install hint when the `openssl` CLI is missing (the tests need a real TLS client).
pub fn require_openssl() {
    match Command::new(OPENSSL).arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("the `openssl` command is needed by these tests: apt-get install openssl (.ci/apt-packages)"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Certificates

pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cn: String,
}

/// A self-signed P-256 certificate `CN=cn` with `sans` as DNS names, valid for `days`, written to
/// `dir/{stem}.crt` and `dir/{stem}.key`.
#[track_caller]
pub fn make_cert(dir: &Path, stem: &str, cn: &str, sans: &[&str], days: u32) -> Cert {
    require_openssl();
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let san: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
    let mut cmd = Command::new(OPENSSL);
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", &days.to_string(), "-subj", &format!("/CN={cn}")]);
    if !san.is_empty() {
        cmd.args(["-addext", &format!("subjectAltName={}", san.join(","))]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run openssl req");
    assert!(out.status.success(), "openssl req failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Cert { cert, key, cn: cn.to_string() }
}

/// The `[smtp.tls]` lines for `Config::smtp_extra` (they must come last in `smtp_extra`).
pub fn tls_lines(c: &Cert, require: bool) -> Vec<String> {
    vec![
        "[smtp.tls]".into(),
        format!("cert = {}", serde_json::to_string(&c.cert.display().to_string()).unwrap()),
        format!("key = {}", serde_json::to_string(&c.key.display().to_string()).unwrap()),
        format!("require = {require}"),
    ]
}

// ---------------------------------------------------------------------------------------------------
// openssl s_client

/// A child process killed (and reaped) on drop, its stdout and stderr collected by threads.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub out: Arc<Mutex<String>>,
    pub err: Arc<Mutex<String>>,
    pub what: String,
}

impl Proc {
    #[track_caller]
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        Proc { stdin: child.stdin.take(), child, out, err, what: what.to_string() }
    }

    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub fn describe(&self) -> String {
        format!("--- {} stdout ---\n{}\n--- {} stderr ---\n{}", self.what, self.stdout(), self.what, self.stderr())
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

/// An SMTP session over TLS through `openssl s_client -starttls smtp`: s_client says EHLO, sees
/// STARTTLS, upgrades; from then on what we write to its stdin goes over TLS and the server's replies
/// come out of its stdout. `-brief` prints the negotiated protocol, cipher and peer certificate on stderr.
pub struct TlsSession {
    pub proc: Proc,
    /// How many stdout lines have been read as replies.
    consumed: usize,
}

impl TlsSession {
    /// Connects and waits for the TLS handshake to finish (`extra`: e.g. `-tls1_2`).
    #[track_caller]
    pub fn start(addr: SocketAddr, extra: &[&str]) -> TlsSession {
        require_openssl();
        let mut cmd = Command::new(OPENSSL);
        cmd.args(["s_client", "-starttls", "smtp", "-connect", &addr.to_string(), "-brief", "-ign_eof", "-nocommands"])
            .args(extra);
        let mut proc = Proc::spawn(cmd, "openssl s_client");
        let deadline = Instant::now() + WAIT;
        while !proc.stderr().contains("CONNECTION ESTABLISHED") {
            if proc.exited() || Instant::now() >= deadline {
                std::thread::sleep(Duration::from_millis(50)); // let the readers finish
                panic!("STARTTLS handshake with {addr} did not complete\n{}", proc.describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The rest of the -brief summary follows on the same stderr.
        let deadline = Instant::now() + WAIT;
        while !proc.stderr().contains("Peer certificate:") && Instant::now() < deadline && !proc.exited() {
            std::thread::sleep(Duration::from_millis(10));
        }
        TlsSession { proc, consumed: 0 }
    }

    fn summary(&self, key: &str) -> String {
        let err = self.proc.stderr();
        err.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{key}` in s_client's summary\n{}", self.proc.describe()))
    }

    /// `TLSv1.3`, as s_client reports it.
    pub fn protocol(&self) -> String {
        self.summary("Protocol version:")
    }

    /// `TLS_AES_256_GCM_SHA384`, as s_client reports it.
    pub fn ciphersuite(&self) -> String {
        self.summary("Ciphersuite:")
    }

    /// `CN = mx-a.test`
    pub fn peer_certificate(&self) -> String {
        self.summary("Peer certificate:")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.proc.stdin.as_mut().expect("s_client stdin closed");
        if let Err(e) = stdin.write_all(bytes).and_then(|_| stdin.flush()) {
            panic!("write to s_client: {e}\n{}", self.proc.describe());
        }
    }

    /// The next whole reply from the server (multi-line replies joined), within `WAIT`.
    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.proc.stdout();
            let complete: Vec<&str> =
                out.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(|l| l.trim_end()).collect();
            let mut lines = Vec::new();
            for (i, l) in complete.iter().enumerate().skip(self.consumed) {
                assert!(
                    l.len() >= 3 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                    "not an SMTP reply line from s_client: {l:?}\n{}",
                    self.proc.describe()
                );
                lines.push((l[..3].parse::<u16>().unwrap(), l.get(4..).unwrap_or("").to_string()));
                if l.as_bytes().get(3) != Some(&b'-') {
                    self.consumed = i + 1;
                    let code = lines[0].0;
                    assert!(lines.iter().all(|(c, _)| *c == code), "mixed codes in {lines:?}");
                    return Reply { code, lines: lines.into_iter().map(|(_, t)| t).collect() };
                }
            }
            if Instant::now() >= deadline || self.proc.exited() {
                std::thread::sleep(Duration::from_millis(50));
                panic!("no complete SMTP reply over TLS within {WAIT:?}\n{}", self.proc.describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    #[track_caller]
    pub fn data(&mut self, body: &[u8]) -> Reply {
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA over TLS: {r}");
        self.send(&data_stream(body));
        self.read_reply()
    }

    /// QUIT, expecting `221`.
    #[track_caller]
    pub fn quit(&mut self) {
        self.cmd("QUIT").expect(221, "2.0.0");
    }
}

/// The subject of the certificate a fresh STARTTLS handshake presents: `CN = …`.
#[track_caller]
pub fn presented_cert(addr: SocketAddr) -> String {
    let mut s = TlsSession::start(addr, &[]);
    let cert = s.peer_certificate();
    s.quit();
    cert
}

// ---------------------------------------------------------------------------------------------------
// An SMTP client from a chosen source address

pub struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    /// Connects from `from` (any port) to `addr` and returns the client and the greeting.
    #[track_caller]
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> (Smtp, Reply) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stream = rt
            .block_on(async {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(SocketAddr::new(from, 0))?;
                s.connect(addr).await
            })
            .unwrap_or_else(|e| panic!("connect from {from} to {addr}: {e}"));
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut c = Smtp { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// Connects from `from`, expects 220 and says EHLO.
    #[track_caller]
    pub fn ready_from(from: IpAddr, addr: SocketAddr) -> Smtp {
        let (mut c, greeting) = Smtp::connect_from(from, addr);
        assert_eq!(greeting.code, 220, "greeting to a client from {from}: {greeting}");
        let ehlo = c.cmd("EHLO client.test");
        assert_eq!(ehlo.code, 250, "EHLO: {ehlo}");
        c
    }

    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let mut raw = String::new();
            let n = self.reader.read_line(&mut raw).unwrap_or_else(|e| panic!("reading SMTP reply: {e}"));
            assert!(n > 0, "connection closed (reply so far: {lines:?})");
            let l = raw.trim_end();
            assert!(l.len() >= 3, "not a reply line: {l:?}");
            lines.push((l[..3].parse::<u16>().unwrap(), l.get(4..).unwrap_or("").to_string()));
            if l.as_bytes().get(3) != Some(&b'-') {
                let code = lines[0].0;
                return Reply { code, lines: lines.into_iter().map(|(_, t)| t).collect() };
            }
        }
    }

    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.read_reply()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads until the server closes the connection (EOF or reset) and returns what came; panics if it
    /// stays open past the read timeout.
    #[track_caller]
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => rest,
            Err(e) => panic!("the connection was not closed ({e}); got {rest:?}"),
        }
    }

    #[track_caller]
    pub fn send_mail(&mut self, from: &str, to: &str, body: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>")).expect(250, "2.1.0");
        self.cmd(&format!("RCPT TO:<{to}>")).expect(250, "2.1.5");
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA: {r}");
        self.writer.write_all(&data_stream(body)).unwrap();
        self.read_reply().queued_id()
    }
}

pub fn other_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

pub fn local_ip() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------------
// HTTP, /metrics

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// `/metrics` as `name{labels}` → value.
#[track_caller]
pub fn scrape(gw: &Gateway) -> BTreeMap<String, f64> {
    let url = format!("http://{}/metrics", gw.http);
    let mut resp = agent().get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    let text = resp.body_mut().read_to_string().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("metrics line without a value: {l:?}"));
            (k.to_string(), v.parse::<f64>().unwrap_or_else(|e| panic!("metrics value in {l:?}: {e}")))
        })
        .collect()
}

/// `mxhook_messages_rejected_total{reason="…"}`, 0 when absent.
pub fn rejected(gw: &Gateway, reason: &str) -> f64 {
    scrape(gw).get(&format!("mxhook_messages_rejected_total{{reason=\"{reason}\"}}")).copied().unwrap_or(0.0)
}

/// Every `messages_rejected_total` series that is not zero, for exact assertions.
pub fn rejections(gw: &Gateway) -> BTreeMap<String, f64> {
    scrape(gw)
        .into_iter()
        .filter(|(k, v)| k.starts_with("mxhook_messages_rejected_total{") && *v != 0.0)
        .map(|(k, v)| {
            let reason = k.split('"').nth(1).unwrap_or(&k).to_string();
            (reason, v)
        })
        .collect()
}

/// Waits until `rejected_total{reason}` reaches `n`, then requires it to be exactly `n`.
#[track_caller]
pub fn expect_rejected(h: &Harness, gw: &Gateway, reason: &str, n: f64) {
    let mut last = 0.0;
    wait_for(
        WAIT,
        &format!("mxhook_messages_rejected_total{{reason=\"{reason}\"}} to reach {n}"),
        || format!("/metrics rejections: {:?}\n{}", rejections(gw), h.logs()),
        || {
            last = rejected(gw, reason);
            last >= n
        },
    );
    assert_eq!(last, n, "mxhook_messages_rejected_total{{reason=\"{reason}\"}}");
}

// ---------------------------------------------------------------------------------------------------
// Standard Webhooks signing (the scheme `mxhook listen` verifies)

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `v1,` + base64 HMAC-SHA256 of `{id}.{ts}.{body}` under the decoded secret.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ secret")).expect("secret is base64");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &msg).as_ref()))
}

// ---------------------------------------------------------------------------------------------------
// Harnesses

/// `Config::basic` adjusted by `tweak`, with `[smtp.tls]` from a fresh certificate `CN=cn`
/// (files `live.crt`/`live.key` in the harness dir).
pub fn tls_harness(cn: &str, require: bool, tweak: impl FnOnce(&mut Config)) -> (Harness, Cert) {
    let h = Harness::new();
    let cert = make_cert(h.dir.path(), "live", cn, &[cn], 30);
    let mut cfg = Config::basic(&h.rx);
    tweak(&mut cfg);
    cfg.smtp_extra.extend(tls_lines(&cert, require));
    h.write_config(&cfg);
    (h, cert)
}

/// The event the receiver got for `msg_id` (waits for it).
#[track_caller]
pub fn event_for(h: &Harness, msg_id: &str) -> serde_json::Value {
    h.wait_until(WAIT, &format!("the event for {msg_id}"), || !h.rx.requests_for_message(msg_id).is_empty());
    h.rx.requests_for_message(msg_id)[0].json()
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
