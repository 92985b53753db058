//! Path traversal: `..` in every spelling (plain, percent-encoded, double-encoded, backslashes), with no
//! query, a made-up one, a real link's query, and even a signature we compute with the gateway's own key
//! for exactly the decoded path — never a 200, never the bytes of a file. And attachment file names that
//! try to be paths, carry NUL and control characters or a right-to-left override: the files on disk are
//! named by index, and Content-Disposition carries none of it.

use crate::common::*;
use crate::support::*;

const MARKER: &str = "traversal-marker-5b1e";

#[test]
fn traversal_attempts_never_reach_a_file() {
    let h = setup(|_| {}, &[], &[]);
    let gw = h.start();
    let body = multipart(
        MARKER,
        &[attachment_part("application/octet-stream", "attachment; filename=\"x.bin\"", MARKER.as_bytes())],
    );
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    let (_, ev) = h.event_for(&id);
    let (_, rexp, rsig) = parts(ev["message"]["raw"]["url"].as_str().unwrap());
    let key = url_key(&h);
    if h.database.is_some() {
        // PostgreSQL keeps nothing in data_dir worth reaching: a decoy where SQLite's file would be.
        let decoy = [&b"SQLite format 3\0"[..], &Rng::new(3).noise(4096)].concat();
        std::fs::write(h.data_dir().join("mxhook.db"), decoy).unwrap();
    }
    let db = std::fs::read(h.data_dir().join("mxhook.db")).unwrap();
    assert!(db.starts_with(b"SQLite format 3"), "the store is not where the test expects it");

    let paths: Vec<String> = vec![
        "/att/../../etc/passwd".into(),
        "/att/msg_x/../../../etc/passwd".into(),
        "/att/msg_x/0/../../../../etc/passwd".into(),
        "/att/%2e%2e/%2e%2e/etc/passwd".into(),
        "/att/%2e%2e%2f%2e%2e%2fetc%2fpasswd/0".into(),
        "/att/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd/0".into(),
        "/att/msg_x/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd".into(),
        "/att/%2e%2e%2F%2e%2e%2F%2e%2e%2F%2e%2e%2F%2e%2e%2F%2e%2e%2Fetc%2Fpasswd/0".into(),
        format!("/att/{id}/..%2f..%2fmxhook.db"),
        format!("/att/{id}/0%2f..%2f..%2f..%2fmxhook.db"),
        format!("/att/..%2fattachments%2f{id}/0"),
        format!("/att/..%2f..%2fspool%2f{id}.eml/0"),
        "/raw/..%2fmxhook.db".into(),
        "/raw/%2e%2e%2fmxhook.db".into(),
        "/raw/%2E%2E%2Fmxhook.db".into(),
        "/raw/..%252fmxhook.db".into(),
        "/raw/..%5cmxhook.db".into(),
        "/raw/..%2furl.key".into(),
        "/raw/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd".into(),
        format!("/raw/..%2fspool%2f{id}"),
        format!("/raw/{id}%2f..%2f..%2fmxhook.db"),
        format!("/raw/{id}%00"),
        "/raw/../mxhook.db".into(),
        "/raw/../../etc/passwd".into(),
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd".into(),
        "/../../../../etc/passwd".into(),
        "/mxhook.db".into(),
        "/url.key".into(),
        format!("/spool/{id}.eml"),
    ];
    let fake = format!("exp=9999999999&sig={}", "A".repeat(43));
    let exp = now_secs() + 3600;
    let mut problems = Vec::new();
    let mut answered = 0;
    for path in &paths {
        // What the gateway signs is the route's path with each segment percent-decoded once.
        let own = format!("exp={exp}&sig={}", sign(&key, &pct_decode(path), exp));
        for (what, query) in [
            ("no query", String::new()),
            ("made-up query", fake.clone()),
            ("the raw link's query", format!("exp={rexp}&sig={rsig}")),
            ("signed with the gateway's key", own),
        ] {
            let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            for method in ["GET", "HEAD"] {
                let r = raw_request(gw.http, method, &target, &[]);
                answered += 1;
                let leaked = [&b"root:"[..], b"SQLite format", MARKER.as_bytes(), &key[..16], &db[..64]]
                    .iter()
                    .any(|needle| find(&r.body, needle).is_some());
                if !(r.status == 403 || r.status == 404) || leaked || r.body.len() > 200 {
                    problems.push(format!(
                        "{method} {target} ({what}): {} with {} body bytes{}: {:?}",
                        r.status,
                        r.body.len(),
                        if leaked { " CONTAINING FILE CONTENTS" } else { "" },
                        String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {answered} traversal requests not refused:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The real link still works: the refusals above are not a dead server.
    let agent = agent();
    assert_eq!(status_of(&agent, &local(&gw, ev["message"]["attachments"][0]["url"].as_str().unwrap())), 200);
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Hostile names for an attachment: (how it is written in the MIME header, description).
fn hostile_parts() -> Vec<(String, String)> {
    let rtl_word = b64("report\u{202e}fdp.scr".as_bytes());
    let names = [
        "attachment; filename=\"../../../../etc/passwd\"".to_string(),
        "attachment; filename*=UTF-8''..%2F..%2Fevil%00nul.txt".to_string(),
        "attachment; filename*=UTF-8''ctl%01%1B%7F%0D%0AX-Injected%3A%20yes.txt".to_string(),
        "attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe".to_string(),
        format!("attachment; filename=\"=?UTF-8?B?{rtl_word}?=\""),
        "attachment; filename=\"..\\..\\windows\\system32\\x.dll\"".to_string(),
        "attachment; filename=\"/etc/shadow\"".to_string(),
        "attachment; filename*=UTF-8''..%5C..%5Cwindows%5Csystem.ini".to_string(),
        "attachment; filename=\"..\"".to_string(),
        "attachment; filename*=UTF-8''%E2%80%8F%E2%81%A6..%2F%09tab%0Bvt%C2%85nel.txt".to_string(),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, d)| attachment_part("application/octet-stream", d, format!("file {i}\n").as_bytes()))
        .collect()
}

#[test]
fn hostile_attachment_names_neither_name_files_nor_reach_headers() {
    let h = setup(|_| {}, &[], &[]);
    let gw = h.start();
    // A small message's bytes stay in the database: no file can be named after anything.
    let mut c = SmtpClient::ready(gw.smtp);
    let small = c.send_mail("ada@sender.test", &["inbox@example.test"], &multipart("small", &hostile_parts()));
    h.event_for(&small);
    let on_disk = files_under(&h.data_dir());
    assert!(
        !on_disk.iter().any(|f| f.starts_with("spool/") || f.starts_with("attachments/")),
        "a small message wrote files: {on_disk:?}"
    );
    // One over the 1 MiB kept in the database is stored as files: their names must be ours.
    let mut parts = hostile_parts();
    let filler = vec![b'x'; 1_200_000];
    parts.push(attachment_part("application/octet-stream", "attachment; filename=\"../../big.bin\"", &filler));
    let body = multipart("hostile names", &parts);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    let (_, ev) = h.event_for(&id);
    let atts = ev["message"]["attachments"].as_array().expect("attachments").clone();
    assert_eq!(atts.len(), parts.len(), "attachments in the event: {}", ev["message"]["attachments"]);
    let names: Vec<String> = atts.iter().map(|a| a["filename"].as_str().unwrap_or("").to_string()).collect();
    eprintln!("hostile attachment names as the event gives them: {names:?}");
    // The hostile names really reached the gateway (else this test would prove nothing).
    assert!(names.iter().any(|n| n.contains("../")), "no name with ../ in the event: {names:?}");
    assert!(names.iter().any(|n| n.contains('\\')), "no name with a backslash in the event: {names:?}");
    assert!(names.iter().any(|n| n.contains('\u{202e}')), "no name with U+202E in the event: {names:?}");
    assert!(names.iter().any(|n| n.chars().any(char::is_control)), "no name with a control character: {names:?}");

    // On disk: files named by our ids and indexes only.
    let n = atts.len();
    let mut expected: Vec<String> = (0..n).map(|i| format!("attachments/{id}/{i}")).collect();
    expected.push(format!("spool/{id}.eml"));
    if h.database.is_some() {
        // PostgreSQL: every byte is in the database, no file is named at all.
        expected.clear();
    }
    let allowed =
        ["mxhook.db", "mxhook.db-wal", "mxhook.db-shm", "mxhook.db-journal", "url.key", "serve.lock", "gateway.run"];
    let on_disk = files_under(&h.data_dir());
    let strays: Vec<&String> =
        on_disk.iter().filter(|f| !expected.contains(f) && !allowed.contains(&f.as_str())).collect();
    assert!(strays.is_empty(), "unexpected files in data_dir: {strays:?} (all: {on_disk:?})");
    for e in &expected {
        assert!(on_disk.contains(e), "{e} missing from data_dir: {on_disk:?}");
    }
    let outside = files_under(h.dir.path());
    let outside: Vec<&String> = outside.iter().filter(|f| !f.starts_with("data/") && *f != "gateway.toml").collect();
    assert!(outside.is_empty(), "files outside data_dir in the test dir: {outside:?}");

    let mut problems = Vec::new();
    for (i, a) in atts.iter().enumerate() {
        let url = local(&gw, a["url"].as_str().unwrap());
        let target = url.strip_prefix(&format!("http://{}", gw.http)).unwrap().to_string();
        for method in ["GET", "HEAD"] {
            let r = raw_request(gw.http, method, &target, &[]);
            let what = format!("{method} attachment {i} (name {:?})", names[i]);
            if r.status != 200 {
                problems.push(format!("{what}: {}", r.status));
                continue;
            }
            let want = if i < n - 1 { format!("file {i}\n").into_bytes() } else { filler.clone() };
            if method == "GET" && r.body != want {
                problems.push(format!("{what}: body of {} bytes, want {}", r.body.len(), want.len()));
            }
            let Some(cd) = r.header("content-disposition") else {
                problems.push(format!("{what}: no Content-Disposition"));
                continue;
            };
            let cd_text = String::from_utf8_lossy(cd).into_owned();
            if method == "GET" {
                eprintln!("attachment {i}: Content-Disposition: {cd_text}");
            }
            if !cd_text.starts_with("attachment;") || cd_text.contains("inline") {
                problems.push(format!("{what}: Content-Disposition {cd_text:?} is not an attachment"));
            }
            if let Some(b) = cd.iter().find(|&&b| b < 0x20 || b == 0x7f || b >= 0x80) {
                problems.push(format!("{what}: Content-Disposition has byte {b:#04x}: {cd_text:?}"));
            }
            if cd_text.contains('/') || cd_text.contains('\\') {
                problems.push(format!("{what}: Content-Disposition has a path separator: {cd_text:?}"));
            }
            let star = cd_text.split("filename*=UTF-8''").nth(1).map(|v| pct_decode(v.split(';').next().unwrap()));
            match star {
                None => problems.push(format!("{what}: no filename*=UTF-8'' in {cd_text:?}")),
                Some(name) => {
                    if name.contains(['/', '\\']) || name.chars().any(|c| c.is_control() || is_bidi(c)) {
                        problems.push(format!("{what}: filename* decodes to {name:?}"));
                    }
                    if name.is_empty() || name == "." || name == ".." {
                        problems.push(format!("{what}: filename* decodes to {name:?}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
