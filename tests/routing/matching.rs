//! Which route a recipient gets: exact > plus-address fallback > `*@domain` > the domain's own
//! endpoint, whatever the order of `[[routes]]` in the file; and what the event says about it.

use serde_json::json;

use crate::common::{SECRET_B, SECRET_C, SHORT, Session};
use crate::support::{harness, mail, routes, send};

/// The catch-all comes first in the file and still loses to the more specific routes.
const ROUTES: &str = r#"
[[domains]]
name = "other.test"
endpoint = "app"

[[routes]]
match = "*@example.test"
endpoints = ["all"]

[[routes]]
match = "support+vip@example.test"
endpoints = ["app"]

[[routes]]
match = "support@example.test"
endpoints = ["support"]
"#;

#[test]
fn the_most_specific_route_wins_whatever_the_order() {
    let h = harness(&[("support", SECRET_B), ("all", SECRET_C)], ROUTES);
    let gw = h.start();
    let cases = [
        // (recipient, endpoint path, match, tag)
        ("support@example.test", "/hooks/support", "support@example.test", None),
        ("Support+Acme@example.test", "/hooks/support", "support@example.test", Some("acme")),
        ("support+vip@example.test", "/hooks/app", "support+vip@example.test", None),
        ("sales@example.test", "/hooks/all", "*@example.test", None),
        ("sales+eu@example.test", "/hooks/all", "*@example.test", Some("eu")),
        ("anyone@other.test", "/hooks/app", "*@other.test", None),
    ];
    for (rcpt, path, pattern, tag) in cases {
        let id = send(&gw, &[rcpt], &mail("route me", rcpt));
        h.wait_until(SHORT, &format!("the event for {rcpt}"), || !h.rx.requests_for_message(&id).is_empty());
        let got = h.rx.requests_for_message(&id);
        assert_eq!(got.len(), 1, "{rcpt}: one endpoint, one event");
        assert_eq!(got[0].path, path, "{rcpt}");
        let event = got[0].json();
        assert_eq!(
            event["message"]["routes"],
            json!([{ "rcpt": rcpt, "match": pattern, "action": "webhook", "rule": "route", "tag": tag }]),
            "{rcpt}"
        );
    }
}

#[test]
fn each_recipient_is_routed_and_the_message_goes_once_to_each_endpoint() {
    let h = harness(&[("support", SECRET_B), ("all", SECRET_C)], ROUTES);
    let gw = h.start();
    let rcpts = ["support@example.test", "support+x@example.test", "sales@example.test", "a@other.test"];
    let id = send(&gw, &rcpts, &mail("fan out", "to four recipients"));
    h.wait_until(SHORT, "three events", || h.rx.requests_for_message(&id).len() >= 3);
    let mut paths: Vec<String> = h.rx.requests_for_message(&id).iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/hooks/all", "/hooks/app", "/hooks/support"]);
    let r = routes(&h, &id);
    let matched: Vec<(&str, &str)> =
        r.iter().map(|x| (x["rcpt"].as_str().unwrap(), x["match"].as_str().unwrap())).collect();
    assert_eq!(
        matched,
        [
            ("support@example.test", "support@example.test"),
            ("support+x@example.test", "support@example.test"),
            ("sales@example.test", "*@example.test"),
            ("a@other.test", "*@other.test"),
        ]
    );
}

#[test]
fn routes_test_explains_the_choice() {
    let h = harness(&[("support", SECRET_B), ("all", SECRET_C)], ROUTES);
    let v = h.cli_json(&["routes", "test", "support+acme@example.test", "--json"]);
    assert_eq!(
        (v["match"].as_str(), v["via"].as_str(), v["tag"].as_str()),
        (Some("support@example.test"), Some("plus"), Some("acme"))
    );
    let v = h.cli_json(&["routes", "test", "x@other.test", "--json"]);
    assert_eq!((v["via"].as_str(), v["route"]["endpoints"][0].as_str()), (Some("catch-all"), Some("app")));
}

#[test]
fn a_domain_without_endpoint_or_route_refuses_at_rcpt() {
    let h = harness(&[], "[[domains]]\nname = \"bare.test\"\n");
    let gw = h.start();
    let mut c = crate::common::SmtpClient::ready(gw.smtp);
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<x@bare.test>").expect(550, "5.1.1");
    c.cmd("RCPT TO:<x@nowhere.test>").expect(550, "5.7.1");
    c.cmd("RCPT TO:<x@example.test>").expect(250, "2.1.5");
}

#[test]
fn two_routes_with_the_same_match_are_a_config_error() {
    let h = harness(
        &[],
        "[[routes]]\nmatch = \"a@example.test\"\nendpoints = [\"app\"]\n[[routes]]\nmatch = \"A@Example.test\"\naction = \"store\"\n",
    );
    let out = h.cli(&["check-config"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.all_output().contains("routes.match: another route has the same match"), "{}", out.describe());
}
