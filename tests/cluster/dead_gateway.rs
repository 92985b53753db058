//! The second must-show: a gateway killed for good while its attempts are in flight (the
//! endpoint is slow: the receiver holds each request). Its leases are in the database; once they
//! expire the other gateways send the same events (same event ids), never before. The signed links
//! in its events are served by the others (the link key is the cluster's, in the database), and
//! `mxhook messages list` on any member's config, the dead one's too, shows every message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// Messages sent to the gateway that dies.
const MESSAGES: usize = 5;
const ATTACHMENT: &[u8] = b"%PDF-1.4 an invoice that outlives its gateway\r\n";

fn with_attachment(n: usize) -> Vec<u8> {
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ATTACHMENT);
    format!(
        "From: <billing@sender.test>\r\nTo: <inbox@example.test>\r\nSubject: invoice {n}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n\
         --b\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; \
         filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
    )
    .into_bytes()
}

/// `url` (under the config's public_url) on another member's HTTP address.
fn on(gw: &Gateway, url: &str) -> String {
    let path = url.strip_prefix("http://127.0.0.1:8025").unwrap_or_else(|| panic!("not under public_url: {url}"));
    format!("http://{}{path}", gw.http)
}

#[test]
fn a_gateway_killed_for_good_has_its_deliveries_sent_and_links_served_by_the_others() {
    let _turn = turn();
    let mut c = Cluster::start(postgres::shared(), "3s", |cfg| {
        // Slower than the test: the attempts stay in flight until the gateway dies.
        cfg.endpoint("app").timeout = "120s".into();
        cfg.endpoint("app").concurrency = Some(MESSAGES as u32);
    });
    c.h.rx.set_delay(Duration::from_secs(120));
    let mut raws = BTreeMap::new();
    let mut client = SmtpClient::ready(c.gateway(0).smtp);
    for n in 0..MESSAGES {
        let raw = with_attachment(n);
        let id = client.send_mail("billing@sender.test", &["inbox@example.test"], &raw);
        raws.insert(id, as_sent(&raw));
    }
    let _ = client.cmd("QUIT");
    let first = c.h.wait_requests(MESSAGES, SHORT);

    // Every attempt in flight on member 0, each under its lease in the database, none elsewhere.
    let leases = c.rows("SELECT message_id, status, lease_owner, lease_until FROM deliveries ORDER BY message_id");
    let (now, then) = (now_ms(), Instant::now());
    assert_eq!(leases.len(), MESSAGES, "{leases:?}");
    let owner = &leases[0][2];
    assert!(owner.starts_with("gw_"), "a lease owner: {leases:?}");
    for l in &leases {
        assert_eq!((l[1].as_str(), &l[2]), ("pending", owner), "one gateway holds every delivery: {leases:?}");
        assert!(l[3].parse::<i64>().unwrap() > now, "an unexpired lease: {leases:?}");
    }
    let lease_end: BTreeMap<&str, i64> = leases.iter().map(|l| (l[0].as_str(), l[3].parse::<i64>().unwrap())).collect();

    c.kill(0);
    c.h.rx.set_delay(Duration::ZERO);

    // The others send each event again, same event id, once the lease ended.
    let first_ids: BTreeMap<String, String> = first
        .iter()
        .map(|r| (r.json()["message"]["id"].as_str().unwrap().to_string(), r.webhook_id().to_string()))
        .collect();
    assert_eq!(first_ids.keys().collect::<Vec<_>>(), raws.keys().collect::<Vec<_>>());
    c.h.wait_until(Duration::from_secs(30), "the other gateways to send the dead one's deliveries", || {
        c.h.rx.count() >= 2 * MESSAGES
    });
    c.h.wait_until(SHORT, "every delivery to succeed", || c.delivery_statuses().keys().all(|s| s == "succeeded"));
    let again = c.h.rx.requests()[MESSAGES..].to_vec();
    for msg in raws.keys() {
        assert!(again.iter().any(|r| r.json()["message"]["id"] == msg.as_str()), "{msg} sent by another gateway");
    }
    for r in &again {
        r.assert_signed(SECRET_A);
        let msg = r.json()["message"]["id"].as_str().unwrap().to_string();
        assert_eq!(r.webhook_id(), first_ids[&msg], "{msg} sent again with its event id");
        // The receiver's clock is the gateways' (one machine): the takeover came after the lease.
        let at_ms = now + r.at.duration_since(then).as_millis() as i64;
        let end = lease_end[msg.as_str()];
        assert!(at_ms + 50 >= end, "{msg} taken over {} ms before its lease ended", end - at_ms);
    }

    // The dead gateway's links work on the others.
    let agent = agent();
    for r in &first {
        let event: Value = r.json();
        let msg = event["message"]["id"].as_str().unwrap();
        let att =
            event["message"]["attachments"][0]["url"].as_str().unwrap_or_else(|| panic!("an attachment link: {event}"));
        let raw = event["message"]["raw"]["url"].as_str().unwrap_or_else(|| panic!("a raw link: {event}"));
        for n in [1, 2] {
            let got = get(&agent, &on(c.gateway(n), att), &[]);
            assert_eq!((got.status, got.body.as_slice()), (200, ATTACHMENT), "{msg}'s attachment on gateway {n}");
            let got = get(&agent, &on(c.gateway(n), raw), &[]);
            assert_eq!(got.status, 200, "{msg}'s raw link on gateway {n}");
            assert_eq!(got.body, raws[msg], "{msg}'s raw bytes on gateway {n}");
        }
    }

    // `messages list` on each member's config (the dead one's too: the CLI reads the database).
    for (n, config) in c.configs.iter().enumerate() {
        let out = c.h.cli_member(config, &["messages", "list", "--json"]);
        out.assert_ok(&c.h.logs());
        let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let mut ids: Vec<&str> = as_array_ref(&listed).iter().map(|m| m["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, raws.keys().map(String::as_str).collect::<Vec<_>>(), "messages list on gateway {n}'s config");
    }
}

fn as_array_ref(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
}
