//! What the HTTP tests add to the common harness: a distinctive `public_url` that links are checked
//! against and then pointed at the gateway's real port, a raw HTTP/1.1 client for requests no
//! well-behaved client would send, the link signature recomputed from the key in data_dir, and MIME
//! builders.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::common::*;

/// The `[http] public_url` of every gateway here: links must start with it (a reverse proxy's name);
/// the tests then send them to the gateway's actual port.
pub const PUBLIC: &str = "https://mx.files.test";

/// A harness on `Config::basic` adjusted by `tweak`, `public_url = PUBLIC`, and extra lines for
/// `[http]` and `[webhook]`; the config must pass `check-config`.
pub fn setup(tweak: impl FnOnce(&mut Config), http: &[&str], webhook: &[&str]) -> Harness {
    let h = Harness::with(|cfg| {
        tweak(cfg);
        cfg.public_url = PUBLIC.into();
        cfg.http(http).webhook(webhook);
    });
    let check = h.cli(&["check-config"]);
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    assert_eq!(check.code, Some(0), "test config refused:\n{text}\n{}", check.describe());
    h
}

/// A link from an event, pointed at the gateway: it must start with `PUBLIC`.
#[track_caller]
pub fn local(gw: &Gateway, link: &str) -> String {
    let rest = link.strip_prefix(PUBLIC).unwrap_or_else(|| panic!("link `{link}` does not start with {PUBLIC}"));
    format!("http://{}{rest}", gw.http)
}

/// A link's parts: (path, exp, sig), from `…/path?exp=E&sig=S` (exactly those two, in that order).
#[track_caller]
pub fn parts(link: &str) -> (String, String, String) {
    let rest = link.strip_prefix(PUBLIC).unwrap_or(link);
    let (path, query) = rest.split_once('?').unwrap_or_else(|| panic!("link `{link}` has no query"));
    let (e, s) = query.split_once('&').unwrap_or_else(|| panic!("link `{link}`: query is not exp=…&sig=…"));
    let exp = e.strip_prefix("exp=").unwrap_or_else(|| panic!("link `{link}`: first parameter is not exp"));
    let sig = s.strip_prefix("sig=").unwrap_or_else(|| panic!("link `{link}`: second parameter is not sig"));
    (path.to_string(), exp.to_string(), sig.to_string())
}

// ---------------------------------------------------------------------------------------------------
// Raw HTTP/1.1: the request target is sent byte for byte (no client normalises `..` or re-encodes).

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Bytes after the header block, before any chunked decoding (what a HEAD must leave empty).
    pub wire_body_len: usize,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

#[track_caller]
pub fn raw_request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap_or_else(|e| panic!("{method} {target}: reading the response: {e}"));
    let end = find(&all, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {target}: no header block in {:?}", String::from_utf8_lossy(&all)));
    let head = &all[..end];
    let wire = all[end + 4..].to_vec();
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: bad status line {status_line:?}"));
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let v = &l[colon + 1..];
            let v = v.strip_prefix(b" ").unwrap_or(v);
            Some((String::from_utf8_lossy(&l[..colon]).into_owned(), v.to_vec()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && String::from_utf8_lossy(v).contains("chunked"));
    let body = if chunked && method != "HEAD" { dechunk(&wire) } else { wire.clone() };
    RawResponse { status, headers, body, wire_body_len: wire.len() }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------------
// Link signatures, recomputed from the key the gateway keeps in data_dir/url.key, or in the database on
// PostgreSQL (README/links.rs:
// sig = base64url(HMAC-SHA256(key, "{path}?exp={exp}")), no padding).

pub fn url_key(h: &Harness) -> Vec<u8> {
    let Some(url) = &h.database else { return std::fs::read(h.data_dir().join("url.key")).expect("data_dir/url.key") };
    // PostgreSQL: the cluster's one key, in the database.
    let db = url.rsplit('/').next().unwrap_or_default();
    let hex = postgres::shared().psql(db, "SELECT encode(key, 'hex') FROM link_key").expect("the link key");
    assert!(!hex.is_empty(), "no link key in the database");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

pub fn sign(key: &[u8], path: &str, exp: i64) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&k, format!("{path}?exp={exp}").as_bytes()).as_ref())
}

/// Percent-decodes once (as the router does for each path segment); invalid escapes stay as they are.
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Small things

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("valid base64")
}

/// Base64 in 76-character lines with CRLF, as a MIME body.
pub fn b64_lines(bytes: &[u8]) -> String {
    let enc = STANDARD.encode(bytes);
    let mut out = String::with_capacity(enc.len() + enc.len() / 76 * 2 + 2);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

/// A multipart/mixed message: a short text part, then each (extra part headers, body) as an attachment.
pub fn multipart(subject: &str, parts: &[(String, String)]) -> Vec<u8> {
    let mut m = format!(
        "From: Ada <ada@sender.test>\r\nTo: inbox@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n--b0undary\r\nContent-Type: text/plain\r\n\r\n\
see attached\r\n"
    );
    for (headers, body) in parts {
        m.push_str("--b0undary\r\n");
        m.push_str(headers);
        m.push_str("\r\n");
        m.push_str(body);
        if !body.ends_with("\r\n") {
            m.push_str("\r\n");
        }
    }
    m.push_str("--b0undary--\r\n");
    m.into_bytes()
}

/// An attachment part: base64 body, given Content-Type and Content-Disposition parameters.
pub fn attachment_part(content_type: &str, disposition: &str, bytes: &[u8]) -> (String, String) {
    (
        format!(
            "Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: {disposition}\r\n"
        ),
        b64_lines(bytes),
    )
}
