//! Through the real binary: `mxhook serve` with `[auth] dns = ["127.0.0.1:PORT"]` against the test's
//! own DNS server, mail over SMTP, the verdicts read from the webhook event, refusals from SMTP codes.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Session, SmtpClient};
use crate::helpers::mail::message;
use crate::helpers::{Algo, DnsServer, Signer, auth_of, harness, with_dns};

/// The sender's world as DNS publishes it: example.org sends from 127.0.0.1 and signs with `keys`.
fn publish_example_org(dns: &DnsServer, keys: &[&Signer]) {
    dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("mail.example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:dmarc@example.org");
    for k in keys {
        dns.txt(&k.record_name(), &k.record());
    }
}

#[test]
fn signed_mail_is_verified_end_to_end_and_a_repeat_sender_costs_no_lookups() {
    let dns = DnsServer::start();
    let (ed, rsa) = (Signer::new(Algo::Ed25519, "example.org", "ed"), Signer::new(Algo::Rsa, "example.org", "rsa"));
    publish_example_org(&dns, &[&ed, &rsa]);
    let h = with_dns(&dns, "");
    let gw = h.start();

    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    let raw = rsa.sign(&ed.sign(&message("ada@example.org", "e2e-1")));
    let id = c.send_mail("bounce@example.org", &["support@mx.auth.test"], &raw);
    let auth = auth_of(&h, &id);
    assert_eq!(auth["spf"], json!({ "result": "pass", "domain": "example.org" }), "{auth:#}\n{}", gw.log());
    assert_eq!(auth["spf_helo"], json!({ "result": "pass", "domain": "mail.example.org" }));
    assert_eq!(
        auth["dkim"],
        json!([
            { "result": "pass", "domain": "example.org", "selector": "rsa" },
            { "result": "pass", "domain": "example.org", "selector": "ed" },
        ])
    );
    assert_eq!(
        auth["dmarc"],
        json!({ "result": "pass", "policy": "reject", "from_domain": "example.org", "spf_aligned": true, "dkim_aligned": true })
    );
    assert_eq!(auth["arc"], json!({ "result": "none" }));
    let header = auth["header"].as_str().unwrap();
    assert!(
        header.starts_with("mx.auth.test; spf=pass (mx.auth.test: domain of bounce@example.org designates 127.0.0.1"),
        "{header}"
    );
    let asked = dns.queries();
    for name in [
        "example.org",
        "mail.example.org",
        "ed._domainkey.example.org",
        "rsa._domainkey.example.org",
        "_dmarc.example.org",
    ] {
        assert!(asked.iter().any(|q| q == name), "{name} was never looked up: {asked:?}");
    }

    // Same sender again, in a new session: every answer (and the NXDOMAIN for _dmarc.org) is cached.
    let before = dns.query_count();
    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    let id =
        c.send_mail("bounce@example.org", &["support@mx.auth.test"], &rsa.sign(&message("ada@example.org", "e2e-2")));
    assert_eq!(auth_of(&h, &id)["dmarc"]["result"], "pass");
    let again = &dns.queries()[before..];
    assert!(again.is_empty(), "a repeat sender was looked up again: {again:?}");
}

#[test]
fn dmarc_reject_answers_550_and_stores_nothing() {
    let dns = DnsServer::start();
    publish_example_org(&dns, &[]);
    dns.txt("other.test", "v=spf1 ip4:127.0.0.1 -all");
    let h = with_dns(&dns, "dmarc_reject = \"reject\"");
    let gw = h.start();

    let mut c = SmtpClient::ready_as(gw.smtp, "other.test");
    c.cmd("MAIL FROM:<bounce@other.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<support@mx.auth.test>").expect(250, "2.1.5");
    let refused = c.data(&message("ceo@example.org", "spoof"));
    refused.expect(550, "5.7.1");

    // The session goes on; a genuine message from example.org is accepted and is the only one kept.
    let good = c.send_mail("bounce@example.org", &["support@mx.auth.test"], &message("ceo@example.org", "genuine"));
    assert_eq!(auth_of(&h, &good)["dmarc"]["result"], "pass");
    let stored: Vec<_> = h.messages().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored, [good], "the refused message must not be stored");
    assert_eq!(h.rx.count(), 1, "the refused message must not be delivered");
}

#[test]
fn a_route_acts_on_the_dmarc_verdict() {
    let dns = DnsServer::start();
    publish_example_org(&dns, &[]);
    dns.txt("other.test", "v=spf1 ip4:127.0.0.1 -all");
    let routes = "\n[[routes]]\nmatch = \"*@mx.auth.test\"\nendpoints = [\"app\"]\non_dmarc_fail = \"store\"\n";
    let h = harness(Some(&format!("dns = [\"{}\"]\ntimeout = \"2s\"", dns.addr)), routes);
    let gw = h.start();

    let mut c = SmtpClient::ready_as(gw.smtp, "other.test");
    let spoof = c.send_mail("bounce@other.test", &["support@mx.auth.test"], &message("ceo@example.org", "route-spoof"));
    let genuine = c.send_mail("bounce@example.org", &["support@mx.auth.test"], &message("ceo@example.org", "route-ok"));
    assert_eq!(auth_of(&h, &genuine)["dmarc"]["result"], "pass");
    // DMARC fail: kept (on_dmarc_fail = "store"), never sent to the endpoint.
    assert!(h.messages().iter().any(|m| m["id"] == spoof.as_str()), "the DMARC failure is stored");
    assert_eq!(
        h.deliveries(&["--message", &spoof]),
        Vec::<serde_json::Value>::new(),
        "no delivery for the DMARC failure"
    );
    assert_eq!(h.rx.requests_for_message(&spoof).len(), 0);
}

#[test]
fn strict_spf_refuses_at_mail_from() {
    let dns = DnsServer::start();
    publish_example_org(&dns, &[]);
    dns.txt("fail.test", "v=spf1 ip4:192.0.2.1 -all").txt("soft.test", "v=spf1 ~all").servfail("broken.test");
    let h = with_dns(&dns, "spf = \"strict\"");
    let gw = h.start();

    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    c.cmd("MAIL FROM:<a@fail.test>").expect(550, "5.7.1");
    c.cmd("MAIL FROM:<a@broken.test>").expect(451, "4.7.1");
    c.cmd("MAIL FROM:<a@soft.test>").expect(250, "2.1.0");
    c.cmd("RSET").expect(250, "2.0.0");
    let id = c.send_mail("bounce@example.org", &["support@mx.auth.test"], &message("ada@example.org", "strict"));
    let auth = auth_of(&h, &id);
    assert_eq!(auth["spf"], json!({ "result": "pass", "domain": "example.org" }));
    assert_eq!(auth["dmarc"]["result"], "pass");
}

#[test]
fn disabled_auth_is_null_and_looks_nothing_up() {
    let dns = DnsServer::start();
    let h = harness(Some(&format!("enabled = false\ndns = [\"{}\"]", dns.addr)), "");
    let gw = h.start();
    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    let id = c.send_mail("bounce@example.org", &["support@mx.auth.test"], &message("ada@example.org", "off"));
    assert_eq!(auth_of(&h, &id), json!(null));
    assert_eq!(dns.query_count(), 0);
}

#[test]
fn a_dead_resolver_costs_one_budget_and_loses_nothing() {
    let dns = DnsServer::start();
    dns.go_silent();
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    // A 2 s budget, so "held for the budget" and "not held" stay far apart even on a loaded machine.
    let h = harness(Some(&format!("dns = [\"{}\"]\ntimeout = \"2s\"", dns.addr)), "");
    let gw = h.start();
    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    let data_time = |c: &mut crate::common::SmtpClient, tag: &str| {
        c.cmd("MAIL FROM:<bounce@example.org>").expect(250, "2.1.0");
        c.cmd("RCPT TO:<support@mx.auth.test>").expect(250, "2.1.5");
        let started = Instant::now();
        let id = c.data(&ed.sign(&message("ada@example.org", tag))).queued_id();
        (id, started.elapsed())
    };
    let (id, took) = data_time(&mut c, "dead-dns-1");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(8), "DATA answered after {took:?}");
    let auth = auth_of(&h, &id);
    assert_eq!(auth["spf"]["result"], "temperror");
    assert_eq!(auth["spf_helo"]["result"], "temperror");
    assert_eq!(auth["dkim"], json!([{ "result": "temperror", "domain": "example.org", "selector": "ed" }]));
    assert_eq!(auth["dmarc"]["result"], "temperror");
    assert_eq!(auth["dmarc"]["policy"], json!(null));
    assert!(dns.query_count() > 0, "the resolver was never asked");

    // Its probe finds the resolver dead; the next messages are not held at all.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("DNS resolver does not answer") {
        assert!(Instant::now() < deadline, "no probe verdict in the log:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (id, took) = data_time(&mut c, "dead-dns-2");
    assert!(took < Duration::from_millis(1000), "DATA answered after {took:?} with DNS known down (budget 2 s)");
    assert_eq!(auth_of(&h, &id)["dmarc"]["result"], "temperror");
}

/// Spine-style config (no `[auth]` section): auth is on with the system resolver. The message must be
/// accepted and delivered with verdicts whatever that resolver does (on an offline machine: none or
/// temperror), within the default 5 s budget.
#[test]
fn without_an_auth_section_the_system_resolver_is_used_and_mail_flows() {
    let h = harness(None, "");
    let gw = h.start();
    let mut c = SmtpClient::ready_as(gw.smtp, "mail.example.org");
    c.cmd("MAIL FROM:<bounce@example.org>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<support@mx.auth.test>").expect(250, "2.1.5");
    let started = Instant::now();
    let id = c.data(&message("ada@example.org", "system-dns")).queued_id();
    let took = started.elapsed();
    let auth = auth_of(&h, &id);
    assert!(auth["spf"]["result"].is_string() && auth["header"].is_string(), "{auth:#}");
    assert!(took < Duration::from_secs(7), "DATA took {took:?} with the default budget of 5 s");
    eprintln!("system resolver: end of DATA answered in {took:?}; spf={}", auth["spf"]["result"]);
}
