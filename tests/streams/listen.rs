//! `mxhook listen --stream … --forward-to … --secret …`: stream events POSTed to a local URL, signed
//! with the local secret the way the gateway signs webhooks (the harness's receiver verifies them
//! with the stock Standard Webhooks library and validates them against the schema).

use std::process::Stdio;

use crate::common::*;
use crate::support::*;

#[test]
fn listen_stream_forwards_each_event_signed_with_the_local_secret() {
    let h = harness();
    let gw = h.start();
    // The receiver checks requests to /hooks/local against SECRET_B (the harness knows that path
    // from the config; no route sends there).
    let mut cfg = Config::basic(&h.rx);
    cfg.add_endpoint(&h.rx, "local", SECRET_B);
    // Keep the running gateway's config: only the harness's list of secrets matters here.
    let running = std::fs::read_to_string(&h.config_path).unwrap();
    h.write_config(&cfg);
    std::fs::write(&h.config_path, running).unwrap();

    let mut listen = std::process::Command::new(BIN)
        .args(["listen", "--stream", &stream_url(&gw), "--token", TOKEN, "--consumer", "laptop"])
        .args(["--forward-to", &h.rx.url("/hooks/local"), "--secret", SECRET_B])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ids = send_many(&gw, "dev", 3);
    h.wait_until(SHORT, "3 forwarded events", || {
        ids.iter().all(|id| h.rx.requests_for_message(id).iter().any(|r| r.path == "/hooks/local"))
    });
    for id in &ids {
        let local = h.rx.requests_for_message(id).into_iter().find(|r| r.path == "/hooks/local").unwrap();
        let event = local.json();
        assert_eq!(event["stream"]["name"], STREAM);
        assert_eq!(Some(local.header("webhook-id")), event["id"].as_str(), "the stream event's own id");
    }
    listen.kill().unwrap();
    listen.wait().unwrap();
}
