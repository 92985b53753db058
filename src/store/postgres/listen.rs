//! The gateway's ears: one connection of its own (not the pool's) that LISTENs, on a thread of its
//! own, and moves this store's watches when another gateway (or this one) commits new deliveries or
//! stream events, so schedulers and stream readers across the cluster wake at once, not at their
//! next poll. Reconnects after the database comes back, and then wakes everyone once (what was
//! notified meanwhile is lost).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use tokio::sync::watch;
use tokio_postgres_rustls::MakeRustlsConnect;

/// New deliveries that any scheduler may claim.
pub(super) const DUE: &str = "mxhook_due";
/// New stream events.
pub(super) const STREAMS: &str = "mxhook_streams";

/// How often the thread looks at `stop` while nothing is notified.
const TICK: Duration = Duration::from_millis(500);
/// Between reconnection tries while the database is away.
const RETRY: Duration = Duration::from_secs(1);

/// What the thread moves, and how it is told to stop (the store's Drop).
pub(super) struct Ears {
    pub(super) due: Arc<watch::Sender<u64>>,
    pub(super) streams: Arc<watch::Sender<u64>>,
    pub(super) stop: Arc<AtomicBool>,
}

/// Starts the listening thread.
pub(super) fn spawn(config: postgres::Config, tls: MakeRustlsConnect, ears: Ears) -> std::io::Result<()> {
    std::thread::Builder::new().name("pg-listen".into()).spawn(move || run(config, tls, ears)).map(|_| ())
}

fn bump(w: &watch::Sender<u64>) {
    w.send_modify(|n| *n = n.wrapping_add(1));
}

fn run(config: postgres::Config, tls: MakeRustlsConnect, ears: Ears) {
    while !ears.stop.load(Ordering::Relaxed) {
        let mut client = match config.connect(tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cannot LISTEN yet");
                std::thread::sleep(RETRY);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {DUE}; LISTEN {STREAMS}")) {
            tracing::debug!(error = %e, "LISTEN failed");
            std::thread::sleep(RETRY);
            continue;
        }
        // Anything committed before this LISTEN was notified to nobody here: while the database was
        // away, and also before the first connection (which may come late, e.g. when the database
        // was down as the gateway started). A wake-up with nothing new costs one look.
        bump(&ears.due);
        bump(&ears.streams);
        loop {
            if ears.stop.load(Ordering::Relaxed) {
                return;
            }
            let mut heard = client.notifications();
            let mut iter = heard.timeout_iter(TICK);
            match iter.next() {
                Ok(Some(n)) if n.channel() == DUE => bump(&ears.due),
                Ok(Some(n)) if n.channel() == STREAMS => bump(&ears.streams),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection to the database; reconnecting");
                    break;
                }
            }
            drop(iter);
            drop(heard);
            // timeout_iter does not notice a connection the server closed while idle.
            if client.is_closed() {
                break;
            }
        }
    }
}
