//! Retention in the shared database, as SQLite's (`sqlite/retention.rs`): bytes go `retention` after
//! arrival, records `keep_metadata` after; a message with a pending delivery is never touched. The
//! janitor runs on one gateway at a time: a pass starts only if it takes a session advisory lock,
//! and the others skip theirs.

use super::Postgres;
use crate::store::Purged;

/// Messages per transaction, so no transaction holds many rows for long.
const CHUNK: i64 = 500;
/// The janitor's advisory lock.
const RETENTION_LOCK: i64 = 0x6d78_686f_6f6b_0003;

/// Whether the message may go: no pending delivery.
const SETTLED: &str =
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.status = 'pending')";

impl Postgres {
    pub(in crate::store) fn purge_files(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_files_with(cutoff_ms, &mut |_| {})
    }

    /// Walks the messages that still have their bytes (`messages_files`, oldest first) from where the
    /// previous chunk stopped: each row is read once, whether it goes or is kept (pending).
    pub(in crate::store) fn purge_files_with(
        &self,
        cutoff_ms: i64,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<usize> {
        let mut total = 0;
        let mut from = (i64::MIN, String::new());
        loop {
            let mut conn = self.conn()?;
            let mut tx = conn.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT received_at, id, {SETTLED} FROM messages
                     WHERE files_removed_at IS NULL AND received_at < $1 AND (received_at, id) > ($2, $3)
                     ORDER BY received_at, id LIMIT $4 FOR UPDATE SKIP LOCKED"
                ),
                &[&cutoff_ms, &from.0, &from.1, &CHUNK],
            )?;
            let Some(last) = rows.last() else { return Ok(total) };
            from = (last.get(0), last.get(1));
            let ids: Vec<String> = rows.iter().filter(|r| r.get::<_, bool>(2)).map(|r| r.get(1)).collect();
            if !ids.is_empty() {
                tx.execute("DELETE FROM contents WHERE message_id = ANY($1)", &[&ids])?;
                tx.execute(
                    "UPDATE messages SET files_removed_at = $2 WHERE id = ANY($1)",
                    &[&ids, &crate::time::now_ms()],
                )?;
            }
            tx.commit()?;
            if !ids.is_empty() {
                total += ids.len();
                progress(total);
            }
        }
    }

    pub(in crate::store) fn purge_records(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_records_with(cutoff_ms, &mut |_| {})
    }

    /// As `purge_files_with`, over every message before the cutoff (`messages_received`).
    pub(in crate::store) fn purge_records_with(
        &self,
        cutoff_ms: i64,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<usize> {
        self.purge_files(cutoff_ms)?;
        let mut total = 0;
        let mut from = (i64::MIN, String::new());
        loop {
            let mut conn = self.conn()?;
            let mut tx = conn.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT received_at, id, {SETTLED} FROM messages
                     WHERE received_at < $1 AND (received_at, id) > ($2, $3)
                     ORDER BY received_at, id LIMIT $4 FOR UPDATE SKIP LOCKED"
                ),
                &[&cutoff_ms, &from.0, &from.1, &CHUNK],
            )?;
            let Some(last) = rows.last() else { return Ok(total) };
            from = (last.get(0), last.get(1));
            let ids: Vec<String> = rows.iter().filter(|r| r.get::<_, bool>(2)).map(|r| r.get(1)).collect();
            // Every other row of each message goes with it (ON DELETE CASCADE).
            let n = if ids.is_empty() {
                0
            } else {
                // The cascade would lock their deliveries in no particular order (mod.rs, "Lock order").
                tx.execute("SELECT 1 FROM deliveries WHERE message_id = ANY($1) ORDER BY id FOR UPDATE", &[&ids])?;
                tx.execute("DELETE FROM messages WHERE id = ANY($1)", &[&ids])?
            };
            tx.commit()?;
            if n > 0 {
                total += n as usize;
                progress(total);
            }
        }
    }

    pub(in crate::store) fn pending_before(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        let n: i64 = self
            .conn()?
            .query_one(
                // Off the pending deliveries (a delivery's created_at is its message's received_at).
                "SELECT COUNT(DISTINCT message_id) FROM deliveries WHERE status = 'pending' AND created_at < $1",
                &[&cutoff_ms],
            )?
            .get(0);
        Ok(n as usize)
    }

    /// One janitor pass, if no other gateway is running one (then nothing is purged here).
    pub(in crate::store) fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        keep_metadata_ms: i64,
    ) -> anyhow::Result<Purged> {
        let mut lock = self.conn()?;
        let mine: bool = lock.query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK])?.get(0);
        if !mine {
            return Ok(Purged::default());
        }
        let pass = || -> anyhow::Result<Purged> {
            let files = self.purge_files(now_ms - retention_ms)?;
            let records = self.purge_records(now_ms - keep_metadata_ms)?;
            Ok(Purged { files, records, kept_pending: self.pending_before(now_ms - retention_ms)? })
        };
        let result = pass();
        lock.execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])?;
        result
    }
}
