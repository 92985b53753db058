//! A refusal: the SMTP reply a stage decided on, and why, for the `messages_rejected` metric. The
//! reason is set where the decision is made, never read back from the reply's code or text.

/// A refusal with its SMTP reply, e.g. `550 5.7.1 <x@y>: Relay access denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
    pub reason: Reason,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>, reason: Reason) -> Self {
        Self { code, text: text.into(), reason }
    }
}

/// Why a message, recipient or session was refused: the `reason` label of `messages_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooManySessions,
    TooManySessionsPerIp,
    Timeout,
    TooManyErrors,
    RateLimited,
    Size,
    TooManyRecipients,
    /// A recipient at a domain we do not serve, or a relaying trick.
    Relay,
    /// A recipient refused by a route (an unknown mailbox, a `reject` route).
    Recipient,
    /// The sender, refused at MAIL FROM (SPF `fail` with `spf = "reject"`, a DNS failure …).
    Sender,
    /// The sender is on the block list and `[senders] blocked_action = "reject"` (at MAIL FROM for
    /// the client IP or MAIL FROM, after DATA for the From address).
    Blocked,
    /// The message, refused by policy after DATA (DMARC, spam, a `reject` route).
    Policy,
    /// The message could not be stored: the database or the disk refused it.
    StoreFailed,
    /// A `sync` route's endpoint did not accept the message, or did not answer in time.
    SyncEndpoint,
    /// A PROXY header missing from a `proxy_protocol` balancer, or sent by a client not listed.
    Proxy,
}

/// Client-supplied text made safe for logs and replies: control characters become `?`, and it is
/// cut at 256 characters.
pub fn printable(s: &str) -> String {
    s.chars().take(256).map(|c| if c.is_control() { '?' } else { c }).collect()
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooManySessions => "too_many_sessions",
            Reason::TooManySessionsPerIp => "too_many_sessions_per_ip",
            Reason::Timeout => "timeout",
            Reason::TooManyErrors => "too_many_errors",
            Reason::RateLimited => "rate_limited",
            Reason::Size => "size",
            Reason::TooManyRecipients => "too_many_recipients",
            Reason::Relay => "relay",
            Reason::Recipient => "recipient",
            Reason::Sender => "sender",
            Reason::Blocked => "blocked",
            Reason::Policy => "policy",
            Reason::StoreFailed => "store_failed",
            Reason::SyncEndpoint => "sync_endpoint",
            Reason::Proxy => "proxy",
        }
    }
}
