//! One SMTP or LMTP session: reads bounded command lines, hands each to a per-verb handler, streams
//! DATA through smtp-proto's `DataReceiver` (only `\r\n.\r\n` ends it, so no smuggling), and answers.
//! Replies are buffered and flushed only before we wait for input, which is what PIPELINING needs.
//!
//! LMTP (RFC 2033) is the same machine: LHLO instead of EHLO/HELO, and after the data one reply per
//! recipient. The message is stored once for all of them; only when that is refused is each recipient
//! tried on its own, so that one recipient's failure (a sync endpoint down) defers just that one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::{Limits, Sink};
use crate::mail::{Envelope, Ingress, Reason, printable};
use crate::metrics::Metrics;

/// Longest command line we take (RFC 5321 says 512; smtp-proto and Postfix allow more for extensions).
const MAX_COMMAND_LINE: usize = 4096;
const READ_CHUNK: usize = 64 * 1024;

enum Input {
    Line(Vec<u8>),
    TooLong,
    Closed,
    TimedOut,
    ShuttingDown,
}

enum Next {
    Continue,
    Quit,
}

/// Who is at the other end, as the accept loop found out (after any PROXY header).
pub struct Origin {
    /// The client: the connecting address, or the one its balancer's PROXY header carried.
    pub client: SocketAddr,
    /// The balancer's own address, when the client came through one.
    pub proxy_ip: Option<IpAddr>,
    pub ingress: Ingress,
    /// Bytes the client sent after the PROXY header, read with it.
    pub input: Vec<u8>,
}

struct Session<S: Sink> {
    peer: SocketAddr,
    proxy_ip: Option<IpAddr>,
    /// SMTP or LMTP: the greeting, the hello verb, and one reply per recipient after the data.
    ingress: Ingress,
    limits: Arc<Limits>,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    /// The connection, plain or after STARTTLS; reads pass through the write buffer.
    io: BufWriter<Stream>,
    /// Protocol version and cipher suite once STARTTLS has completed.
    tls: Option<(String, String)>,
    /// Bytes read from the socket and not yet consumed (pipelined commands, the start of DATA).
    input: Vec<u8>,
    deadline: Instant,
    errors: u32,
    helo: Option<String>,
    mail_from: Option<String>,
    /// MAIL FROM's SIZE= (0 when not given): lets DATA allocate once instead of doubling.
    declared_size: u64,
    /// What the sink found at MAIL FROM, for this transaction's `accept`.
    sender: Option<S::Sender>,
    rcpt_to: Vec<String>,
}

pub async fn run<S: Sink>(
    stream: Conn,
    origin: Origin,
    limits: Arc<Limits>,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + limits.session_timeout;
    let mut input = origin.input;
    input.reserve(1024);
    let mut s = Session {
        peer: origin.client,
        proxy_ip: origin.proxy_ip,
        ingress: origin.ingress,
        limits,
        sink,
        metrics,
        shutdown,
        io: BufWriter::new(Stream::Plain(stream)),
        tls: None,
        input,
        deadline,
        errors: 0,
        helo: None,
        mail_from: None,
        declared_size: 0,
        sender: None,
        rcpt_to: Vec::new(),
    };
    if let Err(e) = s.talk().await {
        tracing::debug!(peer = %s.peer, error = %e, "session ended with an I/O error");
    }
    // A clean close: flushes, and over TLS sends close_notify (RFC 8446 6.1) before the FIN.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.io.shutdown()).await;
}

impl<S: Sink> Session<S> {
    async fn talk(&mut self) -> std::io::Result<()> {
        let greeting = match self.ingress {
            Ingress::Lmtp => format!("{} LMTP mxhook", self.limits.hostname),
            _ => format!("{} ESMTP mxhook", self.limits.hostname),
        };
        self.reply(220, &greeting).await?;
        loop {
            let line = match self.read_line().await? {
                Input::Line(l) => l,
                Input::TooLong => {
                    self.error(500, "5.5.2 Error: line too long").await?;
                    continue;
                }
                Input::Closed => return Ok(()),
                Input::TimedOut => {
                    self.metrics.rejected(Reason::Timeout);
                    let text = format!("4.4.2 {} Error: timeout exceeded", self.limits.hostname);
                    return self.reply(421, &text).await;
                }
                Input::ShuttingDown => {
                    let text = format!("4.3.2 {} Service shutting down, try again later", self.limits.hostname);
                    return self.reply(421, &text).await;
                }
            };
            if let Next::Quit = self.command(&line).await? {
                return Ok(());
            }
            // Postfix's smtpd_hard_error_limit: a client this confused is not sending mail.
            if self.errors >= self.limits.max_errors {
                self.metrics.rejected(Reason::TooManyErrors);
                return self.reply(421, "4.7.0 Error: too many errors").await;
            }
        }
    }

    async fn command(&mut self, line: &[u8]) -> std::io::Result<Next> {
        if super::proxy::looks_like_header(line) {
            // Only a listed balancer may say who the client is; its header was read before the banner.
            tracing::warn!(peer = %self.peer, "PROXY header from an address not in proxy_protocol; closing");
            self.metrics.rejected(Reason::Proxy);
            self.reply(421, "4.7.0 Error: PROXY header not accepted from your address").await?;
            return Ok(Next::Quit);
        }
        let lmtp = self.ingress == Ingress::Lmtp;
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => {
                let (code, text) = match e {
                    ProtoError::UnknownCommand | ProtoError::NeedsMoreData { .. } => {
                        (500, "5.5.1 Error: command not recognized".to_string())
                    }
                    ProtoError::InvalidSenderAddress => (501, "5.1.7 Error: bad sender address syntax".into()),
                    ProtoError::InvalidRecipientAddress => (501, "5.1.3 Error: bad recipient address syntax".into()),
                    ProtoError::SyntaxError { syntax } => (501, format!("5.5.4 Syntax: {syntax}")),
                    ProtoError::InvalidParameter { param } => (501, format!("5.5.4 Error: invalid parameter {param}")),
                    ProtoError::UnsupportedParameter { param } => {
                        (555, format!("5.5.4 Error: unsupported option {}", printable(&param)))
                    }
                    ProtoError::ResponseTooLong => (500, "5.5.2 Error: line too long".into()),
                    ProtoError::InvalidResponse { .. } => (500, "5.5.1 Error: command not recognized".into()),
                };
                self.error(code, &text).await?;
                return Ok(Next::Continue);
            }
        };
        match request {
            Request::Ehlo { .. } | Request::Helo { .. } if lmtp => {
                self.error(500, "5.5.1 Error: this is LMTP, say LHLO").await?
            }
            Request::Lhlo { host } if lmtp => self.ehlo(host.into_owned(), true).await?,
            Request::Ehlo { host } => self.ehlo(host.into_owned(), true).await?,
            Request::Helo { host } => self.ehlo(host.into_owned(), false).await?,
            Request::Lhlo { .. } => self.error(500, "5.5.1 Error: LHLO is for LMTP").await?,
            Request::Mail { from } => self.mail(from.address.into_owned(), from.size as u64).await?,
            Request::Rcpt { to } => {
                // smtp-proto drops a source route (`<@relay:user@domain>`) and keeps the mailbox;
                // we refuse it instead: nobody sends one but someone probing for a relay.
                if source_routed(line) {
                    self.metrics.rejected(Reason::Relay);
                    let path = String::from_utf8_lossy(line);
                    let shown = printable(path.get(path.find('<').unwrap_or(0)..).unwrap_or_default().trim());
                    self.error(550, &format!("5.7.1 {shown}: Relay access denied (source route)")).await?;
                } else {
                    self.rcpt(to.address.into_owned()).await?
                }
            }
            Request::Data => self.data().await?,
            Request::Rset => {
                self.reset();
                self.reply(250, "2.0.0 Ok").await?
            }
            Request::Noop { .. } => self.reply(250, "2.0.0 Ok").await?,
            Request::Vrfy { .. } => self.reply(252, "2.5.0 Cannot VRFY user, but will accept message").await?,
            Request::Help { .. } => self.reply(214, "2.0.0 See RFC 5321").await?,
            Request::StartTls => return self.starttls().await,
            Request::Quit => {
                self.reply(221, "2.0.0 Bye").await?;
                return Ok(Next::Quit);
            }
            // Not advertised: AUTH (we are an MX, not a submission server), BDAT, ETRN...
            _ => self.error(502, "5.5.1 Error: command not implemented").await?,
        }
        Ok(Next::Continue)
    }

    async fn ehlo(&mut self, host: String, extended: bool) -> std::io::Result<()> {
        self.reset();
        self.helo = Some(host);
        let name = self.limits.hostname.clone();
        if !extended {
            return self.reply(250, &name).await;
        }
        let size = format!("SIZE {}", self.limits.max_message_size);
        let mut lines = vec![name.as_str(), "PIPELINING", &size, "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"];
        let unix = matches!(self.io.get_ref(), Stream::Plain(Conn::Unix(_)));
        if self.limits.tls.is_some() && self.tls.is_none() && !unix {
            lines.push("STARTTLS");
        }
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            self.io.write_all(format!("250{sep}{l}\r\n").as_bytes()).await?;
        }
        Ok(())
    }

    async fn starttls(&mut self) -> std::io::Result<Next> {
        let Some(tls) = self.limits.tls.clone() else {
            self.error(502, "5.5.1 Error: command not implemented").await?;
            return Ok(Next::Continue);
        };
        if self.tls.is_some() {
            self.error(503, "5.5.1 Error: TLS already active").await?;
            return Ok(Next::Continue);
        }
        self.reply(220, "2.0.0 Ready to start TLS").await?;
        self.io.flush().await?;
        // Anything the client pipelined after STARTTLS arrived in plaintext: it must not be
        // executed inside the TLS session (the CVE-2011-0411 command injection).
        self.input.clear();
        let Stream::Plain(Conn::Tcp(tcp)) = std::mem::replace(self.io.get_mut(), Stream::Closed) else {
            return Ok(Next::Quit);
        };
        let timeout = self.limits.command_timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(timeout, tls.acceptor().accept(tcp)).await {
            Ok(Ok(stream)) => {
                let (_, conn) = stream.get_ref();
                let version =
                    conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("TLS").replace("TLSv1_", "TLSv1.");
                let cipher = conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
                tracing::debug!(peer = %self.peer, %version, %cipher, "TLS started");
                self.tls = Some((version, cipher));
                *self.io.get_mut() = Stream::Tls(Box::new(stream));
                // RFC 3207: the client starts over with EHLO.
                self.helo = None;
                self.reset();
                Ok(Next::Continue)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Ok(Next::Quit)
            }
            Err(_) => Ok(Next::Quit),
        }
    }

    async fn mail(&mut self, from: String, declared_size: u64) -> std::io::Result<()> {
        if self.helo.is_none() {
            let text = if self.ingress == Ingress::Lmtp {
                "5.5.1 Error: send LHLO first"
            } else {
                "5.5.1 Error: send HELO/EHLO first"
            };
            return self.error(503, text).await;
        }
        if self.mail_from.is_some() {
            return self.error(503, "5.5.1 Error: nested MAIL command").await;
        }
        if self.limits.tls.as_ref().is_some_and(|t| t.require) && self.tls.is_none() {
            return self.error(530, "5.7.0 Must issue a STARTTLS command first").await;
        }
        if !self.limits.peers.allow_message(self.peer.ip()) {
            self.metrics.rejected(Reason::RateLimited);
            return self.reply(450, "4.7.1 Error: too many messages from your address, try again later").await;
        }
        if declared_size > self.limits.max_message_size {
            self.metrics.rejected(Reason::Size);
            return self.reply(552, "5.3.4 Error: message size exceeds fixed limit").await;
        }
        let helo = self.helo.as_deref().unwrap_or_default();
        match self.sink.check_mail(self.peer.ip(), self.ingress, helo, &from).await {
            Ok(sender) => {
                self.sender = Some(sender);
                self.mail_from = Some(from);
                self.declared_size = declared_size;
                self.reply(250, "2.1.0 Ok").await
            }
            Err(r) => {
                tracing::info!(peer = %self.peer, mail_from = %printable(&from), code = r.code, "sender refused");
                self.metrics.rejected(r.reason);
                self.error(r.code, &r.text).await
            }
        }
    }

    async fn rcpt(&mut self, to: String) -> std::io::Result<()> {
        if self.mail_from.is_none() {
            return self.error(503, "5.5.1 Error: need MAIL command").await;
        }
        if self.rcpt_to.len() >= self.limits.max_recipients {
            self.metrics.rejected(Reason::TooManyRecipients);
            return self.reply(452, "4.5.3 Error: too many recipients").await;
        }
        match self.sink.check_rcpt(&to) {
            Ok(()) => {
                self.rcpt_to.push(to);
                self.reply(250, "2.1.5 Ok").await
            }
            Err(r) => {
                tracing::info!(peer = %self.peer, rcpt = %printable(&to), code = r.code, "recipient refused");
                self.metrics.rejected(r.reason);
                self.error(r.code, &r.text).await
            }
        }
    }

    async fn data(&mut self) -> std::io::Result<()> {
        if self.mail_from.is_none() {
            return self.error(503, "5.5.1 Error: need MAIL command").await;
        }
        if self.rcpt_to.is_empty() {
            return self.error(503, "5.5.1 Error: need RCPT command").await;
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        // LMTP answers the data once per recipient, whatever the answer.
        let answers = if self.ingress == Ingress::Lmtp { self.rcpt_to.len() } else { 1 };
        let Some(raw) = self.receive_data().await? else {
            self.metrics.rejected(Reason::Size);
            self.reset();
            for _ in 0..answers {
                self.reply(552, "5.3.4 Error: message size exceeds fixed limit").await?;
            }
            return Ok(());
        };
        let envelope = Envelope {
            client_ip: self.peer.ip(),
            proxy_ip: self.proxy_ip,
            ingress: self.ingress,
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            tls: self.tls.as_ref().map(|t| t.0.clone()),
            tls_cipher: self.tls.as_ref().map(|t| t.1.clone()),
        };
        let Some(sender) = self.sender.take() else {
            self.reset();
            for _ in 0..answers {
                self.reply(451, "4.3.0 Error: lost the sender, try again").await?;
            }
            return Ok(());
        };
        self.reset();
        if answers == 1 {
            let (code, text) = self.accept(envelope, sender, raw).await;
            return self.reply(code, &text).await;
        }
        // LMTP with several recipients: one message for all when it can be stored; otherwise each
        // recipient alone, so that one that cannot be stored gets its 4xx and the others their 250.
        let spare = (sender.clone(), raw.clone());
        let rcpts = envelope.rcpt_to.clone();
        let (code, text) = self.accept(envelope.clone(), sender, raw).await;
        if code == 250 {
            for _ in 0..answers {
                self.reply(code, &text).await?;
            }
            return Ok(());
        }
        tracing::info!(peer = %self.peer, rcpts = rcpts.len(), "refused for all recipients; trying each on its own");
        for rcpt in rcpts {
            let alone = Envelope { rcpt_to: vec![rcpt], ..envelope.clone() };
            let (code, text) = self.accept(alone, spare.0.clone(), spare.1.clone()).await;
            self.reply(code, &text).await?;
        }
        Ok(())
    }

    /// Hands a finished message to the sink: the reply to give for it.
    async fn accept(&mut self, envelope: Envelope, sender: S::Sender, raw: Vec<u8>) -> (u16, String) {
        let size = raw.len();
        let rcpts = envelope.rcpt_to.len();
        let started = std::time::Instant::now();
        let result = self.sink.accept(envelope, sender, raw).await;
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(id) => {
                tracing::info!(peer = %self.peer, message_id = %id, size, rcpts, store_ms = ms, "accepted");
                (250, format!("2.0.0 Ok: queued as {id}"))
            }
            Err(r) => {
                tracing::warn!(peer = %self.peer, size, code = r.code, reason = %r.text, "message not accepted");
                self.metrics.rejected(r.reason);
                (r.code, r.text)
            }
        }
    }

    /// Receives the data block. None: it was larger than allowed (read to its end and discarded,
    /// so the session stays in step with the client).
    async fn receive_data(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let max = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        let mut receiver = DataReceiver::new();
        // Room for the declared size (bounded by the limit): a 50 MB message is not copied while
        // the buffer doubles, and its allocation is not 64 MB.
        let mut data = Vec::with_capacity(self.declared_size.min(self.limits.max_message_size) as usize + 1024);
        // The receiver recognises the final dot only after a CRLF; DATA's own line ended with one.
        receiver.ingest(&mut b"\r\n".iter(), &mut data);
        data.clear();
        let mut discard: Option<DummyDataReceiver> = None;
        let mut input = std::mem::take(&mut self.input);
        loop {
            let mut it = input.iter();
            let done = match discard.as_mut() {
                Some(d) => d.ingest(&mut it),
                None => receiver.ingest(&mut it, &mut data),
            };
            let consumed = input.len() - it.as_slice().len();
            input.drain(..consumed);
            if discard.is_none() && data.len() > max {
                discard = Some(DummyDataReceiver::new_data(&receiver));
                data = Vec::new();
            }
            if done {
                self.input = input;
                data.shrink_to_fit();
                return Ok(discard.is_none().then_some(data));
            }
            let timeout = self.limits.data_timeout.min(self.deadline.saturating_duration_since(Instant::now()));
            self.io.flush().await?;
            input.reserve(READ_CHUNK);
            match tokio::time::timeout(timeout, self.io.read_buf(&mut input)).await {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    tracing::info!(peer = %self.peer, received = data.len(), "timed out while receiving data");
                    self.metrics.rejected(Reason::Timeout);
                    let text = format!("4.4.2 {} Error: timeout exceeded", self.limits.hostname);
                    self.reply(421, &text).await?;
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
            }
        }
    }

    /// The next command line (with its line ending), bounded; flushes pending replies before waiting.
    async fn read_line(&mut self) -> std::io::Result<Input> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                let too_long = discarding || line.len() > MAX_COMMAND_LINE;
                return Ok(if too_long { Input::TooLong } else { Input::Line(line) });
            }
            if self.input.len() > MAX_COMMAND_LINE {
                // Drop what we have and keep dropping until the line ends: memory stays bounded.
                self.input.clear();
                discarding = true;
            }
            if *self.shutdown.borrow() {
                return Ok(Input::ShuttingDown);
            }
            self.io.flush().await?;
            let timeout = self.limits.command_timeout.min(self.deadline.saturating_duration_since(Instant::now()));
            self.input.reserve(1024);
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, self.io.read_buf(&mut self.input)) => r,
                _ = self.shutdown.wait_for(|s| *s) => return Ok(Input::ShuttingDown),
            };
            match read {
                Ok(Ok(0)) => return Ok(Input::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(Input::TimedOut),
            }
        }
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.sender = None;
        self.rcpt_to.clear();
    }

    async fn reply(&mut self, code: u16, text: &str) -> std::io::Result<()> {
        self.io.write_all(format!("{code} {text}\r\n").as_bytes()).await?;
        if code == 421 || code == 221 {
            self.io.flush().await?;
        }
        Ok(())
    }

    async fn error(&mut self, code: u16, text: &str) -> std::io::Result<()> {
        self.errors += 1;
        self.reply(code, text).await
    }
}

/// An accepted connection: TCP, or a Unix socket (LMTP from a local MTA).
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connection under the session: plain, or TLS after STARTTLS.
enum Stream {
    Plain(Conn),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two, while the handshake owns the socket.
    Closed,
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// Whether a command's path starts with a source route: `<@host,@host:mailbox>`.
fn source_routed(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b'<')
        .is_some_and(|i| line[i + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'@'))
}
