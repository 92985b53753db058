//! Real spam engines for the tests, each a child process on a free loopback port with a throwaway
//! config, stopped on drop. They run under `timeout` so a test process that dies cannot leave one
//! running for long. Debian packages: `spamd` (SpamAssassin) and `rspamd` (see .ci/apt-packages).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::gateway::drain;
use crate::common::poll;

/// Loading rules takes a few seconds; allow for a slow CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The most an engine may outlive a test process that was killed.
const LIFETIME: &str = "600";

pub struct Engine {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Engine {
    /// SpamAssassin's spamd: local tests only (no DNS), no user configs.
    pub fn spamd() -> Engine {
        let bin = find("spamd");
        let dir = tempdir();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "TERM", LIFETIME]).arg(bin).args([
            "--local",
            "--nouser-config",
            "--syslog=stderr",
            "--max-children=2",
            "--min-children=1",
        ]);
        cmd.arg(format!("--listen={addr}"));
        if is_root() {
            // spamd will not run its children as root.
            cmd.args(["-u", "nobody"]);
        }
        let engine = Engine::spawn(cmd, addr, dir);
        engine.wait_ready(|addr| {
            let answer = exchange(addr, b"PING SPAMC/1.5\r\n\r\n")?;
            answer.contains("PONG").then_some(()).ok_or(answer)
        });
        engine
    }

    /// rspamd with one normal worker, no network lookups, and a five-entry TLD list (the full list takes
    /// it some 40 s to compile at start).
    pub fn rspamd() -> Engine {
        let bin = find("rspamd");
        let dir = tempdir();
        let addr = format!("127.0.0.1:{}", free_port());
        let d = dir.path();
        for sub in ["run", "db", "local/override.d"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for sub in ["run", "db"] {
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::write(d.join("tld.dat"), "com\norg\nnet\ntest\nexample\n").unwrap();
        std::fs::write(
            d.join("local/override.d/options.inc"),
            format!(
                "url_tld = \"{}\";\ndns {{ nameserver = [\"127.0.0.1:1\"]; timeout = 0.1s; retransmits = 0; }}\n",
                d.join("tld.dat").display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("rspamd.conf"),
            format!(
                r#".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "console";
    level = "error";
}}
worker "normal" {{
    bind_socket = "{addr}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"#
            ),
        )
        .unwrap();
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "TERM", LIFETIME]).arg(bin).arg("-f").arg("-c").arg(d.join("rspamd.conf"));
        for (var, path) in [
            ("CONFDIR", PathBuf::from("/etc/rspamd")),
            ("LOCAL_CONFDIR", d.join("local")),
            ("RUNDIR", d.join("run")),
            ("DBDIR", d.join("db")),
            ("LOGDIR", d.to_path_buf()),
        ] {
            cmd.arg(format!("--var={var}={}", path.display()));
        }
        if is_root() {
            cmd.args(["-u", "_rspamd", "-g", "_rspamd"]);
        }
        let engine = Engine::spawn(cmd, addr, dir);
        engine.wait_ready(|addr| {
            let answer = exchange(addr, b"GET /ping HTTP/1.0\r\n\r\n")?;
            answer.contains("pong").then_some(()).ok_or(answer)
        });
        engine
    }

    /// rspamd's HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spawn(mut cmd: Command, addr: String, dir: tempfile::TempDir) -> Engine {
        let mut child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), log.clone(), "");
        drain(child.stderr.take().unwrap(), log.clone(), "");
        Engine { child, addr, log, _dir: dir }
    }

    /// Polls `ready` until it succeeds; panics with the engine's log if it exits or takes too long.
    fn wait_ready(&self, ready: impl Fn(&str) -> Result<(), String>) {
        let mut last = String::new();
        let mut child_exited = false;
        let up = poll(START_TIMEOUT, || match ready(&self.addr) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                // SAFETY: signal 0 only checks that our child still exists.
                child_exited = unsafe { libc::kill(self.child.id() as i32, 0) } != 0;
                child_exited
            }
        });
        if up && !child_exited {
            return;
        }
        panic!(
            "spam engine on {} {} (last answer: {last})\n{}",
            self.addr,
            if child_exited { "exited" } else { "not ready in time" },
            self.log.lock().unwrap()
        );
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // `timeout` passes SIGTERM on to the engine, which stops its workers and exits.
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let child = &mut self.child;
        if poll(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_)))) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request`, half-closes, and reads the whole answer (bounded by a 10 s read timeout).
fn exchange(addr: &str, request: &[u8]) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).map_err(|e| e.to_string())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn find(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: `apt-get install {name}` (it is listed in .ci/apt-packages)")
        })
}

/// A temp dir the engine's unprivileged user can traverse.
fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mxhook-engine-").tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A port that was free a moment ago (the engine binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
