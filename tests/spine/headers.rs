//! Every header of every corpus message, and every uuencoded attachment, checked against an
//! independent reference: Python's `email` package (tests/spine/email_reference.py).
//!
//! For each message the event's `headers` must list the same names in the same order, and each
//! value must equal Python's `str(value)` under policy `default`. Where our value differs on
//! purpose, the difference is one of `DELIBERATE`, and the value is then compared with what Python
//! makes of the field read as unstructured text (its own unfolding and RFC 2047 decoding).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// The differences from Python's `str(value)` that are deliberate.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "structured",
        "Python rebuilds a structured field from what it parsed: it drops comments (`(PDT)`, \
         `(Vandelay Industries)`) and quotes around display names, re-quotes MIME parameters, \
         rewrites a wrong weekday, drops all but the first of two address lists. The event gives the \
         sender's own text, decoded; a program that wants structure has from/to/cc/date/… already parsed.",
    ),
    (
        "unparsable",
        "Where Python cannot parse a structured field at all it keeps it raw, encoded words and all; \
         the event decodes the encoded words in it as in any other field.",
    ),
    (
        "trailing space",
        "White space at the end of a value is dropped (`MIME-Version: 1.0 `): it is never part of a \
         field's meaning, and Python keeps it only in unstructured fields.",
    ),
];

/// Messages whose header *section* ends elsewhere for the two parsers: the event lists the header
/// fields mail-parser read, the same parse that gave the rest of the event.
const OTHER_HEADER_SECTION: &[(&str, &str)] = &[
    (
        "067__mailparser-rs-regr__header-name-nul.eml",
        "a field name with a NUL byte: Python ends the header section there, mail-parser keeps the field",
    ),
    (
        "116__enmime-mail__qp-utf8-header-no-break.eml",
        "no blank line after the header: Python ends it at the first line without a colon, \
         mail-parser reads on into the first part's Content-Type and Content-Transfer-Encoding",
    ),
];

fn reference(dir: &std::path::Path, files: &[(String, Vec<u8>)]) -> HashMap<String, Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spine/email_reference.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        cmd.arg(&path);
    }
    let out = cmd.output().expect("python3 (the reference) must be installed");
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reference prints JSON")
}

/// Sends every message in one session and returns each one's event `message`, by file name.
fn events(files: &[(String, Vec<u8>)]) -> HashMap<String, Value> {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let ids: Vec<String> =
        files.iter().map(|(_, bytes)| c.send_mail("ref@sender.test", &["inbox@example.test"], bytes)).collect();
    c.cmd("QUIT").expect(221, "2.0.0");
    h.wait_requests(files.len(), Duration::from_secs(60));
    let requests = h.rx.requests();
    files
        .iter()
        .zip(ids)
        .map(|((name, _), id)| {
            let ev = requests.iter().map(|r| r.json()).find(|e| e["message"]["id"] == id.as_str());
            (name.clone(), ev.unwrap_or_else(|| panic!("{name}: no event for {id}"))["message"].clone())
        })
        .collect()
}

fn pairs(v: &Value) -> Vec<(String, Value, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_string(), h[1].clone(), h[2].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn every_header_value_matches_python_email_on_the_whole_corpus() {
    let files = corpus();
    assert!(files.len() >= 90, "corpus has only {} messages", files.len());
    let dir = tempfile::tempdir().unwrap();
    let py = reference(dir.path(), &files);
    let ev = events(&files);

    let mut problems = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut equal = 0;
    for (name, _) in &files {
        let ours: Vec<(String, String)> = serde_json::from_value(ev[name]["headers"].clone()).unwrap();
        let theirs = pairs(&py[name]["headers"]);
        let names = |v: &[(String, String)]| v.iter().map(|h| h.0.clone()).collect::<Vec<_>>();
        let their_names: Vec<String> = theirs.iter().map(|h| h.0.clone()).collect();
        if names(&ours) != their_names {
            if !OTHER_HEADER_SECTION.iter().any(|(f, _)| f == name) {
                problems.push(format!("{name}: header names {:?} != Python's {their_names:?}", names(&ours)));
            }
            continue;
        }
        for ((field, value), (_, parsed, text)) in ours.iter().zip(&theirs) {
            let kind = match parsed.as_str() {
                Some(p) if p == value => {
                    equal += 1;
                    continue;
                }
                Some(p) if p.trim_end() == value => "trailing space",
                Some(_) if text == value => "structured",
                None if text.trim_end() == value => "unparsable",
                _ => {
                    problems.push(format!("{name}: {field}: {value:?} != Python's {parsed} (as text {text:?})"));
                    continue;
                }
            };
            *counts.entry(kind).or_default() += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} header values differ from Python's email:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The comparison covers the fields a parser structures, not only free text.
    assert!(equal >= 350, "only {equal} values compared equal");
    assert!(counts.get("structured").copied().unwrap_or(0) >= 20, "structured differences: {counts:?}");
    for kind in counts.keys() {
        assert!(DELIBERATE.iter().any(|(k, _)| k == kind), "{kind} is not listed as deliberate");
    }
}

#[test]
fn uuencoded_attachments_are_served_decoded_as_python_decodes_them() {
    // A binary of the size the issue met (251,141 bytes), uuencoded, beside the corpus's own
    // x-uuencode part (a `begin` line and nothing after it).
    let data: Vec<u8> = (0u32..251_141).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let encoded = uuencoding::encode(&data, "report.bin", 0o644);
    let mut generated = b"From: a@sender.test\r\nTo: inbox@example.test\r\nSubject: uu\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"report.bin\"\r\n\
        Content-Disposition: attachment; filename=\"report.bin\"\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        .to_vec();
    generated.extend(to_crlf(&encoded));
    generated.extend_from_slice(b"\r\n--b--\r\n");
    let mut files: Vec<_> = corpus().into_iter().filter(|(n, _)| n.starts_with("017__")).collect();
    assert_eq!(files.len(), 1, "the corpus's x-uuencode message");
    files.push(("generated-uu.eml".into(), generated));

    let dir = tempfile::tempdir().unwrap();
    let py = reference(dir.path(), &files);
    let ev = events(&files);
    for (name, _) in &files {
        let expected = py[name]["uu"].as_array().unwrap().clone();
        assert!(!expected.is_empty(), "{name}: the reference found no uuencoded part");
        let ours: Vec<Value> = ev[name]["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["content_type"] == "application/octet-stream")
            .map(|a| serde_json::json!([a["sha256"], a["size"]]))
            .collect();
        assert_eq!(ours, expected, "{name}: attachment (sha256, size) differ from Python's decoding");
    }
    assert_eq!(py["generated-uu.eml"]["uu"][0][1], data.len(), "the reference decodes what was encoded");
}
