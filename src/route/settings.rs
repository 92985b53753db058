//! Routing's vocabulary, as `[[routes]]` spells it in the config file: what a route does with a
//! recipient's mail (`Action`), what a condemned message gets (`Policy`), when the sender is answered
//! (`Mode`), and a validated `Route`. `config` reads and checks them; `route` applies them.

use std::time::Duration;

use serde::Deserialize;

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
    /// `[streams.NAME]` that get the event, as endpoints do.
    pub streams: Vec<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
