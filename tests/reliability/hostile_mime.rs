//! Hostile MIME through SMTP: the malformed part of the corpus, 10,000 levels of multipart nesting,
//! 100,000 header fields, zip-bomb-like and pathological encodings, attachment names that try to be
//! paths or to hide their extension, 10,000 attachments. Each message is stored and delivered (its
//! `parsed.status` complete or failed) or refused cleanly; after each one the gateway is alive, /healthz
//! answers 200 and a normal message gets through; and nothing is written outside data_dir (the
//! gateway's working directory and /tmp are compared before and after; data_dir holds only the files
//! the gateway names itself).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::*;
use crate::support::*;

fn b64(bytes: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(enc.len() * 78 / 76 + 2);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

const HEAD: &str = "From: Mallory <mallory@evil.test>\r\nTo: inbox@example.test\r\nMIME-Version: 1.0\r\n";

fn deep_nesting(levels: usize) -> Vec<u8> {
    let mut m = format!("{HEAD}Subject: {levels} levels\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for i in 0..levels {
        let _ = write!(m, "--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n", i + 1);
    }
    let _ = write!(m, "--b{levels}\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n--b{levels}--\r\n");
    for i in (0..levels).rev() {
        let _ = write!(m, "--b{i}--\r\n");
    }
    m.into_bytes()
}

/// Multipart nesting opened and never closed, boundaries that are prefixes of each other.
fn unclosed_nesting(levels: usize) -> Vec<u8> {
    let mut m = format!("{HEAD}Subject: unclosed\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
    let mut b = "b".to_string();
    for _ in 0..levels {
        let inner = format!("{b}b");
        let _ = write!(m, "--{b}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n");
        b = inner;
    }
    m.push_str("no end\r\n");
    m.into_bytes()
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut m = format!("{HEAD}Subject: {n} headers\r\n");
    for i in 0..n {
        let _ = write!(m, "X-H{i}: v{i}\r\n");
    }
    m.push_str("\r\nbody\r\n");
    m.into_bytes()
}

fn many_attachments(n: usize) -> Vec<u8> {
    let mut m = format!("{HEAD}Subject: {n} attachments\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n");
    m.push_str("--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n");
    for i in 0..n {
        let _ = write!(
            m,
            "--x\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
        );
    }
    m.push_str("--x--\r\n");
    m.into_bytes()
}

fn attachments(subject: &str, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut m =
        format!("{HEAD}Subject: {subject}\r\nContent-Type: multipart/mixed; boundary=\"y\"\r\n\r\n").into_bytes();
    for (headers, body) in parts {
        m.extend_from_slice(b"--y\r\n");
        m.extend_from_slice(headers.as_bytes());
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--y--\r\n");
    m
}

/// `gzip -c` of `n` zero bytes: a small attachment that would inflate `n`-fold if anyone opened it.
fn gzip_of_zeros(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..n >> 20 {
            stdin.write_all(&zeros).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out.stdout
}

/// A message/rfc822 inside a base64 part inside a message/rfc822 …, `depth` times.
fn nested_encoded_messages(depth: usize) -> Vec<u8> {
    let mut inner = b"From: a@b.test\r\nSubject: innermost\r\n\r\nthe core\r\n".to_vec();
    for i in 0..depth {
        let mut m = format!(
            "From: a@b.test\r\nSubject: level {i}\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        )
        .into_bytes();
        m.extend_from_slice(b64(&inner).as_bytes());
        inner = m;
    }
    let mut m = HEAD.as_bytes().to_vec();
    m.extend_from_slice(
        b"Subject: nested encoded\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    m.extend_from_slice(b64(&inner).as_bytes());
    m
}

/// Attachment names that try to be paths, hide their extension or carry control bytes.
fn hostile_names(marker: &str) -> Vec<u8> {
    let names: Vec<String> = vec![
        format!("filename=\"../../../../../../tmp/pwned-{marker}-rel\""),
        format!("filename=\"/tmp/pwned-{marker}-abs\""),
        format!("filename=\"..\\\\..\\\\..\\\\pwned-{marker}-win\""),
        format!("filename=\"nul\0byte-{marker}.txt\""),
        format!("filename=\"ctl\x01\x07\x1b[31m\x7f-{marker}.txt\""),
        format!("filename=\"invoice-{marker}\u{202E}fdp.exe\""),
        format!("filename*=UTF-8''..%2F..%2F..%2F..%2Ftmp%2Fpwned-{marker}-2231"),
        format!("filename*=UTF-8''evil%00-{marker}.txt"),
        format!(
            "filename=\"=?UTF-8?B?{}?=\"",
            base64::engine::general_purpose::STANDARD.encode(format!("../../pwned-{marker}-2047"))
        ),
        "filename=\".\"".to_string(),
        "filename=\"..\"".to_string(),
        "filename=\"\"".to_string(),
        "filename=\"CON\"".to_string(),
        format!("filename=\"{}\"", "A".repeat(10_000)),
        format!("filename=\"spool/../../pwned-{marker}-spool.eml\""),
    ];
    let parts: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| {
            (
                format!("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; {n}\r\nContent-Transfer-Encoding: base64\r\n"),
                b64(marker.as_bytes()).into_bytes(),
            )
        })
        .collect();
    attachments("hostile names", &parts)
}

/// Every entry directly under `dir` whose name contains `marker`.
fn named(dir: &std::path::Path, marker: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(marker)).collect()
        })
        .unwrap_or_default()
}

#[test]
fn hostile_mime_is_stored_or_refused_never_a_crash_nothing_outside_data_dir() {
    let h = harness(&["max_message_size = \"64MB\""], |cfg| cfg.endpoint("app").timeout = "30s".into());
    let gw = h.start();
    let marker = format!("mxr{}", std::process::id());
    let outside = |h: &Harness| -> Vec<String> {
        files_under(h.dir.path()).into_iter().filter(|f| !f.starts_with("data/")).collect()
    };
    let before_cwd = outside(&h);
    let rss0 = gw.rss_kib();

    let mut cases: Vec<(String, Vec<u8>)> = corpus_malformed();
    let big = long();
    cases.push(("10,000 levels of multipart".into(), deep_nesting(10_000)));
    cases.push(("2,000 unclosed nested multiparts".into(), unclosed_nesting(2_000)));
    cases.push((format!("{} headers", scale(100_000, 1_000_000)), many_headers(scale(100_000, 1_000_000))));
    cases.push((format!("{} attachments", scale(1_000, 10_000)), many_attachments(scale(1_000, 10_000))));
    let gz = gzip_of_zeros(if big { 1 << 30 } else { 64 << 20 });
    cases.push((
        format!("gzip of {} zeros ({} B) as an attachment and as a Content-Encoding", if big { "1 GiB" } else { "64 MiB" }, gz.len()),
        attachments(
            "bomb",
            &[
                (
                    "Content-Type: application/gzip\r\nContent-Disposition: attachment; filename=\"zeros.gz\"\r\nContent-Transfer-Encoding: base64\r\n".into(),
                    b64(&gz).into_bytes(),
                ),
                (
                    "Content-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Transfer-Encoding: base64\r\n".into(),
                    b64(&gz).into_bytes(),
                ),
            ],
        ),
    ));
    cases.push(("12 levels of base64-encoded message/rfc822".into(), nested_encoded_messages(12)));
    let one_per_line: String =
        b64(&vec![0x41; 300_000]).chars().filter(|c| !c.is_whitespace()).flat_map(|c| [c, '\r', '\n']).collect();
    cases.push((
        "base64 with a line break after every character".into(),
        attachments("b64 lines", &[("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"x\"\r\n".into(), one_per_line.into_bytes())]),
    ));
    cases.push((
        "5 MB of base64 padding and junk".into(),
        attachments("b64 junk", &[("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"j\"\r\n".into(), "=!*~\r\n".repeat(1_000_000).into_bytes())]),
    ));
    cases.push((
        "1M quoted-printable soft line breaks".into(),
        attachments(
            "qp",
            &[(
                "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n".into(),
                "=\r\n".repeat(1_000_000).into_bytes(),
            )],
        ),
    ));
    let words = "=?UTF-8?B?w6k=?= ".repeat(100_000);
    cases.push((
        "100,000 encoded words in a Subject".into(),
        format!("{HEAD}Subject: {words}\r\n\r\nx\r\n").into_bytes(),
    ));
    cases.push((
        "a 1 MB folded header".into(),
        format!("{HEAD}Subject: x{}\r\n\r\nx\r\n", "\r\n y".repeat(300_000)).into_bytes(),
    ));
    cases.push(("a boundary of 70,000 characters".into(), {
        let b = "z".repeat(70_000);
        format!("{HEAD}Subject: long boundary\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{b}--\r\n").into_bytes()
    }));
    cases.push(("attachment names with ../, NUL, control characters, RTL overrides".into(), hostile_names(&marker)));
    cases.push(("NUL bytes everywhere".into(), b"Subject: \0nul\0\r\nFrom: \0@\0\r\nContent-Type: multipart/mixed; boundary=\"\0\"\r\n\r\n--\0\r\n\r\n\0\0\0\r\n--\0--\r\n".to_vec()));
    cases.push(("only a body".into(), b"\r\n\r\njust a body, no header\r\n".to_vec()));

    let mut report = Vec::new();
    for (name, raw) in &cases {
        let t = Instant::now();
        // A normal message sent while the hostile one is being received and stored: how long it waits.
        let (answer, probe) = std::thread::scope(|scope| {
            let hostile = scope.spawn(|| {
                let mut c = Wire::connect(gw.smtp, Duration::from_secs(300)).unwrap();
                assert!(c.hello());
                let r = c.mail("inbox@example.test", raw).unwrap_or_else(|e| panic!("{name}: {e}\n{}", h.logs()));
                (r, t.elapsed())
            });
            let mut c = Wire::connect(gw.smtp, Duration::from_secs(300)).unwrap();
            assert!(c.hello());
            let p = Instant::now();
            let (code, text) = c.mail("inbox@example.test", &message("beside@probe.test", "beside", 300)).unwrap();
            let probe = p.elapsed();
            assert_eq!(code, 250, "a normal message beside {name}: {text}");
            (hostile.join().unwrap(), probe)
        });
        let ((code, text), took) = answer;
        let outcome = if code == 250 {
            let id = text.split("queued as ").nth(1).unwrap().trim().to_string();
            h.wait_until(Duration::from_secs(60), &format!("the event for {name}"), || {
                !h.rx.requests_for_message(&id).is_empty()
            });
            let ev = h.rx.requests_for_message(&id)[0].json();
            let m = &ev["message"];
            let status = m["parsed"]["status"].as_str().unwrap_or_default().to_string();
            assert!(status == "complete" || status == "failed", "{name}: parsed.status {status}");
            assert_eq!(m["raw"]["size"], raw.len() + if raw.ends_with(b"\r\n") { 0 } else { 2 }, "{name}: raw.size");
            let n = stored_attachment_count(&h, &id);
            format!("250, parsed {status}, {n} attachment(s), omitted {}", m["omitted"])
        } else {
            assert!(matches!(code, 451 | 552 | 554 | 550), "{name}: refused with an unexpected reply: {text}");
            format!("refused: {text}")
        };
        still_serving(&h, &gw, name);
        report.push(format!(
            "{name} ({}): {outcome}, answered in {took:.1?}; a normal message beside it took {probe:.1?}",
            mib(raw.len() as u64)
        ));
        assert!(probe < Duration::from_secs(10), "a normal message took {probe:?} while {name} was being stored");
    }
    for line in &report {
        eprintln!("hostile mime: {line}");
    }

    // Nothing written outside data_dir: the gateway's working directory, /tmp and / have nothing new,
    // and data_dir holds only what the gateway names itself.
    assert_eq!(outside(&h), before_cwd, "files appeared in the gateway's working directory outside data_dir");
    for dir in ["/tmp", "/", h.dir.path().parent().unwrap().to_str().unwrap()] {
        let found = named(std::path::Path::new(dir), &marker);
        assert!(found.is_empty(), "files named after an attachment appeared in {dir}: {found:?}");
    }
    let foreign = foreign_files(&h.data_dir());
    assert!(foreign.is_empty(), "files in data_dir the gateway does not name itself: {foreign:?}");
    assert_flat(&gw, rss0, 256, "hostile MIME (what stays after the largest message)");
}

/// The malformed part of tests/corpus, CRLF line endings.
fn corpus_malformed() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("malformed"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the malformed corpus is missing from {}", dir.display());
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), to_crlf(&std::fs::read(&p).unwrap())))
        .collect()
}
