//! Group commit: every write on the hot path (a message with its deliveries, the outcome of a
//! delivery attempt) is queued, and whoever holds the connection commits everything queued in one
//! transaction and one fsync (an item whose rows fail is redone alone, so it fails only itself).
//! Sessions that finished DATA while the previous commit was on its way to the disk, and attempts
//! that ended meanwhile, share the next one; nobody waits behind a queue of commits.

use anyhow::Context;

use super::{Sqlite, spool};

/// What one caller needs committed: a new message's rows (`ingest.rs`) or an attempt's outcome
/// (`attempts.rs`). The group commit knows them only by what it must do for them.
pub(super) trait Work: Send {
    /// Writes its rows, inside the batch's transaction.
    fn write(&self, tx: &rusqlite::Connection) -> anyhow::Result<()>;
    /// Its commit is a promise to a sender (a message: the 250 waits for it), so the batch waits
    /// for the disk.
    fn is_promise(&self) -> bool;
    /// Its rows point at files in the spool, whose names must be durable before the rows.
    fn is_spooled(&self) -> bool;
    /// It adds events to streams: their readers are woken once it has committed.
    fn streams(&self) -> bool {
        false
    }
}

impl Sqlite {
    /// Queues `work`, then either finds it committed by the caller that led meanwhile, or leads:
    /// takes the connection and commits every queued item (`store::group`). Returns once the
    /// transaction holding `work` has committed: on disk for a message (see `write_batch`).
    pub(super) fn commit(&self, work: impl Work + 'static) -> anyhow::Result<()> {
        self.group
            .commit(Box::new(work), |batch: &[Box<dyn Work>]| {
                let mut conn = self.conn();
                // Large messages' files were fsync'd by their sessions; their names in the spool
                // directory are made durable here, once for the batch, before the rows that point at them.
                if batch.iter().any(|w| w.is_spooled()) {
                    spool::sync_dir(&self.spool_dir).context("syncing the spool directory")?;
                }
                let each = write_batch(&mut conn, batch.iter().map(|w| &**w))?;
                if batch.iter().any(|w| w.streams()) {
                    self.streams_changed();
                }
                Ok(each)
            })
            .map_err(anyhow::Error::msg)
    }
}

/// Writes `batch` and commits it: each item's result, or an error for all of them.
pub(super) fn write_batch<'a>(
    conn: &mut rusqlite::Connection,
    batch: impl Iterator<Item = &'a dyn Work> + Clone,
) -> anyhow::Result<Vec<Result<(), String>>> {
    // Only a batch holding a message waits for the disk (FULL: the WAL is fsync'd at commit). An
    // attempt's outcome is no promise to anyone: lost in a power cut (a crash of the process
    // loses nothing), it costs one more POST with the same event id, which at-least-once allows.
    // The next FULL commit makes it durable along with its own rows (one WAL, written in order).
    let promise = batch.clone().any(|w| w.is_promise());
    conn.pragma_update(None, "synchronous", if promise { "FULL" } else { "NORMAL" })?;
    let each = write_all(conn, batch);
    // The connection's other writers (retention, the CLI's edits) keep FULL. Should this fail,
    // the next message's batch still sets FULL for itself above.
    if !promise && let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::warn!(error = %e, "cannot set synchronous=FULL back after recording attempts");
    }
    each
}

fn write_all<'a>(
    conn: &mut rusqlite::Connection,
    batch: impl Iterator<Item = &'a dyn Work> + Clone,
) -> anyhow::Result<Vec<Result<(), String>>> {
    // All items in one transaction. An item whose rows fail (rare: e.g. an attempt for a delivery
    // deleted meanwhile) makes us redo the batch one transaction per item, so it fails alone;
    // savepoints per item would cost every batch a sub-journal instead.
    let tx = conn.transaction()?;
    if batch.clone().try_for_each(|w| w.write(&tx)).is_ok() {
        tx.commit().context("committing")?;
        return Ok(batch.map(|_| Ok(())).collect());
    }
    drop(tx);
    Ok(batch
        .map(|w| {
            let tx = conn.transaction()?;
            w.write(&tx)?;
            tx.commit().context("committing")
        })
        .map(|r| r.map_err(|e| format!("{e:#}")))
        .collect())
}
