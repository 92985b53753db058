//! Property test of parse → event with proptest (stable Rust; cargo-fuzz needs nightly): structured
//! MIME messages, well-formed enough to reach deep into the parser, built from random parts
//! (multipart nesting up to 4 levels, every transfer encoding, real and bogus charsets, hostile file
//! names, random bytes as bodies, boundaries that collide), each checked with fuzz.rs's invariants.
//! A failure is shrunk by proptest to a minimal message and printed. Short form 256 messages;
//! `MXHOOK_LONG=1` 100,000 (or `PROPTEST_CASES`).

use std::cell::RefCell;

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::fuzz::{ParseFigures, check_parse, quiet_parser_panics};
use crate::support::scale;

#[derive(Debug, Clone)]
enum Part {
    Leaf { ctype: &'static str, cte: &'static str, name: Option<String>, encode: bool, body: Vec<u8> },
    Multi { subtype: &'static str, boundary: String, preamble: Vec<u8>, parts: Vec<Part> },
}

fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}\\.(pdf|txt|png)",
        "(\\.\\./){1,4}[a-z]{1,8}",
        "/etc/[a-z]{1,8}",
        "[\\x00-\\x1f\\x7f]{1,6}",
        "[a-z]{0,5}\u{202e}[a-z]{0,5}",
        "\\PC{0,30}",
        "=\\?utf-8\\?(b|q)\\?[A-Za-z0-9+/=_%]{0,16}\\?=",
    ]
}

fn leaf() -> impl Strategy<Value = Part> {
    let ctype = prop::sample::select(vec![
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=iso-8859-1",
        "text/plain; charset=x-bogus",
        "text/html; charset=windows-1252",
        "application/pdf",
        "image/png",
        "message/rfc822",
        "application/octet-stream",
        "text/calendar; method=REQUEST",
        "",
    ]);
    let cte =
        prop::sample::select(vec!["", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus"]);
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        "[ -~\r\n]{0,600}".prop_map(String::into_bytes),
        Just(b"From: inner@x.test\r\nSubject: inner\r\n\r\ninner body\r\n".to_vec()),
    ];
    (ctype, cte, prop::option::of(file_name()), any::<bool>(), body)
        .prop_map(|(ctype, cte, name, encode, body)| Part::Leaf { ctype, cte, name, encode, body })
}

fn part() -> impl Strategy<Value = Part> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        let subtype = prop::sample::select(vec!["mixed", "alternative", "related", "digest", "report", "signed"]);
        // Short boundaries collide with bodies and with each other, on purpose.
        let boundary = prop_oneof!["[a-z]{1,3}", "[A-Za-z0-9'()+_,./:=? -]{1,70}", Just("=_same".to_string())];
        (subtype, boundary, prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(inner, 0..6))
            .prop_map(|(subtype, boundary, preamble, parts)| Part::Multi { subtype, boundary, preamble, parts })
    })
}

fn render(p: &Part, out: &mut Vec<u8>) {
    match p {
        Part::Leaf { ctype, cte, name, encode, body } => {
            if !ctype.is_empty() {
                out.extend_from_slice(format!("Content-Type: {ctype}\r\n").as_bytes());
            }
            if !cte.is_empty() {
                out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
            }
            if let Some(n) = name {
                out.extend_from_slice(b"Content-Disposition: attachment; filename=\"");
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b"\"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            if *encode && *cte == "base64" {
                let text = base64::engine::general_purpose::STANDARD.encode(body);
                text.as_bytes().chunks(76).for_each(|l| {
                    out.extend_from_slice(l);
                    out.extend_from_slice(b"\r\n");
                });
            } else {
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n");
            }
        }
        Part::Multi { subtype, boundary, preamble, parts } => {
            out.extend_from_slice(
                format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
            );
            out.extend_from_slice(preamble);
            out.extend_from_slice(b"\r\n");
            for p in parts {
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                render(p, out);
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
    }
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    let subject = prop_oneof!["[ -~]{0,80}", "=\\?(utf-8|iso-8859-1|x-bogus)\\?(b|q)\\?[ -~]{0,40}\\?=", "\\PC{0,60}"];
    (subject, "[ -~]{0,60}", part()).prop_map(|(subject, from, p)| {
        let mut out = format!(
            "From: {from}\r\nTo: inbox@example.test\r\nSubject: {subject}\r\nMessage-ID: <p@x.test>\r\nMIME-Version: 1.0\r\n"
        )
        .into_bytes();
        render(&p, &mut out);
        out
    })
}

#[test]
fn structured_mime_keeps_the_parse_invariants() {
    quiet_parser_panics();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(scale(256, 100_000));
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let figures = RefCell::new(ParseFigures::default());
    let started = std::time::Instant::now();
    let result = runner.run(&message(), |raw| {
        check_parse(&raw, &mut figures.borrow_mut()).map_err(TestCaseError::fail)?;
        Ok(())
    });
    let f = figures.into_inner();
    eprintln!(
        "structured_mime_keeps_the_parse_invariants: {cases} messages in {:.1?}: {} complete, {} failed, {} parser panics caught",
        started.elapsed(),
        f.complete,
        f.failed,
        f.parser_panics
    );
    if let Err(e) = result {
        panic!("parse → event broke an invariant on a generated message (shrunk by proptest):\n{e}");
    }
}
