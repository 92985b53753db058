//! The SMTP session in process, against a test Sink (issue 15, as tokio-rs/mini-redis tests its
//! server): `mxhook::smtp::serve` on a 127.0.0.1:0 listener in a background runtime, the shared
//! `SmtpClient` talking to it, and a `TestSink` that records what it accepted. No binary, no store, no
//! webhook: what is checked here is the protocol and its limits, replies and `messages_rejected`
//! reasons; that the config keys reach the running binary is checked in tests/deploy (`limits`).
//!
//! - `protocol`: greeting and capabilities, command order, syntax, relay refusal, recipient and size
//!   limits, long lines, pipelining, the session cap, idle timeouts, a sink that fails.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod protocol;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mxhook::config::SmtpConfig;
use mxhook::mail::{Envelope, Reason, Reply};
use mxhook::metrics::Metrics;
use mxhook::smtp::{Limits, Sink, serve};
use tokio::sync::watch;

/// The hostname the in-process server greets with.
pub const HOSTNAME: &str = "mx.smtp.test";

/// Records every accepted message; refuses recipients outside `example.test` the way the router does;
/// answers 451 to every message while `fail_accept` is set.
#[derive(Default)]
pub struct TestSink {
    accepted: Mutex<Vec<(Envelope, Vec<u8>)>>,
    pub fail_accept: AtomicBool,
    ids: AtomicUsize,
}

impl TestSink {
    /// What was accepted so far: (envelope, raw bytes), in order.
    pub fn accepted(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Sink for TestSink {
    type Sender = ();

    async fn check_mail(
        &self,
        _client_ip: IpAddr,
        _ingress: mxhook::mail::Ingress,
        _helo: &str,
        _mail_from: &str,
    ) -> Result<(), Reply> {
        Ok(())
    }

    fn check_rcpt(&self, address: &str) -> Result<(), Reply> {
        let relay = || Reply::new(550, format!("5.7.1 <{address}>: Relay access denied"), Reason::Relay);
        let (local, domain) = address.rsplit_once('@').ok_or_else(relay)?;
        if local.is_empty() || local.contains(['@', '%', '!', ':', ',']) {
            return Err(relay());
        }
        match domain.trim_end_matches('.').eq_ignore_ascii_case(common::DOMAIN) {
            true => Ok(()),
            false => Err(relay()),
        }
    }

    async fn accept(&self, envelope: Envelope, _sender: (), raw: Vec<u8>) -> Result<String, Reply> {
        if self.fail_accept.load(Ordering::SeqCst) {
            return Err(Reply::new(451, "4.3.0 Error: the test sink refuses, try again later", Reason::StoreFailed));
        }
        self.accepted.lock().unwrap().push((envelope, raw));
        Ok(format!("msg_test{}", self.ids.fetch_add(1, Ordering::SeqCst)))
    }
}

/// `serve` on its own runtime thread; shut down (each open session answers 421 at its next command)
/// when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub sink: Arc<TestSink>,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// The defaults of `[smtp]` with hostname `mx.smtp.test`, changed by `configure`.
    pub fn start(configure: impl FnOnce(&mut SmtpConfig)) -> Server {
        let mut cfg = SmtpConfig { hostname: HOSTNAME.into(), ..SmtpConfig::default() };
        configure(&mut cfg);
        let (limits, max_sessions) = (Limits::from(&cfg), cfg.max_sessions);
        let (sink, metrics) = (Arc::new(TestSink::default()), Arc::new(Metrics::new()));
        let (shutdown, rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (s, m) = (sink.clone(), metrics.clone());
        std::thread::spawn(move || rt.block_on(serve(vec![listener], limits, max_sessions, s, m, rx)));
        Server { addr, sink, metrics, shutdown }
    }

    /// The default `[smtp]` limits.
    pub fn basic() -> Server {
        Server::start(|_| {})
    }

    /// `mxhook_messages_rejected_total{reason}` so far (0 when the series does not exist yet).
    pub fn rejected(&self, reason: &str) -> u64 {
        let series = format!("mxhook_messages_rejected_total{{reason=\"{reason}\"}} ");
        let text = self.metrics.encode();
        text.lines().find_map(|l| l.strip_prefix(series.as_str())).map_or(0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
