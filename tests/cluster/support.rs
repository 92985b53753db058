//! What the cluster tests share: three gateways on one database (started, SIGKILLed, restarted), SMTP
//! load spread over whichever of them are up with the outcome of every message, and a tally of the
//! receiver's requests by message.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::postgres::PgCluster;
use crate::common::*;

/// How many gateways share the database.
pub const MEMBERS: usize = 3;

/// One cluster test at a time: each runs three gateways and a load on two cores, and two at once
/// would starve each other's lease renewals and stretch both runs.
pub fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The seed of a test's RNG: `MXHOOK_SEED` when set (to repeat a run), else from the clock; printed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("MXHOOK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("{test}: seed {s} (repeat with MXHOOK_SEED={s})");
    s
}

/// Now on the wall clock, in ms since the epoch: the unit of the store's timestamps (`received_at`,
/// `lease_until`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The SMTP address of each member while it is up (None while it is down): where the senders go.
#[derive(Default)]
pub struct Up(Mutex<Vec<Option<SocketAddr>>>);

impl Up {
    fn set(&self, member: usize, addr: Option<SocketAddr>) {
        let mut up = self.0.lock().unwrap();
        if up.len() <= member {
            up.resize(member + 1, None);
        }
        up[member] = addr;
    }

    /// The first member up from `start` on (round robin), with its address.
    fn from(&self, start: usize) -> Option<(usize, SocketAddr)> {
        let up = self.0.lock().unwrap();
        (0..up.len()).map(|k| (start + k) % up.len()).find_map(|i| up[i].map(|a| (i, a)))
    }
}

/// Three gateways on one database of `pg`, one harness (temp dir, receiver, logs).
pub struct Cluster<'a> {
    pub pg: &'a PgCluster,
    pub h: Harness,
    /// The database's name in `pg`.
    pub db: String,
    pub configs: Vec<PathBuf>,
    pub gateways: Vec<Option<Gateway>>,
    pub up: Arc<Up>,
}

impl<'a> Cluster<'a> {
    /// A new database on `pg` and three gateways on it, each with `Config::basic` (short retries,
    /// per-IP limits out of the way: every client is 127.0.0.1, no sender authentication),
    /// `[storage] lease = LEASE`, then `tweak`; all started.
    pub fn start(pg: &'a PgCluster, lease: &str, tweak: impl Fn(&mut Config)) -> Cluster<'a> {
        let url = pg.new_database().unwrap_or_else(|e| panic!("a database for the cluster: {e}"));
        let db = url.rsplit('/').next().unwrap().to_string();
        let h = Harness::on_database(url);
        let mut cfg = Config::basic(&h.rx);
        cfg.smtp("max_sessions = 200")
            .smtp("max_sessions_per_ip = 1000")
            .smtp("max_messages_per_minute_per_ip = 0")
            .storage(&format!("lease = {lease:?}"))
            // No SPF/DKIM/DMARC lookups: through the system resolver they cost about a second a
            // message on a loaded machine, and sender authentication is not what these tests are about.
            .auth("enabled = false");
        cfg.endpoint("app").retry = strings(&["0s", "100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s", "1s", "1s"]);
        tweak(&mut cfg);
        let configs: Vec<PathBuf> = (0..MEMBERS).map(|n| h.write_member_config(n, &cfg)).collect();
        let mut c = Cluster { pg, h, db, configs, gateways: Vec::new(), up: Arc::default() };
        for n in 0..MEMBERS {
            let gw = c.h.start_member(&c.configs[n]);
            c.up.set(n, Some(gw.smtp));
            c.gateways.push(Some(gw));
        }
        c
    }

    /// Member `n`, which must be up.
    #[track_caller]
    pub fn gateway(&self, n: usize) -> &Gateway {
        self.gateways[n].as_ref().unwrap_or_else(|| panic!("gateway {n} is down"))
    }

    /// SIGKILL member `n` and wait until it is gone.
    pub fn kill(&mut self, n: usize) {
        self.up.set(n, None);
        let mut gw = self.gateways[n].take().unwrap_or_else(|| panic!("gateway {n} is already down"));
        gw.signal(libc::SIGKILL);
        gw.wait_exit(Duration::from_secs(10));
    }

    /// Starts member `n` again on its config and data_dir (new ports).
    pub fn restart(&mut self, n: usize) {
        assert!(self.gateways[n].is_none(), "gateway {n} is up");
        let gw = self.h.start_member(&self.configs[n]);
        self.up.set(n, Some(gw.smtp));
        self.gateways[n] = Some(gw);
    }

    /// Rows of `sql` in the cluster's database, columns split at the unit separator.
    #[track_caller]
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.pg.psql(&self.db, sql).unwrap_or_else(|e| panic!("{e}"));
        out.lines().filter(|l| !l.is_empty()).map(|l| l.split('\x1f').map(str::to_string).collect()).collect()
    }

    /// Deliveries by status, e.g. `{"succeeded": 3000}`.
    pub fn delivery_statuses(&self) -> BTreeMap<String, usize> {
        let rows = self.rows("SELECT status, COUNT(*) FROM deliveries GROUP BY status");
        rows.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap())).collect()
    }
}

/// What one message came to, from the client's side.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `250 … queued as msg_…`: the id.
    Acked(String),
    /// Any other complete reply (to MAIL, RCPT, DATA or the data): code and text.
    Refused(u16, String),
    /// The connection broke (or never opened) before the reply: the gateway was killed.
    Broken,
}

/// One message's outcome, when it came (the reply, or the broken connection) and from which member.
#[derive(Debug, Clone)]
pub struct Sent {
    pub member: usize,
    pub at: Instant,
    pub outcome: Outcome,
}

/// SMTP senders on threads of their own, each sending sessions of 1 to 3 messages to the members
/// up, in turn (round robin), until told to stop or until `target` messages were acknowledged.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub acked: Arc<AtomicUsize>,
    sent: Arc<Mutex<Vec<Sent>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(up: &Arc<Up>, senders: usize, seed: u64, target: Option<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let threads = (0..senders)
            .map(|t| {
                let (up, stop, acked, sent) = (up.clone(), stop.clone(), acked.clone(), sent.clone());
                let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x51_7CC1_B727_220A));
                std::thread::spawn(move || {
                    let (mut seq, mut turn) = (0u64, t);
                    let more =
                        || !stop.load(Ordering::SeqCst) && target.is_none_or(|n| acked.load(Ordering::SeqCst) < n);
                    while more() {
                        turn += 1;
                        let Some((member, addr)) = up.from(turn) else {
                            // Every member down (never in these tests for long): look again.
                            std::thread::sleep(Duration::from_millis(50)); // deliberate: nobody to send to
                            continue;
                        };
                        let batch: Vec<Vec<u8>> = (0..rng.range(1, 3))
                            .map(|_| {
                                seq += 1;
                                message(&format!("cluster-{seed}-{t}-{seq}@load.test"), rng.range(200, 6_000) as usize)
                            })
                            .collect();
                        let got = session(addr, &batch);
                        let n = got.iter().filter(|(_, o)| matches!(o, Outcome::Acked(_))).count();
                        acked.fetch_add(n, Ordering::SeqCst);
                        sent.lock().unwrap().extend(got.into_iter().map(|(at, outcome)| Sent { member, at, outcome }));
                    }
                })
            })
            .collect();
        Load { stop, acked, sent, threads }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Every outcome so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Stops the senders (each finishes its session) and returns every outcome.
    pub fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a sender thread panicked");
        }
        self.sent.lock().unwrap().clone()
    }
}

/// One session sending `messages` one after another: an outcome for each message whose transaction
/// was begun, with when it came, stopping at the first that is not acknowledged. Never panics: a
/// dead gateway is the point.
fn session(addr: SocketAddr, messages: &[Vec<u8>]) -> Vec<(Instant, Outcome)> {
    let mut out = Vec::new();
    let broken = || vec![(Instant::now(), Outcome::Broken)];
    let Ok(mut c) = Wire::connect(addr, Duration::from_secs(60)) else { return broken() };
    if !c.hello() {
        return broken();
    }
    for raw in messages {
        let outcome = match c.mail("inbox@example.test", raw) {
            Ok((250, text)) => match text.split("queued as ").nth(1) {
                Some(id) => Outcome::Acked(id.trim().to_string()),
                None => Outcome::Refused(250, text),
            },
            Ok((code, text)) => Outcome::Refused(code, text),
            Err(_) => Outcome::Broken,
        };
        let go_on = matches!(outcome, Outcome::Acked(_));
        out.push((Instant::now(), outcome));
        if !go_on {
            return out;
        }
    }
    let _ = c.send(b"QUIT\r\n");
    out
}

/// A plain message with its own Message-ID and a body of about `len` bytes of text.
pub fn message(message_id: &str, len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load <load@sender.test>\r\nTo: <inbox@example.test>\r\nMessage-ID: <{message_id}>\r\n\
         Subject: {message_id}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    while m.len() < len {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz.\r\n");
    }
    m
}

/// The acknowledged message ids among `sent`.
pub fn acked_ids(sent: &[Sent]) -> BTreeSet<String> {
    sent.iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Acked(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// The receiver's requests by message id, each checked as it is first seen: the stock verifier
/// accepts it with SECRET_A and its body's id is its webhook-id. Fed incrementally (thousands of
/// requests: each is parsed once).
#[derive(Default)]
pub struct Tally {
    seen: usize,
    /// message id -> webhook-id of each request for it, in arrival order, with its arrival.
    pub by_message: BTreeMap<String, Vec<(String, Instant)>>,
}

impl Tally {
    /// Takes in the requests that arrived since the last call.
    pub fn update(&mut self, rx: &Receiver) {
        for r in rx.requests_since(self.seen) {
            self.seen += 1;
            r.assert_signed(SECRET_A);
            let body = r.json();
            assert_eq!(body["id"], r.webhook_id(), "the body's id and webhook-id differ");
            let id = body["message"]["id"].as_str().expect("message.id").to_string();
            self.by_message.entry(id).or_default().push((r.webhook_id().to_string(), r.at));
        }
    }

    pub fn requests(&self) -> usize {
        self.seen
    }

    /// The acknowledged messages the receiver has not seen yet.
    pub fn missing<'i>(&self, acked: &'i BTreeSet<String>) -> Vec<&'i String> {
        acked.iter().filter(|id| !self.by_message.contains_key(*id)).collect()
    }

    /// Every copy of a message carries one event id (a message here has one delivery); returns the
    /// number of events delivered more than once and the copies beyond the first.
    #[track_caller]
    pub fn duplicates(&self) -> (usize, usize) {
        let (mut events, mut extra) = (0, 0);
        for (msg, copies) in &self.by_message {
            let ids: BTreeSet<&str> = copies.iter().map(|(w, _)| w.as_str()).collect();
            assert_eq!(ids.len(), 1, "copies of {msg} carry different event ids: {ids:?}");
            if copies.len() > 1 {
                events += 1;
                extra += copies.len() - 1;
            }
        }
        (events, extra)
    }

    /// Polls (with `timeout`) until every message of `acked` has reached the receiver; panics with
    /// the first few missing and the logs.
    #[track_caller]
    pub fn wait_all(&mut self, c: &Cluster<'_>, acked: &BTreeSet<String>, timeout: Duration) {
        let mut last = usize::MAX;
        let arrived = poll(timeout, || {
            if c.h.rx.count() != last {
                last = c.h.rx.count();
                self.update(&c.h.rx);
            }
            self.missing(acked).is_empty()
        });
        if !arrived {
            let missing = self.missing(acked);
            let rows = c.rows(&format!(
                "SELECT message_id, status, attempts, lease_owner, lease_until, next_attempt_at FROM deliveries
                 WHERE message_id IN ('{}')",
                missing.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join("','")
            ));
            panic!(
                "{} of {} acknowledged messages never reached the receiver within {timeout:?}; the first few \
                 in the database: {rows:?}\n{}",
                missing.len(),
                acked.len(),
                c.h.logs()
            );
        }
    }
}
