//! HTTP for the tests: a client (ureq) that returns every status, /metrics as a map, and a minimal
//! status-only GET for /healthz that never fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::gateway::Gateway;

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

/// The gateway's `/metrics` as a map from `name{labels}` to value (comments and `# EOF` left out).
#[track_caller]
pub fn scrape(gw: &Gateway) -> BTreeMap<String, f64> {
    let got = get(&agent(), &format!("http://{}/metrics", gw.http), &[]);
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

/// Status of `GET /healthz` (0 when the HTTP side does not answer at all).
pub fn healthz(gw: &Gateway) -> u16 {
    http_status(gw.http, "/healthz")
}

/// A minimal HTTP/1.1 GET, status only (0 when there is no answer).
pub fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}
