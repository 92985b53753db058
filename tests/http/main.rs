//! Black-box tests of the HTTP side (issue 4): the real `mxhook` binary on port-0 listeners, mail sent over
//! real SMTP, events caught by a real webhook receiver, and every link, /metrics and /healthz fetched over
//! real sockets.
//!
//! - `support`: a `public_url` links are checked against, a raw HTTP client, link signing, MIME builders.
//! - `downloads`: every corpus attachment and raw message by its event link: bytes, headers, HEAD, Range.
//! - `links`: tampering with any part of a link → 403; unknown → 404; expiry → 410.
//! - `traversal`: `..` and encoded variants never reach a file; hostile attachment file names.
//! - `large`: a 50 MB attachment downloads with flat gateway memory.
//! - `archive`: all attachments as one streamed zip (`attachments_url`): bytes, names, link rules, memory.
//! - `payload`: `[webhook] max_payload` and `inline_raw_max`.
//! - `observe`: /metrics counters as mail flows; /healthz flips while the store cannot be written.
//! - `store_copy`: `mxhook store copy` from SQLite into PostgreSQL: messages, links and the queue go on.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code)]
mod support;

mod archive;
mod downloads;
mod large;
mod links;
mod observe;
mod payload;
mod store_copy;
mod traversal;
