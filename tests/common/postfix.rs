//! A throwaway Postfix instance: its own config, queue and log in a temp dir, mail injected over its
//! smtpd, each test domain sent to a transport the test names (SMTP relay to the gateway or a dead
//! end, LMTP to the gateway, a pipe to `mxhook deliver`). Needs root (Postfix drops to its `postfix`
//! user itself) and the Debian package `postfix` (.ci/apt-packages; .ci/run preseeds debconf).
// Not every test binary starts a Postfix.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{Session, SmtpClient, poll};

/// A slow CI machine may take a few seconds for the start of each of Postfix's daemons.
pub const POSTFIX_TIMEOUT: Duration = Duration::from_secs(60);
/// `postfix start|stop` run under `timeout`: a wedged Postfix must not hang the suite.
const COMMAND_TIMEOUT: &str = "60";

/// A Postfix instance of its own: `postfix -c DIR/etc start`, stopped on drop.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// Its smtpd, where the test injects mail.
    pub smtp: SocketAddr,
}

impl Postfix {
    /// Starts Postfix with `transports`: each (domain, transport) sends that domain's mail there
    /// (`lmtp:inet:127.0.0.1:PORT`, `mxhook:`); every other destination fails (no DNS, no local
    /// delivery). `services`: more master.cf lines (a pipe transport).
    pub fn start(transports: &[(&str, String)], services: &str) -> Postfix {
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
        let table: String = transports.iter().map(|(domain, transport)| format!("{domain} {transport}\n")).collect();
        std::fs::write(etc.join("transport"), table).unwrap();
        std::fs::write(etc.join("main.cf"), main_cf(dir.path())).unwrap();
        std::fs::write(etc.join("master.cf"), master_cf(smtp) + services).unwrap();
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

    pub fn etc(&self) -> PathBuf {
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

    /// `postqueue -p` of this instance: the messages still queued (deferred ones with the reason).
    pub fn queue(&self) -> String {
        let out = run(Command::new("postqueue").arg("-c").arg(self.etc()).arg("-p"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `postqueue -f`: try every deferred message again now.
    pub fn flush(&self) {
        let out = run(Command::new("postqueue").arg("-c").arg(self.etc()).arg("-f"));
        assert!(out.status.success(), "postqueue -f: {}", String::from_utf8_lossy(&out.stderr));
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
    tool("postfix").expect("Postfix is installed (checked by `available`)")
}

/// Whether a Postfix instance can run here; says why not (the test then returns).
pub fn available() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: Postfix needs root to start its own instance (run the tests as root, as CI does)");
        return false;
    }
    tool("postfix").is_some()
}

fn run(cmd: &mut Command) -> Output {
    // Its own process group: a Ctrl-C at the test runner must not reach Postfix's master half-started.
    cmd.stdin(Stdio::null()).process_group(0).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn chown_to_postfix(path: &Path) {
    let out = run(Command::new("chown").arg("postfix").arg(path));
    assert!(out.status.success(), "chown postfix {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The path of an installed program, or None with a SKIPPED line saying how to get it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (Debian packages in .ci/apt-packages; CI installs them)");
    }
    found
}

/// A port that was free a moment ago (Postfix binds it itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
