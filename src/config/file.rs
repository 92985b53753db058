//! The TOML file model: one serde struct per section, unknown keys refused (`deny_unknown_fields`),
//! each default next to its field. What is read here is checked in `settings`; `[smtp]` and `[webhook]`
//! need no conversion, so `Settings` carries `SmtpConfig` and `WebhookConfig` as read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::values::{Secret, duration, durations, networks, opt_duration, size};
use crate::auth::{DmarcReject, SpfMode};
use crate::deliver::Ordering;
use crate::route::{Action, Mode, Policy};
use crate::senders::BlockedAction;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub lmtp: LmtpConfig,
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
    #[serde(default)]
    pub senders: SendersConfig,
    /// The HTTP API under `/v1/`; without it nothing there answers.
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
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
    /// Clients exempt from the per-IP session and rate limits (never from relay rules), like
    /// Postfix's `mynetworks`: a local proxy or load test is not one sender among many.
    #[serde(deserialize_with = "networks")]
    pub trusted_networks: Vec<IpNet>,
    /// Connections from these addresses (load balancers) must start with a PROXY header (v1 or v2),
    /// and the address it carries is the client's.
    #[serde(deserialize_with = "networks")]
    pub proxy_protocol: Vec<IpNet>,
    /// STARTTLS; without it STARTTLS is not offered.
    pub tls: Option<TlsConfig>,
}

/// `[lmtp]`: LMTP (RFC 2033) from a mail server in front, off by default. Limits, timeouts and the
/// host name are `[smtp]`'s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmtpConfig {
    /// `host:port` for TCP, or an absolute path for a Unix socket.
    pub listen: Vec<String>,
    /// Permissions of a Unix socket (octal): the MTA's delivery user must be able to write to it.
    pub socket_mode: String,
    /// The upstream MTAs whose `Authentication-Results` / `Received-SPF` SPF verdict is taken.
    pub trusted_authserv_ids: Vec<String>,
    /// As `[smtp] proxy_protocol`, for LMTP's TCP listeners.
    #[serde(deserialize_with = "networks")]
    pub proxy_protocol: Vec<IpNet>,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            socket_mode: "0660".into(),
            trusted_authserv_ids: Vec::new(),
            proxy_protocol: Vec::new(),
        }
    }
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
            trusted_networks: ["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse().ok()).collect(),
            proxy_protocol: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct StorageConfig {
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the store lives in that database, shared by every gateway that names it
    /// (None: SQLite in `data_dir`).
    pub database: Option<Spanned<String>>,
    /// A file holding that URL (so the password stays out of the config file).
    pub database_file: Option<Spanned<PathBuf>>,
    /// Raw messages and attachments are deleted this long after arrival (their links then answer 410).
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Message, delivery and attempt records are deleted this long after arrival.
    #[serde(deserialize_with = "duration")]
    pub keep_metadata: Duration,
    /// PostgreSQL: how long a gateway's claim on a delivery lasts without renewal (renewed every
    /// third of it while the attempt runs), so how soon the others take over a dead gateway's
    /// deliveries. SQLite ignores it: one gateway, whose next start takes its claims back at once.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database: None,
            database_file: None,
            retention: Duration::from_secs(7 * 86400),
            keep_metadata: Duration::from_secs(90 * 86400),
            lease: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HttpConfig {
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
pub(super) struct RouteConfig {
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
    /// `[streams.NAME]` that get the event, as `endpoints` do.
    #[serde(default)]
    pub streams: Vec<Spanned<String>>,
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(20)
}

/// `[spam]`: at most one engine; without one, messages carry no verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SpamConfig {
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
pub(super) struct ForwardConfig {
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
pub(super) struct DomainConfig {
    pub name: Spanned<String>,
    /// The domain's catch-all endpoint: every recipient at this domain is delivered there.
    pub endpoint: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointConfig {
    pub url: Spanned<String>,
    pub secret: Option<Spanned<Secret>>,
    pub secret_file: Option<Spanned<PathBuf>>,
    /// Several keys while the app switches over, newest first: every request is signed with each.
    pub secrets: Option<Spanned<Vec<Spanned<Secret>>>>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_retry", deserialize_with = "durations")]
    pub retry: Vec<Duration>,
    /// Attempts in flight at once to this endpoint: a slow or dead endpoint cannot take every slot.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The event types this endpoint gets (`"*"`: all). Left out: `email.received`, `email.bounced`
    /// and `email.complained` (`EventType::DEFAULT_SUBSCRIPTION`).
    #[serde(default)]
    pub events: Option<Vec<Spanned<String>>>,
    /// `fifo`: one event at a time, in arrival order (concurrency 1, a failing event holds the rest).
    #[serde(default)]
    pub ordering: Ordering,
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

/// `[auth]`: sender authentication (SPF, DKIM, DMARC, ARC) before a message is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct AuthConfig {
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

/// `[senders]`: block and allow lists (rules: see `senders/rule.rs`); `mxhook senders` adds more at runtime.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SendersConfig {
    pub block: Vec<Spanned<String>>,
    /// Wins over `block`: an allowed sender is never blocked.
    pub allow: Vec<Spanned<String>>,
    /// `accept` (default): store and mark blocked mail; `reject`: refuse it with 550 5.7.1.
    pub blocked_action: BlockedAction,
}

/// `[api]`: who may call `/v1/` (`[[api.tokens]]`) and how many wrong tokens a client may try.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Requests with a missing or wrong token from one client address per minute; more get 429.
    #[serde(default = "default_failed_per_minute")]
    pub max_failed_auth_per_minute: u32,
}

fn default_failed_per_minute() -> u32 {
    10
}

/// One `[[api.tokens]]`: the token itself is never in the file, only its SHA-256 (or a file with it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenConfig {
    pub name: Spanned<String>,
    /// Hex SHA-256 of the token (`mxhook tokens create` prints it).
    pub token_sha256: Option<Spanned<String>>,
    /// A file holding the token itself (e.g. a systemd credential).
    pub token_file: Option<Spanned<PathBuf>>,
    /// `["read"]` or `["read", "write"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Spanned<Vec<Spanned<String>>>,
}

fn default_scopes() -> Spanned<Vec<Spanned<String>>> {
    Spanned::new(0..0, vec![Spanned::new(0..0, "read".to_string())])
}

/// `[streams.NAME]`: a durable, ordered log of the events of the messages routed to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamConfig {
    /// The event types it keeps, as an endpoint's `events` (left out: the same default).
    #[serde(default)]
    pub events: Option<Vec<Spanned<String>>>,
    /// How long an event stays readable.
    #[serde(default = "default_stream_retention", deserialize_with = "duration")]
    pub retention: Duration,
}

fn default_stream_retention() -> Duration {
    Duration::from_secs(7 * 86400)
}
