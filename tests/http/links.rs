//! The link signature: any change to a link's message id, index, `exp` or `sig` → 403 (and every
//! single-bit change of a sig character that stays in the base64url alphabet); a link we sign ourselves
//! with the key in data_dir for something that does not exist → 404; a link past its `exp` → 410.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A message with two attachments; returns (gateway, message id, att0 link, att1 link, raw link).
fn two_attachments(h: &Harness) -> (Gateway, String, String, String, String) {
    let gw = h.start();
    let body = multipart(
        "links",
        &[
            attachment_part("application/pdf", "attachment; filename=\"a.pdf\"", &Rng::new(1).noise(3000)),
            attachment_part("text/csv", "attachment; filename=\"b.csv\"", b"x,y\r\n1,2\r\n"),
        ],
    );
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    let (_, ev) = h.event_for(&id);
    let m = &ev["message"];
    let link = |v: &serde_json::Value| v.as_str().unwrap_or_else(|| panic!("no link in {m}")).to_string();
    let (a0, a1, raw) = (link(&m["attachments"][0]["url"]), link(&m["attachments"][1]["url"]), link(&m["raw"]["url"]));
    (gw, id, a0, a1, raw)
}

/// One character of `s` at `i` replaced.
fn with_char(s: &str, i: usize, c: char) -> String {
    let mut v: Vec<char> = s.chars().collect();
    v[i] = c;
    v.into_iter().collect()
}

#[test]
fn any_change_to_a_link_is_refused_with_403() {
    let h = setup(|_| {}, &[], &[]);
    let (gw, id, a0, a1, raw) = two_attachments(&h);
    let agent = agent();
    let base = format!("http://{}", gw.http);
    let (p0, exp, sig) = parts(&a0);
    let (_, _, sig1) = parts(&a1);
    let (praw, _, sigraw) = parts(&raw);
    let exp_n: i64 = exp.parse().unwrap();

    // The untouched links work (so a 403 below is the tampering, not a broken gateway).
    for l in [&a0, &a1, &raw] {
        assert_eq!(status_of(&agent, &local(&gw, l)), 200, "untouched link {l}");
    }

    let last = id.chars().last().unwrap();
    let other_id = with_char(&id, id.len() - 1, if last == '0' { '1' } else { '0' });
    let flipped_sig = with_char(&sig, 5, if sig.as_bytes()[5] == b'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        ("another message id", format!("/att/{other_id}/0?exp={exp}&sig={sig}")),
        ("message id upper-cased", format!("/att/{}/0?exp={exp}&sig={sig}", id.to_uppercase())),
        ("index 0 -> 1 (which exists)", format!("/att/{id}/1?exp={exp}&sig={sig}")),
        ("index 0 -> 00", format!("/att/{id}/00?exp={exp}&sig={sig}")),
        ("attachment 1's sig on attachment 0", format!("{p0}?exp={exp}&sig={sig1}")),
        ("attachment sig on the raw path", format!("{praw}?exp={exp}&sig={sig}")),
        ("raw sig on attachment 0", format!("{p0}?exp={exp}&sig={sigraw}")),
        ("exp + 1", format!("{p0}?exp={}&sig={sig}", exp_n + 1)),
        ("exp - 1", format!("{p0}?exp={}&sig={sig}", exp_n - 1)),
        ("exp far in the future", format!("{p0}?exp=99999999999&sig={sig}")),
        ("exp with a leading zero", format!("{p0}?exp=0{exp}&sig={sig}")),
        ("exp with a plus sign", format!("{p0}?exp=%2B{exp}&sig={sig}")),
        ("exp not a number", format!("{p0}?exp=never&sig={sig}")),
        ("sig dropped", format!("{p0}?exp={exp}")),
        ("exp dropped", format!("{p0}?sig={sig}")),
        ("both dropped", p0.clone()),
        ("empty sig", format!("{p0}?exp={exp}&sig=")),
        ("one sig character changed", format!("{p0}?exp={exp}&sig={flipped_sig}")),
        ("sig truncated", format!("{p0}?exp={exp}&sig={}", &sig[..sig.len() - 1])),
        ("sig extended", format!("{p0}?exp={exp}&sig={sig}A")),
        ("sig padded with =", format!("{p0}?exp={exp}&sig={sig}%3D")),
        ("sig of a different key", format!("{p0}?exp={exp}&sig={}", sign(&[0u8; 32], &p0, exp_n))),
    ];
    let mut cases = cases;
    if sig.contains(['-', '_']) {
        let standard = sig.replace('-', "%2B").replace('_', "%2F");
        cases.push(("sig in standard base64", format!("{p0}?exp={exp}&sig={standard}")));
    }
    let mut problems = Vec::new();
    for (what, target) in &cases {
        let s = status_of(&agent, &format!("{base}{target}"));
        if s != 403 {
            problems.push(format!("{what}: {target} answered {s}, want 403"));
        }
    }

    // Every single-bit flip of every sig character that is still a base64url character.
    let mut flips = 0;
    for (i, &c) in sig.as_bytes().iter().enumerate() {
        for bit in 0..8 {
            let f = c ^ (1 << bit);
            if !B64URL.contains(&f) {
                continue;
            }
            flips += 1;
            let target = format!("{p0}?exp={exp}&sig={}", with_char(&sig, i, f as char));
            let s = status_of(&agent, &format!("{base}{target}"));
            if s != 403 {
                problems.push(format!("bit {bit} of sig character {i} ({} -> {}): answered {s}", c as char, f as char));
            }
        }
    }
    assert!(flips > 100, "only {flips} bit flips tried");
    assert!(problems.is_empty(), "{} tampered link(s) not refused with 403:\n{}", problems.len(), problems.join("\n"));

    // And the real links still work afterwards.
    assert_eq!(status_of(&agent, &local(&gw, &a0)), 200);
}

/// With the key from data_dir, the link format is exactly as documented: a link we sign ourselves works,
/// and one for a message or an index that does not exist is 404, not 403 and not 500.
#[test]
fn links_signed_with_the_data_dir_key_follow_the_documented_format() {
    let h = setup(|_| {}, &[], &[]);
    let (gw, id, a0, _a1, _raw) = two_attachments(&h);
    if h.database.is_none() {
        let key_path = h.data_dir().join("url.key");
        let meta = std::fs::metadata(&key_path).expect("data_dir/url.key exists after the first start");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "url.key mode");
    }
    let key = url_key(&h);
    assert!(key.len() >= 32, "url.key is {} bytes", key.len());

    let (p0, exp, sig) = parts(&a0);
    assert_eq!(
        sign(&key, &p0, exp.parse().unwrap()),
        sig,
        "sig = base64url(HMAC-SHA256(key, \"{{path}}?exp={{exp}}\"))"
    );

    let agent = agent();
    let base = format!("http://{}", gw.http);
    let exp = now_secs() + 3600;
    let signed = |path: &str| format!("{base}{path}?exp={exp}&sig={}", sign(&key, path, exp));
    assert_eq!(status_of(&agent, &signed(&format!("/att/{id}/1"))), 200, "our own signature on attachment 1");
    let mut problems = Vec::new();
    for path in [
        format!("/att/{id}/2"),
        format!("/att/{id}/99999999999"),
        "/att/msg_00000000000000000000000000/0".to_string(),
        "/raw/msg_00000000000000000000000000".to_string(),
        "/raw/msg_".to_string(),
        "/raw/evt_00000000000000000000000000".to_string(),
    ] {
        let s = status_of(&agent, &signed(&path));
        if s != 404 {
            problems.push(format!("{path} (validly signed, does not exist): {s}, want 404"));
        }
    }
    // Unsigned, an unknown message is 403: the gateway tells a forger nothing about what exists.
    let s = status_of(&agent, &format!("{base}/raw/msg_00000000000000000000000000?exp={exp}&sig={sig}"));
    if s != 403 {
        problems.push(format!("unknown message with a wrong sig: {s}, want 403"));
    }
    // Signed by us but expired: 410.
    let past = now_secs() - 10;
    let expired = format!("{base}/raw/{id}?exp={past}&sig={}", sign(&key, &format!("/raw/{id}"), past));
    let s = status_of(&agent, &expired);
    if s != 410 {
        problems.push(format!("validly signed raw link with exp in the past: {s}, want 410"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_link_expires_after_link_ttl_with_410() {
    let h = setup(|_| {}, &["link_ttl = \"1s\""], &[]);
    let (gw, _id, a0, _a1, raw) = two_attachments(&h);
    let agent = agent();
    let (p0, exp, sig) = parts(&a0);
    let exp_n: i64 = exp.parse().unwrap();
    let now = now_secs();
    assert!(exp_n <= now + 1 && exp_n >= now - 2, "link_ttl 1s, but exp {exp_n} is {}s from now", exp_n - now);

    // Valid until the second `exp` has passed (exp is received_at + 1 s, rounded down: at least 1 s of life).
    let (u0, uraw) = (local(&gw, &a0), local(&gw, &raw));
    assert_eq!(status_of(&agent, &u0), 200, "attachment link within its 1 s lifetime");
    assert_eq!(status_of(&agent, &uraw), 200, "raw link within its 1 s lifetime");

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = 200;
    while Instant::now() < deadline {
        last = status_of(&agent, &u0);
        if last != 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last, 410, "the attachment link did not answer 410 within 5 s of its exp ({exp_n}); now {}", now_secs());
    assert!(now_secs() > exp_n, "410 before exp {exp_n} had passed (now {})", now_secs());
    assert_eq!(status_of(&agent, &uraw), 410, "raw link after its exp");
    let head = raw_request(gw.http, "HEAD", u0.strip_prefix(&format!("http://{}", gw.http)).unwrap(), &[]);
    assert_eq!(head.status, 410, "HEAD of an expired link");
    // Expired and tampered: the signature is checked first.
    let base = format!("http://{}", gw.http);
    assert_eq!(status_of(&agent, &format!("{base}{p0}?exp={}&sig={sig}", exp_n + 3600)), 403, "expired, exp moved");
}
