//! `mxhook listen`: the local development receiver verifies Standard Webhooks signatures and timestamps,
//! prints what it accepts, and answers 400 with a REJECTED line to everything else.

use std::net::SocketAddr;
use std::process::Command;

use crate::common::*;
use crate::support::*;

struct Listen {
    proc: Proc,
    addr: SocketAddr,
}

impl Listen {
    #[track_caller]
    fn start(secret: &str) -> Listen {
        let mut cmd = Command::new(BIN);
        cmd.args(["listen", "--port", "0", "--secret", secret]).env_remove("RUST_LOG").env("NO_COLOR", "1");
        let proc = Proc::spawn(cmd, "mxhook listen");
        let marker = "listening on http://";
        let mut addr = None;
        wait_for(
            WAIT,
            "mxhook listen to announce its address",
            || proc.describe(),
            || {
                let err = proc.stderr();
                addr = err.find(marker).and_then(|at| {
                    let rest = &err[at + marker.len()..];
                    rest[..rest.find('/')?].parse().ok()
                });
                addr.is_some()
            },
        );
        Listen { proc, addr: addr.unwrap() }
    }

    fn url(&self) -> String {
        format!("http://{}/webhooks/mail", self.addr)
    }

    /// POSTs `body` with the three Standard Webhooks headers; returns the status and answer.
    fn post(&self, id: &str, ts: i64, signature: Option<&str>, body: &[u8]) -> (u16, String) {
        let mut req = agent()
            .post(&self.url())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", &ts.to_string());
        if let Some(s) = signature {
            req = req.header("webhook-signature", s);
        }
        let mut resp = req.send(body).unwrap_or_else(|e| panic!("POST {}: {e}", self.url()));
        (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn rejected_lines(&self) -> Vec<String> {
        self.proc.stdout().lines().filter(|l| l.starts_with("REJECTED")).map(str::to_string).collect()
    }
}

fn event(subject: &str) -> Vec<u8> {
    serde_json::json!({
        "id": "evt_test", "type": "email.received", "version": "2026-11-22",
        "delivery": { "id": "dlv_test", "endpoint": "app", "attempt": 1, "attempted_at": "2026-11-23T06:05:08.319Z" },
        "message": { "id": "msg_test", "subject": subject,
                     "from": { "address": "ada@sender.test", "name": null },
                     "smtp": { "rcpt_to": ["inbox@example.test"] },
                     "parsed": { "status": "complete" }, "raw": { "size": 10 }, "attachments": [], "text": "hi" }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn listen_prints_mail_from_a_real_gateway() {
    let listen = Listen::start(SECRET_A);
    let h = Harness::with(|c| c.endpoint("app").url = listen.url());
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail(
        "ada@sender.test",
        &["inbox@example.test"],
        b"From: Ada <ada@sender.test>\r\nSubject: Hello from the deploy test 7f3a\r\n\r\nfirst mail\r\n",
    );
    wait_for(
        WAIT,
        "mxhook listen to print the subject",
        || format!("{}\n{}", listen.proc.describe(), h.logs()),
        || listen.proc.stdout().contains("Hello from the deploy test 7f3a"),
    );
    let out = listen.proc.stdout();
    assert!(out.contains(&id), "the message id {id} is printed:\n{out}");
    assert!(out.contains("ada@sender.test") && out.contains("inbox@example.test"), "sender and recipient:\n{out}");
    assert!(listen.rejected_lines().is_empty(), "nothing rejected:\n{out}");
    let d = h.wait_delivery_status(&id, "succeeded", WAIT);
    assert_eq!(d["last_status"], 200, "{d}");
}

#[test]
fn listen_rejects_forged_altered_and_stale_requests() {
    let listen = Listen::start(SECRET_A);
    let now = now_secs();

    let good = event("Signed by the test");
    let (status, _) = listen.post("msg_good", now, Some(&sign(SECRET_A, "msg_good", now, &good)), &good);
    assert_eq!(status, 200, "{}", listen.proc.describe());
    wait_for(
        WAIT,
        "the good event to be printed",
        || listen.proc.describe(),
        || listen.proc.stdout().contains("Signed by the test"),
    );
    // Key rotation: any one of several signatures may match.
    let both = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {}", sign(SECRET_A, "msg_rot", now, &good));
    assert_eq!(listen.post("msg_rot", now, Some(&both), &good).0, 200, "{}", listen.proc.describe());

    let mut bad: Vec<(&str, (u16, String))> = Vec::new();
    let signed = sign(SECRET_A, "msg_tampered", now, &good);
    let tampered = event("Signed by the test, then altered");
    bad.push(("altered body", listen.post("msg_tampered", now, Some(&signed), &tampered)));
    bad.push(("other secret", listen.post("msg_other", now, Some(&sign(SECRET_B, "msg_other", now, &good)), &good)));
    let signed = sign(SECRET_A, "msg_id", now, &good);
    bad.push(("signature of another id", listen.post("msg_swapped", now, Some(&signed), &good)));
    let old = now - 600;
    bad.push(("10 minutes old", listen.post("msg_old", old, Some(&sign(SECRET_A, "msg_old", old, &good)), &good)));
    let ahead = now + 600;
    bad.push((
        "10 minutes ahead",
        listen.post("msg_ahead", ahead, Some(&sign(SECRET_A, "msg_ahead", ahead, &good)), &good),
    ));
    bad.push(("no signature", listen.post("msg_unsigned", now, None, &good)));
    for (what, (status, body)) in &bad {
        assert_eq!(*status, 400, "{what}: answered {status} {body}\n{}", listen.proc.describe());
    }

    wait_for(
        WAIT,
        "one REJECTED line per bad request",
        || listen.proc.describe(),
        || listen.rejected_lines().len() >= bad.len(),
    );
    let rejected = listen.rejected_lines();
    assert_eq!(rejected.len(), bad.len(), "{rejected:#?}");
    let stale = rejected.iter().filter(|l| l.contains("timestamp")).count();
    assert_eq!(stale, 2, "the stale and future requests are rejected for their timestamp: {rejected:#?}");
    let out = listen.proc.stdout();
    assert!(!out.contains("then altered"), "the altered event must not be printed:\n{out}");
    assert_eq!(out.matches("Signed by the test").count(), 2, "the good event, twice:\n{out}");
}
