//! Other ways in (issue 18), black-box through the real `mxhook` binary and real peers the tests start:
//!
//! - `load`: `smtp-source -s 20 -m 2000` from localhost against `gateway.example.toml`: every message
//!   accepted (trusted_networks exempts localhost from the per-IP limits), counted, not timed.
//!
//! Debian packages: `postfix` (smtp-source, and the real Postfix) and `haproxy`, in .ci/apt-packages.
//! A test whose binary is missing says SKIPPED and returns; CI installs them.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod load;

use std::path::PathBuf;

/// The first of `candidates` that exists; None prints why the calling test is skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (Debian packages in .ci/apt-packages; CI installs them)");
    }
    found
}
