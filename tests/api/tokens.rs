//! Tokens: every route the OpenAPI file lists refuses a missing or wrong token (401 with
//! `WWW-Authenticate`), every route that needs write refuses a read-only token (403), a client
//! that keeps trying wrong tokens gets 429, no token or hash reaches the log, and without `[api]`
//! there is no `/v1` at all.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

/// (method, path template, needs write) of every operation in schema/openapi.json that needs a token.
fn operations() -> Vec<(String, String, bool)> {
    let spec: Value = serde_json::from_str(include_str!("../../schema/openapi.json")).unwrap();
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            if op["security"] == json!([]) {
                continue; // public: the OpenAPI file itself
            }
            let write = op["responses"].get("403").is_some();
            out.push((method.to_uppercase(), path.clone(), write));
        }
    }
    out
}

#[test]
fn every_route_refuses_missing_and_wrong_tokens_and_write_routes_refuse_read_tokens() {
    let h = setup(|_| {});
    let gw = h.start();
    let api = Api::of(&gw);
    let id = send(&gw, "inbox@example.test", &plain("tokens", "inbox@example.test", "hi\r\n"));
    let (_, event) = h.event_for(&id);
    let dlv = event["delivery"]["id"].as_str().unwrap().to_string();
    // Deleted at the end: not the message whose delivery the retry has just put back in flight.
    let gone = send(&gw, "inbox@example.test", &plain("to delete", "inbox@example.test", "hi\r\n"));
    h.event_for(&gone);
    let ops = operations();
    assert!(ops.len() >= 10, "{ops:?}");
    let replay = json!({ "since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:01Z" });

    for (method, template, write) in &ops {
        let path = template
            .replace("{index}", "0")
            .replace("{id}", if template.starts_with("/deliveries") { &dlv } else { &id });
        let body = (template == "/replay").then_some(&replay);
        for token in [None, Some("mxh_wrong"), Some(""), Some(&WRITE[..WRITE.len() - 1])] {
            let got = api.call(method, &path, token, body);
            assert_eq!(got.status, 401, "{method} {path} with {token:?}");
            assert!(got.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{method} {path}");
            let v: Value = serde_json::from_slice(&got.body).unwrap();
            assert_eq!(v["error"]["type"], "unauthorized", "{method} {path}: {v}");
        }
        let read = api.call(method, &path, Some(READ), body);
        if *write {
            assert_eq!(read.status, 403, "{method} {path} with the read token");
            let v: Value = serde_json::from_slice(&read.body).unwrap();
            assert_eq!(v["error"]["type"], "forbidden", "{v}");
        } else {
            // Past the token (the message has no attachment 0: 404).
            assert!(![401, 403, 429].contains(&read.status), "{method} {path} with the read token: {}", read.status);
        }
    }
    // The write token works on every write route.
    for (method, template, write) in ops.iter().filter(|o| o.2) {
        let path = template.replace("{id}", if template.starts_with("/deliveries") { &dlv } else { &gone });
        let body = (template == "/replay").then_some(&replay);
        let got = api.call(method, &path, Some(WRITE), body);
        assert!(got.status < 300, "{method} {path} with the write token: {} (write {write})", got.status);
    }
    assert_eq!(api.json("/whoami"), json!({ "token": "reader", "scopes": ["read"] }));

    // Neither token, nor its SHA-256, is in anything the gateway logged.
    // The log is read from the gateway's stderr by a thread of the harness: wait for the last write's line.
    h.wait_until(SHORT, "the API's writes in the log", || gw.log().contains("message deleted through the API"));
    let log = gw.log();
    for secret in [READ.to_string(), WRITE.to_string(), sha256_hex(READ.as_bytes()), sha256_hex(WRITE.as_bytes())] {
        assert!(!log.contains(&secret), "the log holds {secret}:\n{log}");
    }
}

#[test]
fn wrong_tokens_from_one_address_are_held_off_with_429() {
    let h = Harness::with(|cfg| {
        cfg.append(&api_toml(3));
    });
    let gw = h.start();
    let api = Api::of(&gw);
    for _ in 0..3 {
        assert_eq!(api.call("GET", "/messages", Some("mxh_guess"), None).status, 401);
    }
    let got = api.call("GET", "/messages", Some("mxh_guess"), None);
    assert_eq!(got.status, 429);
    assert_eq!(got.header("retry-after").as_deref(), Some("60"));
    assert_eq!(api.call("GET", "/messages", Some(READ), None).status, 429, "held off for the minute");
}

#[test]
fn without_api_in_the_config_there_is_no_v1() {
    let h = Harness::basic();
    let gw = h.start();
    let api = Api::of(&gw);
    for path in ["/whoami", "/messages", "/openapi.json"] {
        assert_eq!(api.call("GET", path, Some(READ), None).status, 404, "{path}");
    }
    assert_eq!(healthz(&gw), 200);
}

#[test]
fn with_api_the_signed_links_still_need_no_token() {
    let h = setup(|_| {});
    let gw = h.start();
    let id = send(&gw, "inbox@example.test", &plain("linked", "inbox@example.test", "hi\r\n"));
    let (_, event) = h.event_for(&id);
    let link = event["message"]["raw"]["url"].as_str().expect("raw.url");
    let local = link.replace("http://127.0.0.1:8025", &format!("http://{}", gw.http));
    let got = get(&agent(), &local, &[]);
    assert_eq!(got.status, 200, "{local}");
    assert_eq!(got.body, h.stored_raw(&id).unwrap());
}

#[test]
fn the_openapi_file_is_served_without_a_token() {
    let h = setup(|_| {});
    let gw = h.start();
    let api = Api::of(&gw);
    let got = api.call("GET", "/openapi.json", None, None);
    assert_eq!(got.status, 200);
    let served: Value = serde_json::from_slice(&got.body).unwrap();
    let kept: Value = serde_json::from_str(include_str!("../../schema/openapi.json")).unwrap();
    assert_eq!(served, kept);
}
