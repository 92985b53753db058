//! What auth costs per message with a warm cache: every record already cached, so this is the CPU
//! side (parsing, body hashes, signature verification, DMARC) plus the cache look-ups.
//! Run: `cargo test --release --test auth -- --ignored --nocapture bench`

use std::time::Instant;

use crate::fixture::{World, envelope};
use crate::helpers::mail::message;
use crate::helpers::{Algo, Signer};

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn bench_warm_cache_cost_per_message() {
    let w = World::relaxed();
    let (ed, rsa) = (Signer::new(Algo::Ed25519, "example.org", "ed"), Signer::new(Algo::Rsa, "example.org", "rsa"));
    w.key(&ed).key(&rsa);
    let env = envelope("mail.example.org", "bounce@example.org");
    let mut body = message("ada@example.org", "bench");
    // A typical 10 KB text message.
    body.extend(
        std::iter::repeat_n(b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".as_slice(), 170).flatten(),
    );
    let cases = [
        ("unsigned (SPF + DMARC only)", body.clone()),
        ("ed25519-signed", ed.sign(&body)),
        ("RSA-2048-signed", rsa.sign(&body)),
        ("ed25519 + RSA-2048", rsa.sign(&ed.sign(&body))),
    ];
    for (name, raw) in &cases {
        let first = w.auth_json(&env, raw).await;
        assert_eq!(first["dmarc"]["result"], "pass", "{name}: {first:#}");
        let n = 2000;
        for _ in 0..200 {
            w.verify(&env, raw).await.unwrap();
        }
        let started = Instant::now();
        for _ in 0..n {
            w.verify(&env, raw).await.unwrap();
        }
        let per = started.elapsed() / n;
        eprintln!("auth, warm cache, {} bytes, {name}: {per:?} per message", raw.len());
    }
}
