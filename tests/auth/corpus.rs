//! The DKIM-signed real messages of ../shared/corpus. Their keys are not published anywhere this
//! offline machine can reach, so what can be checked is everything short of the signature itself:
//! each signature parses with its `d=`/`s=`, and its body hash verifies (mail-auth checks the body
//! hash before it fetches the key, so "no key" — permerror — means the body is intact, while an
//! altered body would be neutral). The sources: 089 carries Authentication-Results from gmx.net
//! saying dkim=pass for both proxforge.de signatures; 143 was relayed by Mandrill and Google.

use serde_json::json;

use crate::common::to_crlf;
use crate::fixture::{World, envelope};
use crate::helpers::corpus_file;

async fn dkim_of(world: &World, file: &str) -> Option<serde_json::Value> {
    let Some(raw) = corpus_file(file) else {
        eprintln!("skipping {file}: ../shared/corpus is not there");
        return None;
    };
    // As an SMTP client sends it.
    let raw = to_crlf(&raw);
    Some(world.auth_json(&envelope("mail.example.org", "bounce@example.org"), &raw).await["dkim"].clone())
}

#[tokio::test]
async fn proxforge_ed25519_and_rsa_signatures_have_intact_bodies() {
    let w = World::relaxed();
    w.nx("202512r._domainkey.proxforge.de")
        .nx("202512e._domainkey.proxforge.de")
        .nx("_dmarc.proxforge.de")
        .nx("_dmarc.de");
    let Some(dkim) = dkim_of(&w, "089__mailparser-rs-thirdparty__015.eml").await else { return };
    assert_eq!(
        dkim,
        json!([
            { "result": "permerror", "domain": "proxforge.de", "selector": "202512r" },
            { "result": "permerror", "domain": "proxforge.de", "selector": "202512e" },
        ])
    );
}

#[tokio::test]
async fn papertrail_mandrill_signatures_have_intact_bodies() {
    let w = World::relaxed();
    w.nx("mandrill._domainkey.papertrailapp.com")
        .nx("mandrill._domainkey.mandrillapp.com")
        .nx("_dmarc.papertrailapp.com")
        .nx("_dmarc.com");
    let Some(dkim) = dkim_of(&w, "143__enmime-mail__ctype-bug.eml").await else { return };
    let results: Vec<_> = dkim.as_array().unwrap().iter().map(|d| (d["domain"].clone(), d["result"].clone())).collect();
    eprintln!("143: {dkim}");
    assert!(!results.is_empty());
    for (domain, result) in results {
        assert_eq!(result, "permerror", "{domain}: body hash or signature unreadable: {dkim}");
    }
}
