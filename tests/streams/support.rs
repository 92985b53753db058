//! A gateway with `[api]` (one read token), `[streams.dev]` and a catch-all route that sends to the
//! endpoint and the stream; the Python clients run as subprocesses; mail sent with subjects the
//! tests find again.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

pub const TOKEN: &str = "mxh_streams_test_token_0123456789";

/// The stream the route writes to.
pub const STREAM: &str = "dev";

/// The harness: `Config::basic` plus a token (in a file beside the config), `[streams.dev]` and a
/// route `*@example.test` -> endpoint `app` and stream `dev`.
pub fn harness() -> Harness {
    let h = Harness::new();
    std::fs::write(h.dir.path().join("token"), TOKEN).unwrap();
    let mut cfg = Config::basic(&h.rx);
    cfg.append(
        "[api]\nmax_failed_auth_per_minute = 1000\n[[api.tokens]]\nname = \"tests\"\ntoken_file = \"token\"\n\n\
         [streams.dev]\nevents = [\"*\"]\nretention = \"7d\"\n\n\
         [[routes]]\nmatch = \"*@example.test\"\naction = \"webhook\"\nendpoints = [\"app\"]\nstreams = [\"dev\"]\n",
    );
    h.write_config(&cfg);
    h
}

pub fn stream_url(gw: &Gateway) -> String {
    format!("http://{}/v1/streams/{STREAM}", gw.http)
}

/// Sends one message with `subject` and returns its id.
pub fn send(gw: &Gateway, subject: &str) -> String {
    let mut c = SmtpClient::ready(gw.smtp);
    let body = format!("From: <a@sender.test>\r\nTo: <inbox@example.test>\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let id = c.send_mail("a@sender.test", &["inbox@example.test"], body.as_bytes());
    c.cmd("QUIT");
    id
}

/// Sends `n` messages in one session (`subject-0`…); their ids in order.
pub fn send_many(gw: &Gateway, prefix: &str, n: usize) -> Vec<String> {
    let mut c = SmtpClient::ready(gw.smtp);
    let ids = (0..n)
        .map(|i| {
            let body = format!("From: <a@sender.test>\r\nSubject: {prefix}-{i}\r\n\r\nmessage {i}\r\n");
            let id = c.send_mail("a@sender.test", &["inbox@example.test"], body.as_bytes());
            c.cmd("RSET");
            id
        })
        .collect();
    c.cmd("QUIT");
    ids
}

/// What a client run printed: the events (cursor, event) and, for polling, the iterator to resume with.
pub struct Run {
    pub events: Vec<(i64, Value)>,
    pub iterator: Option<String>,
}

impl Run {
    pub fn message_ids(&self) -> Vec<String> {
        self.events.iter().map(|(_, e)| e["message"]["id"].as_str().unwrap().to_string()).collect()
    }

    pub fn last_cursor(&self) -> i64 {
        self.events.last().expect("no events").0
    }
}

/// Runs `clients/<client>.py` against the stream with `args`; panics with its output unless it
/// exits 0. The Python packages are required: without them the test fails, saying what to install.
#[track_caller]
pub fn client(gw: &Gateway, client: &str, args: &[&str]) -> Run {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/streams/clients");
    let probe = Command::new("python3").args(["-c", "import httpx, websockets"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        panic!(
            "python3 with httpx and websockets is needed: `python3 -m pip install httpx==0.28.1 websockets==15.0.1` \
             (.ci/run installs them)"
        );
    }
    let url = stream_url(gw);
    let out = Command::new("python3")
        .arg(dir.join(format!("{client}.py")))
        .args(["--url", &url, "--token", TOKEN])
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{client}.py {args:?} failed ({}):\n{stdout}\n{}\n----- gateway -----\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let mut run = Run { events: Vec::new(), iterator: None };
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{client}.py printed {line:?}: {e}"));
        if let Some(it) = v["iterator"].as_str() {
            run.iterator = Some(it.to_string());
        } else {
            let cursor = v["cursor"].as_i64().unwrap();
            assert_eq!(v["event"]["stream"], serde_json::json!({"name": STREAM, "cursor": cursor}));
            crate::common::schema::assert_valid(&v["event"]);
            run.events.push((cursor, v["event"].clone()));
        }
    }
    run
}
