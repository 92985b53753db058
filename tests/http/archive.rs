//! `message.attachments_url`: every attachment as one zip, streamed. Three attachments (two whose
//! names collide once made safe) come back byte for byte under safe, unique names; the link follows
//! the others' rules (403 forged, 410 expired, 404 unknown); and 50 MB of attachments stream while the
//! gateway's resident memory is sampled.

use std::io::{Cursor, Read};
use std::time::Instant;

use crate::common::*;
use crate::support::*;

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a readable zip archive");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().to_string(), data)
        })
        .collect()
}

#[test]
fn three_attachments_download_as_one_zip_byte_for_byte() {
    let h = setup(|_| {}, &[], &[]);
    let gw = h.start();
    let mut rng = Rng::new(7);
    let files = [rng.noise(30_000), rng.noise(1), b"plain text\r\n".to_vec()];
    let body = multipart(
        "three",
        &[
            attachment_part("application/pdf", "attachment; filename=\"report.pdf\"", &files[0]),
            attachment_part("application/pdf", "attachment; filename=\"../../Report.pdf\"", &files[1]),
            attachment_part("text/plain", "attachment; filename=\"notes\u{1}.txt\"", &files[2]),
        ],
    );
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    let (_, ev) = h.event_for(&id);
    let link = ev["message"]["attachments_url"].as_str().expect("attachments_url");
    assert!(link.starts_with(&format!("{PUBLIC}/zip/{id}?exp=")), "{link}");
    let agent = agent();
    let got = get(&agent, &local(&gw, link), &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type").as_deref(), Some("application/zip"));
    assert!(got.header("content-disposition").is_some_and(|d| d.starts_with("attachment")));
    let entries = unzip(&got.body);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["report.pdf", "Report (2).pdf", "notes_.txt"]);
    for ((_, data), sent) in entries.iter().zip(&files) {
        assert!(data == sent, "an archived file differs from the attachment sent");
    }

    // The same rules as the other links.
    let (path, exp, sig) = parts(link);
    let base = format!("http://{}", gw.http);
    let mut bad = sig.clone().into_bytes();
    bad[2] = if bad[2] == b'A' { b'B' } else { b'A' };
    let forged = format!("{base}{path}?exp={exp}&sig={}", String::from_utf8(bad).unwrap());
    assert_eq!(status_of(&agent, &forged), 403);
    let key = url_key(&h);
    let past = now_secs() - 10;
    assert_eq!(status_of(&agent, &format!("{base}{path}?exp={past}&sig={}", sign(&key, &path, past))), 410);
    let none = "/zip/msg_00000000000000000000000000";
    let exp_n: i64 = exp.parse().unwrap();
    assert_eq!(status_of(&agent, &format!("{base}{none}?exp={exp_n}&sig={}", sign(&key, none, exp_n))), 404);

    // A message without attachments has no link.
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: none\r\n\r\nhi\r\n");
    let (_, ev) = h.event_for(&id);
    assert!(ev["message"]["attachments_url"].is_null());
}

#[test]
fn fifty_megabytes_of_attachments_stream_as_a_zip_with_bounded_memory() {
    let h = setup(|cfg| cfg.max_message_size = Some("100MB".into()), &[], &[]);
    let gw = h.start();
    let mut rng = Rng::new(51);
    let files = [rng.noise(25_000_000), rng.noise(25_000_000)];
    let body = multipart(
        "fifty in two",
        &[
            attachment_part("application/octet-stream", "attachment; filename=\"a.bin\"", &files[0]),
            attachment_part("application/octet-stream", "attachment; filename=\"b.bin\"", &files[1]),
        ],
    );
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    drop(body);
    let (_, ev) = h.event_for(&id);
    let url = local(&gw, ev["message"]["attachments_url"].as_str().expect("attachments_url"));
    let pid = gw.pid();
    let baseline = vm_rss_kib(pid);
    let mut resp = agent().get(&url).call().expect("GET the zip");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = resp.body_mut().as_reader();
    let (mut zip, mut buf, mut peak) = (Vec::new(), vec![0u8; 64 * 1024], baseline);
    let t = Instant::now();
    loop {
        let n = reader.read(&mut buf).expect("reading the zip");
        if n == 0 {
            break;
        }
        zip.extend_from_slice(&buf[..n]);
        peak = peak.max(vm_rss_kib(pid));
    }
    let grew = peak.saturating_sub(baseline);
    eprintln!(
        "zip of 50 MB: {} bytes in {:?}; gateway VmRSS {baseline} KiB -> peak {peak} KiB (+{grew} KiB)",
        zip.len(),
        t.elapsed()
    );
    assert!(grew <= 20 * 1024, "gateway VmRSS grew by {grew} KiB while streaming 50 MB of attachments");
    let entries = unzip(&zip);
    assert_eq!(entries.len(), 2);
    for ((_, data), sent) in entries.iter().zip(&files) {
        assert!(data == sent, "an archived file differs from the attachment sent");
    }
}
