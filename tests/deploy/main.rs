//! Black-box tests for "deployable on a real box" (issue 6): the real `mxhook` binary on port-0
//! listeners, real clients and peers started by the tests.
//!
//! - `starttls`: STARTTLS with a self-signed certificate made by `openssl req`, mail over
//!   `openssl s_client -starttls smtp`, the TLS version and cipher in the event; no `[smtp.tls]` → not
//!   offered, 502; `require = true` → 530 before STARTTLS; commands pipelined in plaintext after
//!   STARTTLS are discarded (a pinned rustls client); a failed handshake ends only its session; QUIT over
//!   TLS ends with close_notify.
//! - `reload`: SIGHUP swaps the certificate for new handshakes while a TLS session opened before keeps
//!   going; a broken file keeps the old certificate; SIGHUP without `[smtp.tls]` is harmless.
//! - `limits`: every `[smtp]` limit key reaches the running binary: max_message_size and
//!   max_recipients, max_sessions, max_sessions_per_ip, max_messages_per_minute_per_ip, max_errors,
//!   command/data/session timeouts: each refusal's reply code and its `/metrics` reason; other sessions
//!   carry on. (The session's replies in detail: tests/smtp, in process.)
//! - `listen`: `mxhook listen` prints events from a real gateway and answers 400 (REJECTED) to forged,
//!   altered and stale requests.
//! - `data_dir`: a relative data_dir is beside the config file, whatever directory `serve` and the CLI run
//!   in; a `serve` that cannot bind removes the data_dir it made, never one that was there.
//! - `doctor`: `mxhook doctor --dns` against a DNS server run by the test (`common::dns`): every ok line for a
//!   right setup, FAIL/WARN with fixes and exit 1 for a wrong MX and no SPF.
//!
//! Needs the `openssl` command (Debian package `openssl`, in .ci/apt-packages).

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code)]
mod support;

mod data_dir;
mod doctor;
mod limits;
mod listen;
mod reload;
mod starttls;
