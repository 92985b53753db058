//! The load test, as a new user would run it: `gateway.example.toml` as shipped (only its
//! ports, data_dir and endpoint URL changed for the test) and Postfix's `smtp-source` with 20 sessions
//! and 2,000 messages from localhost. Before trusted networks it got `421 4.7.0 Too many connections
//! from your address` at the banner and the 300 messages per minute cap. A count, not a rate.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// gateway.example.toml with test ports, the harness's data_dir and its receiver as endpoint `app`
/// (with the harness's secret, which every request is then verified with).
pub fn example_config(h: &Harness) -> String {
    h.write_config(&Config::basic(&h.rx));
    let example =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml"))
            .expect("gateway.example.toml");
    let data_dir = config::q(&h.data_dir().display().to_string());
    let replaced = example
        .replace("listen = [\"127.0.0.1:2525\"]", "listen = [\"127.0.0.1:0\"]")
        .replace("listen = \"127.0.0.1:8025\"", "listen = \"127.0.0.1:0\"")
        .replace("data_dir = \"./data\"", &format!("data_dir = {data_dir}"))
        .replace("secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"", &format!("secret = {}", config::q(SECRET_A)))
        .replace(
            "url = \"http://127.0.0.1:9000/webhooks/mail\"",
            &format!("url = {}", config::q(&h.rx.url("/hooks/app"))),
        );
    assert_ne!(replaced, example);
    assert!(!replaced.contains(":9000") && !replaced.contains(":2525"), "the example's addresses changed");
    replaced
}

#[test]
fn smtp_source_20_sessions_2000_messages_from_localhost_are_all_accepted() {
    let Some(smtp_source) = crate::tool("smtp-source") else { return };
    let h = Harness::new();
    std::fs::write(&h.config_path, example_config(&h)).unwrap();
    let gw = h.start();
    let out = Command::new("timeout")
        .arg("300")
        .arg(&smtp_source)
        .args(["-s", "20", "-m", "2000", "-f", "load@client.test", "-t", "inbox@example.test"])
        .arg(gw.smtp.to_string())
        .output()
        .expect("run smtp-source");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "smtp-source failed ({}): {said}\n{}", out.status, h.logs());
    assert!(!said.contains("421") && !said.contains("450"), "smtp-source was refused: {said}");
    let db = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).unwrap();
    let stored: i64 = db.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 2000, "every message stored: smtp-source said `{said}`");
    let refused: Vec<_> = scrape(&gw).into_iter().filter(|(k, v)| k.contains("rejected") && *v > 0.0).collect();
    assert!(refused.is_empty(), "refusals counted in /metrics: {refused:?}");
    eprintln!("smtp-source -s 20 -m 2000: {stored} messages stored");
    // The webhooks go out too (at-least-once: ≥ 2000 requests).
    h.wait_until(Duration::from_secs(120), "2000 webhooks", || h.rx.count() >= 2000);
}
