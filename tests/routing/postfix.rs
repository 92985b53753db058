//! A real Postfix bounces a message and sends its own delivery status notification to the gateway
//! (issue 16): a throwaway Postfix instance with its own config, queue and log in a temp dir, relaying
//! mail for `example.test` to the running gateway and mail for `nowhere.test` to a dead-end SMTP server
//! that refuses every recipient with `550 5.1.1`. Postfix needs root to start (it drops to its
//! `postfix` user itself); the tests skip with a message otherwise. Debian package: `postfix` (see
//! .ci/apt-packages; .ci/run preseeds debconf so the install asks nothing).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Harness, Session, SmtpClient, poll, wait_for};
use crate::engines::free_port;
use crate::sink::{Answer, Sink};

/// Postfix bounces at once on a 5xx, and relays the DSN at once; a slow CI machine may still take a
/// few seconds for the start of each of its daemons.
const DSN_TIMEOUT: Duration = Duration::from_secs(60);
/// `postfix start|stop` run under `timeout`: a wedged Postfix must not hang the suite.
const COMMAND_TIMEOUT: &str = "60";

/// A Postfix instance of its own: `postfix -c DIR/etc start`, stopped on drop.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// Its smtpd, where the test injects mail.
    pub smtp: SocketAddr,
}

impl Postfix {
    /// Starts Postfix with `transports`: each (domain, address) relays that domain's mail to
    /// `smtp:[IP]:PORT`; every other destination fails (no DNS, no local delivery).
    pub fn start(transports: &[(&str, SocketAddr)]) -> Postfix {
        let bin = postfix_bin();
        let dir = tempfile::Builder::new().prefix("mxhook-postfix-").tempdir().unwrap();
        // Postfix's daemons run as the `postfix` user and must traverse to their queue.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (etc, queue, data) = (dir.path().join("etc"), dir.path().join("queue"), dir.path().join("data"));
        for d in [&etc, &queue, &data] {
            std::fs::create_dir(d).unwrap();
        }
        chown_to_postfix(&data);
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let table: String = transports
            .iter()
            .map(|(domain, addr)| format!("{domain} smtp:[{}]:{}\n", addr.ip(), addr.port()))
            .collect();
        std::fs::write(etc.join("transport"), table).unwrap();
        std::fs::write(etc.join("main.cf"), main_cf(dir.path())).unwrap();
        std::fs::write(etc.join("master.cf"), master_cf(smtp)).unwrap();
        let pf = Postfix { dir, smtp };
        let out = run(Command::new("timeout").arg(COMMAND_TIMEOUT).arg(&bin).arg("-c").arg(&etc).arg("start"));
        if !out.status.success() {
            panic!(
                "`postfix -c {} start` failed ({}):\n{}{}\n----- maillog -----\n{}",
                etc.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                pf.maillog()
            );
        }
        // `start` returns once the master has bound its listeners (`master -w`): no wait needed.
        pf
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Postfix's log (`maillog_file`), for failure messages.
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_else(|e| format!("(no maillog: {e})"))
    }

    /// One transaction Postfix must accept (queue it); panics with its log otherwise.
    #[track_caller]
    pub fn submit(&self, from: &str, to: &str, body: &[u8]) {
        let mut c = SmtpClient::ready_as(self.smtp, "client.test");
        for (cmd, code) in [(format!("MAIL FROM:<{from}>"), 250), (format!("RCPT TO:<{to}>"), 250)] {
            let r = c.cmd(&cmd);
            assert_eq!(r.code, code, "Postfix answered `{r}` to {cmd}\n----- maillog -----\n{}", self.maillog());
        }
        let r = c.data(body);
        assert_eq!(r.code, 250, "Postfix answered `{r}` to the data\n----- maillog -----\n{}", self.maillog());
        c.cmd("QUIT");
    }

    /// The master's pid, from its pid file.
    fn master_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid")).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ =
            run(Command::new("timeout").arg(COMMAND_TIMEOUT).arg(postfix_bin()).arg("-c").arg(self.etc()).arg("stop"));
        let Some(pid) = pid else { return };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = || unsafe { libc::kill(pid, 0) } == 0;
        if !poll(Duration::from_secs(10), || !alive()) {
            // SAFETY: the pid is the master of this instance, read from its own pid file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// main.cf: this instance's directories, no DNS, no local delivery, relaying only for the loopback
/// client, and a log file instead of syslog (Postfix 3.4+: `maillog_file` with the `postlog` service).
fn main_cf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:no local delivery in this test
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains =
transport_maps = texthash:{d}/etc/transport
default_transport = error:no other destinations in this test
smtp_host_lookup = native
smtp_dns_support_level = disabled
biff = no
"
    )
}

/// master.cf: smtpd on `smtp` only, every daemon unchrooted (the queue is a temp dir), and postlogd.
fn master_cf(smtp: SocketAddr) -> String {
    format!(
        "{smtp} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

fn postfix_bin() -> PathBuf {
    ["/usr/sbin/postfix", "/usr/local/sbin/postfix"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("Postfix is not installed: `apt-get install postfix` (it is listed in .ci/apt-packages)")
        })
}

fn run(cmd: &mut Command) -> Output {
    // Its own process group: a Ctrl-C at the test runner must not reach Postfix's master half-started.
    cmd.stdin(Stdio::null()).process_group(0).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn chown_to_postfix(path: &Path) {
    let out = run(Command::new("chown").arg("postfix").arg(path));
    assert!(out.status.success(), "chown postfix {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The header `name` (case-insensitive) of an event's message, or "".
fn header<'a>(event: &'a Value, name: &str) -> &'a str {
    let headers = event["message"]["headers"].as_array().expect("message.headers is an array");
    headers
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
        .unwrap_or("")
}

#[test]
fn a_real_postfix_bounce_reaches_the_gateway_as_its_dsn() {
    if !is_root() {
        eprintln!("skipping: Postfix needs root to start its own instance (run the tests as root, as CI does)");
        return;
    }
    let h = Harness::basic();
    let gw = h.start();
    let dead_end = Sink::start();
    dead_end.script(&[Answer::Refuse]);
    let pf = Postfix::start(&[("example.test", gw.smtp), ("nowhere.test", dead_end.addr)]);

    // An app's message with a VERP return path at the gateway's domain, to an address that does not exist.
    let original = b"From: Shop <orders@example.test>\r\nTo: <gone@nowhere.test>\r\nSubject: Your order 42\r\n\
        Date: Mon, 23 Nov 2026 06:00:00 +0000\r\nMessage-ID: <order-42@example.test>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nYour order has shipped.\r\n";
    pf.submit("bounces+42@example.test", "gone@nowhere.test", original);

    let context = || {
        format!(
            "receiver got {} request(s); dead end saw {} transaction(s)\n----- Postfix maillog -----\n{}\n{}",
            h.rx.count(),
            dead_end.transactions().len(),
            pf.maillog(),
            h.logs()
        )
    };
    wait_for(DSN_TIMEOUT, "Postfix's DSN as a webhook", context, || h.rx.count() >= 1);

    let tried = dead_end.transactions();
    assert_eq!(tried[0].mail_from, "bounces+42@example.test", "Postfix relayed the original: {tried:?}");
    assert_eq!(tried[0].rcpt_to, ["gone@nowhere.test"]);

    let event = h.rx.requests()[0].json();
    let m = &event["message"];
    assert_eq!(m["smtp"]["mail_from"], "", "a DSN has the null sender: {event:#}");
    assert_eq!(m["smtp"]["rcpt_to"], serde_json::json!(["bounces+42@example.test"]));
    assert_eq!(m["smtp"]["helo"], "postfix.test");
    let content_type = header(&event, "Content-Type");
    assert!(
        content_type.starts_with("multipart/report; report-type=delivery-status"),
        "Postfix's DSN is an RFC 3464 report, Content-Type: {content_type}\n{event:#}"
    );
    let text = m["text"].as_str().unwrap_or("");
    assert!(text.contains("gone@nowhere.test"), "the notice names the failed recipient: {text}");
    assert!(text.contains("550 5.1.1"), "the notice quotes the dead end's answer: {text}");

    // Classified as a bounce, with Postfix's report read field by field and the VERP tag given back.
    assert_eq!(event["type"], "email.bounced", "{event:#}");
    let b = &m["bounce"];
    assert_eq!(b["kind"], "hard", "{b:#}");
    assert_eq!(b["recipients"][0]["address"], "gone@nowhere.test", "{b:#}");
    assert_eq!(b["recipients"][0]["action"], "failed", "{b:#}");
    assert_eq!(b["recipients"][0]["status"], "5.1.1", "{b:#}");
    assert!(b["recipients"][0]["diagnostic_code"].as_str().is_some_and(|d| d.contains("550 5.1.1")), "{b:#}");
    assert_eq!(b["original"]["message_id"], "order-42@example.test", "{b:#}");
    assert_eq!(b["original"]["subject"], "Your order 42", "{b:#}");
    assert_eq!(b["to"], serde_json::json!({ "address": "bounces+42@example.test", "tag": "42" }), "{b:#}");
    assert!(m["auto_submitted"].is_string(), "a DSN is automatic (Auto-Submitted: auto-replied): {m:#}");

    // The fixture of the bounce parser's unit tests is this very DSN: rerun with the variable set to
    // refresh it.
    if std::env::var_os("MXHOOK_RECORD_POSTFIX_DSN").is_some() {
        let raw = h.raw(m["id"].as_str().expect("message.id"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix-dsn.eml");
        std::fs::write(&path, raw).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
