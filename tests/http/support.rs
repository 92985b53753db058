//! What the HTTP tests add to the spine harness: config keys the spine's `Config` does not render
//! ([http] link_ttl, [webhook] …), a distinctive `public_url` that links are checked against and then
//! pointed at the gateway's real port, an HTTP client (ureq) that returns every status, a raw HTTP/1.1
//! client for requests no well-behaved client would send, the link signature recomputed from the key in
//! data_dir, a /metrics parser, VmRSS, and MIME builders.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::helpers::*;

/// The `[http] public_url` of every gateway here: links must start with it (a reverse proxy's name);
/// the tests then send them to the gateway's actual port.
pub const PUBLIC: &str = "https://mx.files.test";

/// A harness on `Config::basic` adjusted by `tweak`, plus extra lines for `[http]` and `[webhook]`.
pub fn setup(tweak: impl FnOnce(&mut Config), http: &[&str], webhook: &[&str]) -> Harness {
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    tweak(&mut cfg);
    h.write_config(&cfg); // records the endpoint secrets the harness verifies every request with on drop
    let text = cfg.render(&h.data_dir());
    let old = "public_url = \"http://127.0.0.1:8025\"";
    assert!(text.contains(old), "the spine's config renderer changed; patch setup():\n{text}");
    let mut new = format!("public_url = \"{PUBLIC}\"");
    for l in http {
        new.push('\n');
        new.push_str(l);
    }
    let mut text = text.replace(old, &new);
    if !webhook.is_empty() {
        text.push_str("\n[webhook]\n");
        for l in webhook {
            text.push_str(l);
            text.push('\n');
        }
    }
    std::fs::write(&h.config_path, &text).unwrap();
    let check = h.cli(&["check-config"]);
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

/// An HTTP client that returns 4xx/5xx as responses, follows nothing and uses no proxy.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response read whole (up to 200 MB).
pub struct Got {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

#[track_caller]
pub fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .body_mut()
        .with_config()
        .limit(200_000_000)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
    Got { status, headers, body }
}

#[track_caller]
pub fn status_of(agent: &ureq::Agent, url: &str) -> u16 {
    get(agent, url, &[]).status
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
// Link signatures, recomputed from the key the gateway keeps in data_dir/url.key (README/links.rs:
// sig = base64url(HMAC-SHA256(key, "{path}?exp={exp}")), no padding).

pub fn url_key(h: &Harness) -> Vec<u8> {
    std::fs::read(h.data_dir().join("url.key")).expect("data_dir/url.key")
}

pub fn sign(key: &[u8], path: &str, exp: i64) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&k, format!("{path}?exp={exp}").as_bytes()).as_ref())
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
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

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The single webhook event for `msg_id` (waits for it).
#[track_caller]
pub fn event_for(h: &Harness, msg_id: &str) -> (Request, Value) {
    h.wait_until(SHORT, &format!("the event for {msg_id}"), || !h.rx.requests_for_message(msg_id).is_empty());
    let r = h.rx.requests_for_message(msg_id).remove(0);
    let v = r.json();
    (r, v)
}

/// `/metrics` as a map from `name{labels}` to value (comments and `# EOF` left out).
#[track_caller]
pub fn scrape(agent: &ureq::Agent, gw: &Gateway) -> BTreeMap<String, f64> {
    let got = get(agent, &format!("http://{}/metrics", gw.http), &[]);
    assert_eq!(got.status, 200, "GET /metrics: {}", String::from_utf8_lossy(&got.body));
    let text = String::from_utf8(got.body).expect("/metrics is UTF-8");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("metrics line without a value: {l:?}"));
            (k.to_string(), v.parse::<f64>().unwrap_or_else(|e| panic!("metrics value in {l:?}: {e}")))
        })
        .collect()
}

/// The process's resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Every file under `dir`, as paths relative to it ('/'-separated).
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every message in tests/corpus, CRLF line endings, as the SMTP client sends it.
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), as_sent(&to_crlf(&std::fs::read(&p).unwrap())))
        })
        .collect()
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
