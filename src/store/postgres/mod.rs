//! The PostgreSQL backend: one database shared by any number of gateways (see docs/architecture.md
//! "Store backends"). Everything lives in the database, the bytes too, so any gateway delivers any
//! message, serves any link and answers any CLI call; a claim is a lease in the database, so the
//! others take over a dead gateway's work.
//!
//! Here: the pool, this gateway's lease owner id, the leases it holds and their renewal. Beside it
//! one concept per file, as `sqlite/`: `url.rs`, `schema.rs` (migrations), `ingest.rs` with
//! `commit.rs` (group commit) and `bytes.rs` (chunks), `queue.rs` (claims as leases),
//! `attempts.rs`, `reads.rs`, `api_reads.rs` (the API's pages, delete, replay), `retention.rs`,
//! `senders.rs`, `streams.rs`, `listen.rs` (LISTEN).
//!
//! Lock order: a transaction that may wait for more than one `deliveries` row locks them in id order
//! first (`ORDER BY id FOR …`, see LOCK_IN_ORDER) and only then changes them. Two such transactions
//! then wait for each other one way at most, never both ways: PostgreSQL never has to break a
//! deadlock by failing one of them (an API call's 503, a renewal missed, an outcome sent again).
//! Claims and retention's chunks skip locked rows (`SKIP LOCKED`) and wait for none.

mod api_reads;
mod attempts;
mod bytes;
mod commit;
mod ingest;
mod listen;
mod queue;
mod reads;
mod retention;
mod schema;
mod senders;
mod streams;
#[cfg(test)]
mod tests;
mod tls;
mod url;

pub(in crate::store) use bytes::{ChunkWriter, RAW};
pub use url::DatabaseUrl;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2;
use tokio::sync::watch;
use tokio_postgres_rustls::MakeRustlsConnect;

pub(super) type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// Connections per gateway: the group commit's leader, the scheduler's claims, attempts, links and
/// CLI/API reads at once. A cluster of N gateways needs N times this below `max_connections`.
const POOL_SIZE: u32 = 16;
/// How long a caller waits for a connection (the database down: the SMTP session answers 451
/// after at most this, rather than holding the client).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The lease of the unit tests' `open` (`[storage] lease`'s default). A claim holds a delivery this
/// long without renewal: after a gateway dies, the others take its deliveries over this long after
/// its last renewal.
#[cfg(test)]
pub(super) const LEASE: Duration = Duration::from_secs(30);

/// The start of a statement that changes the deliveries `id = ANY($1)` still leased to `$2` (see
/// "Lock order" above): it locks them in id order, then the statement's UPDATE changes the rows in
/// `locked`. MATERIALIZED keeps the CTE out of the UPDATE's plan: its ORDER BY is the lock order.
pub(super) const LOCK_IN_ORDER: &str = "WITH locked AS MATERIALIZED (
        SELECT id FROM deliveries WHERE id = ANY($1) AND lease_owner = $2 ORDER BY id FOR NO KEY UPDATE)";

/// The PostgreSQL store of one database, as one gateway sees it.
pub(super) struct Postgres {
    url: DatabaseUrl,
    pool: Pool,
    /// This gateway's id for this run (`gw_` + ULID): the owner of the leases it takes. A restarted
    /// gateway is a new owner; its old leases expire like a dead gateway's.
    owner: String,
    /// The lease length, in ms (`[storage] lease`, else `LEASE`).
    lease: i64,
    /// Messages and attempt outcomes waiting for the next group commit (commit.rs).
    group: crate::store::group::Group<Box<dyn commit::Work>>,
    /// The deliveries this gateway holds a lease on (claimed, or handed off at ingest), renewed by
    /// the renewal thread until their outcome is recorded or they are given back.
    held: Arc<Mutex<HashSet<String>>>,
    /// Moved when any gateway commits deliveries for anyone (LISTEN `mxhook_due`).
    due_tip: Arc<watch::Sender<u64>>,
    /// Moved when any gateway commits stream events (LISTEN `mxhook_streams`, and our own commits).
    streams_tip: Arc<watch::Sender<u64>>,
    /// `data_dir/gateway.run`: the lease owner of this host's last `serve`, whose leases
    /// `release_in_flight` gives back at start (None: not known, e.g. in tests).
    run_file: Option<std::path::PathBuf>,
    /// The newest stream cursor `check_streams_tip` has seen.
    streams_seen: std::sync::atomic::AtomicI64,
    /// Tells the LISTEN and renewal threads to end (Drop).
    stop: Arc<AtomicBool>,
}

/// Runs `f`, which talks to the database through the synchronous driver, so that it may block: each
/// driver client runs a small runtime of its own, which tokio refuses to start on one of its worker
/// threads. The program calls the store from blocking threads (`spawn_blocking`, the CLI), and from
/// async code here and there, which SQLite never minded: there, `block_in_place` moves the worker's
/// other tasks away while `f` blocks.
pub(super) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `s` as a PostgreSQL `text` value: NUL, which SQLite keeps and `text` refuses (the whole
/// transaction with it), becomes U+FFFD. Sender-controlled strings (a file name `evil%00.txt`, a
/// subject) and endpoints' answers may hold one.
pub(in crate::store) fn text(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// `text` of an optional string.
pub(super) fn opt_text(s: Option<&str>) -> Option<String> {
    s.map(text)
}

/// A database host that vanishes without closing its connections (power cut, a network partition)
/// would hold whoever waits on one (a session's commit: its 250 or 451) until Linux stops
/// retransmitting, about 15 minutes. With these defaults a connection whose data goes unacknowledged
/// for 30 s, or that answers no keepalive for about a minute of quiet, is closed: the caller gets an
/// error (the session a 451) and the pool connects anew. A database URL's own values win. (A server
/// that is alive but stopped, e.g. SIGSTOP, still acknowledges and is not noticed.)
fn notice_a_vanished_host(config: &mut postgres::Config) {
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    // 2 hours is the library's default: no URL sets it.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

/// The end of a lease taken at `now`.
pub(super) fn lease_until(now: i64, lease: i64) -> i64 {
    now + lease
}

impl Postgres {
    /// Connects to `url` and brings its schema up to date (refusing a newer one).
    #[cfg(test)]
    pub(in crate::store) fn open(url: &DatabaseUrl) -> anyhow::Result<Postgres> {
        Postgres::open_with_lease(url, LEASE)
    }

    /// `open`, its claims on deliveries lasting `lease` unrenewed.
    pub(in crate::store) fn open_with_lease(url: &DatabaseUrl, lease: Duration) -> anyhow::Result<Postgres> {
        let mut config = url.config()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        notice_a_vanished_host(&mut config);
        config.application_name("mxhook");
        let tls = tls::connector(url.tls()).with_context(|| format!("TLS for {url}"))?;
        let manager = PostgresConnectionManager::new(config.clone(), tls.clone());
        let tls_listen = tls.clone();
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // A connection cut by a restart of the database is found at checkout, not by a caller.
            .test_on_check_out(true)
            .build(manager);
        let pool = match pool {
            Ok(pool) => pool,
            // The pool keeps only the last error's first line ("error performing TLS handshake"):
            // one connection of our own says why (the certificate's issuer, a refused password).
            Err(e) => {
                let why =
                    config.connect(tls).err().map_or_else(|| e.to_string(), |c| format!("{:#}", anyhow::Error::new(c)));
                anyhow::bail!("connecting to {url}: {why}");
            }
        };
        let store = Postgres {
            url: url.clone(),
            pool,
            owner: crate::ids::new_id("gw"),
            lease: lease.as_millis() as i64,
            group: crate::store::group::Group::new(),
            held: Arc::new(Mutex::new(HashSet::new())),
            due_tip: Arc::new(watch::Sender::new(0)),
            streams_tip: Arc::new(watch::Sender::new(0)),
            streams_seen: std::sync::atomic::AtomicI64::new(0),
            run_file: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let mut conn = store.conn()?;
        schema::migrate(&mut conn).with_context(|| format!("the schema of {url}"))?;
        drop(conn);
        let ears =
            listen::Ears { due: store.due_tip.clone(), streams: store.streams_tip.clone(), stop: store.stop.clone() };
        listen::spawn(config, tls_listen, ears).context("starting the LISTEN thread")?;
        store.spawn_renewal().context("starting the lease renewal thread")?;
        Ok(store)
    }

    /// Remembers this run in `file` (see `release_in_flight`).
    pub(in crate::store) fn with_run_file(mut self, file: std::path::PathBuf) -> Postgres {
        self.run_file = Some(file);
        self
    }

    /// A connection from the pool (an error names the database, never its password).
    pub(in crate::store) fn conn(&self) -> anyhow::Result<Conn> {
        self.pool.get().with_context(|| format!("no connection to {}", self.url))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts renewing the leases on `ids` (taken in the database by the caller's transaction).
    fn hold(&self, ids: &[String]) {
        self.held().extend(ids.iter().cloned());
    }

    /// Stops renewing them (their outcome is recorded, or they were given back).
    fn drop_held<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        let mut held = self.held();
        ids.into_iter().for_each(|id| {
            held.remove(id);
        });
    }

    /// Every third of a lease, extends the leases this gateway holds: an attempt that takes longer
    /// than a lease (a slow endpoint) keeps its delivery. While the database is away renewal fails
    /// and the leases may lapse: another gateway may then attempt the same delivery too, which
    /// at-least-once allows.
    fn spawn_renewal(&self) -> std::io::Result<()> {
        let (pool, held, stop) = (self.pool.clone(), self.held.clone(), self.stop.clone());
        let (owner, lease, url) = (self.owner.clone(), self.lease, self.url.clone());
        let every = Duration::from_millis((lease / 3).max(1) as u64);
        std::thread::Builder::new()
            .name("pg-leases".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let ids: Vec<String> = held.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
                    if ids.is_empty() {
                        continue;
                    }
                    let until = lease_until(crate::time::now_ms(), lease);
                    let renewed = pool.get().map_err(anyhow::Error::from).and_then(|mut c| {
                        Ok(c.execute(
                            &format!(
                                "{LOCK_IN_ORDER} UPDATE deliveries SET lease_until = $3 WHERE id IN (SELECT id FROM locked)"
                            ),
                            &[&ids, &owner, &until],
                        )?)
                    });
                    if let Err(e) = renewed {
                        tracing::warn!(database = %url, error = %format!("{e:#}"), "cannot renew delivery leases");
                    }
                }
            })
            .map(|_| ())
    }

    /// Moves after each commit (of any gateway) that added deliveries for anyone to claim.
    pub(in crate::store) fn due_watch(&self) -> watch::Receiver<u64> {
        self.due_tip.subscribe()
    }

    /// Moves after each commit (of any gateway) that added stream events.
    pub(in crate::store) fn streams_watch(&self) -> watch::Receiver<u64> {
        self.streams_tip.subscribe()
    }

    fn streams_changed(&self) {
        self.streams_tip.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The database, for the log (password hidden).
    pub(in crate::store) fn describe(&self) -> String {
        format!("postgres {} (gateway {})", self.url, self.owner)
    }

    /// The cluster's link-signing key: made with `make` by the first gateway to ask, the same for all.
    pub(in crate::store) fn link_key(&self, make: &dyn Fn() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
        let mut conn = self.conn()?;
        if let Some(r) = conn.query_opt("SELECT key FROM link_key WHERE id = 1", &[])? {
            return Ok(r.get(0));
        }
        let key = make()?;
        conn.execute("INSERT INTO link_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", &[&key])?;
        // Another gateway may have made it first: theirs is the key.
        Ok(conn.query_one("SELECT key FROM link_key WHERE id = 1", &[])?.get(0))
    }

    /// True when the database takes writes (a read-only standby or a full disk does not).
    pub(in crate::store) fn writable(&self) -> bool {
        let probe = || -> anyhow::Result<()> {
            let mut conn = self.conn()?;
            let mut tx = conn.transaction()?;
            let read_only: String = tx.query_one("SHOW transaction_read_only", &[])?.get(0);
            anyhow::ensure!(read_only == "off", "read-only");
            tx.execute("SELECT txid_current()", &[])?;
            tx.commit()?;
            Ok(())
        };
        probe().is_ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
