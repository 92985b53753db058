//! LMTP (RFC 2033) beside an existing mail server: LHLO, one reply per recipient after the data
//! (a recipient whose message cannot be taken gets its own 4xx, the others their 250), SPF from the
//! trusted upstream's header, and a real Postfix delivering with `lmtp:inet:`.

use serde_json::Value;

use crate::common::postfix::{self, POSTFIX_TIMEOUT, Postfix};
use crate::common::*;

/// Recipients a@ and b@ go to endpoint `app`; c@ to endpoint `flaky` in sync mode (250 only after its
/// 2xx), which the receiver fails while `flaky` is broken.
fn harness(extra_lmtp: &str) -> Harness {
    Harness::with(|c| {
        let url = c.endpoint("app").url.replace("/hooks/app", "/hooks/flaky");
        c.endpoints.push(Endpoint::new("flaky", url, SECRET_B));
        c.append(&format!(
            "[lmtp]\nlisten = [\"127.0.0.1:0\"]\n{extra_lmtp}\n\n[[routes]]\nmatch = \"c@example.test\"\n\
             action = \"webhook\"\nendpoints = [\"flaky\"]\nmode = \"sync\"\nsync_timeout = \"5s\"\n"
        ));
    })
}

fn break_flaky(h: &Harness, broken: bool) {
    if broken {
        h.rx.set_script(|e: &Value| (e["delivery"]["endpoint"] == "flaky").then_some(503));
    } else {
        h.rx.set_script(|_| None);
    }
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "Authentication-Results: mx.upstream.test; spf=pass smtp.mailfrom=ada@sender.test\r\n\
         From: Ada <ada@sender.test>\r\nTo: a@example.test, b@example.test, c@example.test\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

#[test]
fn three_recipients_one_failing_get_250_250_451_and_lhlo_is_required() {
    let h = harness("trusted_authserv_ids = [\"mx.upstream.test\"]");
    let gw = h.start();
    break_flaky(&h, true);
    let mut c = Wire::connect(crate::lmtp_addr(&gw), SHORT).unwrap();
    let (code, greeting) = c.reply().unwrap();
    assert!(code == 220 && greeting.contains("LMTP"), "{greeting}");
    assert_eq!(c.cmd("EHLO upstream.test").unwrap().0, 500, "LMTP takes no EHLO");
    assert_eq!(c.cmd("MAIL FROM:<ada@sender.test>").unwrap().0, 503, "not before LHLO");
    assert_eq!(c.cmd("LHLO upstream.test").unwrap().0, 250);
    assert_eq!(c.cmd("MAIL FROM:<ada@sender.test>").unwrap().0, 250);
    for r in ["a", "b", "c"] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}@example.test>")).unwrap().0, 250);
    }
    assert_eq!(c.cmd("DATA").unwrap().0, 354);
    c.send(&data_stream(&message("three"))).unwrap();
    let replies: Vec<(u16, String)> = (0..3).map(|_| c.reply().unwrap()).collect();
    let codes: Vec<u16> = replies.iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 250, 451], "one reply per recipient, in RCPT order: {replies:?}\n{}", h.logs());
    assert_eq!(c.cmd("QUIT").unwrap().0, 221);

    // a@ and b@ arrived (each as its own message after the split); c@ was never acknowledged.
    h.wait_until(SHORT, "a@ and b@ at endpoint app", || {
        h.rx.requests().iter().filter(|r| r.path == "/hooks/app").count() >= 2
    });
    let app: Vec<Value> = h.rx.requests().iter().filter(|r| r.path == "/hooks/app").map(|r| r.json()).collect();
    let mut rcpts: Vec<String> =
        app.iter().map(|e| e["message"]["smtp"]["rcpt_to"][0].as_str().unwrap().to_string()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@example.test", "b@example.test"]);
    let auth = &app[0]["message"]["auth"];
    assert_eq!(auth["source"], "upstream", "{auth:#}");
    assert_eq!(auth["spf"], serde_json::json!({ "result": "pass", "domain": "sender.test" }), "{auth:#}");
    assert_eq!(app[0]["message"]["smtp"]["client_ip"], "127.0.0.1");
    assert!(app[0]["message"]["smtp"]["proxy_ip"].is_null());
}

#[test]
fn an_untrusted_upstream_header_gives_spf_none() {
    let h = harness("");
    let gw = h.start();
    let mut c = Wire::connect(crate::lmtp_addr(&gw), SHORT).unwrap();
    c.reply().unwrap();
    assert_eq!(c.cmd("LHLO upstream.test").unwrap().0, 250);
    assert_eq!(c.cmd("MAIL FROM:<ada@sender.test>").unwrap().0, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.test>").unwrap().0, 250);
    assert_eq!(c.data(&message("untrusted")).unwrap().0, 250);
    let e = h.wait_requests(1, SHORT)[0].json();
    let auth = &e["message"]["auth"];
    assert_eq!(auth["source"], "upstream", "{auth:#}");
    assert_eq!(auth["spf"]["result"], "none", "{auth:#}");
}

#[test]
fn a_real_postfix_over_lmtp_defers_only_the_failing_recipient_until_it_is_fixed() {
    if !postfix::available() {
        return;
    }
    let h = harness("trusted_authserv_ids = [\"postfix.test\"]");
    let gw = h.start();
    break_flaky(&h, true);
    let lmtp = crate::lmtp_addr(&gw);
    let transport = format!("lmtp:inet:{}:{}", lmtp.ip(), lmtp.port());
    let pf = Postfix::start(
        &[("example.test", transport)],
        "lmtp      unix  -       -       n       -       -       lmtp\n",
    );
    let mut c = SmtpClient::ready_as(pf.smtp, "client.test");
    c.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    for r in ["a", "b", "c"] {
        let reply = c.cmd(&format!("RCPT TO:<{r}@example.test>"));
        assert_eq!(reply.code, 250, "{reply}\n{}", pf.maillog());
    }
    let body = b"From: Ada <ada@sender.test>\r\nTo: a@example.test\r\nSubject: via Postfix\r\n\
        Message-ID: <postfix-lmtp@sender.test>\r\n\r\nHello through Postfix.\r\n";
    assert_eq!(c.data(body).code, 250, "{}", pf.maillog());
    c.cmd("QUIT");

    let context =
        || format!("{}\n----- Postfix queue -----\n{}\n----- maillog -----\n{}", h.logs(), pf.queue(), pf.maillog());
    let app = || h.rx.requests().into_iter().filter(|r| r.path == "/hooks/app").collect::<Vec<_>>();
    wait_for(POSTFIX_TIMEOUT, "a@ and b@ delivered over LMTP", context, || app().len() >= 2);
    // Until the LMTP transaction ends the entry is in the active queue (`*`, no reason yet); once
    // deferred, postqueue shows why.
    wait_for(POSTFIX_TIMEOUT, "Postfix deferring c@ only, with the gateway's 451", context, || {
        let q = pf.queue();
        q.contains("c@example.test")
            && q.contains("451")
            && !q.contains("a@example.test")
            && !q.contains("b@example.test")
    });
    let queue = pf.queue();
    assert!(queue.contains("451"), "the queue says why: {queue}");
    let mut rcpts: Vec<String> =
        app().iter().map(|r| r.json()["message"]["smtp"]["rcpt_to"][0].as_str().unwrap().to_string()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@example.test", "b@example.test"], "{}", context());
    let e = app()[0].json();
    assert_eq!(e["message"]["smtp"]["helo"], "postfix.test");
    assert_eq!(e["message"]["auth"]["source"], "upstream");

    // The fault is gone: Postfix's next try delivers c@, and its queue empties.
    break_flaky(&h, false);
    pf.flush();
    let flaky = || {
        h.rx.requests()
            .into_iter()
            .filter(|r| r.path == "/hooks/flaky" && r.json()["message"]["smtp"]["rcpt_to"][0] == "c@example.test")
            .count()
    };
    let before = flaky();
    wait_for(POSTFIX_TIMEOUT, "c@ delivered after the fault", context, || {
        flaky() > before && pf.queue().contains("empty")
    });
}
