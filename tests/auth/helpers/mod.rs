//! What the auth tests add to the common harness: test keys and signing (the DNS server the test controls is
//! `common::dns`), and a gateway for `mx.auth.test` with an `[auth]` section.

pub mod mail;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Harness, strings};

pub use crate::common::dns::DnsServer;
pub use mail::{Algo, Signer};

/// The domain the test gateway accepts mail for, and its SMTP hostname.
pub const DOMAIN: &str = "mx.auth.test";

/// A harness for `DOMAIN`: `auth` is the body of the `[auth]` section (None: no section at all), and
/// `extra` TOML is appended (e.g. `[[routes]]`).
pub fn harness(auth: Option<&str>, extra: &str) -> Harness {
    Harness::with(|cfg| {
        cfg.hostname = DOMAIN.into();
        cfg.domains = vec![(DOMAIN.into(), "app".into())];
        cfg.endpoint("app").retry = strings(&["0s", "200ms"]);
        cfg.auth = auth.map(str::to_string);
        cfg.append(extra);
    })
}

/// An `[auth]` section that resolves through `dns` only, plus `extra` lines.
pub fn with_dns(dns: &DnsServer, extra: &str) -> Harness {
    harness(Some(&format!("dns = [\"{}\"]\ntimeout = \"2s\"\n{extra}", dns.addr)), "")
}

/// Waits for the webhook request carrying message `msg_id` and returns its `message.auth`.
#[track_caller]
pub fn auth_of(h: &Harness, msg_id: &str) -> Value {
    let what = format!("the webhook for {msg_id}");
    h.wait_until(Duration::from_secs(15), &what, || !h.rx.requests_for_message(msg_id).is_empty());
    h.rx.requests_for_message(msg_id)[0].json()["message"]["auth"].clone()
}

/// Reads a file from the shared corpus (../shared/corpus next to the checkout), if present.
pub fn corpus_file(name: &str) -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("tests/corpus").join(name), root.join("../shared/corpus").join(name)]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
}
