//! The PROXY protocol (v1 text and v2 binary, HAProxy's spec) at the start of a connection from a
//! listed load balancer: the address it carries is the client's for everything after (SPF, per-IP
//! limits, logs, `smtp.client_ip`). Parsing is the `ppp` crate's; this file only reads enough bytes
//! for it, bounded in size and time, and says what the header means.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// A v2 header is at most 16 + 65,535 bytes; v1 at most 107.
const MAX_HEADER: usize = 16 + 65_535;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    TimedOut(Duration),
    #[error("connection closed before a complete PROXY header")]
    Closed,
    #[error("not a valid PROXY header: {0}")]
    Invalid(String),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What the header said, and the bytes that came after it in the same reads (the session's first input).
pub struct Proxied {
    /// The original client; None for a `LOCAL` (v2) or `UNKNOWN` (v1) header: the balancer's own
    /// connection (health checks), which then stands for itself.
    pub client: Option<SocketAddr>,
    pub rest: Vec<u8>,
}

/// Reads one PROXY header from `stream` within `timeout`. Anything else first is an error: the
/// connection is then closed without a word (the peer is a balancer, not a mail client).
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R, timeout: Duration) -> Result<Proxied, ProxyError> {
    tokio::time::timeout(timeout, read(stream)).await.map_err(|_| ProxyError::TimedOut(timeout))?
}

async fn read<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Proxied, ProxyError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(done) = parse(&buf)? {
            return Ok(done);
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyError::Invalid("header too long".into()));
        }
        // Never read past what the header can still need much: small reads keep the rest for the session.
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Closed);
        }
    }
}

/// None: more bytes needed.
fn parse(buf: &[u8]) -> Result<Option<Proxied>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let header = HeaderResult::parse(buf);
    if header.is_incomplete() {
        return Ok(None);
    }
    let (client, len) = match header {
        HeaderResult::V1(Ok(h)) => (v1_client(&h.addresses), h.header.len()),
        HeaderResult::V2(Ok(h)) => (v2_client(&h), h.len()),
        HeaderResult::V1(Err(e)) => return Err(ProxyError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => return Err(ProxyError::Invalid(format!("{e:?}"))),
    };
    Ok(Some(Proxied { client, rest: buf.get(len..).unwrap_or_default().to_vec() }))
}

fn v1_client(a: &v1::Addresses) -> Option<SocketAddr> {
    match a {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(h: &v2::Header<'_>) -> Option<SocketAddr> {
    if h.command == v2::Command::Local {
        return None;
    }
    match h.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        v2::Addresses::IPv6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// Whether a command line is a PROXY header sent where none is expected (v1's text; v2's binary
/// signature starts with an empty line and is refused as gibberish anyway).
pub fn looks_like_header(line: &[u8]) -> bool {
    line.starts_with(b"PROXY ")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> Result<Proxied, ProxyError> {
        let mut r = bytes;
        read_header(&mut r, Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_keep_what_follows() {
        let p = read_all(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\nLHLO x\r\n").await.unwrap();
        assert_eq!(p.client, Some("127.0.0.5:40000".parse().unwrap()));
        assert_eq!(p.rest, b"LHLO x\r\n");
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            ("[2001:db8::7]:4000".parse::<SocketAddr>().unwrap(), "[2001:db8::1]:25".parse::<SocketAddr>().unwrap()),
        )
        .build()
        .unwrap();
        let p = read_all(&v2).await.unwrap();
        assert_eq!(p.client, Some("[2001:db8::7]:4000".parse().unwrap()));
        assert!(p.rest.is_empty());
        let p = read_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(p.client, None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert!(matches!(read_all(b"EHLO client.test\r\n").await, Err(ProxyError::Invalid(_))));
        assert!(matches!(read_all(b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n").await, Err(ProxyError::Invalid(_))));
        assert!(matches!(read_all(b"PROXY TCP4 127.0.0.5").await, Err(ProxyError::Closed)));
    }
}
