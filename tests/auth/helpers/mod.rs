//! Harness for the auth tests: the real `mxhook` binary (`serve`) on port-0 listeners with an `[auth]`
//! section pointing at a DNS server the test runs, a webhook receiver, an SMTP client, the CLI, and
//! deadline-bounded polling. The SMTP client is shared with tests/spine; the rest is this suite's own.
#![allow(dead_code)]

pub mod dns;
pub mod mail;
pub mod receiver;
// The SMTP client is the spine suite's, shared rather than copied.
#[path = "../../spine/helpers/smtp_client.rs"]
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use dns::DnsServer;
pub use mail::{Algo, Signer};
pub use receiver::Receiver;
pub use smtp::SmtpClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_mxhook");
pub const SECRET: &str = "whsec_lXFjIA/27C86ieYNnNjrpW0ZTSHRUsS9qp3VI/8xI9E=";
/// The domain the test gateway accepts mail for, and its SMTP hostname.
pub const DOMAIN: &str = "mx.auth.test";

/// A temp dir with a config, a receiver, and (once started) the gateway.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub rx: Receiver,
}

impl Harness {
    /// `auth` is the body of the `[auth]` section (None: no section at all).
    pub fn new(auth: Option<&str>) -> Harness {
        Harness::with_extra(auth, "")
    }

    /// Like `new`, with `extra` TOML appended (e.g. `[[routes]]`).
    pub fn with_extra(auth: Option<&str>, extra: &str) -> Harness {
        let dir = tempfile::Builder::new().prefix("mxhook-auth-").tempdir().unwrap();
        let config_path = dir.path().join("gateway.toml");
        let rx = Receiver::start();
        let data_dir = dir.path().join("data");
        let mut config = format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{DOMAIN}\"\n\n\
             [storage]\ndata_dir = {data}\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n\
             [[domains]]\nname = \"{DOMAIN}\"\nendpoint = \"app\"\n\n\
             [endpoints.app]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nretry = [\"0s\", \"200ms\"]\n",
            data = serde_json::to_string(&data_dir.display().to_string()).unwrap(),
            url = rx.url("/hooks/app"),
        );
        if let Some(auth) = auth {
            config.push_str(&format!("\n[auth]\n{auth}\n"));
        }
        config.push_str(extra);
        std::fs::write(&config_path, config).unwrap();
        Harness { dir, config_path, rx }
    }

    /// An `[auth]` section that resolves through `dns` only, plus `extra` lines.
    pub fn with_dns(dns: &DnsServer, extra: &str) -> Harness {
        Harness::new(Some(&format!("dns = [\"{}\"]\ntimeout = \"2s\"\n{extra}", dns.addr)))
    }

    pub fn start(&self) -> Gateway {
        Gateway::spawn(&self.config_path, self.dir.path())
    }

    /// Waits for the webhook request carrying message `msg_id` and returns its `message.auth`.
    #[track_caller]
    pub fn auth_of(&self, gw: &Gateway, msg_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(r) = self.rx.requests_for_message(msg_id).first() {
                return r.json()["message"]["auth"].clone();
            }
            if Instant::now() > deadline {
                panic!("no webhook for {msg_id} within 15 s\n{}", gw.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `messages list --json` through the CLI.
    pub fn messages(&self) -> Vec<Value> {
        self.cli_json(&["messages", "list", "--json"])
    }

    /// `deliveries list --message MSG --json` through the CLI.
    pub fn deliveries_of(&self, msg_id: &str) -> Vec<Value> {
        self.cli_json(&["deliveries", "list", "--message", msg_id, "--json"])
    }

    fn cli_json(&self, args: &[&str]) -> Vec<Value> {
        let out = Command::new(BIN)
            .args(["--config", self.config_path.to_str().unwrap()])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("run the mxhook CLI");
        assert!(out.status.success(), "mxhook {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        match serde_json::from_slice(&out.stdout).expect("CLI JSON") {
            Value::Array(a) => a,
            v => panic!("not an array: {v}"),
        }
    }
}

pub struct Gateway {
    child: Child,
    pub smtp: SocketAddr,
    log: Arc<Mutex<String>>,
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
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let smtp = announced(&log.lock().unwrap(), "smtp listening on ");
            if let Some(smtp) = smtp {
                return Gateway { child, smtp, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("mxhook serve exited with {status} before listening:\n{}", log.lock().unwrap());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mxhook serve did not listen within 30 s:\n{}", log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A client that said `EHLO helo`.
    pub fn client(&self, helo: &str) -> SmtpClient {
        let (mut c, greeting) = SmtpClient::connect(self.smtp);
        assert_eq!(greeting.code, 220, "greeting: {greeting}");
        let r = c.cmd(&format!("EHLO {helo}"));
        assert_eq!(r.code, 250, "EHLO: {r}");
        c
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn announced(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    let addr: String = log[at..].chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':')).collect();
    addr.trim_end_matches(['.', ':']).parse().ok()
}

/// Reads a file from the shared corpus (../shared/corpus next to the checkout), if present.
pub fn corpus_file(name: &str) -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("tests/corpus").join(name), root.join("../shared/corpus").join(name)]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
}
