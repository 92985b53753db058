//! The test harness every test binary shares (`#[path = "../common/mod.rs"] mod common;`): the real
//! `mxhook` binary as a child process on port-0 listeners, a typed config, a real webhook receiver
//! verifying every request with the stock Standard Webhooks library, a real SMTP client (plain, from a
//! chosen address, or STARTTLS through `openssl s_client`), the CLI as a subprocess, and one way to wait.
//!
//! - `config`: `Config::basic` and builder methods, rendered to TOML.
//! - `harness`: temp dir, config file, receiver, gateways started, CLI, waits that show the logs.
//! - `gateway`: `mxhook serve` as a child process (addresses from the log, IPv4/IPv6, no ANSI).
//! - `cli`: the CLI as a subprocess with a deadline.
//! - `receiver`: the webhook receiver.
//! - `smtp`: the SMTP client; `starttls`: certificates and an SMTP session over TLS.
//! - `http`: an HTTP client, /metrics and /healthz.
//! - `postfix`: a throwaway real Postfix instance with transports the test names.
//! - `postgres`: a throwaway PostgreSQL cluster; `MXHOOK_TEST_BACKEND=postgres` runs the gateways on it.
//! - `dns`: a UDP DNS server the test controls (records, SERVFAIL, silence, the questions asked).
//! - `rng`: `Rng`, a seeded xorshift64* generator.
//! - `wait`: `poll` and `wait_for`.

pub mod cli;
pub mod config;
pub mod dns;
pub mod gateway;
pub mod harness;
pub mod http;
pub mod postfix;
pub mod postgres;
pub mod receiver;
pub mod rng;
pub mod schema;
pub mod smtp;
pub mod starttls;
pub mod wait;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub use cli::{CliOutput, run_cli, wait_cli};
pub use config::{Config, Endpoint};
pub use gateway::{Gateway, alive, vm_rss_kib};
pub use harness::Harness;
pub use http::{Got, agent, get, healthz, http_status, scrape, status_of};
pub use receiver::{Receiver, Request};
pub use rng::Rng;
pub use smtp::{Reply, Session, SmtpClient, Wire, as_sent, data_stream, socket_from, to_crlf};
pub use wait::{poll, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_mxhook");

/// Signing secrets for the test endpoints (32 random bytes each).
pub const SECRET_A: &str = "whsec_lXFjIA/27C86ieYNnNjrpW0ZTSHRUsS9qp3VI/8xI9E=";
pub const SECRET_B: &str = "whsec_3+wnsLvZwR7RocUHvTGH87dI+bqUmF6rBGwAjfwiYZc=";
pub const SECRET_C: &str = "whsec_Q/HYo8eU8RKjebpd/7suEcm67zKvr1vNc//BZWm5GSA=";

/// The configured domain of `Config::basic`.
pub const DOMAIN: &str = "example.test";

/// How long a test waits for what should take well under a second.
pub const SHORT: Duration = Duration::from_secs(10);

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
pub fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Every file (not directory) under `dir`, relative, '/'-separated, sorted. Symlinks are listed, not
/// followed.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(base, &p, out),
                _ => out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned()),
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

/// Standard base64 decoding (padding optional), enough to check `whsec_` secrets.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Parses a message the way the gateway must (mail-parser 0.11.9 is the oracle).
pub fn oracle(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    mail_parser::MessageParser::default().parse(raw)
}

/// The parsed.status the gateway must report: a message mail-parser can't parse, or one without any
/// header, is "failed"; anything else is "complete".
pub fn expected_parse_status(raw: &[u8]) -> &'static str {
    match oracle(raw) {
        Some(m) if !m.headers().is_empty() => "complete",
        _ => "failed",
    }
}
