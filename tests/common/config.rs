//! The gateway config a test runs with, as typed values rendered to TOML: `Config::basic` and
//! builder methods for the sections other suites add ([smtp.tls], [http], [webhook], [auth], routes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::receiver::Receiver;
use super::{DOMAIN, SECRET_A, strings};

pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub secret: String,
    pub timeout: String,
    pub retry: Vec<String>,
    /// Requests in flight at once; None: the default.
    pub concurrency: Option<u32>,
    /// `ordering` ("fifo" | "concurrent"); None: the default.
    pub ordering: Option<String>,
}

impl Endpoint {
    /// An endpoint with the test defaults: timeout 5s, retry 0s, 200ms, 400ms.
    pub fn new(name: &str, url: String, secret: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            url,
            secret: secret.into(),
            timeout: "5s".into(),
            retry: strings(&["0s", "200ms", "400ms"]),
            concurrency: None,
            ordering: None,
        }
    }
}

/// `[smtp.tls]`: a certificate and key, and whether STARTTLS is required.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub require: bool,
}

pub struct Config {
    pub hostname: String,
    pub max_message_size: Option<String>,
    pub max_recipients: Option<u32>,
    pub max_sessions: Option<u32>,
    /// Further `key = value` lines for the [smtp] section (e.g. timeouts).
    pub smtp_extra: Vec<String>,
    pub tls: Option<Tls>,
    /// Further `key = value` lines for the [storage] section (e.g. lease).
    pub storage_extra: Vec<String>,
    /// `[http] public_url`.
    pub public_url: String,
    /// Further `key = value` lines for the [http] section (e.g. link_ttl).
    pub http_extra: Vec<String>,
    /// `key = value` lines of a `[webhook]` section (none: no section).
    pub webhook: Vec<String>,
    /// The body of an `[auth]` section (None: no section).
    pub auth: Option<String>,
    /// (domain, endpoint name)
    pub domains: Vec<(String, String)>,
    pub endpoints: Vec<Endpoint>,
    /// TOML written after everything else: `[[routes]]`, `[spam]`, `[forward]`, more domains.
    pub tail: String,
}

impl Config {
    /// One domain `example.test` -> endpoint `app` at `rx/hooks/app`, SECRET_A, retry 0s, 200ms, 400ms.
    pub fn basic(rx: &Receiver) -> Config {
        Config {
            hostname: "mx.spine.test".into(),
            max_message_size: None,
            max_recipients: None,
            max_sessions: None,
            smtp_extra: Vec::new(),
            tls: None,
            storage_extra: Vec::new(),
            public_url: "http://127.0.0.1:8025".into(),
            http_extra: Vec::new(),
            webhook: Vec::new(),
            auth: None,
            domains: vec![(DOMAIN.into(), "app".into())],
            endpoints: vec![Endpoint::new("app", rx.url("/hooks/app"), SECRET_A)],
            tail: String::new(),
        }
    }

    pub fn endpoint(&mut self, name: &str) -> &mut Endpoint {
        self.endpoints.iter_mut().find(|e| e.name == name).expect("no such endpoint in test config")
    }

    /// A further endpoint `name` at `rx/hooks/NAME` with the test defaults.
    pub fn add_endpoint(&mut self, rx: &Receiver, name: &str, secret: &str) -> &mut Self {
        self.endpoints.push(Endpoint::new(name, rx.url(&format!("/hooks/{name}")), secret));
        self
    }

    /// A `key = value` line for [smtp].
    pub fn smtp(&mut self, line: &str) -> &mut Self {
        self.smtp_extra.push(line.into());
        self
    }

    /// A `key = value` line for [storage].
    pub fn storage(&mut self, line: &str) -> &mut Self {
        self.storage_extra.push(line.into());
        self
    }

    /// `[smtp.tls]` with this certificate and key.
    pub fn tls(&mut self, cert: &Path, key: &Path, require: bool) -> &mut Self {
        self.tls = Some(Tls { cert: cert.into(), key: key.into(), require });
        self
    }

    /// `key = value` lines for [http].
    pub fn http(&mut self, lines: &[&str]) -> &mut Self {
        self.http_extra.extend(strings(lines));
        self
    }

    /// `key = value` lines for [webhook].
    pub fn webhook(&mut self, lines: &[&str]) -> &mut Self {
        self.webhook.extend(strings(lines));
        self
    }

    /// The body of [auth].
    pub fn auth(&mut self, body: &str) -> &mut Self {
        self.auth = Some(body.into());
        self
    }

    /// TOML appended after everything else (routes, [spam], [forward], more domains).
    pub fn append(&mut self, toml: &str) -> &mut Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    pub fn render(&self, data_dir: &Path) -> String {
        let mut s = String::new();
        writeln!(s, "[smtp]").unwrap();
        writeln!(s, "listen = [\"127.0.0.1:0\"]").unwrap();
        writeln!(s, "hostname = {}", q(&self.hostname)).unwrap();
        if let Some(v) = &self.max_message_size {
            writeln!(s, "max_message_size = {}", q(v)).unwrap();
        }
        if let Some(v) = self.max_recipients {
            writeln!(s, "max_recipients = {v}").unwrap();
        }
        if let Some(v) = self.max_sessions {
            writeln!(s, "max_sessions = {v}").unwrap();
        }
        for line in &self.smtp_extra {
            writeln!(s, "{line}").unwrap();
        }
        if let Some(t) = &self.tls {
            let (cert, key) = (q(&t.cert.display().to_string()), q(&t.key.display().to_string()));
            writeln!(s, "\n[smtp.tls]\ncert = {cert}\nkey = {key}\nrequire = {}", t.require).unwrap();
        }
        writeln!(s, "\n[storage]\ndata_dir = {}", q(&data_dir.display().to_string())).unwrap();
        for line in &self.storage_extra {
            writeln!(s, "{line}").unwrap();
        }
        writeln!(s, "\n[http]\nlisten = \"127.0.0.1:0\"\npublic_url = {}", q(&self.public_url)).unwrap();
        for line in &self.http_extra {
            writeln!(s, "{line}").unwrap();
        }
        if !self.webhook.is_empty() {
            writeln!(s, "\n[webhook]\n{}", self.webhook.join("\n")).unwrap();
        }
        if let Some(auth) = &self.auth {
            writeln!(s, "\n[auth]\n{auth}").unwrap();
        }
        for (name, endpoint) in &self.domains {
            writeln!(s, "\n[[domains]]\nname = {}\nendpoint = {}", q(name), q(endpoint)).unwrap();
        }
        for e in &self.endpoints {
            writeln!(s, "\n[endpoints.{}]", e.name).unwrap();
            writeln!(s, "url = {}", q(&e.url)).unwrap();
            writeln!(s, "secret = {}", q(&e.secret)).unwrap();
            writeln!(s, "timeout = {}", q(&e.timeout)).unwrap();
            let retry: Vec<String> = e.retry.iter().map(|r| q(r)).collect();
            writeln!(s, "retry = [{}]", retry.join(", ")).unwrap();
            if let Some(o) = &e.ordering {
                writeln!(s, "ordering = {}", q(o)).unwrap();
            }
            if let Some(n) = e.concurrency {
                writeln!(s, "concurrency = {n}").unwrap();
            }
        }
        if !self.tail.is_empty() {
            writeln!(s, "\n{}", self.tail).unwrap();
        }
        s
    }
}

/// A TOML basic string (JSON string syntax is valid TOML for what we write).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}
