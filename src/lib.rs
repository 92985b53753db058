//! mxhook: mail in over SMTP, signed JSON webhooks out.
//!
//! The modules follow a message's path:
//! - `smtp`    — the SMTP and LMTP listeners and session (protocol, limits, PROXY headers)
//! - `ingest`  — the hand-off that runs the stages below before the session answers 250
//! - `auth`    — SPF, DKIM, DMARC and ARC verdicts (mail-auth) on a bounded DNS budget
//! - `spam`    — the spam verdict (rspamd or spamd), bounded by a timeout, null when the engine is down
//! - `parse`   — raw bytes → the event's `message` object
//! - `extract` — what is new in it: the reply without quotes and signature, a forward, a preview
//! - `route`   — recipient → endpoint (and refusals for domains we do not serve)
//! - `senders` — the operator's block and allow lists: a sender's standing
//! - `classify`— the event type, decided once (bounces, complaints, spam, blocked, unauthenticated)
//! - `store`   — SQLite + spool: the durable queue between ingest and delivery, and the streams' logs
//! - `deliver` — the scheduler, Standard Webhooks signing and the POST; forwarded copies via the relay
//!
//! Under them all, `mail`: the nouns every stage shares (envelope, reply, the event and its JSON form,
//! verdicts, delivery states, the signing key); it imports no stage.
//!
//! Beside them: `http` (axum: signed links, and the `/v1` API with streams), `cli` (clap commands over the same store), `config`, `serve` (wiring).
//! docs/architecture.md has the map.

pub mod auth;
pub mod classify;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod extract;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod parse;
pub mod route;
pub mod senders;
pub mod serve;
pub mod smtp;
pub mod spam;
pub mod store;
pub mod time;
