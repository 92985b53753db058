//! The verdict matrix on cache fixtures (no network): DKIM (ed25519 and RSA) pass, body and header
//! altered, key missing; SPF results for HELO and MAIL FROM; DMARC via SPF only, via DKIM only, and
//! failing under each policy; the reject policy; ARC none/pass/fail; the Authentication-Results value.

use mxhook::config::{DmarcReject, SpfMode};
use serde_json::json;

use crate::fixture::{World, envelope};
use crate::helpers::mail::{message, replace};
use crate::helpers::{Algo, Signer};

#[tokio::test]
async fn dkim_ed25519_and_rsa_pass_and_dmarc_passes_on_both_identifiers() {
    let w = World::relaxed();
    let (ed, rsa) = (Signer::new(Algo::Ed25519, "example.org", "ed"), Signer::new(Algo::Rsa, "example.org", "rsa"));
    w.key(&ed).key(&rsa);
    let raw = rsa.sign(&ed.sign(&message("ada@example.org", "1")));
    let auth = w.auth_json(&envelope("mail.example.org", "bounce@example.org"), &raw).await;
    assert_eq!(
        auth["dkim"],
        json!([
            { "result": "pass", "domain": "example.org", "selector": "rsa" },
            { "result": "pass", "domain": "example.org", "selector": "ed" },
        ]),
        "{auth:#}"
    );
    assert_eq!(auth["spf"], json!({ "result": "pass", "domain": "example.org" }));
    assert_eq!(auth["spf_helo"], json!({ "result": "pass", "domain": "mail.example.org" }));
    assert_eq!(
        auth["dmarc"],
        json!({ "result": "pass", "policy": "reject", "from_domain": "example.org", "spf_aligned": true, "dkim_aligned": true })
    );
    assert_eq!(auth["arc"], json!({ "result": "none" }));
    let header = auth["header"].as_str().unwrap();
    assert!(header.starts_with("mx.auth.test; spf=pass"), "{header}");
    for part in ["smtp.helo=mail.example.org", "smtp.mailfrom=", "dkim=pass header.d=example.org header.s=ed"] {
        assert!(header.contains(part), "`{part}` not in {header}");
    }
    for part in ["dkim=pass header.d=example.org header.s=rsa", "arc=none", "dmarc=pass header.from=example.org"] {
        assert!(header.contains(part), "`{part}` not in {header}");
    }
    assert!(!header.contains(['\r', '\n']), "header is unfolded: {header:?}");
}

#[tokio::test]
async fn an_altered_body_is_neutral_and_an_altered_header_fails() {
    let w = World::relaxed();
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    w.key(&ed);
    let signed = ed.sign(&message("ada@example.org", "2"));
    let env = envelope("mail.example.org", "bounce@example.org");

    // A body hash mismatch is RFC 6376's "body hash did not verify": mail-auth (like Gmail) says neutral.
    let body = replace(&signed, "Please ship order 2.", "Please ship order 2000.");
    let auth = w.auth_json(&env, &body).await;
    assert_eq!(auth["dkim"], json!([{ "result": "neutral", "domain": "example.org", "selector": "ed" }]));
    assert!(auth["header"].as_str().unwrap().contains("dkim=neutral (body hash did not verify)"), "{auth:#}");

    let header = replace(&signed, "Subject: Order 2", "Subject: Order 3");
    let auth = w.auth_json(&env, &header).await;
    assert_eq!(auth["dkim"], json!([{ "result": "fail", "domain": "example.org", "selector": "ed" }]));
    // SPF still aligns, so DMARC passes: DKIM failing alone does not fail DMARC.
    assert_eq!(auth["dmarc"]["result"], "pass");
    assert_eq!(auth["dmarc"]["dkim_aligned"], false);
}

#[tokio::test]
async fn a_missing_key_is_permerror_and_an_unreachable_key_is_temperror() {
    let w = World::relaxed();
    let gone = Signer::new(Algo::Ed25519, "example.org", "gone");
    let down = Signer::new(Algo::Rsa, "example.org", "down");
    w.nx(&gone.record_name()).broken(&down.record_name());
    let raw = down.sign(&gone.sign(&message("ada@example.org", "3")));
    let auth = w.auth_json(&envelope("mail.example.org", "bounce@example.org"), &raw).await;
    assert_eq!(
        auth["dkim"],
        json!([
            // SERVFAIL / no answer: try again later (RFC 6376 TEMPFAIL "key unavailable").
            { "result": "temperror", "domain": "example.org", "selector": "down" },
            // NXDOMAIN: RFC 6376 PERMFAIL "no key for signature".
            { "result": "permerror", "domain": "example.org", "selector": "gone" },
        ])
    );
}

#[tokio::test]
async fn spf_results_for_helo_and_mail_from() {
    let w = World::relaxed();
    w.txt("pass.spf.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("fail.spf.test", "v=spf1 ip4:198.51.100.1 -all")
        .txt("softfail.spf.test", "v=spf1 ~all")
        .txt("neutral.spf.test", "v=spf1 ?all")
        .nx("none.spf.test")
        .txt("permerror.spf.test", "v=spf1 include:none.spf.test -all")
        .broken("temperror.spf.test");
    for result in ["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"] {
        let domain = format!("{result}.spf.test");
        // HELO and MAIL FROM are checked separately: a HELO that passes says nothing about MAIL FROM.
        let helo_pass = w
            .auth_json(&envelope("pass.spf.test", &format!("bounce@{domain}")), &message("a@example.org", result))
            .await;
        assert_eq!(helo_pass["spf"], json!({ "result": result, "domain": domain }), "MAIL FROM {domain}");
        assert_eq!(helo_pass["spf_helo"], json!({ "result": "pass", "domain": "pass.spf.test" }));
        let from_pass =
            w.auth_json(&envelope(&domain, "bounce@pass.spf.test"), &message("a@example.org", result)).await;
        assert_eq!(from_pass["spf_helo"], json!({ "result": result, "domain": domain }), "HELO {domain}");
        assert_eq!(from_pass["spf"], json!({ "result": "pass", "domain": "pass.spf.test" }));
    }
}

#[tokio::test]
async fn the_null_sender_is_checked_on_the_helo_name() {
    let w = World::relaxed();
    let auth = w.auth_json(&envelope("mail.example.org", ""), &message("mailer-daemon@example.org", "4")).await;
    assert_eq!(auth["spf"], json!({ "result": "pass", "domain": "mail.example.org" }));
    assert!(auth["header"].as_str().unwrap().contains("smtp.mailfrom=<>"), "{auth:#}");
    // mail.example.org is a subdomain of example.org: relaxed alignment, so DMARC passes via SPF.
    assert_eq!(auth["dmarc"]["result"], "pass");
    assert_eq!(auth["dmarc"]["spf_aligned"], true);
}

#[tokio::test]
async fn dmarc_passes_through_spf_alignment_alone() {
    let w = World::relaxed();
    let auth = w.auth_json(&envelope("mail.example.org", "bounce@example.org"), &message("ada@example.org", "5")).await;
    assert_eq!(auth["dkim"], json!([]));
    assert_eq!(
        auth["dmarc"],
        json!({ "result": "pass", "policy": "reject", "from_domain": "example.org", "spf_aligned": true, "dkim_aligned": false })
    );
}

#[tokio::test]
async fn dmarc_passes_through_dkim_alignment_alone() {
    let w = World::relaxed();
    w.txt("lists.other.test", "v=spf1 ip4:192.0.2.10 -all").nx("_dmarc.lists.other.test");
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    w.key(&ed);
    // A mailing list: its own bounce address (SPF passes, but for a domain unrelated to From).
    let raw = ed.sign(&message("ada@example.org", "6"));
    let auth = w.auth_json(&envelope("lists.other.test", "bounce@lists.other.test"), &raw).await;
    assert_eq!(auth["spf"]["result"], "pass");
    assert_eq!(
        auth["dmarc"],
        json!({ "result": "pass", "policy": "reject", "from_domain": "example.org", "spf_aligned": false, "dkim_aligned": true })
    );
}

#[tokio::test]
async fn dmarc_fails_under_each_policy_and_reports_it() {
    let w = World::relaxed();
    // DMARCbis walks the tree: _dmarc.<policy>.dmarc.test, then _dmarc.dmarc.test, then _dmarc.test.
    w.txt("other.test", "v=spf1 ip4:192.0.2.10 -all").nx("_dmarc.dmarc.test");
    for policy in ["none", "quarantine", "reject"] {
        let domain = format!("{policy}.dmarc.test");
        w.txt(&format!("_dmarc.{domain}"), &format!("v=DMARC1; p={policy}"));
        // Spoofed From: SPF passes for the sender's own domain, which is not the From domain.
        let auth =
            w.auth_json(&envelope("other.test", "bounce@other.test"), &message(&format!("ceo@{domain}"), policy)).await;
        assert_eq!(
            auth["dmarc"],
            json!({ "result": "fail", "policy": policy, "from_domain": domain, "spf_aligned": false, "dkim_aligned": false }),
        );
        let header = auth["header"].as_str().unwrap();
        assert!(header.contains("dmarc=fail") && header.contains(&format!("policy.dmarc={policy}")), "{header}");
    }
}

#[tokio::test]
async fn a_subdomain_gets_the_sp_policy_and_no_record_means_no_policy() {
    let w = World::relaxed();
    w.nx("_dmarc.news.example.org").txt("other.test", "v=spf1 ip4:192.0.2.10 -all").nx("_dmarc.nodmarc.test");
    let auth = w.auth_json(&envelope("other.test", "bounce@other.test"), &message("news@news.example.org", "7")).await;
    assert_eq!(auth["dmarc"]["result"], "fail");
    assert_eq!(auth["dmarc"]["policy"], "quarantine");
    assert_eq!(auth["dmarc"]["from_domain"], "news.example.org");

    let auth = w.auth_json(&envelope("other.test", "bounce@other.test"), &message("a@nodmarc.test", "8")).await;
    assert_eq!(
        auth["dmarc"],
        json!({ "result": "none", "policy": null, "from_domain": "nodmarc.test", "spf_aligned": false, "dkim_aligned": false })
    );
}

#[tokio::test]
async fn dmarc_reject_refuses_only_failures_under_p_reject() {
    let w = World::new(DmarcReject::Reject, SpfMode::Relaxed);
    w.txt("other.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("example.org", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .nx("_dmarc.org")
        .nx("_dmarc.test");
    let spoof = envelope("other.test", "bounce@other.test");
    let refused = w.verify(&spoof, &message("ceo@example.org", "9")).await.expect_err("p=reject failure is refused");
    assert_eq!(refused.code, 550);
    assert!(refused.text.starts_with("5.7.1 "), "{}", refused.text);
    assert!(refused.text.contains("example.org"), "{}", refused.text);

    let quarantined =
        w.verify(&spoof, &message("ceo@quarantine.test", "10")).await.expect("p=quarantine is only recorded");
    assert_eq!(quarantined.dmarc.result, "fail");
    let genuine = envelope("mail.example.org", "bounce@example.org");
    let passed = w.verify(&genuine, &message("ceo@example.org", "11")).await.expect("a DMARC pass is accepted");
    assert_eq!(passed.dmarc.result, "pass");
}

#[tokio::test]
async fn arc_none_pass_and_fail() {
    let w = World::relaxed();
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    let relay = Signer::new(Algo::Rsa, "relay.test", "arc");
    w.key(&ed).key(&relay);
    let signed = ed.sign(&message("ada@example.org", "12"));
    let env = envelope("mail.example.org", "bounce@example.org");
    assert_eq!(w.auth_json(&env, &signed).await["arc"], json!({ "result": "none" }));

    let sealed = relay.arc_seal(&signed);
    let auth = w.auth_json(&env, &sealed).await;
    assert_eq!(auth["arc"], json!({ "result": "pass" }), "{auth:#}");
    assert!(auth["header"].as_str().unwrap().contains("arc=pass"));

    let tampered = replace(&sealed, "Subject: Order 12", "Subject: Order 13");
    assert_eq!(w.auth_json(&env, &tampered).await["arc"], json!({ "result": "fail" }));
}

#[tokio::test]
async fn spf_off_leaves_spf_null_and_dmarc_relies_on_dkim() {
    let w = World::new(DmarcReject::Accept, SpfMode::Off);
    w.txt("_dmarc.example.org", "v=DMARC1; p=none").nx("_dmarc.org");
    let ed = Signer::new(Algo::Ed25519, "example.org", "ed");
    w.key(&ed);
    let env = envelope("mail.example.org", "bounce@example.org");
    let auth = w.auth_json(&env, &ed.sign(&message("ada@example.org", "14"))).await;
    assert_eq!((auth["spf"].clone(), auth["spf_helo"].clone()), (json!(null), json!(null)));
    assert_eq!(auth["dmarc"]["result"], "pass");
    assert!(!auth["header"].as_str().unwrap().contains("spf="), "{auth:#}");
    let auth = w.auth_json(&env, &message("ada@example.org", "15")).await;
    assert_eq!(auth["dmarc"]["result"], "fail", "without SPF an unsigned message cannot align");
}

#[tokio::test]
async fn strict_spf_refuses_fail_and_temperror_at_mail_from() {
    let w = World::new(DmarcReject::Accept, SpfMode::Strict).with_spf_fixtures();
    let ip = crate::fixture::SENDER_IP;
    let fail = w
        .auth
        .check_mail(ip, mxhook::mail::Ingress::Smtp, "x.test", "a@fail.spf.test")
        .await
        .expect_err("SPF fail is refused");
    assert_eq!((fail.code, &fail.text[..6]), (550, "5.7.1 "), "{}", fail.text);
    let temp = w
        .auth
        .check_mail(ip, mxhook::mail::Ingress::Smtp, "x.test", "a@temperror.spf.test")
        .await
        .expect_err("temperror is refused");
    assert_eq!((temp.code, &temp.text[..6]), (451, "4.7.1 "), "{}", temp.text);
    for ok in ["a@softfail.spf.test", "a@none.spf.test", "a@pass.spf.test"] {
        let sender = w
            .auth
            .check_mail(ip, mxhook::mail::Ingress::Smtp, "x.test", ok)
            .await
            .unwrap_or_else(|r| panic!("{ok}: {} {}", r.code, r.text));
        // What MAIL FROM found is what the event reports: no second lookup decides otherwise.
        let auth = w.auth.verify(&envelope("x.test", ok), sender, &message("a@example.org", "16")).await.unwrap();
        assert_eq!(auth.spf.unwrap().result, ok.trim_start_matches("a@").trim_end_matches(".spf.test"));
    }
}

impl World {
    fn with_spf_fixtures(self) -> World {
        self.txt("pass.spf.test", "v=spf1 ip4:192.0.2.0/24 -all")
            .txt("fail.spf.test", "v=spf1 -all")
            .txt("softfail.spf.test", "v=spf1 ~all")
            .nx("none.spf.test")
            .nx("x.test")
            .broken("temperror.spf.test")
            .txt("_dmarc.example.org", "v=DMARC1; p=none")
            .nx("_dmarc.org");
        self
    }
}
