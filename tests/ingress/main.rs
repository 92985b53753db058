//! Other ways in (issue 18), black-box through the real `mxhook` binary and real peers the tests start:
//!
//! - `load`: `smtp-source -s 20 -m 2000` from localhost against `gateway.example.toml`: every message
//!   accepted (trusted_networks exempts localhost from the per-IP limits), counted, not timed.
//!
//! - `lmtp`: LMTP with one reply per recipient (three recipients, one routed to a sync endpoint that
//!   fails: 250, 250, 451), LHLO only, SPF from a trusted upstream header (`auth.source`); a real
//!   Postfix delivering over LMTP defers only the failing recipient and delivers it once fixed.
//! - `deliver`: `mxhook deliver` exit codes (0, 65, 67, 75) with a running `serve` sending what it
//!   stored; a real Postfix `pipe` transport calling it.
//! - `proxy`: HAProxy in front with `send-proxy-v2` and `send-proxy`, the client bound to 127.0.0.5:
//!   `client_ip`, `proxy_ip`, SPF for the real address (fixture DNS), per-IP limits; a PROXY header
//!   from an unlisted address refused, a listed address without one closed.
//!
//! Debian packages: `postfix` (smtp-source, and the real Postfix) and `haproxy`, in .ci/apt-packages.
//! A test whose binary is missing says SKIPPED and returns; CI installs them.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod deliver;
mod lmtp;
mod load;
mod proxy;

pub use common::postfix::tool;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The LMTP address a gateway announced.
pub fn lmtp_addr(gw: &common::Gateway) -> std::net::SocketAddr {
    let log = common::gateway::strip_ansi(&gw.log());
    common::gateway::announced(&log, "lmtp listening on ").unwrap_or_else(|| panic!("no LMTP listener in:\n{log}"))
}
