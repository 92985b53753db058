//! STARTTLS for the tests: self-signed certificates made with the `openssl` CLI, and an SMTP session
//! over TLS through `openssl s_client -starttls smtp` (the real TLS client), its replies read with the
//! plain client's types. Needs the `openssl` command (Debian package `openssl`, in .ci/apt-packages).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::Config;
use super::gateway::drain;
use super::smtp::{Reply, Session};

pub const OPENSSL: &str = "openssl";
/// How long a TLS handshake or reply may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Panics with an install hint when the `openssl` CLI is missing (the tests need a real TLS client).
pub fn require_openssl() {
    match Command::new(OPENSSL).arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("the `openssl` command is needed by these tests: apt-get install openssl (.ci/apt-packages)"),
    }
}

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

impl Config {
    /// `[smtp.tls]` with this certificate.
    pub fn tls_cert(&mut self, c: &Cert, require: bool) -> &mut Self {
        self.tls(&c.cert, &c.key, require)
    }
}

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
        drain(child.stdout.take().unwrap(), out.clone(), "");
        drain(child.stderr.take().unwrap(), err.clone(), "");
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

    /// QUIT, expecting `221`.
    #[track_caller]
    pub fn quit(&mut self) {
        self.cmd("QUIT").expect(221, "2.0.0");
    }
}

impl Session for TlsSession {
    fn send_raw(&mut self, bytes: &[u8]) {
        self.send(bytes);
    }

    /// The next whole reply from the server (multi-line replies joined), within `WAIT`.
    #[track_caller]
    fn read_reply(&mut self) -> Reply {
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
}

/// The subject of the certificate a fresh STARTTLS handshake presents: `CN = …`.
#[track_caller]
pub fn presented_cert(addr: SocketAddr) -> String {
    let mut s = TlsSession::start(addr, &[]);
    let cert = s.peer_certificate();
    s.quit();
    cert
}
