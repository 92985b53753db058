//! Black-box tests of routing and policy (issue 5): the real `mxhook` binary on port-0 listeners, the
//! common SMTP client and signed-webhook receiver, real spam engines (SpamAssassin's spamd and rspamd,
//! started by the tests on free ports) and a small SMTP sink standing in for the forward relay.
//!
//! - `support`: config with routes, sending, reading what the gateway stored.
//! - `engines`: spamd / rspamd as child processes with throwaway configs.
//! - `sink`: an SMTP server that records each transaction and answers as the test scripts it.
//! - `matching`: exact > plus-address > catch-all > the domain's endpoint, whatever the file order.
//! - `actions`: webhook to several endpoints, store, drop, reject, forward (and its retries).
//! - `policy`: on_spam outcomes with a real engine, and sync mode.
//! - `senders`: block and allow lists from the config and the CLI, live.
//! - `spam`: GTUBE through spamd and rspamd, and engines that are down or silent.
//! - `postfix`: a real Postfix bounces a message and sends its DSN to the gateway.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod engines;
mod sink;
mod support;

mod actions;
mod matching;
mod policy;
mod postfix;
mod senders;
mod spam;
mod types;
