//! Every real-world message in tests/corpus (copied from the project's shared corpus; see its README and
//! MANIFEST.tsv for sources and licenses) goes through SMTP and arrives as an event whose fields match what
//! mail-parser 0.11.9 parses from the same bytes.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn addresses(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x["address"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn whole_corpus_arrives_as_events_matching_mail_parser() {
    let files = corpus();
    assert!(files.len() >= 90, "corpus has only {} messages", files.len());
    let h = Harness::with(|cfg| cfg.endpoint("app").retry = strings(&["0s", "200ms"]));
    let gw = h.start();

    // One session for the whole corpus, with RSET between transactions.
    let sent = SmtpClient::ready(gw.smtp).send_each(&files);

    h.wait_requests(files.len(), Duration::from_secs(60));
    let requests = h.rx.requests();
    let mut problems = Vec::new();
    for (name, bytes, id) in &sent {
        let reqs: Vec<_> = requests.iter().filter(|r| r.json()["message"]["id"] == id.as_str()).collect();
        if reqs.len() != 1 {
            problems.push(format!("{name}: {} events for {id}", reqs.len()));
            continue;
        }
        if let Err(e) = reqs[0].verify(SECRET_A) {
            problems.push(format!("{name}: signature rejected: {e}"));
        }
        let ev = reqs[0].json();
        let m = &ev["message"];
        if m["raw"]["size"] != bytes.len() {
            problems.push(format!("{name}: raw.size {} != {}", m["raw"]["size"], bytes.len()));
        }
        let status = expected_parse_status(bytes);
        if m["parsed"]["status"] != status {
            problems.push(format!("{name}: parsed {} (expected status {status})", m["parsed"]));
            continue;
        }
        let Some(o) = oracle(bytes) else { continue };
        if m["subject"].as_str() != o.subject() {
            problems.push(format!("{name}: subject {} != {:?}", m["subject"], o.subject()));
        }
        let from = o.from().and_then(|a| a.first()).and_then(|a| a.address());
        if m["from"]["address"].as_str() != from {
            problems.push(format!("{name}: from {} != {from:?}", m["from"]));
        }
        let to: Vec<String> =
            o.to().map(|a| a.iter().filter_map(|x| x.address().map(str::to_string)).collect()).unwrap_or_default();
        if addresses(&m["to"]) != to {
            problems.push(format!("{name}: to {} != {to:?}", m["to"]));
        }
        if let Some(text) = o.body_text(0)
            && m["text"].as_str() != Some(text.as_ref())
        {
            let got = m["text"].as_str().map(|t| t.chars().take(80).collect::<String>());
            problems.push(format!("{name}: text {got:?}… != {:?}…", text.chars().take(80).collect::<String>()));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} corpus messages differ:\n{}",
        problems.len(),
        sent.len(),
        problems.join("\n")
    );

    // Stored exactly as sent.
    let mut raw_problems = Vec::new();
    for (name, bytes, id) in &sent {
        if &h.raw(id) != *bytes {
            raw_problems.push(name.to_string());
        }
    }
    assert!(raw_problems.is_empty(), "`messages show --raw` differs from the bytes sent for: {raw_problems:?}");
    assert_eq!(h.messages().len(), files.len());
}
