//! The WAL's checkpoints, mostly on a thread of their own. SQLite's default runs one inside
//! whichever commit takes the WAL past 1,000 pages: that commit then copies those pages into the
//! database and fsyncs it while every session in its group commit waits for its 250. Here a thread
//! runs a PASSIVE checkpoint every `EVERY` (it takes no lock a writer waits for), so when the
//! commit's own checkpoint comes, most frames are in the database already and it copies only the
//! rest. That commit's checkpoint stays: under a steady stream of commits a checkpoint from
//! another connection never catches up with the last frame, and only a checkpoint that did lets
//! the next transaction write the WAL from its start again (measured: without it the WAL grew to
//! 600 MB in 20,000 messages; with it it stays near 1,000 pages). `journal_size_limit` cuts the
//! file back after a burst (or a long read) made it grow.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed: short enough that it stays a few MB at full load.
const EVERY: Duration = Duration::from_millis(200);

/// The WAL file is cut back to this once it restarts from the beginning.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// The running checkpointer: dropping it ends the thread (after the checkpoint it may be in).
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn start(db: &Path) -> anyhow::Result<Checkpointer> {
        let conn = Connection::open(db)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            // Until the store is dropped (its sender with it): a timeout means "run one now".
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "cannot checkpoint the WAL; it grows until a checkpoint succeeds");
                }
            }
        })?;
        Ok(Checkpointer { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::{due, message};

    #[test]
    fn the_wal_is_checkpointed_into_the_database_before_a_commit_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let db = dir.path().join("mxhook.db");
        let before = std::fs::metadata(&db).unwrap().len();
        let eps = [due("e", 1_000, false)];
        // Fewer pages than the commits' own checkpoint waits for (1,000).
        for i in 0..20 {
            let id = format!("msg_{i}");
            let handed = store.ingest(&message(&id, 1_000, &[], &eps)).unwrap();
            store.unclaim(&handed);
        }
        // Pages reach the database file only by a checkpoint: with 20 messages, the thread's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&db).unwrap().len() < before + 32 * 1024 {
            assert!(std::time::Instant::now() < deadline, "the database file stayed at {before} bytes");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
