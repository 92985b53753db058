//! The spam verdict, asked of rspamd (its HTTP `/checkv2`) or SpamAssassin's spamd (the SPAMC text
//! protocol) after auth and before parse; the route stage applies `on_spam` to it. A down, slow or
//! confused engine costs at most `[spam] timeout` and gives `verdict: null`: mail is never lost to it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{Spam as SpamSettings, SpamEngine};
use crate::mail::Envelope;
use crate::mail::Spam;

/// The most of an engine's answer we read (both answer in well under a kilobyte).
const MAX_ANSWER: u64 = 64 * 1024;

pub struct SpamCheck {
    engine: Engine,
    timeout: Duration,
    /// Larger messages are not sent to the engine.
    max_size: u64,
}

enum Engine {
    /// `/checkv2` URL, and an agent bounded by the timeout as a whole.
    Rspamd {
        url: String,
        agent: ureq::Agent,
    },
    Spamd {
        addr: String,
    },
}

/// Why a check gave no verdict (logged; the event just says null).
type Failure = String;

impl SpamCheck {
    pub fn new(s: &SpamSettings) -> Self {
        let engine = match &s.engine {
            SpamEngine::Rspamd(base) => Engine::Rspamd {
                url: format!("{}/checkv2", base.trim_end_matches('/')),
                agent: ureq::Agent::config_builder()
                    .timeout_global(Some(s.timeout))
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .proxy(None)
                    .build()
                    .into(),
            },
            SpamEngine::Spamd(addr) => Engine::Spamd { addr: addr.clone() },
        };
        Self { engine, timeout: s.timeout, max_size: s.max_size }
    }

    fn name(&self) -> &'static str {
        match self.engine {
            Engine::Rspamd { .. } => "rspamd",
            Engine::Spamd { .. } => "spamd",
        }
    }

    /// The verdict for one message. Blocking, bounded by the timeout; never fails.
    pub fn check(&self, message_id: &str, envelope: &Envelope, raw: &[u8]) -> Spam {
        let started = Instant::now();
        let engine = Some(self.name().to_string());
        if raw.len() as u64 > self.max_size {
            tracing::debug!(message_id, size = raw.len(), "not checked for spam: larger than [spam] max_size");
            return Spam { verdict: None, score: None, engine };
        }
        let result = match &self.engine {
            Engine::Rspamd { url, agent } => rspamd(agent, url, message_id, envelope, raw),
            Engine::Spamd { addr } => spamd(addr, raw, started + self.timeout),
        };
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((spam, score)) => {
                let verdict = if spam { "spam" } else { "ham" };
                tracing::debug!(message_id, engine = self.name(), verdict, score, ms, "spam check");
                Spam { verdict: Some(verdict.to_string()), score: Some(score), engine }
            }
            Err(error) => {
                tracing::warn!(message_id, engine = self.name(), %error, ms, "spam check gave no verdict; delivering as usual");
                Spam { verdict: None, score: None, engine }
            }
        }
    }
}

#[derive(Deserialize)]
struct RspamdAnswer {
    score: f64,
    action: String,
}

/// rspamd's verdict is its action: `reject`, `add header` and `rewrite subject` are spam;
/// `no action`, `greylist` and `soft reject` (rate limits, temporary trouble) are not.
fn rspamd(agent: &ureq::Agent, url: &str, message_id: &str, e: &Envelope, raw: &[u8]) -> Result<(bool, f64), Failure> {
    let mut req = agent
        .post(url)
        .header("Queue-Id", message_id)
        .header("IP", e.client_ip.to_string())
        .header("Helo", e.helo.as_str())
        .header("From", e.mail_from.as_str());
    for rcpt in &e.rcpt_to {
        req = req.header("Rcpt", rcpt.as_str());
    }
    let mut resp = req.send(raw).map_err(|e| format!("rspamd: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| format!("rspamd: reading the answer: {e}"))?;
    if status != 200 {
        return Err(format!(
            "rspamd answered HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let a: RspamdAnswer = serde_json::from_slice(&body).map_err(|e| format!("rspamd: unreadable answer: {e}"))?;
    let spam = matches!(a.action.as_str(), "reject" | "add header" | "rewrite subject");
    Ok((spam, a.score))
}

/// spamd's `CHECK` command: the message goes out with its length, the answer carries
/// `Spam: True ; 15.0 / 5.0`. Every socket operation gets what is left before `deadline`.
fn spamd(addr: &str, raw: &[u8], deadline: Instant) -> Result<(bool, f64), Failure> {
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()).ok_or("spamd: timed out");
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("spamd: cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("spamd: no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&target, left()?).map_err(|e| format!("spamd: {addr}: {e}"))?;
    let head = format!("CHECK SPAMC/1.5\r\nContent-length: {}\r\n\r\n", raw.len());
    for chunk in std::iter::once(head.as_bytes()).chain(raw.chunks(64 * 1024)) {
        stream.set_write_timeout(Some(left()?)).map_err(|e| e.to_string())?;
        stream.write_all(chunk).map_err(|e| format!("spamd: sending: {e}"))?;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if (answer.len() + n) as u64 <= MAX_ANSWER => answer.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("spamd: answer too long".into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("spamd: reading: {e}")),
        }
    }
    parse_spamd(&String::from_utf8_lossy(&answer))
}

/// `SPAMD/1.1 0 EX_OK` then headers, one of them `Spam: True ; 15.0 / 5.0`.
fn parse_spamd(answer: &str) -> Result<(bool, f64), Failure> {
    let mut lines = answer.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut words = status.split_whitespace();
    if !words.next().is_some_and(|w| w.starts_with("SPAMD/")) || words.next() != Some("0") {
        return Err(format!("spamd: {}", status.chars().take(200).collect::<String>()));
    }
    let header = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("spam")).map(|(_, v)| v))
        .ok_or("spamd: no Spam header in the answer")?;
    let (flag, scores) = header.split_once(';').ok_or("spamd: unreadable Spam header")?;
    let spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        other => return Err(format!("spamd: unreadable Spam header `{other}`")),
    };
    let score = scores.split('/').next().unwrap_or("").trim();
    let score = score.parse::<f64>().map_err(|_| format!("spamd: unreadable score `{score}`"))?;
    Ok((spam, score))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spamd_answers() {
        assert_eq!(parse_spamd("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1004.2 / 5.0\r\n\r\n"), Ok((true, 1004.2)));
        assert_eq!(
            parse_spamd("SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nspam: False ; -0.1 / 5.0\r\n\r\n"),
            Ok((false, -0.1))
        );
        assert!(parse_spamd("SPAMD/1.0 76 Bad header line: x\r\n").is_err());
        assert!(parse_spamd("SPAMD/1.1 0 EX_OK\r\n\r\n").is_err());
        assert!(parse_spamd("").is_err());
    }

    #[test]
    fn a_closed_port_gives_no_verdict_quickly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = Instant::now();
        let r = spamd(&format!("127.0.0.1:{port}"), b"Subject: x\r\n\r\nhi\r\n", started + Duration::from_secs(5));
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_silent_engine_is_cut_off_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let r = spamd(&addr, b"Subject: x\r\n\r\nhi\r\n", started + Duration::from_millis(300));
        assert!(r.is_err());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(1), "{took:?}");
        drop(listener);
    }
}
