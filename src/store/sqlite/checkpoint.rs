//! The WAL's checkpoints, on a thread of their own. SQLite's default runs one inside whichever
//! commit takes the WAL past 1,000 pages: that commit then also copies the WAL into the database
//! and fsyncs it, and every session in its group commit waits for its 250 meanwhile (at one busy
//! session, several times a second). Here the ingest connection never checkpoints
//! (`wal_autocheckpoint=0`); this thread runs a PASSIVE checkpoint every `EVERY`, which takes no
//! lock a writer waits for, so the WAL holds about that long of writes (plus whatever a long read
//! keeps in use) and is rewound once checkpointed. `journal_size_limit` truncates the file back
//! after a burst made it grow.

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
    fn the_wal_is_checkpointed_into_the_database_without_a_commit_doing_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let auto: i64 = store.conn().query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(auto, 0, "commits never checkpoint");
        let db = dir.path().join("mxhook.db");
        let before = std::fs::metadata(&db).unwrap().len();
        let eps = [due("e", 1_000, false)];
        for i in 0..300 {
            let id = format!("msg_{i}");
            let handed = store.ingest(&message(&id, 1_000, &[], &eps)).unwrap();
            store.unclaim(&handed);
        }
        // Pages reach the database file only by a checkpoint: the thread's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&db).unwrap().len() < before + 64 * 1024 {
            assert!(std::time::Instant::now() < deadline, "the database file stayed at {before} bytes");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
