//! The SMTP side: a tokio accept loop (this file) and one session state machine per connection
//! (`session.rs`) over smtp-proto's parser, for SMTP and for LMTP (RFC 2033: the same machine with
//! LHLO and one reply per recipient). It owns the protocol and its limits, and the PROXY header of a
//! listed balancer (`proxy.rs`); what happens to a recipient or a finished message is the [`Sink`]'s
//! business (ingest: auth → parse → route → store).

mod peers;
mod proxy;
mod session;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};

use crate::config::{ListenAddr, Lmtp, SmtpConfig};
use crate::mail::{Envelope, Ingress, Reason, Reply};
use crate::metrics::Metrics;

/// Where accepted mail goes. `accept` must return only once the message is durably stored:
/// its Ok is turned into `250 … queued as <id>`.
pub trait Sink: Send + Sync + 'static {
    /// What `check_mail` learned about the sender (e.g. SPF verdicts), handed back to `accept`
    /// (again for each recipient on its own when LMTP splits a refused transaction).
    type Sender: Send + Clone + 'static;
    /// At MAIL FROM (`mail_from` empty for `<>`): refuse the sender, or remember what was found.
    fn check_mail(
        &self,
        client_ip: IpAddr,
        ingress: Ingress,
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
    /// `[smtp] proxy_protocol`: the SMTP listeners' balancers.
    pub proxy_protocol: Vec<IpNet>,
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
            proxy_protocol: c.proxy_protocol.clone(),
        }
    }
}

/// One listening socket, the protocol spoken on it and the balancers that must send a PROXY header.
pub struct Listener {
    socket: Socket,
    ingress: Ingress,
    /// None: `[smtp] proxy_protocol` (an SMTP listener made from a bare `TcpListener`).
    proxy: Option<Vec<IpNet>>,
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener { socket: Socket::Tcp(l), ingress: Ingress::Smtp, proxy: None }
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

/// The `[lmtp]` listeners. A Unix socket path is taken over when a stale socket is there (never a
/// file of another kind) and made `socket_mode`, so the MTA's delivery user can connect.
pub async fn bind_lmtp(lmtp: &Lmtp) -> anyhow::Result<Vec<Listener>> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut out = Vec::new();
    for a in &lmtp.listen {
        let socket = match a {
            ListenAddr::Tcp(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for LMTP on {addr}: {e}"))?;
                tracing::info!("lmtp listening on {}", l.local_addr()?);
                Socket::Tcp(l)
            }
            ListenAddr::Unix(path) => {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path)?;
                }
                let l = UnixListener::bind(path)
                    .map_err(|e| anyhow::anyhow!("cannot listen for LMTP on {}: {e}", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(lmtp.socket_mode))?;
                tracing::info!("lmtp listening on unix:{}", path.display());
                Socket::Unix(l)
            }
        };
        out.push(Listener { socket, ingress: Ingress::Lmtp, proxy: Some(lmtp.proxy_protocol.clone()) });
    }
    Ok(out)
}

/// Accepts sessions until `shutdown` turns true, then waits for the open ones to end
/// (each answers `421` at its next command).
pub async fn serve<S: Sink, L: Into<Listener>>(
    listeners: Vec<L>,
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
        let mut listener: Listener = listener.into();
        let proxy = Arc::new(listener.proxy.take().unwrap_or_else(|| limits.proxy_protocol.clone()));
        accepting.spawn(accept_loop(
            listener,
            proxy,
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

/// A Unix-socket client is on this host: it stands as 127.0.0.1 (trusted, and the event's client_ip).
const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

async fn accept_loop<S: Sink>(
    listener: Listener,
    proxy: Arc<Vec<IpNet>>,
    limits: Arc<Limits>,
    sessions: Arc<Semaphore>,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = accept(&listener.socket) => r,
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
        let ingress = listener.ingress;
        let (limits, sink, metrics, shutdown, proxy) =
            (limits.clone(), sink.clone(), metrics.clone(), shutdown.clone(), proxy.clone());
        tokio::spawn(async move {
            open(stream, peer, ingress, &proxy, limits, sink, metrics, shutdown).await;
            drop(permit);
        });
    }
}

async fn accept(socket: &Socket) -> std::io::Result<(session::Conn, SocketAddr)> {
    match socket {
        Socket::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((session::Conn::Tcp(s), peer))
        }
        Socket::Unix(l) => Ok((session::Conn::Unix(l.accept().await?.0), LOCAL)),
    }
}

/// One connection: its PROXY header when it comes from a listed balancer, then the per-IP session
/// limit for the real client (trusted networks exempt), then the session.
#[allow(clippy::too_many_arguments)]
async fn open<S: Sink>(
    mut stream: session::Conn,
    peer: SocketAddr,
    ingress: Ingress,
    proxy: &[IpNet],
    limits: Arc<Limits>,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let balancer = peer.ip().to_canonical();
    let (client, proxy_ip, input) =
        if matches!(stream, session::Conn::Tcp(_)) && proxy.iter().any(|n| n.contains(&balancer)) {
            let timeout = limits.command_timeout.min(Duration::from_secs(30));
            match proxy::read_header(&mut stream, timeout).await {
                Ok(p) => (p.client.unwrap_or(peer), Some(peer.ip()), p.rest),
                Err(e) => {
                    // Closed without a word: whatever is there speaks no PROXY, and a banner would only
                    // invite it to send mail under the balancer's address.
                    tracing::warn!(%peer, error = %e, "no valid PROXY header from a proxy_protocol address; closing");
                    metrics.rejected(Reason::Proxy);
                    return;
                }
            }
        } else {
            (peer, None, Vec::new())
        };
    let Some(slot) = limits.peers.open_session(client.ip()) else {
        tracing::warn!(peer = %client, "too many sessions from this address; refusing");
        metrics.rejected(Reason::TooManySessionsPerIp);
        let reply =
            format!("421 4.7.0 {} Too many connections from your address, try again later\r\n", limits.hostname);
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
        return;
    };
    let origin = session::Origin { client, proxy_ip, ingress, input };
    session::run(stream, origin, limits, sink, metrics, shutdown).await;
    drop(slot);
}
