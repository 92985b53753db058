//! What the deploy tests add to the common harness: a harness with `[smtp.tls]` from a fresh
//! certificate, the loopback addresses of "this client" and "another client", the rejection counters of
//! /metrics, and Standard Webhooks signing with ring.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use crate::common::starttls::*;
use crate::common::*;

pub fn other_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

pub fn local_ip() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------------
// /metrics

/// `mxhook_messages_rejected_total{reason="…"}`, 0 when absent.
pub fn rejected(gw: &Gateway, reason: &str) -> f64 {
    scrape(gw).get(&format!("mxhook_messages_rejected_total{{reason=\"{reason}\"}}")).copied().unwrap_or(0.0)
}

/// Every `messages_rejected_total` series that is not zero, for exact assertions.
pub fn rejections(gw: &Gateway) -> BTreeMap<String, f64> {
    scrape(gw)
        .into_iter()
        .filter(|(k, v)| k.starts_with("mxhook_messages_rejected_total{") && *v != 0.0)
        .map(|(k, v)| {
            let reason = k.split('"').nth(1).unwrap_or(&k).to_string();
            (reason, v)
        })
        .collect()
}

/// Waits until `rejected_total{reason}` reaches `n`, then requires it to be exactly `n`.
#[track_caller]
pub fn expect_rejected(h: &Harness, gw: &Gateway, reason: &str, n: f64) {
    let mut last = 0.0;
    wait_for(
        WAIT,
        &format!("mxhook_messages_rejected_total{{reason=\"{reason}\"}} to reach {n}"),
        || format!("/metrics rejections: {:?}\n{}", rejections(gw), h.logs()),
        || {
            last = rejected(gw, reason);
            last >= n
        },
    );
    assert_eq!(last, n, "mxhook_messages_rejected_total{{reason=\"{reason}\"}}");
}

// ---------------------------------------------------------------------------------------------------
// Standard Webhooks signing (the scheme `mxhook listen` verifies)

/// `v1,` + base64 HMAC-SHA256 of `{id}.{ts}.{body}` under the decoded secret.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ secret")).expect("secret is base64");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &msg).as_ref()))
}

// ---------------------------------------------------------------------------------------------------
// Harnesses

/// `Config::basic` adjusted by `tweak`, with `[smtp.tls]` from a fresh certificate `CN=cn`
/// (files `live.crt`/`live.key` in the harness dir).
pub fn tls_harness(cn: &str, require: bool, tweak: impl FnOnce(&mut Config)) -> (Harness, Cert) {
    let h = Harness::new();
    let cert = make_cert(h.dir.path(), "live", cn, &[cn], 30);
    let mut cfg = Config::basic(&h.rx);
    tweak(&mut cfg);
    cfg.tls_cert(&cert, require);
    h.write_config(&cfg);
    (h, cert)
}
