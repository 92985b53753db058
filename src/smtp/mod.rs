//! The SMTP side: a tokio accept loop (this file) and one session state machine per connection
//! (`session.rs`) over smtp-proto's parser. It owns the protocol and its limits; what happens to a
//! recipient or a finished message is the [`Sink`]'s business (ingest: auth → parse → route → store).

mod peers;
mod session;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::SmtpConfig;
use crate::mail::{Envelope, Reason, Reply};
use crate::metrics::Metrics;

/// Where accepted mail goes. `accept` must return only once the message is durably stored:
/// its Ok is turned into `250 … queued as <id>`.
pub trait Sink: Send + Sync + 'static {
    /// What `check_mail` learned about the sender (e.g. SPF verdicts), handed back to `accept`.
    type Sender: Send + 'static;
    /// At MAIL FROM (`mail_from` empty for `<>`): refuse the sender, or remember what was found.
    fn check_mail(
        &self,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> impl Future<Output = Result<Self::Sender, Reply>> + Send;
    fn check_rcpt(&self, address: &str) -> Result<(), Reply>;
    fn accept(
        &self,
        envelope: Envelope,
        sender: Self::Sender,
        raw: Vec<u8>,
    ) -> impl Future<Output = Result<String, Reply>> + Send;
}

/// Limits, names and TLS material a session needs, set up once.
#[derive(Clone)]
pub struct Limits {
    /// STARTTLS, when `[smtp.tls]` is configured.
    pub tls: Option<Arc<tls::Tls>>,
    /// Per-client-IP session and message-rate limits, shared by all sessions.
    pub peers: Arc<peers::Peers>,
    pub max_errors: u32,
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub session_timeout: Duration,
}

impl From<&SmtpConfig> for Limits {
    fn from(c: &SmtpConfig) -> Self {
        Self {
            tls: None,
            peers: peers::Peers::new(
                c.max_sessions_per_ip,
                c.max_messages_per_minute_per_ip,
                c.trusted_networks.clone(),
            ),
            max_errors: c.max_errors,
            hostname: c.hostname.clone(),
            max_message_size: c.max_message_size,
            max_recipients: c.max_recipients,
            command_timeout: c.command_timeout,
            data_timeout: c.data_timeout,
            session_timeout: c.session_timeout,
        }
    }
}

/// Binds every address first, so a bad `listen` fails the start instead of a later task.
pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(a).await.map_err(|e| anyhow::anyhow!("cannot listen for SMTP on {a}: {e}"))?;
        tracing::info!("smtp listening on {}", l.local_addr()?);
        out.push(l);
    }
    Ok(out)
}

/// Accepts sessions until `shutdown` turns true, then waits for the open ones to end
/// (each answers `421` at its next command).
pub async fn serve<S: Sink>(
    listeners: Vec<TcpListener>,
    limits: Limits,
    max_sessions: usize,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = Arc::new(limits);
    let sessions = Arc::new(Semaphore::new(max_sessions));
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(
            listener,
            limits.clone(),
            sessions.clone(),
            sink.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    while accepting.join_next().await.is_some() {}
    // Every session holds a permit: having them all back means every session has ended.
    let _ = sessions.acquire_many(max_sessions as u32).await;
}

async fn accept_loop<S: Sink>(
    listener: TcpListener,
    limits: Arc<Limits>,
    sessions: Arc<Semaphore>,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many sessions; refusing");
            metrics.rejected(Reason::TooManySessions);
            let reply = format!("421 4.7.0 {} Too many connections, try again later\r\n", limits.hostname);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
            });
            continue;
        };
        let Some(slot) = limits.peers.open_session(peer.ip()) else {
            tracing::warn!(%peer, "too many sessions from this address; refusing");
            metrics.rejected(Reason::TooManySessionsPerIp);
            let reply =
                format!("421 4.7.0 {} Too many connections from your address, try again later\r\n", limits.hostname);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (limits, sink, metrics, shutdown) = (limits.clone(), sink.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            session::run(stream, peer, limits, sink, metrics, shutdown).await;
            drop((slot, permit));
        });
    }
}
