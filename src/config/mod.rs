//! The one TOML file: typed sections with defaults next to the fields, unknown keys refused,
//! and every semantic problem reported at once with its file, line and key (`mxhook check-config`).
//! Read by `serve` and by every CLI command; nothing else parses configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

mod problems;
use problems::Doc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub webhook: WebhookConfig,
    #[serde(default)]
    pub domains: Vec<DomainConfig>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub spam: SpamConfig,
    pub forward: Option<ForwardConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub listen: Vec<String>,
    pub hostname: String,
    #[serde(deserialize_with = "size")]
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address (more get 421).
    pub max_sessions_per_ip: usize,
    /// Messages per minute from one IP address (more get 450 at MAIL FROM); 0 = no limit.
    pub max_messages_per_minute_per_ip: u32,
    /// Errors in one session before it is closed with 421 (Postfix's hard error limit).
    pub max_errors: u32,
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub data_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub session_timeout: Duration,
    /// STARTTLS; without it STARTTLS is not offered.
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, and its private key (relative paths: from the config file's directory).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse MAIL until the client has started TLS (for submission-like setups, not a public MX).
    #[serde(default)]
    pub require: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:2525".into()],
            hostname: "mx.example.test".into(),
            max_message_size: 25_000_000,
            max_recipients: 100,
            max_sessions: 100,
            max_sessions_per_ip: 20,
            max_messages_per_minute_per_ip: 300,
            max_errors: 20,
            // RFC 5321 4.5.3.2 minimums: 5 minutes per command, 10 for the data block.
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            session_timeout: Duration::from_secs(1800),
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Raw messages and attachments are deleted this long after arrival (their links then answer 410).
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Message, delivery and attempt records are deleted this long after arrival.
    #[serde(deserialize_with = "duration")]
    pub keep_metadata: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            retention: Duration::from_secs(7 * 86400),
            keep_metadata: Duration::from_secs(90 * 86400),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub public_url: String,
    /// How long attachment and raw links work after the message arrived (default: `[storage] retention`).
    #[serde(deserialize_with = "opt_duration")]
    pub link_ttl: Option<Duration>,
    /// The key that signs links; by default `data_dir/url.key`, made on first start.
    pub url_secret_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            public_url: "http://127.0.0.1:8025".into(),
            link_ttl: None,
            url_secret_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Raw messages up to this size are inlined in the event as `raw.base64`.
    #[serde(deserialize_with = "size")]
    pub inline_raw_max: u64,
    /// Largest event body: over it, `html`, then `text` (then `raw.base64`, `headers`) are left out.
    #[serde(deserialize_with = "size")]
    pub max_payload: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self { inline_raw_max: 256 * 1024, max_payload: 1024 * 1024 }
    }
}

/// One `[[routes]]` entry: which recipients (`match`) get which treatment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `user@domain` (also takes `user+tag@domain`) or `*@domain`.
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    #[serde(default)]
    pub action: Action,
    #[serde(default)]
    pub endpoints: Vec<Spanned<String>>,
    #[serde(default)]
    pub on_spam: Policy,
    #[serde(default)]
    pub on_dmarc_fail: Policy,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_sync_timeout", deserialize_with = "duration")]
    pub sync_timeout: Duration,
    /// For `action = "forward"`: the addresses the message is re-sent to through `[forward] relay`.
    #[serde(default)]
    pub destination: Vec<Spanned<String>>,
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(20)
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// POST an event to each of `endpoints`.
    #[default]
    Webhook,
    /// Keep it (listable, replayable); send nothing.
    Store,
    /// Accept it and keep only the record.
    Drop,
    /// `550` at RCPT.
    Reject,
    /// Re-send the raw message to `destination` through `[forward] relay`, queued and retried.
    Forward,
}

/// What to do with a message that spam checking or DMARC condemned.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Deliver,
    Store,
    Drop,
    Reject,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Durable 250 first, then delivery with retries.
    #[default]
    Queue,
    /// The webhook is tried before answering DATA: 2xx → 250, anything else → 451.
    Sync,
}

/// `[spam]`: at most one engine; without one, messages carry no verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamConfig {
    /// rspamd's HTTP API base, e.g. `http://127.0.0.1:11333` (we POST to its `/checkv2`).
    pub rspamd: Option<Spanned<String>>,
    /// SpamAssassin's spamd, `host:port` (e.g. `127.0.0.1:783`).
    pub spamd: Option<Spanned<String>>,
    /// How long one check may take; a slower or absent engine means verdict null, never a lost message.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Larger messages are not checked (verdict null): scanning them costs much and finds little
    /// (spamc's own default is 500 KB).
    #[serde(deserialize_with = "size")]
    pub max_size: u64,
}

impl Default for SpamConfig {
    fn default() -> Self {
        Self { rspamd: None, spamd: None, timeout: Duration::from_secs(5), max_size: 2_000_000 }
    }
}

/// `[forward]`: the relay that `action = "forward"` routes send through.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// `smtp://host:port` (port 25 when left out).
    pub relay: Spanned<String>,
    /// Require STARTTLS (the relay's certificate is checked against the Mozilla roots).
    #[serde(default)]
    pub starttls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// Envelope sender of forwarded copies (default: the original sender, `<>` stays `<>`).
    pub mail_from: Option<Spanned<String>>,
    /// How long the relay may take to answer one command.
    #[serde(default = "default_forward_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_retry", deserialize_with = "durations")]
    pub retry: Vec<Duration>,
}

fn default_forward_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: Spanned<String>,
    /// The domain's catch-all endpoint: every recipient at this domain is delivered there.
    pub endpoint: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub url: Spanned<String>,
    pub secret: Option<Spanned<Secret>>,
    pub secret_file: Option<Spanned<PathBuf>>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_retry", deserialize_with = "durations")]
    pub retry: Vec<Duration>,
    /// Attempts in flight at once to this endpoint: a slow or dead endpoint cannot take every slot.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    8
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Delay before each attempt, counted from the previous one: immediately, +60 s, +5 min, +30 min, +2 h, +8 h.
pub fn default_retry() -> Vec<Duration> {
    [0, 60, 300, 1800, 7200, 28800].into_iter().map(Duration::from_secs).collect()
}

/// A webhook signing secret; Debug never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `[auth]`: sender authentication (SPF, DKIM, DMARC, ARC) before a message is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Off: `message.auth` is null and nothing is looked up.
    pub enabled: bool,
    /// Name servers as "ip:port" (port 53 if left out); empty means the system resolver (/etc/resolv.conf).
    pub dns: Vec<Spanned<String>>,
    /// The whole DNS budget of one message: past it, unanswered checks are `temperror`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    pub dmarc_reject: DmarcReject,
    pub spf: SpfMode,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dns: Vec::new(),
            timeout: Duration::from_secs(5),
            dmarc_reject: DmarcReject::Accept,
            spf: SpfMode::Relaxed,
        }
    }
}

/// What to do with mail that fails DMARC under the sender's `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcReject {
    /// Record the verdict and deliver: the receiving app decides.
    Accept,
    /// Answer `550 5.7.1` at the end of DATA; nothing is stored.
    Reject,
}

/// How the MAIL FROM SPF result is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfMode {
    /// Checked at MAIL FROM: `fail` gets 550 5.7.1, `temperror` 451 4.7.1.
    Strict,
    /// Checked and recorded; never refuses mail.
    Relaxed,
    /// Not checked: `auth.spf` and `auth.spf_helo` are null (DMARC can then pass only through DKIM).
    Off,
}

/// `[auth]` validated: None in `Settings` when disabled.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Empty: the system resolver.
    pub dns: Vec<SocketAddr>,
    pub timeout: Duration,
    pub dmarc_reject: DmarcReject,
    pub spf: SpfMode,
}

/// One problem found in a config file, located for a human.
#[derive(Debug)]
pub struct Problem {
    /// 1-based; 0: the file as a whole (it cannot be read).
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// Every problem in one file, in file order, printed one per line as `FILE:LINE:COL: key: message`
/// (`FILE: message` for the file as a whole).
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                0 => write!(f, "{}: {}", self.file.display(), p.message)?,
                _ => write!(f, "{}:{}:{}: {}: {}", self.file.display(), p.line, p.column, p.key, p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A validated configuration with secrets resolved: what the rest of the program uses.
#[derive(Debug)]
pub struct Settings {
    pub file: PathBuf,
    pub smtp: SmtpConfig,
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub retention: Duration,
    pub keep_metadata: Duration,
    pub http_listen: SocketAddr,
    pub public_url: String,
    pub link_ttl: Duration,
    pub url_secret_file: Option<PathBuf>,
    pub webhook: WebhookConfig,
    /// Lower-case domain name -> its catch-all endpoint name (None: the domain accepts nothing yet).
    pub domains: BTreeMap<String, Option<String>>,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub routes: Vec<Route>,
    pub spam: Option<Spam>,
    pub forward: Option<Forward>,
    /// None: `[auth] enabled = false`.
    pub auth: Option<AuthSettings>,
}

/// A configured spam engine and how long a check may take.
#[derive(Debug, Clone)]
pub struct Spam {
    pub engine: SpamEngine,
    pub timeout: Duration,
    pub max_size: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SpamEngine {
    /// Base URL of rspamd's HTTP API.
    Rspamd(String),
    /// `host:port` of spamd.
    Spamd(String),
}

/// The validated `[forward]` relay.
#[derive(Debug, Clone)]
pub struct Forward {
    pub host: String,
    pub port: u16,
    pub starttls: bool,
    pub credentials: Option<(String, Secret)>,
    pub mail_from: Option<String>,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
}

/// A validated route: `pattern` is lower-case `local@domain` or `*@domain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Route {
    #[serde(rename = "match")]
    pub pattern: String,
    pub action: Action,
    pub endpoints: Vec<String>,
    pub on_spam: Policy,
    pub on_dmarc_fail: Policy,
    pub mode: Mode,
    #[serde(serialize_with = "ser_ms")]
    pub sync_timeout: Duration,
    /// Forward routes: where the message is re-sent.
    pub destination: Vec<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub secret: Secret,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub concurrency: usize,
}

impl Settings {
    pub fn load(file: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read: {e}"),
            };
            ConfigError {
                file: file.to_path_buf(),
                problems: vec![Problem { line: 0, column: 0, key: "-".into(), message }],
            }
        })?;
        Self::from_str(file, &text)
    }

    /// Every problem at once: syntax; then each unknown key and bad value (taken out, so the next
    /// is found too); then the semantic checks on the rest. Sorted in file order.
    pub fn from_str(file: &Path, text: &str) -> Result<Settings, ConfigError> {
        let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
        let doc = Doc::parse(text).map_err(fail)?;
        let mut problems = Vec::new();
        let raw = doc.deserialize::<Config>(&mut problems);
        let read = problems.len();
        let settings = raw.map(|raw| Self::check(file, &doc, raw, &mut problems));
        if problems.is_empty()
            && let Some(settings) = settings
        {
            return Ok(settings);
        }
        // A value taken out or filled in while reading can trip a semantic check at the same place
        // (an empty `url` in place of a missing one): the first report says it.
        let semantic = problems.split_off(read);
        let echo = |p: &Problem| problems.iter().any(|r| r.line == p.line && r.key == p.key);
        let semantic: Vec<Problem> = semantic.into_iter().filter(|p| !echo(p)).collect();
        problems.extend(semantic);
        problems.sort_by_key(|p| (p.line, p.column));
        Err(fail(problems))
    }

    /// The semantic checks, on a file serde has read: problems go to `problems`, and the result is
    /// only used when there are none.
    fn check(file: &Path, doc: &Doc, mut raw: Config, problems: &mut Vec<Problem>) -> Settings {
        let text = doc.text;
        // Every relative path in the file is taken from the file's own directory.
        let base = file.parent().unwrap_or(Path::new("."));

        let listen = raw
            .smtp
            .listen
            .iter()
            .filter_map(|a| match a.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.push(doc.at("smtp.listen", format!("`{a}` is not host:port (e.g. 0.0.0.0:25)")));
                    None
                }
            })
            .collect::<Vec<_>>();
        if let Some(t) = &raw.smtp.tls {
            for (k, p) in [("cert", &t.cert), ("key", &t.key)] {
                if !base.join(p).is_file() {
                    problems.push(doc.at(&format!("smtp.tls.{k}"), format!("cannot read {}", base.join(p).display())));
                }
            }
        }
        if raw.smtp.listen.is_empty() {
            problems.push(doc.at("smtp.listen", "needs at least one address"));
        }
        if !(raw.http.public_url.starts_with("http://") || raw.http.public_url.starts_with("https://")) {
            problems.push(doc.at("http.public_url", "must start with http:// or https://"));
        }
        if raw.storage.keep_metadata < raw.storage.retention {
            problems.push(doc.at("storage.keep_metadata", "must be at least `retention`"));
        }
        if raw.smtp.max_recipients == 0 || raw.smtp.max_sessions == 0 {
            problems.push(doc.at("smtp", "max_recipients and max_sessions must be at least 1"));
        }
        let http_listen = raw.http.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(doc.at("http.listen", format!("`{}` is not host:port", raw.http.listen)));
            SocketAddr::from(([127, 0, 0, 1], 8025))
        });

        let mut endpoints = BTreeMap::new();
        for (name, ep) in &raw.endpoints {
            let url = ep.url.get_ref();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(problem(
                    text,
                    ep.url.span(),
                    &format!("endpoints.{name}.url"),
                    "must start with http:// or https://",
                ));
            }
            if ep.retry.is_empty() {
                problems.push(doc.at(&format!("endpoints.{name}.retry"), "needs at least one delay (e.g. [\"0s\"])"));
            }
            let secret = match (&ep.secret, &ep.secret_file) {
                (Some(s), None) => Some((s.get_ref().clone(), s.span())),
                (None, Some(f)) => {
                    let path = base.join(f.get_ref());
                    match std::fs::read_to_string(&path) {
                        Ok(s) => Some((Secret(s.trim().to_string()), f.span())),
                        Err(e) => {
                            let msg = format!("cannot read {}: {e}", path.display());
                            problems.push(problem(text, f.span(), &format!("endpoints.{name}.secret_file"), &msg));
                            None
                        }
                    }
                }
                _ => {
                    let msg = "set exactly one of `secret` or `secret_file` (make one with `mxhook secret generate`)";
                    problems.push(doc.at(&format!("endpoints.{name}"), msg));
                    None
                }
            };
            if let Some((secret, span)) = secret {
                if let Err(e) = crate::mail::SigningKey::parse(&secret.0) {
                    problems.push(problem(text, span, &format!("endpoints.{name}.secret"), &e.to_string()));
                    continue;
                }
                endpoints.insert(
                    name.clone(),
                    Endpoint {
                        name: name.clone(),
                        url: url.clone(),
                        secret,
                        timeout: ep.timeout,
                        retry: ep.retry.clone(),
                        concurrency: ep.concurrency.max(1),
                    },
                );
            }
        }

        let mut domains = BTreeMap::new();
        for d in &raw.domains {
            let name = d.name.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() || name.contains('@') || name.contains(char::is_whitespace) {
                problems.push(problem(text, d.name.span(), "domains.name", "not a domain name"));
            }
            if domains.contains_key(&name) {
                problems.push(problem(text, d.name.span(), "domains.name", "listed twice"));
            }
            if let Some(ep) = &d.endpoint
                && !raw.endpoints.contains_key(ep.get_ref())
            {
                let msg = format!("no [endpoints.{}] section", ep.get_ref());
                problems.push(problem(text, ep.span(), "domains.endpoint", &msg));
            }
            domains.insert(name, d.endpoint.as_ref().map(|e| e.get_ref().clone()));
        }

        let mut routes: Vec<Route> = Vec::new();
        for r in &raw.routes {
            let pattern = r.pattern.get_ref().trim().to_ascii_lowercase();
            let mut bad = |m: &str| problems.push(problem(text, r.pattern.span(), "routes.match", m));
            match pattern.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    if !domains.contains_key(domain) {
                        bad(&format!("`{domain}` is not in [[domains]]: mail for it is refused before routes apply"));
                    } else if local.contains('*') && local != "*" {
                        bad("use an exact address or `*@domain`");
                    } else if local.contains(['@', '%', '!', ' ']) {
                        bad("not an address");
                    }
                }
                _ => bad("use an exact address (`support@example.com`) or a catch-all (`*@example.com`)"),
            }
            if routes.iter().any(|x| x.pattern == pattern) {
                problems.push(problem(
                    text,
                    r.pattern.span(),
                    "routes.match",
                    "another route has the same match: which one applies would be a guess",
                ));
            }
            let webhook_like = r.action == Action::Webhook;
            if webhook_like && r.endpoints.is_empty() {
                problems.push(problem(
                    text,
                    r.pattern.span(),
                    "routes.endpoints",
                    "a webhook route needs `endpoints = [\"name\", ...]`",
                ));
            }
            if !webhook_like && !r.endpoints.is_empty() {
                problems.push(problem(
                    text,
                    r.endpoints[0].span(),
                    "routes.endpoints",
                    "only a webhook route sends to endpoints",
                ));
            }
            for e in &r.endpoints {
                if !raw.endpoints.contains_key(e.get_ref()) {
                    problems.push(problem(
                        text,
                        e.span(),
                        "routes.endpoints",
                        &format!("no [endpoints.{}] section", e.get_ref()),
                    ));
                }
            }
            if r.mode == Mode::Sync && !webhook_like {
                problems.push(problem(text, r.pattern.span(), "routes.mode", "sync mode needs a webhook route"));
            }
            check_destination(r, raw.forward.is_some(), text, problems);
            routes.push(Route {
                pattern,
                action: r.action,
                endpoints: r.endpoints.iter().map(|e| e.get_ref().clone()).collect(),
                on_spam: r.on_spam,
                on_dmarc_fail: r.on_dmarc_fail,
                mode: r.mode,
                sync_timeout: r.sync_timeout,
                destination: r.destination.iter().map(|d| d.get_ref().trim().to_string()).collect(),
            });
        }
        let spam = spam_settings(&raw.spam, text, problems);
        let forward = raw.forward.as_ref().and_then(|f| forward_settings(f, base, doc, problems));
        let auth = auth_settings(doc, &raw.auth, problems);

        if let Some(t) = raw.smtp.tls.as_mut() {
            t.cert = base.join(&t.cert);
            t.key = base.join(&t.key);
        }
        Settings {
            file: file.to_path_buf(),
            smtp: raw.smtp,
            listen,
            data_dir: base.join(raw.storage.data_dir),
            retention: raw.storage.retention,
            keep_metadata: raw.storage.keep_metadata,
            http_listen,
            public_url: raw.http.public_url.trim_end_matches('/').to_string(),
            link_ttl: raw.http.link_ttl.unwrap_or(raw.storage.retention),
            url_secret_file: raw.http.url_secret_file.map(|f| base.join(f)),
            webhook: raw.webhook,
            domains,
            endpoints,
            routes,
            spam,
            forward,
            auth,
        }
    }
}

/// A forward route needs addresses and a relay; other routes take no `destination`.
fn check_destination(r: &RouteConfig, relay: bool, text: &str, problems: &mut Vec<Problem>) {
    let span = r.pattern.span();
    if r.action != Action::Forward {
        if let Some(d) = r.destination.first() {
            problems.push(problem(text, d.span(), "routes.destination", "only a forward route has a destination"));
        }
        return;
    }
    if r.destination.is_empty() {
        problems.push(problem(
            text,
            span.clone(),
            "routes.destination",
            "a forward route needs `destination = [\"a@b.example\"]`",
        ));
    }
    if !relay {
        problems.push(problem(
            text,
            span,
            "routes.action",
            "forwarding needs a `[forward] relay = \"smtp://host:port\"`",
        ));
    }
    for d in &r.destination {
        if d.get_ref().trim().parse::<lettre::Address>().is_err() {
            problems.push(problem(text, d.span(), "routes.destination", "not an address like `a@b.example`"));
        }
    }
}

fn spam_settings(c: &SpamConfig, text: &str, problems: &mut Vec<Problem>) -> Option<Spam> {
    let engine = match (&c.rspamd, &c.spamd) {
        (None, None) => return None,
        (Some(_), Some(s)) => {
            problems.push(problem(text, s.span(), "spam.spamd", "set one engine: `rspamd` or `spamd`, not both"));
            return None;
        }
        (Some(url), None) => {
            let u = url.get_ref().trim().trim_end_matches('/');
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                problems.push(problem(text, url.span(), "spam.rspamd", "must be an http:// URL (rspamd's port 11333)"));
            }
            SpamEngine::Rspamd(u.to_string())
        }
        (None, Some(addr)) => {
            let a = addr.get_ref().trim();
            if !a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
                problems.push(problem(text, addr.span(), "spam.spamd", "must be host:port (spamd listens on 783)"));
            }
            SpamEngine::Spamd(a.to_string())
        }
    };
    Some(Spam { engine, timeout: c.timeout, max_size: c.max_size })
}

fn forward_settings(f: &ForwardConfig, base: &Path, doc: &Doc, problems: &mut Vec<Problem>) -> Option<Forward> {
    let text = doc.text;
    let mut ok = true;
    let mut bad = |span: Range<usize>, key: &str, msg: &str| {
        problems.push(problem(text, span, key, msg));
        ok = false;
    };
    let relay = f.relay.get_ref().trim();
    let (host, port) = match relay.strip_prefix("smtp://").map(|r| r.trim_end_matches('/')) {
        Some(hp) => match hp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, p.parse::<u16>().ok()),
            _ => (hp, Some(25)),
        },
        None => ("", None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if host.is_empty() || port.is_none() {
        bad(f.relay.span(), "forward.relay", "must be smtp://host:port (use `starttls = true` for TLS)");
    }
    let password = match (&f.password, &f.password_file) {
        (Some(p), None) => Some(p.clone()),
        (None, Some(file)) => match std::fs::read_to_string(base.join(file.get_ref())) {
            Ok(p) => Some(Secret(p.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => {
                let msg = format!("cannot read {}: {e}", base.join(file.get_ref()).display());
                bad(file.span(), "forward.password_file", &msg);
                None
            }
        },
        (Some(_), Some(file)) => {
            bad(file.span(), "forward.password_file", "set `password` or `password_file`, not both");
            None
        }
        (None, None) => None,
    };
    let credentials = match (&f.username, password) {
        (Some(u), Some(p)) => Some((u.clone(), p)),
        (None, None) => None,
        _ => {
            bad(f.relay.span(), "forward.username", "`username` and a password go together");
            None
        }
    };
    if let Some(m) = &f.mail_from
        && !m.get_ref().trim().is_empty()
        && m.get_ref().trim().parse::<lettre::Address>().is_err()
    {
        bad(m.span(), "forward.mail_from", "not an address (use \"\" for the null sender)");
    }
    if f.retry.is_empty() {
        problems.push(doc.at("forward.retry", "needs at least one delay (e.g. [\"0s\"])"));
        ok = false;
    }
    ok.then(|| Forward {
        host,
        port: port.unwrap_or(25),
        starttls: f.starttls,
        credentials,
        mail_from: f.mail_from.as_ref().map(|m| m.get_ref().trim().to_string()),
        timeout: f.timeout,
        retry: f.retry.clone(),
    })
}

fn auth_settings(doc: &Doc, raw: &AuthConfig, problems: &mut Vec<Problem>) -> Option<AuthSettings> {
    let text = doc.text;
    let mut dns = Vec::new();
    for server in &raw.dns {
        let s = server.get_ref().trim();
        let parsed =
            s.parse::<SocketAddr>().or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(addr) => dns.push(addr),
            Err(_) => {
                let msg = format!("`{s}` is not ip:port (e.g. \"127.0.0.1:53\"; names are not resolved here)");
                problems.push(problem(text, server.span(), "auth.dns", &msg));
            }
        }
    }
    if raw.timeout.is_zero() {
        problems.push(doc.at("auth.timeout", "must be more than 0 (e.g. \"5s\")"));
    }
    raw.enabled.then_some(AuthSettings { dns, timeout: raw.timeout, dmarc_reject: raw.dmarc_reject, spf: raw.spf })
}

fn problem(text: &str, span: Range<usize>, key: &str, message: &str) -> Problem {
    let before = text.get(..span.start).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem { line, column, key: key.into(), message: message.into() }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(d).map(|h| h.0)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Each element read on its own, so that a bad one is reported where it stands in the list.
fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Ok(Vec::<HumanDuration>::deserialize(d)?.into_iter().map(|h| h.0).collect())
}

/// A duration as the file writes it: `"30s"`, `"5m"`.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not `String::deserialize` then parse: an error raised while the value is being
        // visited carries that value's own span (the element, not the whole list).
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration like "30s", "5m", "2h", "1d""#)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                parse_duration(s).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// humantime's own error lists its unit names "(and few variations)"; say what a config takes instead.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like \"30s\", \"5m\", \"2h\", \"1d\", got `{s}`"))
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Human(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Human(s) => s
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a size like \"25MB\": {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid signing secret.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_str(Path::new("t.toml"), text)
    }

    #[test]
    fn example_file_is_valid() {
        let s = load(include_str!("../../gateway.example.toml")).expect("example config");
        assert_eq!(s.smtp.max_message_size, 25_000_000);
        assert_eq!(s.endpoints["app"].retry, default_retry());
        assert_eq!(s.domains["example.test"].as_deref(), Some("app"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = load("[smtp]\nhostname = \"x\"\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:3:1: smtp.bogus: unknown field `bogus`"), "{e}");
    }

    /// `FILE:LINE:COL: key` of each problem, in the order printed.
    fn located(e: &ConfigError) -> Vec<String> {
        e.problems.iter().map(|p| format!("{}:{}: {}", p.line, p.column, p.key)).collect()
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported_in_file_order() {
        let text = format!(
            "[endpoints.x]\nurl = \"ftp://x\"\nsecret = \"{SECRET}\"\nretry = [\"0s\", \"5x\"]\ntimeuot = \"1s\"\n\
             [smtp]\nmax_recipents = 5\ncommand_timeout = 30\n{DOMAIN}\
             [[routes]]\nmatch = \"a@a.test\"\naction = \"bounce\"\nendpoints = [\"x\"]\n[auth]\ndmarc_reject = \"bounce\"\n"
        );
        let e = load(&text).unwrap_err();
        assert_eq!(
            located(&e),
            [
                "2:7: endpoints.x.url",
                "4:16: endpoints.x.retry",
                "5:1: endpoints.x.timeuot",
                "7:1: smtp.max_recipents",
                "8:19: smtp.command_timeout",
                "13:10: routes.action",
                "16:16: auth.dmarc_reject",
            ],
            "{e}"
        );
        let retry = &e.problems[1].message;
        assert_eq!(retry, "expected a duration like \"30s\", \"5m\", \"2h\", \"1d\", got `5x`");
    }

    #[test]
    fn a_missing_required_key_is_reported_once_at_its_table() {
        // `url` missing: reported at the header, and the empty stand-in adds no "must start with http://".
        let e = load(&format!("[endpoints.x]\nsecret = \"{SECRET}\"\n")).unwrap_err();
        assert_eq!(located(&e), ["1:1: endpoints.x.url"], "{e}");
        assert_eq!(e.problems[0].message, "missing field `url`");
        // `name` of the wrong type: one problem at the value, not a second one for the missing field.
        let e = load("[[domains]]\nname = 5\n[[domains]]\nname = \"b.test\"\nendpoit = \"x\"\n").unwrap_err();
        assert_eq!(located(&e), ["2:8: domains.name", "5:1: domains.endpoit"], "{e}");
    }

    #[test]
    fn a_missing_secret_points_at_its_endpoint_section() {
        let e = load("[smtp]\nhostname = \"x\"\n\n[endpoints.app]\nurl = \"http://x\"\n").unwrap_err();
        assert_eq!(located(&e), ["4:1: endpoints.app"], "{e}");
    }

    #[test]
    fn syntax_errors_are_reported_one_per_line() {
        let e = load("[smtp]\nhostname = x\nmax_recipients = = 5\n").unwrap_err();
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3], "{e}");
    }

    #[test]
    fn a_missing_file_says_so_without_a_position() {
        let e = Settings::load(Path::new("/nonexistent/gateway.toml")).unwrap_err().to_string();
        assert_eq!(e, "/nonexistent/gateway.toml: no such file");
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = "[[domains]]\nname = \"a.test\"\nendpoint = \"nope\"\n[endpoints.x]\nurl = \"ftp://x\"\nsecret = \"whsec_AAAA\"\n";
        let e = load(text).unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert!(keys.contains(&("domains.endpoint", 3)), "{e}");
        assert!(keys.contains(&("endpoints.x.url", 5)), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let file = Path::new("/etc/mxhook/gateway.toml");
        let s = Settings::from_str(file, "[storage]\ndata_dir = \"data\"\n").unwrap();
        assert_eq!(s.data_dir, Path::new("/etc/mxhook/data"));
        let s = Settings::from_str(file, "[storage]\ndata_dir = \"/srv/mx\"\n").unwrap();
        assert_eq!(s.data_dir, Path::new("/srv/mx"));
        // The file named without a directory (the README's quick start): `./data` beside it.
        assert_eq!(load("").unwrap().data_dir, Path::new("./data"));
    }

    /// The .deb installs packaging/gateway.toml: the example's keys and values with an absolute data_dir
    /// (a relative one would be taken from /etc/mxhook), and sender authentication on (the example has
    /// it off so that trying mxhook out sends no DNS queries).
    #[test]
    fn packaged_config_is_the_example_with_an_absolute_data_dir() {
        let packaged = include_str!("../../packaging/gateway.toml");
        let s = Settings::from_str(Path::new("/etc/mxhook/gateway.toml"), packaged).expect("packaged config");
        assert_eq!(s.data_dir, Path::new("/var/lib/mxhook/data"));
        assert!(s.auth.is_some(), "the installed gateway authenticates senders");
        let settings = |text: &'static str| -> Vec<&'static str> {
            let differ = ["data_dir = ", "enabled = "];
            text.lines().filter(|l| !l.starts_with('#') && !differ.iter().any(|d| l.starts_with(d))).collect()
        };
        assert_eq!(
            settings(packaged),
            settings(include_str!("../../gateway.example.toml")),
            "packaging/gateway.toml must be gateway.example.toml but for data_dir, [auth] enabled and comments"
        );
    }

    const DOMAIN: &str = "[[domains]]\nname = \"a.test\"\n";

    #[test]
    fn spam_engines() {
        let s = load(&format!("{DOMAIN}[spam]\nspamd = \"127.0.0.1:783\"\ntimeout = \"2s\"\n")).unwrap();
        let spam = s.spam.unwrap();
        assert_eq!((spam.engine, spam.timeout), (SpamEngine::Spamd("127.0.0.1:783".into()), Duration::from_secs(2)));
        let s = load("[spam]\nrspamd = \"http://127.0.0.1:11333/\"\n").unwrap();
        assert_eq!(s.spam.unwrap().engine, SpamEngine::Rspamd("http://127.0.0.1:11333".into()));
        assert!(load("").unwrap().spam.is_none());
        let e = load("[spam]\nrspamd = \"http://x\"\nspamd = \"x:1\"\n").unwrap_err().to_string();
        assert!(e.contains("spam.spamd: set one engine"), "{e}");
        assert!(load("[spam]\nspamd = \"nohost\"\n").is_err());
    }

    #[test]
    fn forward_routes_need_a_relay_and_addresses() {
        let route = "[[routes]]\nmatch = \"x@a.test\"\naction = \"forward\"\ndestination = [\"ops@b.test\"]\n";
        let e = load(&format!("{DOMAIN}{route}")).unwrap_err().to_string();
        assert!(e.contains("routes.action: forwarding needs a `[forward] relay"), "{e}");
        let s =
            load(&format!("{DOMAIN}{route}[forward]\nrelay = \"smtp://127.0.0.1:2526\"\nmail_from = \"\"\n")).unwrap();
        let f = s.forward.unwrap();
        assert_eq!((f.host.as_str(), f.port, f.starttls, f.mail_from.as_deref()), ("127.0.0.1", 2526, false, Some("")));
        assert_eq!(s.routes[0].destination, vec!["ops@b.test".to_string()]);
        let s =
            load("[forward]\nrelay = \"smtp://relay.b.test\"\nstarttls = true\nusername = \"u\"\npassword = \"p\"\n");
        assert_eq!(s.unwrap().forward.unwrap().port, 25);
        let bad = format!(
            "{DOMAIN}[[routes]]\nmatch = \"x@a.test\"\naction = \"forward\"\ndestination = [\"not an address\"]\n\
             [[routes]]\nmatch = \"y@a.test\"\naction = \"store\"\ndestination = [\"a@b.test\"]\n\
             [forward]\nrelay = \"http://x\"\nusername = \"u\"\n"
        );
        let e = load(&bad).unwrap_err().to_string();
        for needle in ["not an address", "only a forward route", "forward.relay", "forward.username"] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn auth_defaults_and_problems() {
        let a = load("").unwrap().auth.expect("auth is on by default");
        assert!(a.dns.is_empty());
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!((a.dmarc_reject, a.spf), (DmarcReject::Accept, SpfMode::Relaxed));
        let a = load("[auth]\ndns = [\"127.0.0.1:5353\", \"::1\"]\nspf = \"strict\"\n").unwrap().auth.unwrap();
        assert_eq!(a.dns, vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(a.spf, SpfMode::Strict);
        assert!(load("[auth]\nenabled = false\n").unwrap().auth.is_none());
        let e = load("[auth]\ntimeout = \"0s\"\ndns = [\"ns.example:53\"]\n").unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert!(keys.contains(&("auth.dns", 3)) && keys.contains(&("auth.timeout", 2)), "{e}");
        let e = load("[auth]\ndmarc_reject = \"bounce\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn human_sizes_and_durations() {
        let s = load("[smtp]\nmax_message_size = \"10KB\"\ncommand_timeout = \"1m\"\n").unwrap();
        assert_eq!(s.smtp.max_message_size, 10_000);
        assert_eq!(s.smtp.command_timeout, Duration::from_secs(60));
        assert!(load("[smtp]\nmax_message_size = \"lots\"\n").is_err());
    }
}
