//! A resolver that fails must cost at most the message's DNS budget and yield `temperror`, never a
//! hang, a crash or a lost message: a silent server, a closed port, one slow name among good ones.

use std::time::{Duration, Instant};

use mxhook::auth::Authenticator;
use mxhook::config::{AuthSettings, DmarcReject, SpfMode};

use crate::fixture::envelope;
use crate::helpers::mail::message;
use crate::helpers::{Algo, DnsServer, Signer};

fn authenticator(dns: std::net::SocketAddr, timeout: Duration) -> Authenticator {
    let settings = AuthSettings {
        dns: vec![dns],
        timeout,
        dmarc_reject: DmarcReject::Accept,
        spf: SpfMode::Relaxed,
        trusted_authserv_ids: Vec::new(),
    };
    Authenticator::new(&settings, "mx.auth.test").unwrap()
}

#[tokio::test]
async fn a_silent_resolver_costs_one_budget_then_nothing_until_it_answers_again() {
    let dns = DnsServer::start();
    dns.go_silent();
    let auth = authenticator(dns.addr, Duration::from_millis(300));
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    let raw = ed.sign(&message("a@example.org", "s"));
    let env = envelope("mail.example.org", "a@example.org");
    let started = Instant::now();
    let a = auth.verify(&env, None, &raw).await.expect("a dead resolver never refuses mail");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(a.spf.unwrap().result, "temperror");
    assert_eq!(a.spf_helo.unwrap().result, "temperror");
    assert_eq!((a.dkim[0].result.as_str(), a.dkim[0].selector.as_deref()), ("temperror", Some("ed")));
    assert_eq!(a.dmarc.result, "temperror");
    eprintln!("silent resolver, 300 ms budget: first message's verdicts after {took:?}");

    // The probe the first message started finds the resolver dead: later messages do not wait.
    wait_until(Duration::from_secs(5), "the resolver to be marked down", || auth.dns_is_down()).await;
    let started = Instant::now();
    let a = auth.verify(&env, None, &raw).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "took {took:?} while DNS is known to be down");
    assert_eq!(a.dmarc.result, "temperror");
    eprintln!("silent resolver, known down: verdicts after {took:?}");

    // It answers again: a probe (at most every 5 s, started by a message) notices.
    dns.go_live();
    dns.txt("example.org", "v=spf1 ip4:192.0.2.10 -all");
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.dns_is_down() {
        assert!(Instant::now() < deadline, "the resolver's recovery went unnoticed");
        auth.verify(&env, None, &raw).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // pacing the messages, not synchronisation
    }
    assert_eq!(auth.verify(&env, None, &raw).await.unwrap().spf.unwrap().result, "pass");
}

#[tokio::test]
async fn a_closed_port_costs_one_budget_then_nothing() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let auth = authenticator(closed, Duration::from_millis(500));
    let env = envelope("mail.example.org", "a@example.org");
    let started = Instant::now();
    let a = auth.verify(&env, None, &message("a@example.org", "c")).await.unwrap();
    let took = started.elapsed();
    // UDP to a closed port fails only by timeout: hickory does not see the ICMP error.
    assert!(took >= Duration::from_millis(450), "took {took:?}");
    assert_eq!(a.spf.unwrap().result, "temperror");
    assert_eq!(a.dmarc.result, "temperror");
    wait_until(Duration::from_secs(5), "the resolver to be marked down", || auth.dns_is_down()).await;
    let started = Instant::now();
    auth.verify(&env, None, &message("a@example.org", "d")).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
}

/// Polls `cond` (yielding to the runtime, where the probe runs) until it holds or `timeout` passes.
async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_slow_name_does_not_spoil_the_others() {
    let dns = DnsServer::start();
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    dns.txt("example.org", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=none")
        .txt(&ed.record_name(), &ed.record())
        .silent_for("slow.example.net");
    let auth = authenticator(dns.addr, Duration::from_millis(400));
    let a = auth
        .verify(&envelope("slow.example.net", "a@example.org"), None, &ed.sign(&message("a@example.org", "p")))
        .await
        .unwrap();
    assert_eq!(a.spf_helo.unwrap().result, "temperror");
    assert_eq!(a.spf.unwrap().result, "pass");
    assert_eq!(a.dkim[0].result, "pass");
    assert_eq!(a.dmarc.result, "pass");
}
