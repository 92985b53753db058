//! Black-box tests of the `/v1` API (issue 17): the real `mxhook` binary with `[api]` tokens, mail
//! sent over real SMTP, webhooks caught by the real receiver, every API call over real HTTP.
//!
//! - `support`: the tokens, a config with `[api]`, an API client, message builders.
//! - `messages`: list, filters and pages, one message whole (a 2 MB text), raw, attachments, delete.
//! - `deliveries`: list, one with its attempts, retry, replay of a time window (API and CLI).
//! - `tokens`: 401/403 on every route of the OpenAPI file, 429, no token in the log, no `/v1` without `[api]`.
//! - `schemathesis`: the OpenAPI file against the running gateway, with schemathesis.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code)]
mod support;

mod deliveries;
mod messages;
mod schemathesis;
mod tokens;
