//! The harness of one test: a temp dir with a config file and data_dir, a webhook receiver, the
//! gateways started on that config, the CLI on the same config, and waits that show the gateway logs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::cli::{CliOutput, run_cli};
use super::config::Config;
use super::gateway::Gateway;
use super::receiver::{Receiver, Request};
use super::wait::wait_for;
use super::{SHORT, as_array};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub rx: Receiver,
    /// Logs of every gateway this harness started, shown when a wait times out.
    logs: Mutex<Vec<Arc<Mutex<String>>>>,
    /// (URL path, secret) of each configured endpoint: on drop every request must verify.
    secrets: Mutex<Vec<(String, String)>>,
    /// The harness's own PostgreSQL database when the run is on PostgreSQL (`postgres::on_postgres`):
    /// every config it writes names it as `[storage] database`.
    pub database: Option<String>,
}

impl Harness {
    /// A temp dir and a receiver; no config written yet.
    pub fn new() -> Harness {
        let database = super::postgres::on_postgres()
            .then(|| super::postgres::shared().new_database().unwrap_or_else(|e| panic!("a test database: {e}")));
        Harness::on(database)
    }

    /// A harness whose configs name the PostgreSQL database `url` whatever `MXHOOK_TEST_BACKEND`
    /// says: several gateways on one store (`write_member_config`).
    pub fn on_database(url: String) -> Harness {
        Harness::on(Some(url))
    }

    fn on(database: Option<String>) -> Harness {
        let dir = tempfile::Builder::new().prefix("mxhook-test-").tempdir().unwrap();
        let config_path = dir.path().join("gateway.toml");
        Harness {
            dir,
            config_path,
            rx: Receiver::start(),
            logs: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
            database,
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
        self.write_config_to(&self.config_path, cfg, data_dir);
    }

    /// The config of gateway `n` of a cluster on the harness's database: `gateway-N.toml` with a
    /// data_dir of its own (`data-N`: its lock and run files). Start it with `start_member`.
    pub fn write_member_config(&self, n: usize, cfg: &Config) -> PathBuf {
        let path = self.dir.path().join(format!("gateway-{n}.toml"));
        self.write_config_to(&path, cfg, &self.dir.path().join(format!("data-{n}")));
        path
    }

    fn write_config_to(&self, path: &Path, cfg: &Config, data_dir: &Path) {
        let mut text = cfg.render(data_dir);
        if let Some(url) = &self.database {
            text = text.replacen("\n[storage]\n", &format!("\n[storage]\ndatabase = {url:?}\n"), 1);
        }
        std::fs::write(path, text).unwrap();
        let mut secrets = self.secrets.lock().unwrap();
        for e in &cfg.endpoints {
            if let Some(path) = e.url.strip_prefix(&format!("http://{}", self.rx.addr)) {
                secrets.push((path.to_string(), e.secret.clone()));
            }
        }
    }

    /// Starts `mxhook serve` and waits for both listeners to be announced.
    pub fn start(&self) -> Gateway {
        self.start_member(&self.config_path)
    }

    /// `start` on another config file (a cluster member's).
    pub fn start_member(&self, config: &Path) -> Gateway {
        let gw = Gateway::spawn(config, self.dir.path());
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
    pub fn wait_until(&self, timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
        let context = || format!("receiver got {} request(s)\n{}", self.rx.count(), self.logs());
        wait_for(timeout, what, context, cond);
    }

    /// Waits for the webhook request carrying message `msg_id`; returns it and its JSON body.
    #[track_caller]
    pub fn event_for(&self, msg_id: &str) -> (Request, Value) {
        self.wait_until(SHORT, &format!("the event for {msg_id}"), || !self.rx.requests_for_message(msg_id).is_empty());
        let r = self.rx.requests_for_message(msg_id).remove(0);
        let v = r.json();
        (r, v)
    }

    /// Waits until the receiver has at least `n` requests and returns them all.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_until(timeout, &format!("{n} webhook request(s)"), || self.rx.count() >= n);
        self.rx.requests()
    }

    /// Runs the CLI with `--config` and `args`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_member(&self.config_path, args)
    }

    /// `cli` on another config file (a cluster member's).
    pub fn cli_member(&self, config: &Path, args: &[&str]) -> CliOutput {
        let mut full = vec!["--config", config.to_str().unwrap()];
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

    /// `deliveries list --json [extra…]` as a vector (every one: a page larger than any test's).
    #[track_caller]
    pub fn deliveries(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["deliveries", "list", "--json", "--limit", "100000"];
        args.extend_from_slice(extra);
        as_array(self.cli_json(&args))
    }

    #[track_caller]
    pub fn messages(&self) -> Vec<Value> {
        as_array(self.cli_json(&["messages", "list", "--json", "--limit", "100000"]))
    }

    /// `messages show MSG --raw` bytes.
    #[track_caller]
    pub fn raw(&self, msg_id: &str) -> Vec<u8> {
        let out = self.cli(&["messages", "show", msg_id, "--raw"]);
        out.assert_ok(&self.logs());
        out.stdout
    }

    /// The raw bytes as the store holds them on disk, read without the gateway: the database's
    /// `contents` row (messages up to 1 MiB; a zstd frame when its codec is 1) or the spool file
    /// (larger ones). None: neither exists.
    pub fn stored_raw(&self, msg_id: &str) -> Option<Vec<u8>> {
        if let Some(url) = &self.database {
            // PostgreSQL: the chunks of part -1, in order, as hex.
            let db = url.rsplit('/').next().unwrap_or_default();
            let sql = format!(
                "SELECT encode(string_agg(data, ''::bytea ORDER BY chunk), 'hex') FROM contents
                 WHERE message_id = '{msg_id}' AND part = -1"
            );
            let hex = super::postgres::shared().psql(db, &sql).expect("reading contents");
            return (!hex.is_empty()).then(|| {
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
            });
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let db =
            rusqlite::Connection::open_with_flags(self.data_dir().join("mxhook.db"), flags).expect("open the database");
        let inline = db
            .query_row("SELECT data, codec FROM contents WHERE message_id = ?1 AND part = -1", [msg_id], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .ok()
            .map(|(data, codec)| match codec {
                0 => data,
                1 => zstd::stream::decode_all(&data[..]).expect("a stored zstd frame"),
                n => panic!("contents codec {n}"),
            });
        inline.or_else(|| std::fs::read(self.data_dir().join("spool").join(format!("{msg_id}.eml"))).ok())
    }

    /// PostgreSQL only: turns the harness's database read-only (`on`) or writable again, as a primary
    /// demoted mid-failover looks. A database's settings apply to sessions that start after the
    /// change: the gateways' sessions are ended, and their pools open new ones.
    pub fn set_database_read_only(&self, on: bool) {
        let db = self.database.as_deref().and_then(|u| u.rsplit('/').next()).expect("a PostgreSQL run");
        let sql = if on {
            format!("ALTER DATABASE {db} SET default_transaction_read_only = on")
        } else {
            format!("ALTER DATABASE {db} RESET default_transaction_read_only")
        };
        let pg = super::postgres::shared();
        pg.psql("postgres", &sql).expect("ALTER DATABASE");
        let end = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        );
        pg.psql("postgres", &end).expect("ending the gateways' sessions");
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
    /// Every request any test received must pass the stock verifier with its endpoint's secret, and
    /// its body must validate against the published event schema.
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
            super::schema::assert_valid(&r.json());
        }
    }
}
