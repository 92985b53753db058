//! What the API tests share: two tokens (read, read+write) in `[api]`, and an HTTP client that
//! sends them.

use serde_json::Value;

use crate::common::*;

/// A token with the read scope only, and one that may also write.
pub const READ: &str = "mxh_test-read-token-QmFzZTY0IGlzIG5vdCBhIHNlY3JldA";
pub const WRITE: &str = "mxh_test-write-token-U28gaXMgbm90IHRoaXMgb25l0123";

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `[api]` with READ and WRITE; `max_failed` wrong tokens per minute and address before 429.
pub fn api_toml(max_failed: u32) -> String {
    format!(
        "[api]\nmax_failed_auth_per_minute = {max_failed}\n\n\
         [[api.tokens]]\nname = \"reader\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n\n\
         [[api.tokens]]\nname = \"writer\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n",
        sha256_hex(READ.as_bytes()),
        sha256_hex(WRITE.as_bytes())
    )
}

/// `Config::basic` with `[api]` (a generous limit on wrong tokens), adjusted by `tweak`.
pub fn setup(tweak: impl FnOnce(&mut Config)) -> Harness {
    Harness::with(|cfg| {
        cfg.append(&api_toml(100_000));
        tweak(cfg);
    })
}

/// The API of one gateway.
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn of(gw: &Gateway) -> Api {
        Api { base: format!("http://{}/v1", gw.http), agent: agent() }
    }

    /// `method` on `/v1{path}` with `token` (None: no Authorization header) and a JSON body.
    #[track_caller]
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Got {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut resp = self.agent.run(req.body(bytes).unwrap()).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.body_mut().with_config().limit(200_000_000).read_to_vec().unwrap();
        Got { status, headers, body }
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Got {
        self.call("GET", path, Some(READ), None)
    }

    /// GET with the read token; requires 200 and returns the JSON.
    #[track_caller]
    pub fn json(&self, path: &str) -> Value {
        let got = self.get(path);
        assert_eq!(got.status, 200, "GET {path}: {}", String::from_utf8_lossy(&got.body));
        serde_json::from_slice(&got.body).unwrap()
    }

    /// The error of a refused call: its status and `error.message`; the shape is checked.
    #[track_caller]
    pub fn error(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
        let got = self.call(method, path, token, body);
        let v: Value = serde_json::from_slice(&got.body)
            .unwrap_or_else(|e| panic!("{method} {path}: {} is not JSON ({e})", String::from_utf8_lossy(&got.body)));
        let message =
            v["error"]["message"].as_str().unwrap_or_else(|| panic!("{method} {path}: no error.message in {v}"));
        assert!(v["error"]["type"].is_string(), "{method} {path}: {v}");
        (got.status, message.to_string())
    }
}

/// A plain message with this subject and body, from ada@sender.test to `to`.
pub fn plain(subject: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ada <ada@sender.test>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@sender.test>\r\n\
         Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n{body}",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// Sends one message and returns its id.
#[track_caller]
pub fn send(gw: &Gateway, to: &str, raw: &[u8]) -> String {
    let mut c = SmtpClient::ready(gw.smtp);
    c.send_mail("ada@sender.test", &[to], raw)
}
