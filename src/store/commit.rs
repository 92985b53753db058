//! Group commit: every write on the hot path (a message with its deliveries, the outcome of a
//! delivery attempt) is queued, and whoever holds the connection commits everything queued in one
//! transaction and one fsync (an item whose rows fail is redone alone, so it fails only itself).
//! Sessions that finished DATA while the previous commit was on its way to the disk, and attempts
//! that ended meanwhile, share the next one; nobody waits behind a queue of commits.

use std::sync::mpsc;

use anyhow::Context;

use super::attempts::{AttemptRecord, record_attempt};
use super::contents::Placement;
use super::ingest::{Row, insert_rows};
use super::{Store, spool};

/// What one caller needs committed.
pub(super) enum Work {
    Message(Row),
    Attempt(AttemptRecord),
}

pub(super) struct Queued {
    work: Work,
    done: mpsc::SyncSender<Result<(), String>>,
}

impl Store {
    /// Queues `work`, then either finds it committed by the caller that held the connection
    /// meanwhile, or takes the connection and commits every queued item. Returns once the
    /// transaction holding `work` has committed: on disk for a message (see `write_batch`).
    pub(super) fn commit(&self, work: Work) -> anyhow::Result<()> {
        let (done, result) = mpsc::sync_channel(1);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(Queued { work, done });
        let mut conn = self.conn();
        // A leader drains the queue and answers everyone in it before it lets go of the
        // connection: if our answer is not there yet, our item is still queued and we lead.
        if let Ok(r) = result.try_recv() {
            return r.map_err(anyhow::Error::msg);
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        // Large messages' files were fsync'd by their sessions; their names in the spool directory
        // are made durable here, once for the batch, before the rows that point at them.
        let spooled = batch.iter().any(|q| matches!(&q.work, Work::Message(r) if r.placement == Placement::Spooled));
        let outcome =
            if spooled { spool::sync_dir(&self.spool_dir).context("syncing the spool directory") } else { Ok(()) };
        let outcome = outcome.and_then(|()| write_batch(&mut conn, batch.iter().map(|q| &q.work)));
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
    batch: impl Iterator<Item = &'a Work> + Clone,
) -> anyhow::Result<Vec<Result<(), String>>> {
    // Only a batch holding a message waits for the disk (FULL: the WAL is fsync'd at commit). An
    // attempt's outcome is no promise to anyone: lost in a power cut (a crash of the process
    // loses nothing), it costs one more POST with the same event id, which at-least-once allows.
    // The next FULL commit makes it durable along with its own rows (one WAL, written in order).
    let promise = batch.clone().any(|w| matches!(w, Work::Message(_)));
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
    batch: impl Iterator<Item = &'a Work> + Clone,
) -> anyhow::Result<Vec<Result<(), String>>> {
    // All items in one transaction. An item whose rows fail (rare: e.g. an attempt for a delivery
    // deleted meanwhile) makes us redo the batch one transaction per item, so it fails alone;
    // savepoints per item would cost every batch a sub-journal instead.
    let tx = conn.transaction()?;
    if batch.clone().try_for_each(|w| write(&tx, w)).is_ok() {
        tx.commit().context("committing")?;
        return Ok(batch.map(|_| Ok(())).collect());
    }
    drop(tx);
    Ok(batch
        .map(|w| {
            let tx = conn.transaction()?;
            write(&tx, w)?;
            tx.commit().context("committing")
        })
        .map(|r| r.map_err(|e| format!("{e:#}")))
        .collect())
}

fn write(tx: &rusqlite::Connection, work: &Work) -> anyhow::Result<()> {
    match work {
        Work::Message(row) => insert_rows(tx, row),
        Work::Attempt(a) => record_attempt(tx, a),
    }
}

#[cfg(test)]
mod tests {
    use super::{Work, write_batch};
    use crate::mail::NextState;
    use crate::store::attempts::AttemptRecord;
    use crate::store::ingest::Row;
    use crate::store::tests::{due, message};
    use crate::store::{Attempt, Store};

    #[test]
    fn an_item_of_a_group_commit_that_fails_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eps = [due("e", 1_000, false)];
        let record = |delivery_id: &str| AttemptRecord {
            delivery_id: delivery_id.into(),
            retry_requested_at: None,
            step: 0,
            attempt: Attempt {
                attempt: 1,
                started_at: 1,
                duration_ms: 1,
                http_status: Some(200),
                error: None,
                response_body: None,
            },
            next: NextState::Succeeded,
        };
        let batch = [
            Work::Message(Row::from(&message("msg_a", 1_000, &[], &eps))),
            Work::Attempt(record("dlv_gone")),
            Work::Message(Row::from(&message("msg_b", 1_000, &[], &eps))),
        ];
        let each = write_batch(&mut store.conn(), batch.iter()).unwrap();
        assert!(each[0].is_ok() && each[2].is_ok(), "{each:?}");
        assert!(each[1].as_ref().is_err_and(|e| e.contains("FOREIGN KEY")), "{each:?}");
        for id in ["msg_a", "msg_b"] {
            assert!(store.message(id).unwrap().is_some(), "{id} was committed");
            assert_eq!(store.deliveries(None, Some(id)).unwrap().len(), 1);
        }
        assert!(store.attempts("dlv_gone").unwrap().is_empty());

        // A batch of attempts only is committed without waiting for the disk, then FULL is back.
        let d = &store.deliveries(None, Some("msg_a")).unwrap()[0];
        let each = write_batch(&mut store.conn(), [Work::Attempt(record(&d.id))].iter()).unwrap();
        assert!(each[0].is_ok(), "{each:?}");
        assert_eq!(store.attempts(&d.id).unwrap().len(), 1);
        let sync: i64 = store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous is FULL again");
    }
}
