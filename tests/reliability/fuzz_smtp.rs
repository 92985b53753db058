//! The SMTP session fuzzer (see `fuzz` for the mutator): black-box over sockets against the real
//! binary, mutated SMTP conversations sent whole, replies read to EOF. Invariants: every reply line
//! well-formed (code, separator, no control characters: no reply injection), known codes, the server
//! closes after our EOF, every "queued as" is in the store and everything in the store was
//! acknowledged, every stored recipient is at the configured domain (no relay), the process stays up,
//! memory flat, and a normal message still gets through.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

use crate::fuzz::{keep, mutate};

const SMTP_SEEDS: &[&[u8]] = &[
    b"EHLO fuzz.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<inbox@example.test>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    b"HELO fuzz.test\r\nMAIL FROM:<> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@evil.test>\r\nDATA\r\nFrom: x\r\n\r\n..dot\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nQUIT\r\n",
    b"EHLO x\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<\xc3\xbc@example.test>\r\nDATA\r\nx\n.\r\ny\r.\rz\r\n.\n\r\n.\r\nMAIL FROM:<c@d.test>\r\nRCPT TO:<e@example.test>\r\nDATA\r\n\r\n.\r\n",
    b"EHLO x\r\nSTARTTLS\r\nAUTH PLAIN AGFAYQ==\r\nBDAT 5 LAST\r\nhelloMAIL FROM:<x@y.test>\r\nRCPT TO:<@a.test,@b.test:u@example.test>\r\nRCPT TO:<u%evil.test@example.test>\r\nRCPT TO:<\"u@evil.test\"@example.test>\r\nRCPT TO:<evil!u@example.test>\r\nDATA\r\n",
    b"MAIL FROM:<a@b.test>\r\nDATA\r\nEHLO x\r\nRCPT TO:<inbox@example.test>\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<INBOX@EXAMPLE.TEST.>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n",
    b"EHLO x\r\nMAIL FROM:<a@b.test> SIZE=99999999999999999999999\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nMAIL FROM:<a@b.test> RET=HDRS ENVID=x\r\nRCPT TO:<inbox@example.test> NOTIFY=SUCCESS ORCPT=rfc822;x@y\r\nQUIT\r\n",
];

const SMTP_DICT: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n.\r\n",
    b"\n.\n",
    b".",
    b"<",
    b">",
    b"@",
    b"%",
    b"!",
    b":",
    b",",
    b"\"",
    b"\\",
    b" ",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA\r\n",
    b"EHLO x\r\n",
    b"HELO ",
    b"RSET\r\n",
    b"QUIT\r\n",
    b"NOOP\r\n",
    b"BDAT 3\r\n",
    b"STARTTLS\r\n",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b"example.test",
    b"evil.test",
    b"[127.0.0.1]",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"99999999999999999999",
];

/// Largest fuzzed conversation. Block duplication can pipeline hundreds of whole transactions into one
/// input, and the replies to those arrive only as the messages are stored; 16 KiB keeps one session
/// well under the read timeout.
const MAX_SMTP_INPUT: usize = 16 << 10;

/// The SMTP fuzzer's figures.
#[derive(Debug, Default)]
struct SmtpFigures {
    sessions: usize,
    bytes: u64,
    replies: usize,
    acked: usize,
    closed_by_server_first: usize,
}

const CODES: &[u16] =
    &[214, 220, 221, 250, 252, 354, 421, 450, 451, 452, 500, 501, 502, 503, 504, 530, 550, 552, 553, 554, 555];

/// One fuzzed conversation: the whole input written (from a thread, so replies never block it),
/// then EOF; the replies read to the server's EOF. Err describes a broken invariant.
fn one_session(
    addr: std::net::SocketAddr,
    input: Vec<u8>,
    acked: &Mutex<Vec<String>>,
    port: &mut u16,
) -> Result<(usize, bool), String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    *port = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let r = w.write_all(&input);
        let _ = w.shutdown(std::net::Shutdown::Write);
        r.is_err()
    });
    let mut out = Vec::new();
    let mut r = &s;
    let read = r.read_to_end(&mut out);
    let cut_short = writer.join().unwrap();
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => {
            return Err(format!(
                "nothing from the server for 60 s, and no EOF after ours ({e}); replies so far: {}",
                String::from_utf8_lossy(&out)
            ));
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        return Err(format!("the replies do not end with CRLF: {:?}", String::from_utf8_lossy(&out)));
    }
    let text = String::from_utf8(out.clone()).map_err(|_| format!("replies are not UTF-8: {out:?}"))?;
    let mut n = 0;
    for line in text.split_terminator("\r\n") {
        n += 1;
        let ok_shape = line.len() >= 4
            && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
            && matches!(line.as_bytes()[3], b' ' | b'-')
            && !line.chars().any(|c| c.is_control());
        if !ok_shape {
            return Err(format!("malformed reply line {line:?}"));
        }
        let code: u16 = line[..3].parse().unwrap();
        if !CODES.contains(&code) {
            return Err(format!("unexpected reply code in {line:?}"));
        }
        if let Some(id) = line.strip_prefix("250 2.0.0 Ok: queued as ") {
            acked.lock().unwrap().push(id.to_string());
        }
    }
    if n == 0 || !text.starts_with("220 ") {
        return Err(format!("no greeting: {text:?}"));
    }
    Ok((n, cut_short))
}

/// Sessions per gateway. The harness checks every webhook with the stock verifier when it is dropped,
/// and a request older than the verifier's five-minute window would fail that check: a long run is
/// split into chunks, each against a fresh gateway and receiver, that end well within the window.
const CHUNK: usize = 10_000;

fn fuzz_smtp(sessions: usize, threads: usize, test: &'static str) -> SmtpFigures {
    let seed = seed(test);
    let started = Instant::now();
    let mut total = SmtpFigures::default();
    for start in (0..sessions).step_by(CHUNK) {
        let f = fuzz_smtp_chunk(seed, start..(start + CHUNK).min(sessions), threads, test);
        total.sessions += f.sessions;
        total.bytes += f.bytes;
        total.replies += f.replies;
        total.acked += f.acked;
        total.closed_by_server_first += f.closed_by_server_first;
    }
    if sessions > CHUNK {
        eprintln!(
            "{test}: in all {} sessions ({} MiB) in {:.1?}, seed {seed}: {} replies, {} messages acknowledged, all stored \
and delivered, none for a foreign domain; 0 invariant violations",
            total.sessions,
            total.bytes >> 20,
            started.elapsed(),
            total.replies,
            total.acked
        );
    }
    total
}

/// Sessions `range` (each input depends only on the seed and its number) against one fresh gateway.
fn fuzz_smtp_chunk(seed: u64, range: std::ops::Range<usize>, threads: usize, test: &'static str) -> SmtpFigures {
    let sessions = range.end;
    let h = harness(&["command_timeout = \"5s\"", "data_timeout = \"5s\"", "max_sessions = 200"], |_| {});
    // The target is the session, not the disk: as root the store is on a tmpfs, where fsync is free and
    // the fuzzer runs several times faster. Elsewhere on the disk, as every other test.
    let _tmpfs = tmpfs(&h.data_dir(), "4g").inspect_err(|e| eprintln!("{test}: store on disk ({e})")).ok();
    let gw = h.start();
    let probe = still_serving(&h, &gw, "start");
    let rss0 = gw.rss_kib();
    let seeds: Arc<Vec<Vec<u8>>> = Arc::new(SMTP_SEEDS.iter().map(|s| s.to_vec()).collect());
    let next = Arc::new(AtomicUsize::new(range.start));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let figures: Arc<Mutex<SmtpFigures>> = Arc::default();
    let broken: Arc<Mutex<Vec<String>>> = Arc::default();
    // Client port → execution number, to find the input behind a line of the gateway's log.
    let ports: Arc<Mutex<std::collections::HashMap<u16, usize>>> = Arc::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (seeds, next, acked, figures, broken, ports) =
                (seeds.clone(), next.clone(), acked.clone(), figures.clone(), broken.clone(), ports.clone());
            let addr = gw.smtp;
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= sessions {
                        return;
                    }
                    // Each execution's input depends only on (seed, n): any one can be replayed alone.
                    let mut rng = Rng::new(seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let input = if n < seeds.len() {
                        seeds[n].clone()
                    } else {
                        let base = rng.pick(&seeds).clone();
                        mutate(&mut rng, &base, &seeds, SMTP_DICT, MAX_SMTP_INPUT)
                    };
                    let len = input.len() as u64;
                    let mut port = 0;
                    let result = one_session(addr, input.clone(), &acked, &mut port);
                    ports.lock().unwrap().insert(port, n);
                    match result {
                        Ok((replies, cut_short)) => {
                            let mut f = figures.lock().unwrap();
                            f.sessions += 1;
                            f.bytes += len;
                            f.replies += replies;
                            f.closed_by_server_first += cut_short as usize;
                        }
                        Err(why) => {
                            let kept = keep("smtp", seed, n, &input);
                            broken
                                .lock()
                                .unwrap()
                                .push(format!("session #{n} (thread {t}): {why} (input kept in {kept})"));
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = started.elapsed();
    let broken = broken.lock().unwrap().clone();
    assert!(
        broken.is_empty(),
        "{} of the fuzzed sessions {range:?} broke an invariant (seed {seed}):\n{}\n{}",
        broken.len(),
        broken[..broken.len().min(20)].join("\n"),
        log_tail(&h)
    );
    assert!(gw.alive(), "the gateway died under the SMTP fuzzer (seed {seed})\n{}", log_tail(&h));

    // What was acknowledged is what is stored, and only for our domain.
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let stored = stored_messages(&h);
    let stored_ids: BTreeSet<String> = stored.iter().map(|(id, _, _)| id.clone()).filter(|id| *id != probe).collect();
    let missing: Vec<_> = acked.difference(&stored_ids).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    let unacked: Vec<String> = stored_ids
        .difference(&acked)
        .map(|id| {
            // The session that sent it, from the gateway's log line for it.
            let line = log_lines(&h, &format!("message_id={id}"))
                .into_iter()
                .find(|l| l.contains("peer="))
                .unwrap_or_default();
            let port: Option<u16> =
                line.split("peer=").nth(1).and_then(|p| p.split([' ', ':']).nth(1)).and_then(|p| p.parse().ok());
            let n = port.and_then(|p| ports.lock().unwrap().get(&p).copied());
            let kept = n.map(|n| {
                let mut rng = Rng::new(seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let base = rng.pick(&seeds).clone();
                let input = if n < seeds.len() {
                    seeds[n].clone()
                } else {
                    mutate(&mut rng, &base, &seeds, SMTP_DICT, MAX_SMTP_INPUT)
                };
                keep("smtp-unacked", seed, n, &input)
            });
            format!("{id} (session #{n:?}, input kept in {kept:?}; log: {line})")
        })
        .collect();
    assert!(unacked.is_empty(), "stored without a 250 the client saw (seed {seed}):\n{}", unacked.join("\n"));
    for (id, _, rcpt) in &stored {
        let rcpts: Vec<String> = serde_json::from_str(rcpt).unwrap();
        for r in rcpts {
            let (local, domain) =
                r.rsplit_once('@').unwrap_or_else(|| panic!("{id}: recipient {r:?} without a domain"));
            assert!(
                domain.trim_end_matches('.').eq_ignore_ascii_case(DOMAIN) && !local.contains(['@', '%', '!', ':', ',']),
                "{id} was accepted for {r:?}: a relay (seed {seed})"
            );
        }
    }
    h.wait_until(Duration::from_secs(120), "every fuzzed message to be delivered", || {
        delivery_counts(&h).iter().all(|(s, _)| s == "succeeded")
    });
    let f = std::mem::take(&mut *figures.lock().unwrap());
    eprintln!(
        "{test}: sessions {range:?}: {} sessions ({} MiB) in {took:.1?} on {threads} threads, seed {seed}: {} replies, {} messages acknowledged, \
all stored and delivered, none for a foreign domain; {} sessions closed by the server before all input was read; 0 \
invariant violations",
        f.sessions,
        f.bytes >> 20,
        f.replies,
        acked.len(),
        f.closed_by_server_first
    );
    assert_flat(&gw, rss0, 64, &format!("{} fuzzed SMTP sessions", f.sessions));
    still_serving(&h, &gw, "the SMTP fuzzer");
    SmtpFigures { acked: acked.len(), ..f }
}

/// The last lines of the gateway logs (a fuzzing run logs a lot).
fn log_tail(h: &Harness) -> String {
    let logs = h.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn fuzz_smtp_session() {
    let f = fuzz_smtp(scale(1_500, 200_000), 4, "fuzz_smtp_session");
    assert!(f.acked > 0 && f.sessions > 0, "the seeds hold complete transactions; none was acknowledged");
}
