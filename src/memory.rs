//! Gives the heap's free memory back to the system once the gateway is quiet.
//!
//! glibc keeps what a burst freed inside its arenas (one per thread that allocated, and a burst runs
//! dozens of blocking threads, each with its own zstd context): measured after 500 messages, 24 MiB
//! of anonymous memory stayed resident once the threads had exited, of which 8 MiB was live (massif).
//! `malloc_trim(0)` hands the free pages of every arena back (madvise). It runs once per burst:
//! after `QUIET` with no message accepted and no attempt made, later than the blocking threads'
//! keep-alive, so what they freed on exit is returned too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

const TICK: Duration = Duration::from_secs(1);
/// Ticks without work before the trim: past `cli`'s blocking-thread keep-alive (2 s).
const QUIET: u32 = 3;

pub async fn trim_when_quiet(metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let mut seen = metrics.activity();
    let mut quiet = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = metrics.activity();
        quiet = if now == seen { quiet + 1 } else { 0 };
        seen = now;
        // Once per quiet spell (the first one: the start's own allocations).
        if quiet == QUIET {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
