//! Group commit: every write on the hot path (a message with its deliveries, the outcome of a
//! delivery attempt) is queued, and whoever holds the connection commits everything queued in one
//! transaction and one fsync (an item whose rows fail is redone alone, so it fails only itself).
//! Sessions that finished DATA while the previous commit was on its way to the disk, and attempts
//! that ended meanwhile, share the next one; nobody waits behind a queue of commits.

use std::sync::mpsc;

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

pub(super) struct Queued {
    work: Box<dyn Work>,
    done: mpsc::SyncSender<Result<(), String>>,
}

impl Sqlite {
    /// Queues `work`, then either finds it committed by the caller that held the connection
    /// meanwhile, or takes the connection and commits every queued item. Returns once the
    /// transaction holding `work` has committed: on disk for a message (see `write_batch`).
    pub(super) fn commit(&self, work: impl Work + 'static) -> anyhow::Result<()> {
        let (done, result) = mpsc::sync_channel(1);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(Queued { work: Box::new(work), done });
        let mut conn = self.conn();
        // A leader drains the queue and answers everyone in it before it lets go of the
        // connection: if our answer is not there yet, our item is still queued and we lead.
        if let Ok(r) = result.try_recv() {
            return r.map_err(anyhow::Error::msg);
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        // Large messages' files were fsync'd by their sessions; their names in the spool directory
        // are made durable here, once for the batch, before the rows that point at them.
        let spooled = batch.iter().any(|q| q.work.is_spooled());
        let outcome =
            if spooled { spool::sync_dir(&self.spool_dir).context("syncing the spool directory") } else { Ok(()) };
        let outcome = outcome.and_then(|()| write_batch(&mut conn, batch.iter().map(|q| &*q.work)));
        if outcome.is_ok() && batch.iter().any(|q| q.work.streams()) {
            self.streams_changed();
        }
        match outcome {
            Ok(each) => batch.into_iter().zip(each).for_each(|(q, r)| {
                let _ = q.done.send(r);
            }),
            Err(e) => {
                let e = format!("{e:#}");
                batch.into_iter().for_each(|q| {
                    let _ = q.done.send(Err(e.clone()));
                });
            }
        }
        drop(conn);
        result.recv().context("the group commit ended without an answer")?.map_err(anyhow::Error::msg)
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
