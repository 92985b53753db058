//! The `email.received.unauthenticated` event type end to end (issue 16): a message forging a From
//! domain that publishes DMARC `p=reject` reaches only an endpoint that subscribes to the type;
//! the genuine message reaches both as `email.received`.

use std::time::Duration;

use crate::common::{SECRET_B, Session, SmtpClient};
use crate::helpers::mail::message;
use crate::helpers::{DOMAIN, DnsServer};

#[test]
fn a_dmarc_failure_reaches_only_endpoints_that_subscribe_to_unauthenticated() {
    let dns = DnsServer::start();
    dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("other.test", "v=spf1 ip4:127.0.0.1 -all");
    let h = crate::common::Harness::new();
    // `/hooks/all` is known to the harness (it checks signatures) through `all`; `every`, at the
    // same URL with the same secret, subscribes to every type.
    let mut cfg = crate::common::Config::basic(&h.rx);
    cfg.hostname = DOMAIN.into();
    cfg.domains = vec![(DOMAIN.into(), "app".into())];
    cfg.auth = Some(format!("dns = [\"{}\"]\ntimeout = \"2s\"", dns.addr));
    cfg.add_endpoint(&h.rx, "all", SECRET_B);
    cfg.append(&format!(
        "[endpoints.every]\nurl = \"{}\"\nsecret = \"{SECRET_B}\"\nretry = [\"0s\"]\nevents = [\"*\"]\n\n\
         [[routes]]\nmatch = \"*@{DOMAIN}\"\nendpoints = [\"app\", \"every\"]\n",
        h.rx.url("/hooks/all")
    ));
    h.write_config(&cfg);
    let gw = h.start();

    let mut c = SmtpClient::ready_as(gw.smtp, "other.test");
    let spoof = c.send_mail("bounce@other.test", &[&format!("support@{DOMAIN}")], &message("ceo@example.org", "spoof"));
    let genuine =
        c.send_mail("bounce@example.org", &[&format!("support@{DOMAIN}")], &message("ceo@example.org", "genuine"));
    let at = |id: &str, path: &str| -> Vec<serde_json::Value> {
        h.rx.requests_for_message(id).iter().filter(|r| r.path.ends_with(path)).map(|r| r.json()).collect()
    };
    h.wait_until(Duration::from_secs(15), "both events", || {
        at(&spoof, "/hooks/all").len() == 1
            && at(&genuine, "/hooks/all").len() == 1
            && at(&genuine, "/hooks/app").len() == 1
    });
    let forged = &at(&spoof, "/hooks/all")[0];
    assert_eq!(forged["type"], "email.received.unauthenticated");
    assert_eq!(forged["message"]["auth"]["dmarc"]["result"], "fail");
    assert_eq!(at(&genuine, "/hooks/all")[0]["type"], "email.received");
    assert_eq!(at(&genuine, "/hooks/app")[0]["type"], "email.received");
    // `app` (no `events`) never gets the forgery; its deliveries are all there were.
    let deliveries = h.deliveries(&["--message", &spoof]);
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["endpoint"], "every");
    assert!(at(&spoof, "/hooks/app").is_empty());
}
