//! Deadline-bounded polling: every wait in the tests is one of these two.

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds; panics with `what` and `context()` (e.g. the gateway logs) after `timeout`.
#[track_caller]
pub fn wait_for(timeout: Duration, what: &str, context: impl Fn() -> String, cond: impl FnMut() -> bool) {
    if !poll(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for: {what}\n{}", context());
    }
}
