//! Group commit, as SQLite's (`sqlite/commit.rs`): every write on the hot path (a message with its
//! deliveries, an attempt's outcome) is queued, and whoever leads commits everything queued in one
//! transaction: sessions that finished DATA while the previous commit was on its way share the
//! next. An item whose rows fail is redone alone, so it fails only itself. After the commit the
//! transaction's NOTIFYs wake every gateway's scheduler and stream readers.

use anyhow::Context;

use super::Postgres;

/// The advisory lock a transaction that adds stream events holds to its commit: cursors (a
/// sequence) are then committed in the order they were drawn, so a reader that has seen cursor N has
/// seen every earlier one.
pub(super) const STREAMS_LOCK: i64 = 0x6d78_686f_6f6b_0002;

/// What one caller needs committed (`ingest.rs`, `attempts.rs`).
pub(super) trait Work: Send {
    /// Writes its rows, inside the batch's transaction.
    fn write(&self, tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()>;
    /// Its commit is a promise to a sender (the 250 waits for it): the commit is synchronous
    /// (to the standbys too when the operator configured synchronous replication).
    fn is_promise(&self) -> bool;
    /// It adds deliveries that any gateway's scheduler may claim.
    fn wakes_schedulers(&self) -> bool {
        false
    }
    /// It adds events to streams.
    fn streams(&self) -> bool {
        false
    }
    /// The existing delivery it changes, if any: the batch locks them all first, in id order.
    fn locks(&self) -> Option<&str> {
        None
    }
}

impl Postgres {
    /// Queues `work`, then either finds it committed by the leader of the moment, or leads:
    /// commits every queued item (`store::group`). Returns once the transaction holding `work`
    /// has committed.
    pub(super) fn commit(&self, work: impl Work + 'static) -> anyhow::Result<()> {
        self.group
            .commit(Box::new(work), |batch: &[Box<dyn Work>]| {
                let mut conn = self.conn()?;
                let each = write_batch(&mut conn, batch.iter().map(|w| &**w))?;
                if batch.iter().any(|w| w.streams()) {
                    self.streams_changed();
                }
                Ok(each)
            })
            .map_err(anyhow::Error::msg)
    }
}

/// Writes `batch` in one transaction and commits it: each item's result, or an error for all.
fn write_batch<'a>(
    conn: &mut postgres::Client,
    batch: impl Iterator<Item = &'a dyn Work> + Clone,
) -> anyhow::Result<Vec<Result<(), String>>> {
    let mut tx = begin(conn, batch.clone())?;
    // Postgres aborts a transaction at its first error: a failed item makes us redo the batch one
    // transaction per item, so it fails alone (savepoints per item would cost every batch).
    if batch.clone().try_for_each(|w| w.write(&mut tx)).is_ok() {
        finish(&mut tx, batch.clone())?;
        tx.commit().context("committing")?;
        return Ok(batch.map(|_| Ok(())).collect());
    }
    drop(tx);
    Ok(batch
        .map(|w| {
            let one = std::iter::once(w);
            let mut tx = begin(conn, one.clone())?;
            w.write(&mut tx)?;
            finish(&mut tx, one)?;
            tx.commit().context("committing")
        })
        .map(|r: anyhow::Result<()>| r.map_err(|e| format!("{e:#}")))
        .collect())
}

fn begin<'c, 'a>(
    conn: &'c mut postgres::Client,
    batch: impl Iterator<Item = &'a dyn Work> + Clone,
) -> anyhow::Result<postgres::Transaction<'c>> {
    let mut tx = conn.transaction().context("beginning a transaction")?;
    // An attempt's outcome is no promise to anyone: lost in a crash of the database, it costs one
    // more POST with the same event id, which at-least-once allows.
    if !batch.clone().any(|w| w.is_promise()) {
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    }
    if batch.clone().any(|w| w.streams()) {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STREAMS_LOCK])?;
    }
    // Locked in id order before any is changed (mod.rs, "Lock order"): item by item, two batches
    // (or a batch and a replay) that share two deliveries could each hold one the other waits for.
    let mut ids: Vec<&str> = batch.filter_map(|w| w.locks()).collect();
    if ids.len() > 1 {
        ids.sort_unstable();
        tx.execute("SELECT 1 FROM deliveries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE", &[&ids])?;
    }
    Ok(tx)
}

/// The batch's wake-ups: sent to every listening gateway when (and only if) the transaction commits.
fn finish<'a>(
    tx: &mut postgres::Transaction<'_>,
    mut batch: impl Iterator<Item = &'a dyn Work> + Clone,
) -> anyhow::Result<()> {
    if batch.clone().any(|w| w.wakes_schedulers()) {
        tx.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
    }
    if batch.any(|w| w.streams()) {
        tx.batch_execute(&format!("NOTIFY {}", super::listen::STREAMS))?;
    }
    Ok(())
}
