//! Gives the heap's free memory back to the system once the gateway is quiet.
//!
//! glibc keeps what a burst freed inside its arenas (one per thread that allocated, and a burst runs
//! dozens of blocking threads, each with its own zstd context): measured after 500 messages, 24 MiB
//! of anonymous memory stayed resident once the threads had exited, of which 8 MiB was live (massif).
//! `malloc_trim(0)` hands the free pages of every arena back (madvise). It runs once per burst:
//! after `QUIET` with no message accepted and no attempt made, later than the blocking threads'
//! keep-alive, so what they freed on exit is returned too. SQLite's page caches (up to 2 MB per
//! connection) are emptied first, so that their pages are among those handed back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::Store;

const TICK: Duration = Duration::from_secs(1);
/// Ticks without work before the trim: past `cli`'s blocking-thread keep-alive (2 s).
const QUIET: u32 = 3;

pub async fn trim_when_quiet(metrics: Arc<Metrics>, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
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
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.release_memory();
                trim();
            })
            .await;
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

/// glibc gives each thread that allocates under contention an arena of its own, up to 8 per core,
/// and a burst's blocking threads reach that: each arena keeps its scraps and the free space around
/// what stays live in it (a pooled connection's buffers, a cached statement), which `malloc_trim`
/// cannot hand back. Two arenas: idle RSS 5 s after 500 messages 32.8 → 29.1 MiB (BENCHMARKS.md), with
/// the same throughput (per-thread caches serve most allocations without the arena's lock). An
/// operator's `MALLOC_ARENA_MAX` wins. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers; M_ARENA_MAX only bounds arenas created from now on.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
