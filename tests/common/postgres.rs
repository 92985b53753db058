//! A throwaway PostgreSQL cluster: `initdb` in a temp dir, `pg_ctl start` on a free port of its own
//! (127.0.0.1 only, its socket in its own dir), stopped and removed on drop. Run as the unprivileged
//! `postgres` user (Debian's package makes it; PostgreSQL refuses to run as root) when the tests run
//! as root. The binaries: `$MXHOOK_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package, in .ci/apt-packages). Std only: the crate's unit tests include this file too.
// Not every test binary starts a PostgreSQL.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster; `mxhook` is its superuser, `trust` its only authentication.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Runs the server's commands as this user (root cannot run PostgreSQL).
    run_as: Option<String>,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The environment variable that runs the harness's gateways on PostgreSQL (`postgres`) instead of
/// SQLite in their data_dir (unset, or `sqlite`). `.ci/run` runs the store's suites both ways.
pub const BACKEND_VAR: &str = "MXHOOK_TEST_BACKEND";

/// True when this test run's gateways use PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|v| v == "postgres")
}

/// The test process's cluster, started on first use (fsync on: durability is what the store's suites
/// test). Never dropped: a reaper stops it when the test process exits.
pub fn shared() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = PgCluster::start(true).unwrap_or_else(|e| panic!("a throwaway PostgreSQL cluster: {e}"));
        cluster.reap_when_gone(std::process::id());
        cluster
    })
}

impl PgCluster {
    /// initdb and start. `fsync`: false for tests that do not test durability (much faster).
    pub fn start(fsync: bool) -> Result<PgCluster, String> {
        let bin = bin_dir()?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!("mxhook-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Some(user) = &run_as {
            let out = Command::new("chown").arg(user).arg(&dir).output().map_err(|e| format!("chown: {e}"))?;
            check("chown", &out)?;
        }
        let cluster = PgCluster { dir, bin, port: 0, run_as };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "mxhook", "-E", "UTF8", "--no-locale", "-D"])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        check("initdb", &out)?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = {}\n\
             synchronous_commit = {}\nmax_connections = 200\nshared_buffers = 64MB\n",
            cluster.dir.display(),
            if fsync { "on" } else { "off" },
            if fsync { "on" } else { "off" },
        );
        let append = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"));
        append
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| format!("writing postgresql.conf: {e}"))?;
        let mut cluster = cluster;
        cluster.port = free_port()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &format!("-p {}", self.port), "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        check("pg_ctl start", &out).map_err(|e| format!("{e}\n{}", self.log()))
    }

    /// `pg_ctl stop -m fast` (connections are cut, as when the database host goes away).
    pub fn stop_server(&self) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data_dir())
            .arg("stop")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl stop: {e}"))?;
        check("pg_ctl stop", &out)
    }

    /// Turns TLS on with this certificate chain and key (PEM), and restarts the server. Clients may
    /// then connect with or without TLS (`host` lines in pg_hba.conf match both).
    pub fn enable_ssl(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
        let data = self.data_dir();
        for (name, pem) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, pem).map_err(|e| format!("writing {}: {e}", path.display()))?;
            // The server refuses a key others may read.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            if let Some(user) = &self.run_as {
                let out = Command::new("chown").arg(user).arg(&path).output().map_err(|e| format!("chown: {e}"))?;
                check("chown", &out)?;
            }
        }
        let append = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"));
        append
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ssl = on\n"))
            .map_err(|e| format!("writing postgresql.conf: {e}"))?;
        self.stop_server()?;
        self.start_server()
    }

    /// For a cluster that is never dropped (a static): a shell that waits for process `pid` to end,
    /// then stops the server and removes its directory.
    pub fn reap_when_gone(&self, pid: u32) {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {} -D '{}' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
            match &self.run_as {
                Some(user) => format!("runuser -u {user} -- '{}'", self.bin.join("pg_ctl").display()),
                None => format!("'{}'", self.bin.join("pg_ctl").display()),
            },
            self.data_dir().display(),
            self.dir.display()
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The URL of `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://mxhook@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database of its own for one test; returns its URL.
    pub fn new_database(&self) -> Result<String, String> {
        let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs `sql` in `database` with psql; its output: a line per row, columns separated by the
    /// unit separator (0x1f).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-d", &self.url(database), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        check("psql", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(self.data_dir())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Where initdb, pg_ctl and psql are.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("MXHOOK_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| format!("no PostgreSQL in {} ({e}): install Debian's `postgresql`", root.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| format!("no initdb under {}", root.display()))
}
