//! Black-box tests of the spine (issue 2): the real `mxhook` binary on port-0 listeners, a real SMTP
//! client, a real HTTP receiver verifying every request with the stock Standard Webhooks library, a temp
//! data_dir, and the CLI run as a subprocess on the same config. The SMTP session's replies are tested in
//! process, against a test sink, in tests/smtp.
//!
//! - `common` (tests/common, shared by every test binary): harness, gateway process, config, CLI, SMTP
//!   client, webhook receiver, waits.
//! - `ingest`: a message in, an event out: fields, raw bytes, recipients, endpoints, malformed input.
//! - `corpus`: every message in tests/corpus through SMTP, checked against mail-parser as oracle.
//! - `headers`: every header value and uuencoded attachment, checked against Python's `email`.
//! - `schema`: `mxhook schema`, `GET /schema`, and an event validated against the published schema.
//! - `delivery`: retries on a compressed schedule, CLI retry, refused/slow endpoints, restarts.
//! - `rotation`: `secrets = [new, old]`, each key verifying the same request with the stock verifier.
//! - `fifo`: `ordering = "fifo"`, a failing event holding the later ones; a concurrent endpoint beside it.
//! - `extract`: reply, forward and preview from Gmail, Outlook, German and forwarded messages.
//! - `cli`: replay, endpoints, secret generation, check-config, unknown ids, /healthz.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod cli;
mod corpus;
mod delivery;
mod extract;
mod fifo;
mod headers;
mod ingest;
mod rotation;
mod schema;
