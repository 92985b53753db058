//! The validated settings the program runs on, and the semantic checks that make them from the file
//! model: every problem is collected (with its line, see `problems`), none stops the others.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{
    ApiConfig, AuthConfig, Config, EndpointConfig, ForwardConfig, RouteConfig, SendersConfig, SmtpConfig, SpamConfig,
    StorageConfig, WebhookConfig,
};
use super::problems::{Doc, Problem, problem};
use super::values::{self, Secret};
use crate::auth::AuthSettings;
use crate::deliver::Ordering;
use crate::http::api::{ApiSettings, Token};
use crate::mail::{EventType, SigningKey, SigningKeys};
use crate::route::{Action, Mode, Route};
use crate::senders::{Lists, Rule, SendersSettings};
use crate::store::DatabaseUrl;
use toml::Spanned;

/// A validated configuration with secrets resolved: what the rest of the program uses.
#[derive(Debug)]
pub struct Settings {
    pub file: PathBuf,
    pub smtp: SmtpConfig,
    pub listen: Vec<SocketAddr>,
    /// None: no `[lmtp] listen`.
    pub lmtp: Option<Lmtp>,
    pub data_dir: PathBuf,
    /// None: the store is SQLite in `data_dir`; else this PostgreSQL database, shared by every
    /// gateway that names it (`data_dir` still holds this host's lock file).
    pub database: Option<DatabaseUrl>,
    /// `[storage] lease`: how long a claim on a delivery lasts unrenewed (PostgreSQL only).
    pub lease: Duration,
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
    pub senders: SendersSettings,
    /// None: no `[api]`, nothing under `/v1/` answers.
    pub api: Option<ApiSettings>,
    pub streams: BTreeMap<String, Stream>,
}

/// A validated `[streams.NAME]`.
#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    /// The event types it keeps (`events`, as an endpoint's).
    pub events: Vec<EventType>,
    pub retention: Duration,
}

impl Stream {
    pub fn wants(&self, t: EventType) -> bool {
        self.events.contains(&t)
    }
}

/// The validated `[lmtp]` section.
#[derive(Debug, Clone)]
pub struct Lmtp {
    pub listen: Vec<ListenAddr>,
    /// Permissions of each Unix socket.
    pub socket_mode: u32,
    /// Lower-case authserv-ids whose SPF verdict is taken from the message's header.
    pub trusted_authserv_ids: Vec<String>,
    pub proxy_protocol: Vec<ipnet::IpNet>,
}

/// Where a listener is bound: a TCP address, or a Unix socket path.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
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

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    /// The signing keys, parsed once from `secret`, `secret_file` or `secrets` when the file is read.
    pub keys: Arc<SigningKeys>,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub concurrency: usize,
    pub ordering: Ordering,
    /// The event types it subscribes to (`events`; see `EventType::DEFAULT_SUBSCRIPTION`).
    pub events: Vec<EventType>,
}

impl Endpoint {
    pub fn wants(&self, t: EventType) -> bool {
        self.events.contains(&t)
    }
}

impl Settings {
    /// The semantic checks, on a file serde has read: problems go to `problems`, and the result is
    /// only used when there are none.
    pub(super) fn check(file: &Path, doc: &Doc, mut raw: Config, problems: &mut Vec<Problem>) -> Settings {
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
        let lmtp = lmtp_settings(&raw.lmtp, base, doc, problems);
        if raw.smtp.listen.is_empty() {
            problems.push(doc.at("smtp.listen", "needs at least one address"));
        }
        if !values::http_url(&raw.http.public_url) {
            problems.push(doc.at("http.public_url", "must start with http:// or https://"));
        }
        let database = database_url(&raw.storage, base, text, problems);
        if raw.storage.keep_metadata < raw.storage.retention {
            problems.push(doc.at("storage.keep_metadata", "must be at least `retention`"));
        }
        // Renewed every third of it: shorter, and one slow round trip to the database lets a live
        // gateway's claims lapse (another gateway then sends the same event again).
        if raw.storage.lease < Duration::from_secs(1) {
            problems.push(doc.at("storage.lease", "must be at least 1s (e.g. \"30s\")"));
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
            if !values::http_url(url) {
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
            let Some(keys) = signing_keys(name, ep, base, text, doc, problems) else {
                continue;
            };
            let events = event_types(ep.events.as_deref(), &format!("endpoints.{name}.events"), text, problems);
            endpoints.insert(
                name.clone(),
                Endpoint {
                    name: name.clone(),
                    url: url.clone(),
                    keys: Arc::new(keys),
                    timeout: ep.timeout,
                    retry: ep.retry.clone(),
                    // fifo sends one request at a time whatever `concurrency` says.
                    concurrency: if ep.ordering == Ordering::Fifo { 1 } else { ep.concurrency.max(1) },
                    ordering: ep.ordering,
                    events,
                },
            );
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
            if webhook_like && r.endpoints.is_empty() && r.streams.is_empty() {
                problems.push(problem(
                    text,
                    r.pattern.span(),
                    "routes.endpoints",
                    "a webhook route needs `endpoints = [\"name\", ...]` (or `streams = [...]`)",
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
                // The session's own attempt cannot wait for the endpoint's older events.
                if r.mode == Mode::Sync
                    && raw.endpoints.get(e.get_ref()).is_some_and(|ep| ep.ordering == Ordering::Fifo)
                {
                    let msg =
                        format!("endpoint `{}` has ordering = \"fifo\": a sync route cannot send to it", e.get_ref());
                    problems.push(problem(text, e.span(), "routes.endpoints", &msg));
                }
            }
            if r.mode == Mode::Sync && !webhook_like {
                problems.push(problem(text, r.pattern.span(), "routes.mode", "sync mode needs a webhook route"));
            }
            check_destination(r, raw.forward.is_some(), text, problems);
            for st in &r.streams {
                if !raw.streams.contains_key(st.get_ref()) {
                    let msg = format!("no [streams.{}] section", st.get_ref());
                    problems.push(problem(text, st.span(), "routes.streams", &msg));
                }
                if !webhook_like {
                    problems.push(problem(text, st.span(), "routes.streams", "only a webhook route sends to streams"));
                }
            }
            routes.push(Route {
                pattern,
                action: r.action,
                endpoints: r.endpoints.iter().map(|e| e.get_ref().clone()).collect(),
                on_spam: r.on_spam,
                on_dmarc_fail: r.on_dmarc_fail,
                mode: r.mode,
                sync_timeout: r.sync_timeout,
                destination: r.destination.iter().map(|d| d.get_ref().trim().to_string()).collect(),
                streams: r.streams.iter().map(|s| s.get_ref().clone()).collect(),
            });
        }
        let spam = spam_settings(&raw.spam, text, problems);
        let forward = raw.forward.as_ref().and_then(|f| forward_settings(f, base, doc, problems));
        let mut auth = auth_settings(doc, &raw.auth, problems);
        if let (Some(a), Some(l)) = (auth.as_mut(), lmtp.as_ref()) {
            a.trusted_authserv_ids = l.trusted_authserv_ids.clone();
        }
        let senders = senders_settings(&raw.senders, text, problems);
        let api = raw.api.as_ref().map(|a| api_settings(a, base, doc, problems));
        let streams = stream_settings(&raw, text, problems);

        if let Some(t) = raw.smtp.tls.as_mut() {
            t.cert = base.join(&t.cert);
            t.key = base.join(&t.key);
        }
        Settings {
            file: file.to_path_buf(),
            smtp: raw.smtp,
            listen,
            lmtp,
            data_dir: base.join(raw.storage.data_dir),
            database,
            lease: raw.storage.lease,
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
            senders,
            api,
            streams,
        }
    }
}

/// An `events = [...]` list (endpoints and streams): each name checked, `"*"` for all, left out: the
/// default subscription.
fn event_types(list: Option<&[Spanned<String>]>, key: &str, text: &str, problems: &mut Vec<Problem>) -> Vec<EventType> {
    let mut events = Vec::new();
    for e in list.into_iter().flatten() {
        match (e.get_ref().as_str(), EventType::parse(e.get_ref())) {
            ("*", _) => events.extend(EventType::ALL),
            (_, Some(t)) => events.push(t),
            (other, None) => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                let msg = format!("unknown event type `{other}` (known: {}, or \"*\")", known.join(", "));
                problems.push(problem(text, e.span(), key, &msg));
            }
        }
    }
    if list.is_none() {
        events.extend(EventType::DEFAULT_SUBSCRIPTION);
    }
    events.sort();
    events.dedup();
    events
}

fn stream_settings(raw: &Config, text: &str, problems: &mut Vec<Problem>) -> BTreeMap<String, Stream> {
    let mut streams = BTreeMap::new();
    for (name, s) in &raw.streams {
        let events = event_types(s.events.as_deref(), &format!("streams.{name}.events"), text, problems);
        streams.insert(name.clone(), Stream { name: name.clone(), events, retention: s.retention });
    }
    streams
}

/// `[storage] database` or `database_file`: the PostgreSQL URL, checked as the driver reads it. No
/// message repeats the URL (it may hold a password).
fn database_url(c: &StorageConfig, base: &Path, text: &str, problems: &mut Vec<Problem>) -> Option<DatabaseUrl> {
    let (written, span, key) = match (&c.database, &c.database_file) {
        (None, None) => return None,
        (Some(_), Some(f)) => {
            let msg = "set one of `database` and `database_file`, not both";
            problems.push(problem(text, f.span(), "storage.database_file", msg));
            return None;
        }
        (Some(url), None) => (url.get_ref().clone(), url.span(), "storage.database"),
        (None, Some(f)) => {
            let path = base.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(url) if !url.trim().is_empty() => (url, f.span(), "storage.database_file"),
                Ok(_) => {
                    problems.push(problem(text, f.span(), "storage.database_file", "the file is empty"));
                    return None;
                }
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", path.display());
                    problems.push(problem(text, f.span(), "storage.database_file", &msg));
                    return None;
                }
            }
        }
    };
    DatabaseUrl::parse(&written).map_err(|msg| problems.push(problem(text, span, key, &msg))).ok()
}

/// `[[api.tokens]]`: each token's hash (from `token_sha256`, or hashed from `token_file`) and scopes.
fn api_settings(c: &ApiConfig, base: &Path, doc: &Doc, problems: &mut Vec<Problem>) -> ApiSettings {
    let text = doc.text;
    let mut tokens: Vec<Token> = Vec::new();
    for t in &c.tokens {
        let name = t.name.get_ref().trim();
        if name.is_empty() || tokens.iter().any(|x| x.name == name) {
            problems.push(problem(text, t.name.span(), "api.tokens.name", "needs a name of its own"));
        }
        let sha256 = match (&t.token_sha256, &t.token_file) {
            (Some(h), None) => match Token::hash_from_hex(h.get_ref()) {
                Some(h) => Some(h),
                None => {
                    let msg = "must be 64 hex digits: the SHA-256 that `mxhook tokens create` prints";
                    problems.push(problem(text, h.span(), "api.tokens.token_sha256", msg));
                    None
                }
            },
            (None, Some(f)) => {
                let path = base.join(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(token) if !token.trim().is_empty() => Some(Token::hash(token.trim())),
                    Ok(_) => {
                        problems.push(problem(text, f.span(), "api.tokens.token_file", "the file is empty"));
                        None
                    }
                    Err(e) => {
                        let msg = format!("cannot read {}: {e}", path.display());
                        problems.push(problem(text, f.span(), "api.tokens.token_file", &msg));
                        None
                    }
                }
            }
            _ => {
                let msg = "set exactly one of `token_sha256` or `token_file` (make one with `mxhook tokens create`)";
                problems.push(problem(text, t.name.span(), "api.tokens", msg));
                None
            }
        };
        let mut write = false;
        for scope in t.scopes.get_ref() {
            match scope.get_ref().as_str() {
                "read" => {}
                "write" => write = true,
                other => {
                    let msg = format!("unknown scope `{other}` (use [\"read\"] or [\"read\", \"write\"])");
                    problems.push(problem(text, scope.span(), "api.tokens.scopes", &msg));
                }
            }
        }
        if !t.scopes.get_ref().iter().any(|s| s.get_ref() == "read") {
            problems.push(problem(text, t.scopes.span(), "api.tokens.scopes", "every token needs \"read\""));
        }
        if let Some(sha256) = sha256 {
            tokens.push(Token { name: name.to_string(), sha256, write });
        }
    }
    if c.tokens.is_empty() {
        problems.push(doc.at("api", "needs at least one [[api.tokens]] (make one with `mxhook tokens create NAME`)"));
    }
    ApiSettings { tokens, max_failed_auth_per_minute: c.max_failed_auth_per_minute }
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
        if !values::mail_address(d.get_ref().trim()) {
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
            if !values::http_url(u) {
                problems.push(problem(text, url.span(), "spam.rspamd", "must be an http:// URL (rspamd's port 11333)"));
            }
            SpamEngine::Rspamd(u.to_string())
        }
        (None, Some(addr)) => {
            let a = addr.get_ref().trim();
            if !values::host_port(a) {
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
    let relay = values::smtp_relay(f.relay.get_ref());
    if relay.is_none() {
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
        && !values::mail_address(m.get_ref().trim())
    {
        bad(m.span(), "forward.mail_from", "not an address (use \"\" for the null sender)");
    }
    if f.retry.is_empty() {
        problems.push(doc.at("forward.retry", "needs at least one delay (e.g. [\"0s\"])"));
        ok = false;
    }
    let (host, port) = relay.unwrap_or_default();
    ok.then(|| Forward {
        host,
        port,
        starttls: f.starttls,
        credentials,
        mail_from: f.mail_from.as_ref().map(|m| m.get_ref().trim().to_string()),
        timeout: f.timeout,
        retry: f.retry.clone(),
    })
}

/// `[lmtp]`: TCP addresses or absolute socket paths; None when it listens nowhere.
fn lmtp_settings(c: &super::file::LmtpConfig, base: &Path, doc: &Doc, problems: &mut Vec<Problem>) -> Option<Lmtp> {
    let mut listen = Vec::new();
    for a in &c.listen {
        let a = a.trim();
        if let Ok(addr) = a.parse::<SocketAddr>() {
            listen.push(ListenAddr::Tcp(addr));
        } else if let Some(path) =
            a.strip_prefix("unix:").or(Some(a)).filter(|p| p.starts_with('/') || p.starts_with('.'))
        {
            listen.push(ListenAddr::Unix(base.join(path)));
        } else {
            let msg = format!(
                "`{a}` is neither host:port (e.g. 127.0.0.1:2424) nor a socket path (e.g. /run/mxhook/lmtp.sock)"
            );
            problems.push(doc.at("lmtp.listen", msg));
        }
    }
    let socket_mode = u32::from_str_radix(c.socket_mode.trim().trim_start_matches("0o"), 8).unwrap_or_else(|_| {
        problems.push(doc.at("lmtp.socket_mode", format!("`{}` is not an octal mode like \"0660\"", c.socket_mode)));
        0o660
    });
    if socket_mode > 0o777 {
        problems.push(doc.at("lmtp.socket_mode", "must be at most 0777"));
    }
    let mut ids = Vec::new();
    for id in &c.trusted_authserv_ids {
        let id = id.trim().to_ascii_lowercase();
        if id.is_empty() || id.contains(|ch: char| ch.is_whitespace() || ch == ';') {
            problems.push(doc.at("lmtp.trusted_authserv_ids", format!("`{id}` is not an authserv-id (a host name)")));
        }
        ids.push(id);
    }
    (!listen.is_empty()).then(|| Lmtp {
        listen,
        socket_mode,
        trusted_authserv_ids: ids,
        proxy_protocol: c.proxy_protocol.clone(),
    })
}

/// Each rule read once: a bad one is named with its line, like any other value.
fn senders_settings(c: &SendersConfig, text: &str, problems: &mut Vec<Problem>) -> SendersSettings {
    let mut rules = |list: &[toml::Spanned<String>], key: &str| -> Vec<Rule> {
        list.iter()
            .filter_map(|r| match Rule::parse(r.get_ref()) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    problems.push(problem(text, r.span(), key, &e));
                    None
                }
            })
            .collect()
    };
    let block = rules(&c.block, "senders.block");
    let allow = rules(&c.allow, "senders.allow");
    SendersSettings { lists: Lists { block, allow }, blocked_action: c.blocked_action }
}

fn auth_settings(doc: &Doc, raw: &AuthConfig, problems: &mut Vec<Problem>) -> Option<AuthSettings> {
    let text = doc.text;
    let mut dns = Vec::new();
    for server in &raw.dns {
        let s = server.get_ref().trim();
        match values::dns_server(s) {
            Some(addr) => dns.push(addr),
            None => {
                let msg = format!("`{s}` is not ip:port (e.g. \"127.0.0.1:53\"; names are not resolved here)");
                problems.push(problem(text, server.span(), "auth.dns", &msg));
            }
        }
    }
    if raw.timeout.is_zero() {
        problems.push(doc.at("auth.timeout", "must be more than 0 (e.g. \"5s\")"));
    }
    raw.enabled.then_some(AuthSettings {
        dns,
        timeout: raw.timeout,
        dmarc_reject: raw.dmarc_reject,
        spf: raw.spf,
        trusted_authserv_ids: Vec::new(),
    })
}

/// An endpoint's signing keys from exactly one of `secret`, `secret_file` and `secrets`, each parsed
/// and each problem reported at its own line. None when any is missing or bad.
fn signing_keys(
    name: &str,
    ep: &EndpointConfig,
    base: &Path,
    text: &str,
    doc: &Doc,
    problems: &mut Vec<Problem>,
) -> Option<SigningKeys> {
    // (the secret, where it is written, the dotted key it is reported under)
    let secrets: Vec<(Secret, Range<usize>, String)> = match (&ep.secret, &ep.secret_file, &ep.secrets) {
        (Some(s), None, None) => vec![(s.get_ref().clone(), s.span(), format!("endpoints.{name}.secret"))],
        (None, Some(f), None) => {
            let path = base.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(s) => vec![(Secret(s.trim().to_string()), f.span(), format!("endpoints.{name}.secret"))],
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", path.display());
                    problems.push(problem(text, f.span(), &format!("endpoints.{name}.secret_file"), &msg));
                    return None;
                }
            }
        }
        (None, None, Some(list)) => {
            if list.get_ref().is_empty() {
                let msg = "needs at least one secret (the new one first while the app switches over)";
                problems.push(problem(text, list.span(), &format!("endpoints.{name}.secrets"), msg));
                return None;
            }
            list.get_ref()
                .iter()
                .map(|s| (s.get_ref().clone(), s.span(), format!("endpoints.{name}.secrets")))
                .collect()
        }
        _ => {
            let msg =
                "set exactly one of `secret`, `secret_file` or `secrets` (make one with `mxhook secret generate`)";
            problems.push(doc.at(&format!("endpoints.{name}"), msg));
            return None;
        }
    };
    let wanted = secrets.len();
    let mut keys = Vec::new();
    for (secret, span, key) in secrets {
        match SigningKey::parse(&secret.0) {
            Ok(k) => keys.push(k),
            Err(e) => problems.push(problem(text, span, &key, &e.to_string())),
        }
    }
    if keys.len() < wanted {
        return None;
    }
    SigningKeys::new(keys)
}
