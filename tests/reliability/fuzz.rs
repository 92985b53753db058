//! Fuzzing on stable Rust: cargo-fuzz needs nightly, which this project does not use, so this is a
//! hand-rolled mutation fuzzer (AFL-style "havoc": bit flips, byte changes, inserts and deletes,
//! dictionary tokens, block duplication, splices between seeds) driven by a seeded xorshift RNG.
//! The same seed gives the same inputs, so a finding is reproduced with `MXHOOK_SEED`; inputs that
//! break an invariant are also written to `target/tmp/reliability-findings/`.
//!
//! - `parse → event`: in process, `mxhook::parse::parse` on mutated corpus messages, on a thread with
//!   the 2 MiB stack of the gateway's tokio workers (where ingest parses). Invariants: no panic
//!   escapes, no stack overflow, the status agrees with mail-parser as oracle, sizes and hashes match
//!   the bytes, the event serialises, and the payload cap terminates.
//! - SMTP session (`fuzz_smtp`): black-box over sockets against the real binary (the session is private to the
//!   crate), mutated SMTP conversations sent whole, replies read to EOF. Invariants: every reply line
//!   well-formed (code, separator, no control characters: no reply injection), known codes, the server
//!   closes after our EOF, every "queued as" is in the store and everything in the store was
//!   acknowledged, every stored recipient is at the configured domain (no relay), the process stays
//!   up, memory flat, and a normal message still gets through.
//!
//! Short forms run in CI; `MXHOOK_LONG=1` runs the long forms (figures in RELIABILITY.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// Stacked random mutations of `input` (1 to 8 of them), the result at most `max` bytes.
pub fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>], dict: &[&[u8]], max: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 << rng.below(4) {
        let len = v.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'\r', b'\n', b'.', b' ', b'"', b'\\', b'<', b'>', b'@']);
            }
            2 => {
                let at = rng.below(len + 1);
                let n = rng.range(1, 16) as usize;
                let bytes = rng.bytes(n);
                v.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = (rng.range(1, 64) as usize).min(len - at);
                v.drain(at..at + n);
            }
            4 | 5 => {
                let at = rng.below(len + 1);
                let tok = rng.pick(dict).to_vec();
                v.splice(at..at, tok);
            }
            6 if len > 0 => {
                // Duplicate a block, sometimes many times (quadratic-behaviour hunting).
                let at = rng.below(len);
                let n = (rng.range(1, 256) as usize).min(len - at);
                let block = v[at..at + n].to_vec();
                let times = if rng.chance(8) { rng.range(2, 2000) as usize } else { 1 };
                let rep: Vec<u8> = block.iter().copied().cycle().take(n * times).collect();
                v.splice(at..at, rep);
            }
            7 => {
                // Splice: a piece of another seed at a random place.
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = (rng.range(1, 4096) as usize).min(other.len() - from);
                    let at = rng.below(len + 1);
                    v.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            8 if len > 0 => v.truncate(rng.below(len)),
            9 => {
                // Line endings: CRLF to LF or LF to CR somewhere.
                if let Some(p) = v.windows(2).position(|w| w == b"\r\n") {
                    v.remove(p + rng.below(2));
                }
            }
            _ if len > 1 => {
                let (i, j) = (rng.below(len), rng.below(len));
                v.swap(i, j);
            }
            _ => {}
        }
    }
    v.truncate(max);
    v
}

fn findings_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reliability-findings");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Keeps an input that broke something; returns where.
pub fn keep(kind: &str, seed: u64, n: usize, input: &[u8]) -> String {
    let p = findings_dir().join(format!("{kind}-{seed}-{n}.bin"));
    std::fs::write(&p, input).unwrap();
    p.display().to_string()
}

fn corpus_seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files.into_iter().map(|p| to_crlf(&std::fs::read(p).unwrap())).collect()
}

const MIME_DICT: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"--",
    b"--b\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=utf-16\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%2e%2e; filename*1=\"/x\"\r\n",
    b"=?utf-8?B?",
    b"=?iso-2022-jp?Q?",
    b"?=",
    b"=\r\n",
    b"=FF",
    b"boundary=",
    b"From: \"a\\\" <b>\" <c@d>, :;, <>\r\n",
    b"Date: Mon, 31 Feb 99999 25:61:61 +9999\r\n",
    b"Received: from x by y; Thu, 1 Jan 1970 00:00:00 +0000\r\n",
    b"\0",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"A".as_slice(),
];

/// The parse fuzzer's figures.
#[derive(Debug, Default)]
pub(crate) struct ParseFigures {
    executions: usize,
    pub(crate) complete: usize,
    pub(crate) failed: usize,
    pub(crate) parser_panics: usize,
    slowest: Duration,
    bytes: u64,
}

fn envelope() -> mxhook::mail::Envelope {
    mxhook::mail::Envelope {
        client_ip: "192.0.2.7".parse().unwrap(),
        proxy_ip: None,
        ingress: mxhook::mail::Ingress::Smtp,
        helo: "fuzz.test".into(),
        mail_from: "fuzz@sender.test".into(),
        rcpt_to: vec!["inbox@example.test".into()],
        tls: None,
        tls_cipher: None,
    }
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One input through parse → event; Err describes a broken invariant.
pub(crate) fn check_parse(raw: &[u8], f: &mut ParseFigures) -> Result<(), String> {
    let t = Instant::now();
    let out = mxhook::parse::parse("msg_fuzz", "2026-01-01T00:00:00Z".into(), &envelope(), raw);
    let mut e = out.event;
    let took = t.elapsed();
    f.slowest = f.slowest.max(took);
    if took > Duration::from_secs(5) {
        return Err(format!("parse took {took:?}"));
    }
    let crashed = e.parsed.error.as_deref() == Some("the MIME parser crashed on this message");
    match (e.parsed.status, &e.parsed.error) {
        ("complete", None) => f.complete += 1,
        ("failed", Some(_)) if crashed => f.parser_panics += 1,
        ("failed", Some(_)) => f.failed += 1,
        other => return Err(format!("status/error disagree: {other:?}")),
    }
    if !crashed && e.parsed.status != expected_parse_status(raw) {
        return Err(format!("status {} but mail-parser says {}", e.parsed.status, expected_parse_status(raw)));
    }
    if e.raw.size != raw.len() || e.raw.sha256 != sha256_hex(raw) {
        return Err("raw.size or raw.sha256 do not match the bytes".into());
    }
    if e.parsed.status == "complete" {
        if out.attachments.len() != e.attachments.len() {
            return Err(format!("{} attachment bodies for {} listed", out.attachments.len(), e.attachments.len()));
        }
        for (a, bytes) in e.attachments.iter().zip(&out.attachments) {
            if a.size != bytes.len() || a.sha256 != sha256_hex(bytes) {
                return Err(format!("attachment {} size/sha256 do not match its bytes", a.id));
            }
        }
    } else if !e.attachments.is_empty() || !out.attachments.is_empty() {
        return Err("a failed parse still lists attachments".into());
    }
    // The event cap's shortcut (a text body too big for the event is not decoded) changes nothing
    // else: same verdict, same attachments, same headers.
    let capped = mxhook::parse::parse_bounded("msg_fuzz", "2026-01-01T00:00:00Z".into(), &envelope(), raw, 1024);
    let c = &capped.event;
    let same_attachments = c.attachments.len() == e.attachments.len()
        && c.attachments.iter().zip(&e.attachments).all(|(a, b)| a.size == b.size && a.sha256 == b.sha256);
    if !crashed && (c.parsed.status != e.parsed.status || !same_attachments || c.headers != e.headers) {
        return Err("parsing under a 1 KiB event cap gave another verdict, attachments or headers".into());
    }
    let json = serde_json::to_vec(&e).map_err(|err| format!("the event does not serialise: {err}"))?;
    serde_json::from_slice::<serde_json::Value>(&json).map_err(|err| format!("the event is not valid JSON: {err}"))?;
    // As ingest builds it: the event as sent, and as stored, which gives the same bytes back.
    e.inline_raw(raw, 256 << 10);
    let built = e.to_json(64 << 10).map_err(|err| format!("the event does not serialise: {err}"))?;
    serde_json::from_str::<serde_json::Value>(&built.full)
        .map_err(|err| format!("the event is not valid JSON: {err}"))?;
    match (&built.without_raw, &e.raw.base64) {
        (Some(stored), _) if mxhook::mail::with_raw_base64(stored, raw).as_deref() != Some(built.full.as_str()) => {
            return Err("the stored event does not give back the event as sent".into());
        }
        (None, Some(_)) => return Err("an event with raw.base64 is stored with it".into()),
        _ => {}
    }
    f.bytes += raw.len() as u64;
    Ok(())
}

fn fuzz_parse(executions: usize, test: &'static str) -> ParseFigures {
    let seed = seed(test);
    let seeds = corpus_seeds();
    let handle = std::thread::Builder::new()
        .name("parse-fuzz".into())
        // The stack of a tokio worker thread, where ingest runs the parser (block_in_place).
        .stack_size(2 << 20)
        .spawn(move || {
            let mut rng = Rng::new(seed);
            let mut f = ParseFigures::default();
            let mut broken = Vec::new();
            let started = Instant::now();
            // The seeds themselves first, then mutations (sometimes of a previous mutant).
            let mut last = Vec::new();
            for n in 0..executions {
                let input = if n < seeds.len() {
                    seeds[n].clone()
                } else {
                    let base = if !last.is_empty() && rng.chance(4) { last.clone() } else { rng.pick(&seeds).clone() };
                    mutate(&mut rng, &base, &seeds, MIME_DICT, 256 << 10)
                };
                f.executions += 1;
                if let Err(why) = check_parse(&input, &mut f) {
                    broken.push(format!("#{n}: {why} (input kept in {})", keep("parse", seed, n, &input)));
                }
                last = input;
            }
            eprintln!(
                "{test}: {} executions in {:.1?} ({} MiB parsed), seed {seed}: {} complete, {} failed, {} parser panics \
caught, slowest {:.1?}, {} invariant violations",
                f.executions,
                started.elapsed(),
                f.bytes >> 20,
                f.complete,
                f.failed,
                f.parser_panics,
                f.slowest,
                broken.len()
            );
            assert!(broken.is_empty(), "parse → event broke its invariants (seed {seed}):\n{}", broken.join("\n"));
            f
        })
        .unwrap();
    match handle.join() {
        Ok(f) => f,
        Err(e) => std::panic::resume_unwind(e),
    }
}

#[test]
fn fuzz_parse_to_event() {
    quiet_parser_panics();
    fuzz_parse(scale(4_000, 1_000_000), "fuzz_parse_to_event");
}

/// mail-parser panics on some inputs; `parse` catches that (the message is kept, `parsed.status =
/// "failed"`) and the fuzzer counts them. Their messages and backtraces would drown the test output,
/// so a panic hook leaves out panics raised inside mail-parser and passes every other one on.
pub(crate) fn quiet_parser_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("mail-parser")) {
                previous(info);
            }
        }));
    });
}
