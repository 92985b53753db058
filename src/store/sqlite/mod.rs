//! The SQLite backend (the default): `data_dir/mxhook.db` (WAL) plus the spool for large messages,
//! the durable queue between `ingest` (which hands it a message and its deliveries) and `deliver`
//! (which claims due deliveries and records attempts) on one host; the CLI and HTTP read and edit it
//! while `serve` runs. `store::Store` forwards to it (see `store/mod.rs`).

mod api_reads;
mod attempts;
mod checkpoint;
mod codec;
mod commit;
mod contents;
mod ingest;
mod queue;
mod reads;
pub(in crate::store) use reads::stored_event;
mod removal;
mod retention;
mod schema;
mod senders;
mod spool;
mod streams;
#[cfg(test)]
pub(crate) mod tests;

pub use api_reads::{DeliveryFilter, MessageFilter, Position};
pub use attempts::Attempt;
pub use contents::Content;
pub use ingest::{FirstAttempt, NewAttachment, NewMessage};
pub use reads::{AttachmentRow, Delivery, MessageRow};
pub use removal::Removal;
pub use retention::Purged;
pub use senders::SenderRule;
pub use streams::{StreamEvent, StreamItem, StreamPage};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

/// The SQLite store of one `data_dir`.
pub struct Sqlite {
    /// The connection for ingest and the CLI's edits (`synchronous=FULL`). Its mutex is also the
    /// process's write lock: SQLite has one writer anyway, and a mutex is cheaper and clearer than
    /// SQLITE_BUSY retries between our own threads.
    conn: Mutex<Connection>,
    /// The delivery side's connection, for reads: claims (claim_due), the event per attempt, the
    /// next due time, links. They do not wait for a group commit in progress.
    deliver: Mutex<Connection>,
    /// Messages and attempt outcomes waiting for the next group commit (commit.rs).
    group: crate::store::group::Group<Box<dyn commit::Work>>,
    /// Deliveries this process's scheduler has claimed and not yet recorded (see claim_due).
    claimed: Mutex<HashSet<String>>,
    spool_dir: PathBuf,
    attachment_dir: PathBuf,
    db_path: PathBuf,
    /// Counted up after each commit that added stream events (streams.rs).
    streams_tip: tokio::sync::watch::Sender<u64>,
    /// The newest stream cursor `check_streams_tip` has seen, to notice other processes' writes.
    streams_seen: std::sync::atomic::AtomicI64,
    /// The stream readers' connection (read-only): many SSE, WebSocket and polling readers must not
    /// queue behind the delivery side's claims, nor it behind them.
    streams_read: Mutex<Connection>,
    /// Checkpoints the WAL off the commit path; ends with the store.
    _checkpointer: checkpoint::Checkpointer,
}

impl Sqlite {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Sqlite> {
        let spool_dir = data_dir.join("spool");
        let attachment_dir = data_dir.join("attachments");
        for dir in [&spool_dir, &attachment_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = data_dir.join("mxhook.db");
        let mut conn = Connection::open(&db).with_context(|| format!("opening {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{} cannot use WAL (got {mode})", db.display());
        // FULL: a committed transaction is on disk before COMMIT returns; that is what a 250 promises.
        // The WAL is checkpointed mostly by a thread of its own (checkpoint.rs).
        conn.execute_batch(&format!(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;
             PRAGMA journal_size_limit={};",
            checkpoint::JOURNAL_SIZE_LIMIT
        ))?;
        schema::prepare(&mut conn).with_context(|| format!("creating or upgrading the tables in {}", db.display()))?;
        let deliver = Connection::open(&db).with_context(|| format!("opening {}", db.display()))?;
        deliver.busy_timeout(Duration::from_secs(10))?;
        deliver.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        let streams_read = Connection::open(&db).with_context(|| format!("opening {}", db.display()))?;
        streams_read.busy_timeout(Duration::from_secs(10))?;
        streams_read.execute_batch("PRAGMA query_only=ON;")?;
        let checkpointer = checkpoint::Checkpointer::start(&db).context("starting the WAL checkpointer")?;
        Ok(Sqlite {
            _checkpointer: checkpointer,
            conn: Mutex::new(conn),
            deliver: Mutex::new(deliver),
            group: crate::store::group::Group::new(),
            claimed: Mutex::new(HashSet::new()),
            spool_dir,
            attachment_dir,
            db_path: db,
            streams_tip: tokio::sync::watch::Sender::new(0),
            streams_seen: std::sync::atomic::AtomicI64::new(0),
            streams_read: Mutex::new(streams_read),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll back),
        // so a poisoned mutex is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The delivery connection, for reads.
    fn deliver_conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.deliver.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream readers' connection (streams.rs).
    fn streams_conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.streams_read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The deliveries claimed in memory (queue.rs).
    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties each connection's page cache (SQLite keeps up to 2 MB each of what a burst read);
    /// the next reads come from the OS's file cache. For a quiet gateway (`memory.rs`).
    pub(super) fn release_memory(&self) {
        // One lock at a time: holding two would order them against the rest of the store.
        let shrink = |conn: &Connection| {
            if let Err(e) = conn.execute_batch("PRAGMA shrink_memory") {
                tracing::debug!(error = %e, "PRAGMA shrink_memory");
            }
        };
        shrink(&self.conn());
        shrink(&self.deliver_conn());
        shrink(&self.streams_conn());
    }
}

/// Between the chunks of a long write (retention, a bulk retry), lets the database go for as long as
/// the chunk held it (at most 100 ms): the gateway's group commit, in this process (the mutex is not
/// fair) or another (SQLite's busy handler polls), gets in, so no 250 waits for more than a chunk.
fn pause_writes(chunk_took: Duration) {
    std::thread::sleep(chunk_took.clamp(Duration::from_millis(1), Duration::from_millis(100)));
}
