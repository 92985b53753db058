//! Reliability (issue 7): no acknowledged mail is lost, and hostile input gets nowhere. Black-box, like
//! the other test binaries: the real `mxhook` binary on port-0 listeners, real SMTP, a real webhook
//! receiver verifying every request with the stock Standard Webhooks library, a temp data_dir.
//! Each test has a short form (CI) and a long form (`MXHOOK_LONG=1`); RELIABILITY.md has the figures.
//!
//! - `support`: short/long switch, seeded RNG, liveness, VmRSS, /healthz, probe message, the store.
//! - `crash`: SIGKILL at random moments under concurrent load; every 250 arrives, same event id.

#[path = "../spine/helpers/mod.rs"]
#[allow(dead_code, unused_imports)]
mod helpers;
#[allow(dead_code)]
mod support;

mod crash;
mod outage;
