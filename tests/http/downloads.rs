//! Every attachment of every corpus message, fetched by the `url` its event carries: the bytes hash to
//! the event's `sha256` and `size`, the headers keep a browser from rendering them, HEAD answers the same
//! headers without a body, and a Range request gets the right slice. The raw link returns the exact bytes
//! sent.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// Headers every served file must carry, whatever it is.
fn check_safety_headers(what: &str, h: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<String>) {
    match h("content-disposition") {
        Some(cd) if cd.starts_with("attachment;") && cd.contains("filename*=UTF-8''") && !cd.contains("inline") => {}
        other => {
            problems.push(format!("{what}: Content-Disposition {other:?}, want `attachment; … filename*=UTF-8''…`"))
        }
    }
    for (name, want) in
        [("x-content-type-options", "nosniff"), ("content-security-policy", "sandbox"), ("cache-control", "private")]
    {
        if h(name).as_deref() != Some(want) {
            problems.push(format!("{what}: {name} {:?}, want {want:?}", h(name)));
        }
    }
}

/// The Content-Type a file with this event `content_type` must be served with.
fn expected_content_type(event_ct: &str) -> String {
    match event_ct.parse::<mime::Mime>() {
        Ok(m) => m.as_ref().to_string(),
        Err(_) => "application/octet-stream".to_string(),
    }
}

/// GET, HEAD and a Range request of one link; `want` is the exact body (when known), or `(size, sha256)`.
#[allow(clippy::too_many_arguments)]
fn check_link(
    gw: &Gateway,
    agent: &ureq::Agent,
    what: &str,
    link: &str,
    size: usize,
    sha256: &str,
    exact: Option<&[u8]>,
    content_type: &str,
    problems: &mut Vec<String>,
) {
    let url = local(gw, link);
    let got = get(agent, &url, &[]);
    if got.status != 200 {
        problems.push(format!("{what}: GET answered {} ({})", got.status, String::from_utf8_lossy(&got.body)));
        return;
    }
    if got.body.len() != size || sha256_hex(&got.body) != sha256 {
        problems.push(format!(
            "{what}: downloaded {} bytes sha256 {}, event says {size} bytes sha256 {sha256}",
            got.body.len(),
            sha256_hex(&got.body)
        ));
    }
    if let Some(exact) = exact
        && got.body != exact
    {
        problems.push(format!("{what}: downloaded bytes differ from the bytes sent"));
    }
    if got.header("content-length") != Some(size.to_string()) {
        problems.push(format!("{what}: Content-Length {:?}, want {size}", got.header("content-length")));
    }
    if got.header("content-type").as_deref() != Some(content_type) {
        problems.push(format!("{what}: Content-Type {:?}, want {content_type:?}", got.header("content-type")));
    }
    check_safety_headers(what, &|n| got.header(n), problems);

    // HEAD, on the wire: the same headers, not one byte of body.
    let target = url.strip_prefix(&format!("http://{}", gw.http)).unwrap();
    let head = raw_request(gw.http, "HEAD", target, &[]);
    if head.status != 200 || head.wire_body_len != 0 {
        problems.push(format!("{what}: HEAD answered {} with {} body bytes", head.status, head.wire_body_len));
    } else {
        for name in ["content-length", "content-type", "content-disposition"] {
            if head.header_str(name) != got.header(name) {
                problems.push(format!("{what}: HEAD {name} {:?} != GET {:?}", head.header_str(name), got.header(name)));
            }
        }
        check_safety_headers(&format!("{what} (HEAD)"), &|n| head.header_str(n), problems);
    }

    // A slice from the middle.
    if size >= 3 {
        let (start, end) = (size / 3, size * 2 / 3);
        let part = get(agent, &url, &[("range", &format!("bytes={start}-{end}"))]);
        let want_range = format!("bytes {start}-{end}/{size}");
        if part.status != 206 {
            problems.push(format!("{what}: Range bytes={start}-{end} answered {}", part.status));
        } else if part.body != got.body[start..=end] || part.header("content-range") != Some(want_range.clone()) {
            problems.push(format!(
                "{what}: Range bytes={start}-{end}: {} bytes, Content-Range {:?} (want {} bytes, {want_range:?})",
                part.body.len(),
                part.header("content-range"),
                end - start + 1
            ));
        } else {
            check_safety_headers(&format!("{what} (Range)"), &|n| part.header(n), problems);
        }
    }
}

#[test]
fn every_corpus_attachment_and_raw_message_downloads_by_its_link() {
    let files = corpus();
    assert!(files.len() >= 90, "corpus has only {} messages", files.len());
    let h = setup(|cfg| cfg.endpoint("app").retry = strings(&["0s", "200ms"]), &[], &[]);
    let gw = h.start();

    let sent = SmtpClient::ready(gw.smtp).send_each(&files);
    h.wait_requests(files.len(), Duration::from_secs(30));

    let agent = agent();
    let mut problems = Vec::new();
    let mut attachments = 0;
    for (name, bytes, id) in &sent {
        let reqs = h.rx.requests_for_message(id);
        let Some(req) = reqs.first() else {
            problems.push(format!("{name}: no event for {id}"));
            continue;
        };
        let ev: Value = req.json();
        let m = &ev["message"];

        let raw_link = m["raw"]["url"].as_str().unwrap_or_default();
        if !raw_link.starts_with(&format!("{PUBLIC}/raw/{id}?exp=")) {
            problems.push(format!("{name}: raw.url {:?} is not {PUBLIC}/raw/{id}?exp=…", m["raw"]["url"]));
        } else {
            let sha = sha256_hex(bytes);
            let what = format!("{name} raw");
            check_link(&gw, &agent, &what, raw_link, bytes.len(), &sha, Some(bytes), "message/rfc822", &mut problems);
        }

        if m["omitted"].as_array().is_some_and(|o| o.iter().any(|x| x == "attachments")) {
            problems.push(format!("{name}: the event left its attachment list out ({})", m["omitted"]));
        }
        for (i, a) in m["attachments"].as_array().into_iter().flatten().enumerate() {
            attachments += 1;
            let what = format!("{name} attachment {i} ({:?}, {})", a["filename"], a["content_type"]);
            let Some(link) = a["url"].as_str() else {
                problems.push(format!("{what}: no url"));
                continue;
            };
            if !link.starts_with(&format!("{PUBLIC}/att/{id}/{i}?exp=")) {
                problems.push(format!("{what}: url {link} is not {PUBLIC}/att/{id}/{i}?exp=…"));
                continue;
            }
            let (Some(size), Some(sha), Some(ct)) =
                (a["size"].as_u64(), a["sha256"].as_str(), a["content_type"].as_str())
            else {
                problems.push(format!("{what}: size/sha256/content_type missing: {a}"));
                continue;
            };
            check_link(&gw, &agent, &what, link, size as usize, sha, None, &expected_content_type(ct), &mut problems);
        }
    }
    assert!(attachments >= 20, "the corpus yielded only {attachments} attachments: the test would prove little");
    assert!(
        problems.is_empty(),
        "{} problem(s) over {attachments} attachments:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The links of a small message of our own: the attachment bytes are exactly what was encoded, the
/// file name is carried into Content-Disposition (RFC 5987-encoded), and a Range from the end works.
#[test]
fn own_attachments_download_byte_for_byte() {
    let h = setup(|_| {}, &[], &[]);
    let gw = h.start();
    let pdf = Rng::new(7).noise(18_213);
    let png = Rng::new(8).noise(1_000);
    let body = multipart(
        "two files",
        &[
            attachment_part("application/pdf; name=\"po.pdf\"", "attachment; filename=\"po.pdf\"", &pdf),
            attachment_part("image/png", "inline; filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.png", &png),
        ],
    );
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    let (_, ev) = h.event_for(&id);
    let atts = ev["message"]["attachments"].as_array().expect("attachments").clone();
    assert_eq!(atts.len(), 2, "{}", ev["message"]["attachments"]);
    let agent = agent();

    let got = get(&agent, &local(&gw, atts[0]["url"].as_str().unwrap()), &[]);
    assert_eq!(got.status, 200);
    assert!(got.body == pdf, "attachment 0: {} bytes, not the {} bytes encoded", got.body.len(), pdf.len());
    assert_eq!(got.header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(
        got.header("content-disposition").as_deref(),
        Some("attachment; filename=\"po.pdf\"; filename*=UTF-8''po.pdf")
    );

    // Sent `inline`: still served as an attachment. Non-ASCII name: RFC 5987 in filename*.
    let url = local(&gw, atts[1]["url"].as_str().unwrap());
    assert_eq!(atts[1]["inline"], true, "{}", atts[1]);
    let got = get(&agent, &url, &[]);
    assert!(got.status == 200 && got.body == png, "attachment 1: {} ({} bytes)", got.status, got.body.len());
    let cd = got.header("content-disposition").unwrap_or_default();
    assert!(cd.starts_with("attachment;") && cd.ends_with("filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.png"), "{cd}");

    let tail = get(&agent, &url, &[("range", "bytes=-10")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, png[png.len() - 10..]);
    assert_eq!(tail.header("content-range").as_deref(), Some("bytes 990-999/1000"));
    let past = get(&agent, &url, &[("range", "bytes=5000-6000")]);
    assert_eq!(past.status, 416, "a range past the end: {}", past.status);
}
