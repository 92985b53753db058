//! Reliability (issue 7): no acknowledged mail is lost, and hostile input gets nowhere. Black-box, like
//! the other test binaries: the real `mxhook` binary on port-0 listeners, real SMTP, a real webhook
//! receiver verifying every request with the stock Standard Webhooks library, a temp data_dir.
//! Each test has a short form (CI) and a long form (`MXHOOK_LONG=1`); RELIABILITY.md has the figures.
//!
//! - `support`: short/long switch, seeded RNG, probe message, the store, memory checks, tmpfs.
//! - `crash`: SIGKILL at random moments under concurrent load; every 250 arrives, same event id.
//! - `outage`: a dead endpoint through a whole schedule and restarts; failed, retried by hand, none missing.
//! - `store_faults`: a locked database, a read-only spool → 451, a log line, /healthz 503, recovery.
//! - `disk_full`: data_dir on a full tmpfs → 451, never 250-then-lose; recovery when space returns.
//! - `hostile_smtp`: relay tricks, smuggling, long lines, no-newline streams, slowloris, thousands of
//!   RCPTs, commands before HELO, pipelining floods, binary garbage, connection floods.
//! - `hostile_mime`: malformed corpus, deep nesting, 100k headers, bombs, hostile names, many attachments.
//! - `fuzz`: a seeded mutation fuzzer (stable Rust) for parse → event in process and the SMTP session
//!   over sockets; `mime_props`: a proptest property test of parse → event on structured MIME.
//! - `signatures`: single-bit changes of real webhooks and out-of-window timestamps vs the stock verifier.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code)]
mod support;

mod crash;
mod disk_full;
mod fuzz;
mod fuzz_smtp;
mod hostile_mime;
mod hostile_smtp;
mod mime_props;
mod outage;
mod signatures;
mod store_faults;
